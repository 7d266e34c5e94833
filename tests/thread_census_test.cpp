// Every duty on a loop: a process with a server holding 500 idle connections, 20 exec:
// children and a reconnecting client has, besides its main thread, only loop threads
// ("bokbok-loop") and handler pool threads ("bokbok-handler"), counted from
// /proc/self/task. And each moved duty
// still works, on the thread it moved to: a child's stderr and exit status (read and
// reaped by the loop), redial with backoff (a loop timer, the dial on a pool), and the
// close handler (on the connection's pool, once, even when its call queue is full).
// The real demo server ($BOKBOK_DEMO_SERVER) is the peer throughout.
#include <doctest/doctest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "support/child_process.hpp"
#include "support/demo_process.hpp"
#include "support/settle.hpp"
#include "transport/command_line.hpp"

using namespace std::chrono_literals;
using bokbok::message;
using bokbok_test::built_program;
using bokbok_test::settles;

namespace {

// Name -> count of this process's threads other than the main one (and, under TSan,
// other than the sanitizer's own background thread).
std::map<std::string, int> census() {
  std::map<std::string, int> names;
  for (const auto& name : bokbok_test::other_thread_names(getpid())) ++names[name];
  return names;
}

std::string describe(const std::map<std::string, int>& names) {
  std::string s;
  for (auto& [name, n] : names) s += "\"" + name + "\" x" + std::to_string(n) + " ";
  return s;
}

bool only_engine_threads(const std::map<std::string, int>& names) {
  for (const auto& entry : names)
    if (entry.first != "bokbok-loop" && entry.first != "bokbok-handler") return false;
  return true;
}

// Settles on a census of loop and handler threads only (a thread just started by a
// loop carries the loop's name until it names itself); the last census is in `seen`.
bool settles_on_engine_threads(std::map<std::string, int>& seen) {
  return settles([&] {
    seen = census();
    return only_engine_threads(seen);
  }, 5s);
}

std::string current_thread_name() {
  char name[16] = {};
  pthread_getname_np(pthread_self(), name, sizeof name);
  return name;
}

std::string demo_exec() {
  return "exec:" + bokbok::transport::shell_quote(built_program("BOKBOK_DEMO_SERVER")) +
         " --stdio";
}

std::unique_ptr<bokbok_test::child_process> start_server(const std::string& address) {
  return std::make_unique<bokbok_test::child_process>(
      std::vector<std::string>{built_program("BOKBOK_DEMO_SERVER"), "--listen", address});
}

bool server_answers(const std::string& address) {
  return settles([&] {
    try {
      bokbok::connect(address).close();
      return true;
    } catch (const bokbok::transport_error&) {
      return false;
    }
  });
}

using bokbok_test::temp_dir;


TEST_CASE("a server with 500 idle connections, 20 exec: children and a reconnecting client run on loop and handler threads only") {
  // Both ends of 500 connections live here: 1,000 descriptors and more.
  rlimit nofile{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &nofile) == 0);
  if (nofile.rlim_cur < 4096 && nofile.rlim_max >= 4096) {
    nofile.rlim_cur = 4096;
    REQUIRE(setrlimit(RLIMIT_NOFILE, &nofile) == 0);
  }
  temp_dir server_dir("census-server");
  bokbok::server_options so;
  so.listen = {"unix:" + (server_dir.path / "s.sock").string()};
  so.on_request = [](bokbok::connection&, message m) { return m; };
  bokbok::server in_process(so);
  in_process.start();
  std::vector<bokbok::connection> idle;
  for (int i = 0; i < 500; ++i) idle.push_back(bokbok::connect(so.listen[0]));
  REQUIRE(settles([&] { return in_process.connection_count() == 500; }));
  CHECK(idle.back().request({"x"}) == message{"x"});

  std::vector<bokbok::connection> children;
  for (int i = 0; i < 20; ++i) {
    children.push_back(bokbok::connect(demo_exec()));
    CHECK(children.back().request({"ping", std::to_string(i)}) ==
          message{"pong", std::to_string(i)});
  }

  temp_dir dir("census");
  std::string address = "unix:" + (dir.path / "demo.sock").string();
  auto server = start_server(address);
  REQUIRE(server_answers(address));
  std::atomic<int> drops{0}, reconnects{0};
  bokbok::reconnect_policy policy;
  policy.initial_delay = 20ms;
  policy.max_delay = 100ms;
  policy.on_drop = [&](const std::string&) { ++drops; };
  policy.on_reconnect = [&] { ++reconnects; };
  auto client = bokbok::connect(address, {}, policy);
  CHECK(client.request({"ping", "before"}) == message{"pong", "before"});

  std::map<std::string, int> seen;
  CHECK_MESSAGE(settles_on_engine_threads(seen), describe(seen));

  // The peer drops and stays away a while: the client is redialling meanwhile.
  kill(server->pid, SIGKILL);
  server->wait();
  std::filesystem::remove(dir.path / "demo.sock");
  REQUIRE(settles([&] { return drops.load() == 1; }));
  CHECK_MESSAGE(settles_on_engine_threads(seen), describe(seen));
  CHECK(reconnects.load() == 0);

  // It comes back: the client reconnects on its own.
  server = start_server(address);
  REQUIRE(settles([&] { return reconnects.load() == 1; }));
  CHECK(client.request({"ping", "after"}) == message{"pong", "after"});
  CHECK_MESSAGE(settles_on_engine_threads(seen), describe(seen));
  // One default loop serves all 521 client connections, the server's loop its 500.
  CHECK(seen["bokbok-loop"] == 2);

  for (auto& c : children) c.close();
  for (auto& c : children) {
    c.wait_closed();
    REQUIRE(c.child_status().has_value());  // reaped
  }
  client.close();
  client.wait_closed();
  kill(server->pid, SIGTERM);
  server->wait();
  for (auto& c : idle) c.close();
  in_process.stop(std::chrono::seconds(5));
  in_process.wait();
}

TEST_CASE("the loop reads a child's stderr, reaps it and reports its exit status") {
  std::mutex mu;
  std::string text;
  std::vector<std::string> threads;
  bokbok::options o;
  o.child.on_stderr = [&](std::string_view bytes) {
    std::lock_guard lock(mu);
    text.append(bytes);
    threads.push_back(current_thread_name());
  };
  std::string script = "exec:sh -c " +
                       bokbok::transport::shell_quote(
                           "echo to-stderr-before >&2; \"$0\" --stdio; echo to-stderr-after >&2; exit 7") +
                       " " + bokbok::transport::shell_quote(built_program("BOKBOK_DEMO_SERVER"));
  auto conn = bokbok::connect(script, o);
  CHECK(conn.request({"ping", "x"}) == message{"pong", "x"});
  conn.close();
  conn.wait_closed();  // also waits for the reap
  auto status = conn.child_status();
  REQUIRE(status.has_value());
  CHECK(status->code == 7);
  CHECK(status->signal == 0);
  std::lock_guard lock(mu);
  INFO(text);
  CHECK(text.find("to-stderr-before") != std::string::npos);
  CHECK(text.find("to-stderr-after") != std::string::npos);  // drained before the reap is done
  REQUIRE(!threads.empty());
  for (auto& t : threads) CHECK(t == "bokbok-loop");
}

TEST_CASE("redial waits with growing backoff on a loop timer and gives up; the close handler runs once on a handler thread") {
  temp_dir dir("backoff");
  std::string address = "unix:" + (dir.path / "demo.sock").string();
  auto server = start_server(address);
  REQUIRE(server_answers(address));
  bokbok::reconnect_policy policy;
  policy.initial_delay = 50ms;
  policy.max_delay = 200ms;
  policy.max_attempts = 4;
  std::atomic<int> closes{0};
  std::promise<std::string> close_thread;
  bokbok::options o;
  o.on_close = [&](bokbok::connection&) {
    if (closes++ == 0) close_thread.set_value(current_thread_name());
  };
  auto conn = bokbok::connect(address, o, policy);
  CHECK(conn.request({"ping", "x"}) == message{"pong", "x"});
  auto dropped = std::chrono::steady_clock::now();
  kill(server->pid, SIGKILL);
  server->wait();
  std::filesystem::remove(dir.path / "demo.sock");
  auto name = close_thread.get_future();
  REQUIRE(name.wait_for(10s) == std::future_status::ready);
  auto took = std::chrono::steady_clock::now() - dropped;
  CHECK(name.get() == "bokbok-handler");
  // Waits of 50, 100, 200 and 200 ms before the four attempts.
  CHECK(took >= 550ms);
  conn.wait_closed();
  CHECK(conn.close_reason().find("gave up reconnecting after 4 attempts") != std::string::npos);
  CHECK(closes.load() == 1);
}

TEST_CASE("a close handler runs once on the connection's handler pool even when its call queue is full") {
  std::promise<void> release;
  auto released = release.get_future().share();
  std::atomic<int> started{0}, closes{0};
  std::promise<std::string> close_thread;
  bokbok::options busy;  // one handler thread, one queued call
  busy.max_threads = 1;
  busy.max_queued_calls = 1;
  busy.on_request = [&, released](bokbok::connection&, message) {
    ++started;
    released.wait_for(20s);
    return message{"done"};
  };
  busy.on_close = [&](bokbok::connection&) {
    if (closes++ == 0) close_thread.set_value(current_thread_name());
  };
  auto [caller, callee] = bokbok::connect_socketpair({}, busy);
  auto first = caller.request_async({"one"});
  REQUIRE(settles([&] { return started.load() == 1; }));
  auto second = caller.request_async({"two"});  // queued in the pool: its queue is full now
  // Queued on the connection (past its share of the pool, max_threads: 1), then refused
  // as busy: proof that every queue is full.
  auto third = caller.request_async({"three"});
  auto fourth = caller.request_async({"four"});
  REQUIRE(fourth.wait_for(10s) == std::future_status::ready);
  CHECK_THROWS_AS(fourth.get(), bokbok::remote_error);
  caller.abort();  // the callee sees the transport end and closes
  // Closed, with its handler thread still busy and a call still queued: the close
  // handler is queued beyond the limit, not refused.
  REQUIRE(settles([&] { return callee.closed(); }));
  auto name = close_thread.get_future();
  CHECK(name.wait_for(100ms) == std::future_status::timeout);  // no thread but the pool's
  release.set_value();
  REQUIRE(name.wait_for(10s) == std::future_status::ready);
  CHECK(name.get() == "bokbok-handler");
  callee.wait_closed();
  CHECK(closes.load() == 1);
}

TEST_CASE("connections opened and closed with no close handler start no handler thread") {
  // Opening a connection, using it from the caller's thread and closing it needs the
  // loop only: the bookkeeping after a close is done there when there is no close
  // handler to run (a handler thread per short-lived connection was the largest cost
  // of opening one; issue 12, connection set-up).
  std::vector<bokbok::connection> held;  // kept: an idle pool thread would still show
  for (int i = 0; i < 5; ++i) {
    auto [a, b] = bokbok::connect_socketpair({}, {});
    a.close();
    a.wait_closed();
    b.wait_closed();
    held.push_back(std::move(a));
    held.push_back(std::move(b));
  }
  auto names = census();
  INFO(describe(names));
  CHECK(names.count("bokbok-handler") == 0);
}

}  // namespace
