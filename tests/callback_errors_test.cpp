// Application callbacks that throw with nobody to answer to (issue 10, item 12): each kind
// is caught and reported through options::on_callback_error (server_options's for a
// server), or by default as one line on stderr; the process and its other calls go on.
// The peers are real: the demo server as a child process, or a bokbok::server on a
// loopback socket.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "support/child_process.hpp"
#include "support/key_users.hpp"
#include "support/settle.hpp"
#include "transport/address.hpp"
#include "transport/sockets.hpp"

using namespace std::chrono_literals;
using bokbok::message;
using bokbok_test::built_program;
using bokbok_test::child_process;

namespace {

// What on_callback_error was told: "where: what" per report.
struct report_log {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> seen;

  bokbok::callback_error_handler hook() {
    return [this](std::exception_ptr e, std::string_view where) {
      std::string what = "?";
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        what = ex.what();
      }
      std::lock_guard lock(mu);
      seen.push_back(std::string(where) + ": " + what);
      cv.notify_all();
    };
  }
  // Waits (bounded) until a report equal to `line` has come.
  bool has(const std::string& line) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 10s, [&] {
      for (auto& s : seen)
        if (s == line) return true;
      return false;
    });
  }
};

// A connection to the demo server over a pipe pair.
bokbok::connection demo_connection(child_process& child, bokbok::options o) {
  int in = std::exchange(child.from_child, -1), out = std::exchange(child.to_child, -1);
  return bokbok::connect_fds(in, out, o, "demo-server");
}

std::vector<std::string> demo_argv() { return {built_program("BOKBOK_DEMO_SERVER"), "--stdio"}; }

bokbok::server_options echo_server() {
  bokbok::server_options o;
  o.listen = {"tcp:127.0.0.1:0"};
  o.on_request = [](bokbok::connection&, message m) { return m; };
  return o;
}

}  // namespace

TEST_CASE("a response callback that throws is reported, and the connection goes on serving") {
  child_process child(demo_argv());
  report_log log;
  bokbok::options o;
  o.on_callback_error = log.hook();
  auto c = demo_connection(child, o);
  c.request_async({"ping", "one"}, [](std::exception_ptr, message) {
    throw std::runtime_error("callback one failed");
  });
  CHECK(log.has("response callback: callback one failed"));
  // The same for a callback that fails on an error answer.
  c.request_async({"fail", "no"}, [](std::exception_ptr e, message) {
    if (e) throw std::runtime_error("callback two failed");
  });
  CHECK(log.has("response callback: callback two failed"));
  CHECK(c.request({"ping", "still here"}) == message{"pong", "still here"});
  CHECK_FALSE(c.closed());
  c.close();
  c.wait_closed();
}

TEST_CASE("with no hook set, a throwing response callback is one line on stderr") {
  child_process child(demo_argv());
  auto c = demo_connection(child, {});
  // Our stderr, for the moment, is a pipe we read.
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  int saved = ::dup(2);
  REQUIRE(saved >= 0);
  REQUIRE(::dup2(p[1], 2) == 2);
  c.request_async({"ping", "x"}, [](std::exception_ptr, message) {
    throw std::runtime_error("nobody catches this");
  });
  std::string got;
  const std::string want = "bokbok: response callback threw: nobody catches this\n";
  auto until = std::chrono::steady_clock::now() + 10s;
  while (got.find('\n') == std::string::npos && std::chrono::steady_clock::now() < until) {
    pollfd pf{p[0], POLLIN, 0};
    if (::poll(&pf, 1, 100) <= 0) continue;
    char buf[256];
    ssize_t n = ::read(p[0], buf, sizeof buf);
    if (n > 0) got.append(buf, std::size_t(n));
  }
  ::dup2(saved, 2);
  ::close(saved);
  ::close(p[0]);
  ::close(p[1]);
  CHECK(got == want);
  CHECK(c.request({"ping", "after"}) == message{"pong", "after"});
  c.close();
  c.wait_closed();
}

TEST_CASE("a throwing notification handler, inline or not, and close handler are reported") {
  for (bool inline_handlers : {true, false}) {
    CAPTURE(inline_handlers);
    child_process child(demo_argv());
    report_log log;
    bokbok::options o;
    o.inline_handlers = inline_handlers;
    o.on_callback_error = log.hook();
    o.on_notify = [](bokbok::connection&, message m) {
      throw std::runtime_error("notify handler failed on " + m.at(1));
    };
    o.on_close = [](bokbok::connection&) { throw std::runtime_error("close handler failed"); };
    auto c = demo_connection(child, o);
    // The demo server's notify-me sends us a notification before it answers.
    c.request({"notify-me", "hello"});
    CHECK(log.has("on_notify: notify handler failed on hello"));
    CHECK(c.request({"ping", "x"}) == message{"pong", "x"});
    c.close();
    c.wait_closed();
    CHECK(log.has("on_close: close handler failed"));
  }
}

TEST_CASE("a key lookup that throws refuses that user only, and is reported") {
  bokbok_test::alice_key keys;
  report_log log;
  auto o = echo_server();
  auto known = keys.lookup();
  o.keys.key_for_user = [known](std::string_view user) -> std::optional<bokbok::key> {
    if (user == "mallory") throw std::runtime_error("the user database is down");
    return known(user);
  };
  o.on_callback_error = log.hook();
  bokbok::server srv(o);
  srv.start();
  const auto address = srv.local_addresses().at(0);

  bokbok::options mallory;
  mallory.keys.user = "mallory";
  mallory.keys.key = std::make_shared<const bokbok::key>(bokbok::key::generate());
  CHECK_THROWS_AS(bokbok::connect(address, mallory), bokbok::authentication_error);
  CHECK(log.has("options::keys.key_for_user: the user database is down"));

  bokbok::options alice;
  alice.keys.user = "alice";
  alice.keys.key = keys.alice;
  auto c = bokbok::connect(address, alice);
  CHECK(c.request({"echo", "hi"}) == message{"echo", "hi"});
  c.close();
  c.wait_closed();
}

TEST_CASE("server callbacks that throw are reported and the server goes on serving") {
  report_log log;
  auto o = echo_server();
  o.handshake_timeout = 2s;
  o.on_connection_error = [](const std::string&, const std::string&) {
    throw std::runtime_error("connection log failed");
  };
  auto opened = std::make_shared<std::atomic<int>>(0);
  o.on_open = [opened](bokbok::connection&) {
    if ((*opened)++ == 0) throw std::runtime_error("open handler failed");
  };
  o.on_callback_error = log.hook();
  bokbok::server srv(o);
  srv.start();
  const auto address = srv.local_addresses().at(0);

  // Garbage instead of a preamble: the connection fails, and its report throws.
  {
    auto sock = bokbok::transport::connect_socket(bokbok::transport::parse_address(address), 5s);
    const char junk[] = "GET / HTTP/1.0\r\n\r\n";
    REQUIRE(::write(sock.fd.get(), junk, sizeof junk - 1) == ssize_t(sizeof junk - 1));
    char buf[256];
    while (::read(sock.fd.get(), buf, sizeof buf) > 0) {
    }
  }
  CHECK(log.has("server_options::on_connection_error: connection log failed"));

  // The first connection's open handler throws: that connection is closed, and reported.
  auto first = bokbok::connect(address, {});
  CHECK(log.has("server_options::on_open: open handler failed"));
  CHECK(bokbok_test::settles([&] { return first.closed(); }));

  auto second = bokbok::connect(address, {});
  CHECK(second.request({"echo", "fine"}) == message{"echo", "fine"});
  second.close();
  second.wait_closed();
}
