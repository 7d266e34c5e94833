// Resource failures fail one call or connection, never the process (issue 10, item 13).
// The real demo server runs as a child under a lowered limit: RLIMIT_NPROC (so it cannot
// start threads; as user `nobody`, because root is exempt from that limit) or
// RLIMIT_NOFILE (so it cannot accept). Its clients get a clear error; once the limit is
// raised again the same server serves them.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "base/unique_fd.hpp"
#include "support/child_process.hpp"
#include "support/demo_process.hpp"
#include "support/raw_socket.hpp"
#include "support/settle.hpp"
#include "wire/frame.hpp"
#include "wire/message_codec.hpp"
#include "wire/preamble.hpp"
#include "wire/settings.hpp"

using namespace std::chrono_literals;
using bokbok::message;
using bokbok_test::built_program;

namespace {

// The demo server listening on a UNIX socket in a fresh directory, run as `uid`.
struct demo_as : bokbok_test::listening_demo {
  demo_as(uid_t u, gid_t g) : listening_demo({}, u, g) {}
};

std::string remote_text(bokbok::connection& c, message m) {
  try {
    bokbok::call_options o;
    o.timeout = 10s;
    c.request(std::move(m), o);
    return "answered";
  } catch (const bokbok::remote_error& e) {
    return std::string(to_string(e.code())) + ": " + e.message();
  }
}

// A raw plain-mode client on `address` (unix:PATH): preamble and hello sent, nothing
// read. -1 if it could not connect.
int raw_client(const std::string& address) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  const std::string path = address.substr(5);
  REQUIRE(path.size() < sizeof sa.sun_path);
  std::copy(path.begin(), path.end(), sa.sun_path);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    return -1;
  }
  std::string out = bokbok::wire::encode_preamble({1, bokbok::wire::mode::plain, ""});
  bokbok::wire::append_frame(out, bokbok::wire::frame_type::hello, 0, 0,
                             bokbok::wire::encode_settings({}));
  REQUIRE(bokbok_test::write_all(fd, out));
  return fd;
}

// A process's peak resident set, in KiB, from /proc (0 if unreadable).
std::size_t rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoul(line.substr(6));
  return 0;
}

}  // namespace

TEST_CASE("a server that cannot start threads refuses calls clearly and serves once it can") {
  passwd* nobody = ::getpwnam("nobody");
  REQUIRE(nobody != nullptr);
  demo_as demo(nobody->pw_uid, nobody->pw_gid);
  // No new thread for user nobody from now on (its processes and threads already count
  // at least 1).
  demo.limit(RLIMIT_NPROC, 1);

  auto a = bokbok::connect(demo.address, {});
  auto b = bokbok::connect(demo.address, {});
  for (auto* c : {&a, &b}) {
    std::string got = remote_text(*c, {"ping", "x"});
    CHECK(got.rfind("busy: busy: cannot start a handler thread: ", 0) == 0);
    CHECK(got.find("Resource temporarily unavailable") != std::string::npos);
  }
  CHECK(demo.alive());
  // A client that leaves: its close handler needs a thread too.
  b.close();
  b.wait_closed();
  CHECK(demo.alive());

  demo.limit(RLIMIT_NPROC, RLIM_INFINITY);
  CHECK(a.request({"ping", "again"}) == message{"pong", "again"});
  auto c = bokbok::connect(demo.address, {});
  CHECK(c.request({"ping", "new"}) == message{"pong", "new"});
  CHECK(demo.alive());
}

// Under UBSan the server must not halt on a vptr report: UBSan's vptr check tests whether
// memory is readable by writing it into a pipe, and with no descriptor left pipe() fails,
// so every virtual call made at the limit is reported "invalid vptr" (a false report; the
// suppressions file cannot name it, as the type is unreadable too). UBSAN_OPTIONS is set
// while the child starts (its sanitizer runtime reads it then) and restored after; a base
// class, so it is set before the server starts. Other tests keep halt_on_error.
struct child_ubsan_options {
  std::optional<std::string> saved;
  child_ubsan_options() {
    if (const char* now = std::getenv("UBSAN_OPTIONS")) saved = now;
    REQUIRE(::setenv("UBSAN_OPTIONS", "halt_on_error=0", 1) == 0);
  }
  void restore() const {
    if (saved) ::setenv("UBSAN_OPTIONS", saved->c_str(), 1);
    else ::unsetenv("UBSAN_OPTIONS");
  }
};

struct demo_at_fd_limit : child_ubsan_options, demo_as {
  demo_at_fd_limit() : demo_as(::getuid(), ::getgid()) { restore(); }
};

TEST_CASE("a server out of file descriptors tells the client it cannot take, and serves on") {
  demo_at_fd_limit demo;
  {
    // Once a client got through, the server is accepting (and holds its spare
    // descriptor).
    auto probe = bokbok::connect(demo.address, {});
    probe.close();
    probe.wait_closed();
  }
  // The limit at the server's lowest free descriptor number: it can open no more. Then
  // clients until one is refused.
  std::vector<bool> open(4096);
  for (auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(demo.pid) + "/fd"))
    if (auto n = std::stoul(e.path().filename().string()); n < open.size()) open[n] = true;
  auto lowest_free = std::find(open.begin(), open.end(), false) - open.begin();
  demo.limit(RLIMIT_NOFILE, rlim_t(lowest_free));
  bokbok::options o;
  o.connect_timeout = 5s;  // a client left waiting would fail with "timed out" after this
  std::vector<bokbok::connection> served;
  std::string refusal;
  for (int i = 0; i < 32 && refusal.empty(); ++i) {
    try {
      served.push_back(bokbok::connect(demo.address, o));
    } catch (const bokbok::transport_error& e) {
      refusal = e.what();
    }
  }
  CAPTURE(refusal);
  CHECK(refusal.find("refused by the peer: busy: the server is out of resources: ") !=
        std::string::npos);
  CHECK(refusal.find("Too many open files") != std::string::npos);
  CHECK(demo.alive());
  for (auto& c : served) CHECK(c.request({"ping", "x"}) == message{"pong", "x"});

  demo.limit(RLIMIT_NOFILE, 4096);
  auto late = bokbok::connect(demo.address, o);
  CHECK(late.request({"ping", "late"}) == message{"pong", "late"});
  CHECK(demo.alive());
}

// The jam (issue 12): a client asks for many large answers and never reads them. Its
// answers are queued at once, the handler threads go on serving everyone else, and the
// server stops reading that client (its send queue is over max_send_queue) and stops
// starting its handlers, so it cannot make the server hold more than about the bound
// plus one answer per running handler. Before, each answer waited for room in the send
// queue on a shared pool thread, until every pool thread waited and every client hung.
TEST_CASE("a client that never reads its large answers jams neither the pool nor memory") {
  demo_as demo(::getuid(), ::getgid());
  const std::size_t rss_before = rss_kib(demo.pid);
  bokbok::base::unique_fd hog(raw_client(demo.address));
  REQUIRE(hog.get() >= 0);
  // 300 requests for 1 MiB each: 300 MiB of answers, ten times the server's 32 pool
  // threads, and far beyond its 8 MiB send queue.
  constexpr int asks = 300;
  std::string requests;
  for (std::uint32_t id = 1; id <= asks; ++id) {
    std::string payload;
    bokbok::wire::encode_message({"blob", "1048576"}, payload);
    bokbok::wire::append_frame(requests, bokbok::wire::frame_type::request, 0, id, payload);
  }
  REQUIRE(bokbok_test::write_all(hog.get(), requests));

  auto other = bokbok::connect(demo.address, {});
  for (int i = 0; i < 20; ++i) {
    CAPTURE(i);
    bokbok::call_options o;
    o.timeout = 5s;  // generous: what matters is that it is answered at all
    REQUIRE(other.request({"ping", std::to_string(i)}, o) == message{"pong", std::to_string(i)});
  }
  // Its peak stays well under the 300 MiB the answers would take: at most the send
  // queue's 8 MiB plus an answer per pool thread (32 MiB) and their encodings (about
  // 16 MiB measured; 340 MiB when handlers start regardless of the queue).
  const std::size_t grown = rss_kib(demo.pid) - std::min(rss_before, rss_kib(demo.pid));
  CHECK(grown < 100u * 1024);
  // The hog is still served once it reads: a blob's worth of its answers comes.
  CHECK(bokbok_test::read_some(hog.get(), 1u << 20, 10000ms).size() == 1u << 20);
  CHECK(demo.alive());
}
