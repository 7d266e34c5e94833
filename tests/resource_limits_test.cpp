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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "support/child_process.hpp"
#include "support/settle.hpp"

using namespace std::chrono_literals;
using bokbok::message;
using bokbok_test::built_program;

namespace {

// The demo server listening on a UNIX socket in a fresh directory, run as `uid`.
struct demo_as {
  std::filesystem::path dir;
  std::string address;
  pid_t pid = -1;
  int log_fd = -1;  // its stderr, read until it has started (then left to the pipe)
  std::string log;
  uid_t uid;
  gid_t gid;

  demo_as(uid_t u, gid_t g) : uid(u), gid(g) {
    char tmpl[] = "/tmp/bokbok-limits-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    ::chmod(tmpl, 0777);
    address = "unix:" + (dir / "s").string();
    const std::string server = built_program("BOKBOK_DEMO_SERVER");
    int err[2];
    REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
    pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::dup2(err[1], 2);
      if (::setgid(gid) != 0 || ::setuid(uid) != 0) ::_exit(120);
      const char* argv[] = {server.c_str(), "--listen", address.c_str(), "--unix-mode",
                            "666", nullptr};
      ::execv(server.c_str(), const_cast<char**>(argv));
      ::_exit(127);
    }
    ::close(err[1]);
    log_fd = err[0];
    // Started (its threads too) once it says where it listens; the socket file alone
    // appears before that.
    REQUIRE(bokbok_test::settles([&] {
      pollfd pf{log_fd, POLLIN, 0};
      char buf[512];
      ssize_t n;
      if (::poll(&pf, 1, 0) == 1 && (n = ::read(log_fd, buf, sizeof buf)) > 0)
        log.append(buf, std::size_t(n));
      return log.find("listening on") != std::string::npos;
    }));
  }
  bool alive() const {
    int status;
    return ::waitpid(pid, &status, WNOHANG) == 0;
  }
  // Sets the server's soft limit (its hard limit stays). Done by a helper process of
  // the server's own uid: only that may, as this one lacks CAP_SYS_RESOURCE.
  void limit(__rlimit_resource resource, rlim_t soft) const {
    pid_t helper = ::fork();
    REQUIRE(helper >= 0);
    if (helper == 0) {
      if (::setgid(gid) != 0 || ::setuid(uid) != 0) ::_exit(1);
      rlimit now{};
      if (::prlimit(pid, resource, nullptr, &now) != 0) ::_exit(2);
      rlimit lim{std::min(soft, now.rlim_max), now.rlim_max};
      ::_exit(::prlimit(pid, resource, &lim, nullptr) == 0 ? 0 : 3);
    }
    int status = 0;
    REQUIRE(::waitpid(helper, &status, 0) == helper);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
  }
  ~demo_as() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (log_fd >= 0) ::close(log_fd);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
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

TEST_CASE("a server out of file descriptors tells the client it cannot take, and serves on") {
  demo_as demo(::getuid(), ::getgid());
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
