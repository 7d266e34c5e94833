// RPC with a real peer process: bokbok-demo-server --stdio spawned over a pipe pair.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>

#include "bokbok/bokbok.hpp"
#include "support/child_process.hpp"

using namespace std::chrono_literals;
using bokbok::message;

namespace {

struct demo {
  bokbok_test::child_process child{{bokbok_test::built_program("BOKBOK_DEMO_SERVER"), "--stdio"}};
  std::mutex mu;
  std::vector<std::string> callbacks;
  std::atomic<int> closes{0};
  bokbok::connection conn;

  demo() : conn(open()) {}
  bokbok::connection open() {
    bokbok::options o;
    o.on_request = [this](bokbok::connection&, message m) -> message {
      std::lock_guard lock(mu);
      callbacks.push_back(m.at(0) + " " + m.at(1));
      return {"ok"};
    };
    o.on_close = [this](bokbok::connection&) { ++closes; };
    int in = std::exchange(child.from_child, -1), out = std::exchange(child.to_child, -1);
    return bokbok::connect_fds(in, out, o, "demo-server");
  }
};

}  // namespace

TEST_CASE("the demo server answers every method over a pipe pair") {
  demo d;
  CHECK(d.conn.request({"ping", "hi"}) == message{"pong", "hi"});
  message fields = {"echo", "a", std::string("b\0c", 3), ""};
  CHECK(d.conn.request(fields) == message(fields.begin() + 1, fields.end()));
  try {
    d.conn.request({"fail", "as asked"});
    FAIL("no error");
  } catch (const bokbok::remote_error& e) {
    CHECK(std::string(e.what()) == "as asked");
  }
  CHECK(d.conn.request({"callback", "5"}) == message{"did", "5"});
  {
    std::lock_guard lock(d.mu);
    CHECK(d.callbacks == std::vector<std::string>{"callback 1", "callback 2", "callback 3",
                                                  "callback 4", "callback 5"});
  }
  CHECK(d.conn.request({"sleep", "20"}) == message{"slept"});
  message blob = d.conn.request({"blob", std::to_string(8 << 20)});
  REQUIRE(blob.size() == 1);
  CHECK(blob[0].size() == (8u << 20));
  CHECK(d.conn.request({"shutdown-server!"}) == message{"ok"});
  d.conn.wait_closed();
  int status = d.child.wait();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(d.closes == 1);
}

TEST_CASE("16 threads calling a child process at once each get their own answers") {
  demo d;
  std::atomic<int> wrong{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 16; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        std::string tag = std::to_string(t) + "/" + std::to_string(i);
        if (d.conn.request({"ping", tag}) != message{"pong", tag}) ++wrong;
      }
    });
  for (auto& t : ts) t.join();
  CHECK(wrong == 0);
  d.conn.close();
  d.conn.wait_closed();
  CHECK(d.closes == 1);
}

TEST_CASE("killing the peer process fails pending calls and runs the close handler once") {
  demo d;
  CHECK(d.conn.request({"ping", "1"}) == message{"pong", "1"});
  std::vector<std::future<message>> calls;
  for (int i = 0; i < 4; ++i) calls.push_back(d.conn.request_async({"sleep", "60000"}));
  kill(d.child.pid, SIGKILL);
  for (auto& f : calls) {
    REQUIRE(f.wait_for(10s) == std::future_status::ready);
    CHECK_THROWS_AS(f.get(), bokbok::transport_error);
  }
  d.conn.wait_closed();
  CHECK(d.conn.close_reason().find("connection lost") != std::string::npos);
  CHECK_THROWS_AS(d.conn.request({"ping", "2"}), bokbok::transport_error);
  CHECK(d.closes == 1);
  int status = d.child.wait();
  CHECK(WIFSIGNALED(status));
}
