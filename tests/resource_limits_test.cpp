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
#include "support/demo_process.hpp"
#include "support/settle.hpp"

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
