// exec: addresses against real child processes: the demo server spawned by connect(),
// and small shell scripts that misbehave on purpose (a banner, an early exit, silence,
// a child that ignores SIGTERM).
#include <doctest/doctest.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "bokbok/bokbok.hpp"
#include "support/open_fds.hpp"
#include "support/child_process.hpp"
#include "support/settle.hpp"
#include "transport/command_line.hpp"

using namespace std::chrono_literals;
using bokbok::message;
using bokbok_test::settles;  // descriptors a closed stream leaves to its loop thread

namespace {

std::string demo_path() { return bokbok_test::built_program("BOKBOK_DEMO_SERVER"); }

// "exec:'/path/to/bokbok-demo-server' --stdio"
std::string demo_address() {
  return "exec:" + bokbok::transport::shell_quote(demo_path()) + " --stdio";
}

// An exec: address running a /bin/sh script; the demo server's path is "$0" in it.
std::string script_address(const std::string& script) {
  return "exec:sh -c " + bokbok::transport::shell_quote(script) + " " +
         bokbok::transport::shell_quote(demo_path());
}

// The pid in a peer address or an error text: "... (pid 1234)".
int pid_in(const std::string& text) {
  auto at = text.rfind("(pid ");
  REQUIRE(at != std::string::npos);
  return std::stoi(text.substr(at + 5));
}

using bokbok_test::open_fds;

std::string show(const std::set<std::string>& s) {
  std::string out;
  for (auto& x : s) out += x + "; ";
  return out;
}

// True once `pid` is no child of ours any more: reaped, not a zombie, not running.
bool reaped(int pid) {
  errno = 0;
  return waitpid(pid, nullptr, WNOHANG) < 0 && errno == ECHILD;
}

// Waits (bounded) until a process we do not own has gone.
bool gone_within(int pid, std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (kill(pid, 0) < 0 && errno == ESRCH) return true;
    std::this_thread::sleep_for(10ms);  // polling a condition, with a bound
  }
  return false;
}

struct collector {
  std::mutex mu;
  std::string text;
  std::function<void(std::string_view)> sink() {
    return [this](std::string_view s) {
      std::lock_guard lock(mu);
      text.append(s);
    };
  }
  std::string get() {
    std::lock_guard lock(mu);
    return text;
  }
};

}  // namespace

TEST_CASE("exec: runs the demo server as a child and calls go both ways") {
  auto fds_at_start = open_fds();
  {  // start the shared event loop first: its descriptors are not a leak
    auto [a, b] = bokbok::connect_socketpair({}, {});
    a.close();
    a.wait_closed();
    b.wait_closed();
  }
  // A stream's descriptors are closed by the loop thread, just after wait_closed()
  // returns: wait (bounded) for the socketpair's to go.
  auto sockets = [](const std::set<std::string>& fds) {
    return std::count_if(fds.begin(), fds.end(),
                         [](const std::string& f) { return f.find("socket:") != std::string::npos; });
  };
  REQUIRE(settles([&] { return sockets(open_fds()) == sockets(fds_at_start); }));
  auto fds_before = open_fds();
  std::atomic<int> closes{0}, callbacks{0};
  bokbok::options o;
  o.on_request = [&](bokbok::connection&, message m) -> message {
    ++callbacks;
    return {"ok", m.at(1)};
  };
  o.on_close = [&](bokbok::connection&) { ++closes; };
  auto conn = bokbok::connect(demo_address(), o);
  int pid = pid_in(conn.peer_address());
  CHECK(conn.peer_address().starts_with("exec:"));
  CHECK(conn.request({"ping", "hi"}) == message{"pong", "hi"});
  CHECK(conn.request({"callback", "4"}) == message{"did", "4"});
  CHECK(callbacks == 4);
  CHECK_FALSE(conn.child_status());  // still running

  std::atomic<int> wrong{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 16; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        std::string tag = std::to_string(t) + "/" + std::to_string(i);
        if (conn.request({"ping", tag}) != message{"pong", tag}) ++wrong;
      }
    });
  for (auto& t : ts) t.join();
  CHECK(wrong == 0);

  conn.close();
  conn.wait_closed();
  auto status = conn.child_status();
  REQUIRE(status);
  CHECK(status->pid == pid);
  CHECK(status->code == 0);
  CHECK(status->signal == 0);
  CHECK(closes == 1);
  CHECK(reaped(pid));
  settles([&] { return open_fds() == fds_before; });
  auto fds_after = open_fds();
  INFO("before: " << show(fds_before));
  INFO("after: " << show(fds_after));
  CHECK(fds_after == fds_before);
}

TEST_CASE("a child killed mid-call fails pending calls with the signal, and the close handler runs once") {
  std::atomic<int> closes{0};
  bokbok::options o;
  o.on_close = [&](bokbok::connection&) { ++closes; };
  auto conn = bokbok::connect(demo_address(), o);
  int pid = pid_in(conn.peer_address());
  CHECK(conn.request({"ping", "1"}) == message{"pong", "1"});
  std::vector<std::future<message>> calls;
  for (int i = 0; i < 4; ++i) calls.push_back(conn.request_async({"sleep", "60000"}));
  REQUIRE(kill(pid, SIGKILL) == 0);
  for (auto& f : calls) {
    REQUIRE(f.wait_for(10s) == std::future_status::ready);
    try {
      f.get();
      FAIL("the call succeeded");
    } catch (const bokbok::transport_error& e) {
      CHECK(std::string(e.what()).find("killed by signal 9 (SIGKILL)") != std::string::npos);
    }
  }
  conn.wait_closed();
  CHECK(closes == 1);
  REQUIRE(conn.child_status());
  CHECK(conn.child_status()->signal == SIGKILL);
  CHECK(reaped(pid));
}

TEST_CASE("a child that prints a banner before the preamble is refused with those bytes") {
  try {
    bokbok::connect(script_address("echo 'Welcome to the server!'; exec \"$0\" --stdio"));
    FAIL("connected");
  } catch (const bokbok::protocol_error& e) {
    std::string what = e.what();
    INFO(what);
    CHECK(what.find("the stdout of exec:sh -c") != std::string::npos);
    CHECK(what.find("expected the bokbok preamble but got \"Welcome to the server!\\n") !=
          std::string::npos);
  }
}

TEST_CASE("a child that exits at once is reported with its exit status") {
  try {
    bokbok::connect("exec:sh -c 'exit 3'");
    FAIL("connected");
  } catch (const bokbok::transport_error& e) {
    std::string what = e.what();
    INFO(what);
    CHECK(what.find("before speaking bokbok") != std::string::npos);
    CHECK(what.find("exited with status 3") != std::string::npos);
    CHECK(reaped(pid_in(what.substr(0, what.find(" closed:")))));
  }
}

TEST_CASE("a child that never speaks fails the connect after the timeout and is terminated") {
  bokbok::options o;
  o.connect_timeout = 300ms;
  o.child.grace = 100ms;
  auto start = std::chrono::steady_clock::now();
  try {
    bokbok::connect("exec:sleep 60", o);
    FAIL("connected");
  } catch (const bokbok::transport_error& e) {
    std::string what = e.what();
    INFO(what);
    CHECK(std::chrono::steady_clock::now() - start >= 300ms);
    CHECK(what.find("timed out after 300 ms") != std::string::npos);
    CHECK(what.find("is still running") != std::string::npos);
    // sleep ignores its stdin closing; after the grace period SIGTERM ends it.
    int pid = pid_in(what.substr(0, what.find(" closed:")));
    CHECK(gone_within(pid, 10s));
  }
}

TEST_CASE("a child that ignores SIGTERM is killed after the grace period") {
  bokbok::options o;
  o.child.grace = 150ms;
  // The demo server exits at end of input, then the shell becomes a sleep that ignores
  // SIGTERM (the trap's SIG_IGN survives exec).
  auto conn = bokbok::connect(script_address("trap '' TERM; \"$0\" --stdio; exec sleep 60"), o);
  CHECK(conn.request({"ping", "x"}) == message{"pong", "x"});
  auto start = std::chrono::steady_clock::now();
  conn.close();
  conn.wait_closed();
  CHECK(std::chrono::steady_clock::now() - start >= 300ms);  // two grace periods
  REQUIRE(conn.child_status());
  CHECK(conn.child_status()->signal == SIGKILL);
}

TEST_CASE("the child's stderr reaches the callback, and the child inherits no other descriptor") {
  int stray = open("/dev/null", O_RDONLY);  // not close-on-exec: a careless application's
  REQUIRE(stray >= 0);
  collector err;
  bokbok::options o;
  o.child.on_stderr = err.sink();
  auto conn = bokbok::connect(script_address("ls /proc/self/fd >&2; exec \"$0\" --stdio"), o);
  CHECK(conn.request({"ping", "x"}) == message{"pong", "x"});
  conn.close();
  conn.wait_closed();
  close(stray);
  std::string text = err.get();
  INFO(text);
  CHECK(text.find("[server] serving one connection on stdin/stdout") != std::string::npos);
  std::istringstream lines(text.substr(0, text.find("[server]")));
  std::set<std::string> child_fds;
  for (std::string l; std::getline(lines, l);) child_fds.insert(l);
  // ls's own: stdin, stdout, stderr, and the directory it is listing (the lowest free
  // number, 3, unless something leaked in and took it).
  CHECK(child_fds == std::set<std::string>{"0", "1", "2", "3"});
}

TEST_CASE("exec: of a program that does not exist says so") {
  CHECK_THROWS_WITH_AS(bokbok::connect("exec:bokbok-no-such-program --stdio"),
                       doctest::Contains("\"bokbok-no-such-program\": not found on PATH"),
                       bokbok::transport_error);
  CHECK_THROWS_WITH_AS(bokbok::connect("exec:/nonexistent/server"),
                       doctest::Contains("no such executable file"), bokbok::transport_error);
  CHECK_THROWS_AS(bokbok::connect("exec:'unclosed"), bokbok::address_error);
  CHECK_THROWS_AS(bokbok::connect("exec:"), bokbok::address_error);
}
