// Robust calls (issue #6) against a real peer process, bokbok-demo-server: deadlines,
// cancellation, heartbeats over a pipe pair and TCP, message size limits both ways, the
// running-handler cap, backpressure with a frozen reader, graceful goaway, notifications.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <latch>
#include <algorithm>
#include <cstring>
#include <future>
#include <mutex>
#include <stop_token>
#include <thread>

#include "bokbok/bokbok.hpp"
#include "support/child_process.hpp"

using namespace std::chrono_literals;
using bokbok::message;
using bokbok_test::built_program;
using bokbok_test::child_process;
using steady = std::chrono::steady_clock;

namespace {

long long ms_since(steady::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t).count();
}

// The demo server on a pipe pair, and what our side's handlers saw.
struct demo {
  child_process child;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> notes;
  std::atomic<int> closes{0};
  bokbok::connection conn;

  explicit demo(std::vector<std::string> args = {}, bokbok::options o = {})
      : child(argv(std::move(args))), conn(open(std::move(o))) {}
  static std::vector<std::string> argv(std::vector<std::string> extra) {
    std::vector<std::string> a{built_program("BOKBOK_DEMO_SERVER"), "--stdio"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  bokbok::options hooks(bokbok::options o) {
    // Our side answers `deadline` with the time its handler has left (nested calls).
    o.on_request = [](bokbok::connection&, message m) -> message {
      auto left = bokbok::this_call::remaining();
      if (m.at(0) == "deadline")
        return {"deadline", left == std::chrono::milliseconds::max()
                                ? "none" : std::to_string(left.count())};
      return {"ok"};
    };
    o.on_notify = [this](bokbok::connection&, message m) {
      std::lock_guard lock(mu);
      notes.push_back(m.at(0) + " " + m.at(1));
      cv.notify_all();
    };
    o.on_close = [this](bokbok::connection&) { ++closes; };
    return o;
  }
  bokbok::connection open(bokbok::options o) {
    int in = std::exchange(child.from_child, -1), out = std::exchange(child.to_child, -1);
    return bokbok::connect_fds(in, out, hooks(std::move(o)), "demo-server");
  }
  // Waits (bounded) for `n` notifications.
  bool wait_notes(std::size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 10s, [&] { return notes.size() >= n; });
  }
};

long long number_after(const std::string& s, const std::string& prefix) {
  REQUIRE(s.rfind(prefix, 0) == 0);
  return std::stoll(s.substr(prefix.size()));
}

template <class F>
bokbok::error_code call_error_code(F&& f) {
  try {
    f();
  } catch (const bokbok::call_error& e) {
    return e.code();
  }
  FAIL("no call_error");
  return {};
}

// A free TCP port on loopback (bound and released; the demo server binds it next).
int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

bokbok::connection connect_when_up(const std::string& address, const bokbok::options& o) {
  auto give_up = steady::now() + 10s;
  for (;;) {
    try {
      return bokbok::connect(address, o);
    } catch (const bokbok::transport_error&) {
      if (steady::now() > give_up) throw;
      std::this_thread::sleep_for(10ms);  // the server is still binding its socket
    }
  }
}

long status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key, 0) == 0) return std::stol(line.substr(std::strlen(key)));
  return -1;
}

}  // namespace

TEST_CASE("a deadline travels to the handler, and nested calls inherit it") {
  demo d;
  CHECK(d.conn.request({"deadline"}) == message{"deadline", "none"});
  bokbok::call_options o;
  o.timeout = 5s;
  long long left = number_after(d.conn.request({"deadline"}, o).at(1), "");
  CHECK(left > 3000);
  CHECK(left <= 5000);
  o.timeout = 3s;
  // The server's handler calls our `deadline` handler back: it sees the same deadline.
  long long nested = number_after(d.conn.request({"nested-deadline"}, o).at(1), "");
  CHECK(nested > 1000);
  CHECK(nested <= 3000);
  d.conn.close();
  d.conn.wait_closed();
}

TEST_CASE("a handler sleeping past the caller's deadline: the caller fails in time, the handler sees it passed") {
  demo d;
  bokbok::call_options o;
  o.timeout = 200ms;
  auto start = steady::now();
  CHECK(call_error_code([&] { d.conn.request({"overrun", "700"}, o); }) ==
        bokbok::error_code::deadline_exceeded);
  long long took = ms_since(start);
  CHECK(took >= 200);
  CHECK(took < 600);
  // After its sleep the handler's time left is negative, and its nested call to us
  // inherited the passed deadline: it failed at once, without being sent.
  std::string report = d.conn.request({"last-report"}).at(0);
  INFO(report);
  CHECK(report.rfind("remaining -", 0) == 0);
  CHECK(report.find(" nested deadline_exceeded") != std::string::npos);
  CHECK(d.conn.request({"ping", "after"}) == message{"pong", "after"});
  d.conn.close();
  d.conn.wait_closed();
}

TEST_CASE("a cancelled call fails at once and its handler observes the stop token") {
  demo d;
  for (int variant = 0; variant < 2; ++variant) {
    CAPTURE(variant);
    // `wait` notifies us when it has started, so we cancel a running handler.
    std::stop_source stop;
    bokbok::call_options o;
    o.stop = stop.get_token();
    std::promise<std::exception_ptr> outcome;
    auto done = outcome.get_future();
    auto handle = d.conn.request_async({"wait", "10000"}, o, [&](std::exception_ptr e, message) {
      outcome.set_value(e);
    });
    REQUIRE(d.wait_notes(std::size_t(variant + 1)));
    auto start = steady::now();
    if (variant == 0)
      stop.request_stop();
    else
      handle.cancel();
    REQUIRE(done.wait_for(2s) == std::future_status::ready);
    CHECK(ms_since(start) < 1000);
    auto e = done.get();
    REQUIRE(e);
    try {
      std::rethrow_exception(e);
    } catch (const bokbok::call_error& ce) {
      CHECK(ce.code() == bokbok::error_code::cancelled);
      CHECK(dynamic_cast<const bokbok::remote_error*>(&ce) == nullptr);  // ours, not the peer's
    }
    std::string report = d.conn.request({"last-report"}).at(0);
    INFO(report);
    CHECK(number_after(report, "stopped after ") < 5000);
  }
  d.conn.close();
  d.conn.wait_closed();
}

namespace {

// A frozen peer: its pending call fails with peer_unresponsive_error within a few
// heartbeat intervals, and the close handler runs once.
void check_frozen_peer_detected(bokbok::connection& conn, pid_t pid, std::atomic<int>& closes) {
  CHECK(conn.request({"ping", "alive"}) == message{"pong", "alive"});
  auto pending = conn.request_async({"sleep", "60000"});
  REQUIRE(kill(pid, SIGSTOP) == 0);
  auto start = steady::now();
  REQUIRE(pending.wait_for(5s) == std::future_status::ready);
  long long took = ms_since(start);
  CHECK(took >= 100);   // 2 intervals after the last frame, which came just before
  CHECK(took < 2000);
  CHECK_THROWS_AS(pending.get(), bokbok::peer_unresponsive_error);
  conn.wait_closed();
  CHECK(conn.close_reason().find("peer unresponsive") != std::string::npos);
  CHECK_THROWS_AS(conn.request({"ping", "late"}), bokbok::transport_error);
  CHECK(closes == 1);
  kill(pid, SIGCONT);
}

}  // namespace

TEST_CASE("heartbeats detect a peer frozen with SIGSTOP over a pipe pair") {
  bokbok::options o;
  o.heartbeat_interval = 100ms;
  demo d({}, o);
  check_frozen_peer_detected(d.conn, d.child.pid, d.closes);
}

TEST_CASE("heartbeats detect a peer frozen with SIGSTOP over TCP on loopback") {
  std::string address = "tcp:127.0.0.1:" + std::to_string(free_port());
  child_process server({built_program("BOKBOK_DEMO_SERVER"), "--listen", address});
  std::atomic<int> closes{0};
  bokbok::options o;
  o.heartbeat_interval = 100ms;
  o.on_close = [&](bokbok::connection&) { ++closes; };
  auto conn = connect_when_up(address, o);
  check_frozen_peer_detected(conn, server.pid, closes);
}

TEST_CASE("a live peer that answers pings is not declared dead, even while it is busy") {
  bokbok::options o;
  o.heartbeat_interval = 50ms;
  demo d({"--heartbeat", "50"}, o);
  // 600 ms of handler work is 12 intervals: the peer's loop still answers every ping.
  CHECK(d.conn.request({"sleep", "600"}) == message{"slept"});
  CHECK_FALSE(d.conn.closed());
  d.conn.close();
  d.conn.wait_closed();
  CHECK(d.conn.close_reason().find("unresponsive") == std::string::npos);
}

TEST_CASE("oversized messages fail gracefully in each direction and the connection survives") {
  constexpr std::size_t limit = 128 * 1024;
  bokbok::options o;
  o.max_message_size = 4u << 20;  // ours is larger: the peer's 128 KiB wins
  demo d({"--max-message-size", std::to_string(limit)}, o);
  // Ours to the peer: refused here, before sending.
  auto code = call_error_code([&] { d.conn.request({"echo", std::string(limit, 'x')}); });
  CHECK(code == bokbok::error_code::too_large);
  try {
    d.conn.request({"echo", std::string(limit, 'x')});
  } catch (const bokbok::remote_error&) {
    FAIL("a too-large request must fail locally, not remotely");
  } catch (const bokbok::call_error&) {
  }
  CHECK(d.conn.request({"ping", "still"}) == message{"pong", "still"});
  // The peer's answer to us: it refuses to send it and answers an error instead.
  try {
    d.conn.request({"blob", std::to_string(limit + 1)});
    FAIL("no error");
  } catch (const bokbok::remote_error& e) {
    CHECK(e.code() == bokbok::error_code::too_large);
  }
  CHECK(d.conn.request({"ping", "again"}) == message{"pong", "again"});
  CHECK_THROWS_AS(d.conn.notify({"note", std::string(limit, 'n')}), bokbok::call_error);
  d.conn.close();
  d.conn.wait_closed();
  CHECK(d.conn.close_reason() != "");
}

TEST_CASE("beyond the running-handler cap calls wait in a bounded queue, then get busy") {
  demo d({"--max-concurrent", "2", "--max-queued", "2"});
  std::vector<std::future<message>> calls;
  auto start = steady::now();
  for (int i = 0; i < 6; ++i) calls.push_back(d.conn.request_async({"sleep", "400"}));
  int slept = 0, busy = 0;
  for (auto& f : calls) {
    REQUIRE(f.wait_for(10s) == std::future_status::ready);
    message r;
    try {
      r = f.get();
    } catch (const bokbok::remote_error& e) {
      CHECK(e.code() == bokbok::error_code::busy);
      ++busy;
      continue;
    }
    CHECK(r == message{"slept"});
    ++slept;
  }
  CHECK(slept == 4);
  CHECK(busy == 2);
  CHECK(ms_since(start) >= 800);  // two rounds of two: the queue waited for slots
  CHECK(d.conn.request({"ping", "after"}) == message{"pong", "after"});
  d.conn.close();
  d.conn.wait_closed();
}

TEST_CASE("a server-wide handler cap answers busy beyond its queue") {
  bokbok::server_options so;
  auto dir = std::filesystem::temp_directory_path() / ("bokbok-robust-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  so.listen = {"unix:" + (dir / "cap.sock").string()};
  so.max_threads = 2;
  so.max_queued_calls = 1;
  std::latch release(1);
  std::atomic<int> started{0};
  so.on_request = [&](bokbok::connection&, message m) -> message {
    ++started;
    release.wait();
    return m;
  };
  bokbok::server srv(so);
  srv.start();
  auto a = bokbok::connect(srv.local_addresses().at(0));
  auto b = bokbok::connect(srv.local_addresses().at(0));
  auto wait_started = [&](int n) {
    for (auto until = steady::now() + 10s; started < n && steady::now() < until;)
      std::this_thread::yield();
    return started.load() == n;
  };
  // Two run (the two threads), one waits (the queue of one), the fourth is refused.
  auto first = a.request_async({"one"});
  REQUIRE(wait_started(1));
  auto second = b.request_async({"two"});
  REQUIRE(wait_started(2));
  auto third = b.request_async({"three"});
  // `four` follows `three` on the same connection, so it arrives after it: the queue is
  // full by then. (b is within its fair share, max_threads, of the pool's queue, so it
  // is the pool's bound that refuses it, not b's own queue that takes it.)
  try {
    b.request({"four"});
    FAIL("no busy");
  } catch (const bokbok::remote_error& e) {
    CHECK(e.code() == bokbok::error_code::busy);
  }
  CHECK(started == 2);
  release.count_down();
  CHECK(first.get() == message{"one"});
  CHECK(second.get() == message{"two"});
  CHECK(third.get() == message{"three"});
  a.close();
  b.close();
  srv.stop();
  srv.wait();
  std::filesystem::remove_all(dir);
}

TEST_CASE("a reader that stops reading cannot make the writer's memory grow without bound") {
  bokbok::options o;
  o.max_send_queue = 4u << 20;
  demo d({}, o);
  CHECK(d.conn.request({"size", "x"}) == message{"size", "1"});
  const long base_kib = status_kib("VmRSS:");
  std::ofstream("/proc/self/clear_refs") << "5";  // resets VmHWM to the current RSS
  REQUIRE(kill(d.child.pid, SIGSTOP) == 0);
  constexpr std::size_t chunk = 1u << 20, total = 1u << 30;
  constexpr int threads = 8;
  std::atomic<std::size_t> delivered{0};
  std::atomic<int> wrong{0};
  std::vector<std::thread> ts;
  struct resume_and_join {  // also when a check below fails
    std::vector<std::thread>& ts;
    pid_t pid;
    ~resume_and_join() {
      kill(pid, SIGCONT);
      for (auto& t : ts)
        if (t.joinable()) t.join();
    }
  } guard{ts, d.child.pid};
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      std::string field(chunk, 'w');
      for (std::size_t i = 0; i < total / chunk / threads; ++i) {
        message r = d.conn.request({"size", field});
        if (r != message{"size", std::to_string(chunk)}) ++wrong;
        delivered += chunk;
      }
    });
  // Wait until the send queue is full: then a non-blocking call is refused with busy.
  bool full = false;
  for (auto until = steady::now() + 20s; !full && steady::now() < until;) {
    auto p = std::make_shared<std::promise<std::exception_ptr>>();
    auto f = p->get_future();
    d.conn.request_async({"size", "probe"}, {}, [p](std::exception_ptr e, message) {
      p->set_value(e);
    });
    // Refused at once, or accepted (then it waits for the frozen peer, harmlessly).
    if (f.wait_for(1ms) == std::future_status::ready && f.get()) full = true;
  }
  REQUIRE(full);
  // The frozen reader holds everything up: the writers block, memory stays put.
  const long stalled_kib = status_kib("VmRSS:");
  CHECK(delivered == 0);
  CHECK(call_error_code([&] {
          bokbok::call_options t;
          t.timeout = 100ms;
          d.conn.request({"size", "blocked"}, t);
        }) == bokbok::error_code::deadline_exceeded);
  REQUIRE(kill(d.child.pid, SIGCONT) == 0);
  for (auto& t : ts) t.join();
  CHECK(wrong == 0);
  CHECK(delivered == total);
  const long peak_kib = status_kib("VmHWM:");
  MESSAGE("writer RSS: base " << base_kib / 1024 << " MiB, stalled +"
          << (stalled_kib - base_kib) / 1024 << " MiB, peak +" << (peak_kib - base_kib) / 1024
          << " MiB while sending 1 GiB");
  // Bound: the 4 MiB queue, the writers' own 1 MiB field, request and encoding each
  // (8 threads: 24 MiB), the batch in flight, allocator slack.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // ASan keeps freed memory in quarantine (256 MiB by default), TSan adds shadow memory:
  // RSS says nothing there.
#else
  CHECK(stalled_kib - base_kib < 48 * 1024);
  CHECK(peak_kib - base_kib < 64 * 1024);
#endif
  d.conn.close();
  d.conn.wait_closed();
}

TEST_CASE("close() is graceful: calls in flight complete, new ones fail with shutting_down") {
  demo d;
  std::vector<std::future<message>> calls;
  for (int i = 0; i < 3; ++i) calls.push_back(d.conn.request_async({"sleep", "300"}));
  CHECK(d.conn.request({"ping", "before"}) == message{"pong", "before"});
  d.conn.close(5s);
  CHECK(call_error_code([&] { d.conn.request({"ping", "after"}); }) ==
        bokbok::error_code::shutting_down);
  for (auto& f : calls) {
    REQUIRE(f.wait_for(5s) == std::future_status::ready);
    CHECK(f.get() == message{"slept"});
  }
  d.conn.wait_closed();
  CHECK(d.closes == 1);
  int status = d.child.wait();  // the demo server exits when its connection closes
  CHECK(WIFEXITED(status));
}

TEST_CASE("a graceful close gives up after its grace period") {
  demo d;
  auto slow = d.conn.request_async({"sleep", "5000"});
  auto start = steady::now();
  d.conn.close(200ms);
  REQUIRE(slow.wait_for(5s) == std::future_status::ready);
  CHECK_THROWS_AS(slow.get(), bokbok::transport_error);
  CHECK(ms_since(start) < 2000);
  d.conn.wait_closed();
}

TEST_CASE("server stop() sends goaway: calls in flight complete, new calls fail with shutting_down") {
  auto dir = std::filesystem::temp_directory_path() / ("bokbok-goaway-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string address = "unix:" + (dir / "demo.sock").string();
  child_process server({built_program("BOKBOK_DEMO_SERVER"), "--listen", address});
  auto conn = connect_when_up(address, {});
  std::vector<std::future<message>> calls;
  for (int i = 0; i < 3; ++i) calls.push_back(conn.request_async({"sleep", "500"}));
  CHECK(conn.request({"shutdown-server!"}) == message{"ok"});
  for (auto& f : calls) {
    REQUIRE(f.wait_for(10s) == std::future_status::ready);
    CHECK(f.get() == message{"slept"});
  }
  // The goaway has arrived by the time the connection has closed; a call made after the
  // stop is answered or refused, never left hanging.
  conn.wait_closed();
  CHECK_THROWS_AS(conn.request({"ping", "late"}), bokbok::error);
  int status = server.wait();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  std::filesystem::remove_all(dir);
}

TEST_CASE("notifications go both ways and are never answered") {
  demo d;
  for (int i = 0; i < 3; ++i) d.conn.notify({"note", "n" + std::to_string(i)});
  // The peer may run them concurrently; wait (bounded) until all three are in.
  message notes;
  for (auto until = steady::now() + 10s; notes.size() < 3 && steady::now() < until;)
    notes = d.conn.request({"notes"});
  std::sort(notes.begin(), notes.end());
  CHECK(notes == message{"n0", "n1", "n2"});
  CHECK(d.conn.request({"notify-me", "hello"}) == message{"ok"});
  REQUIRE(d.wait_notes(1));
  {
    std::lock_guard lock(d.mu);
    CHECK(d.notes == std::vector<std::string>{"note hello"});
  }
  d.conn.close();
  d.conn.wait_closed();
  CHECK_THROWS_AS(d.conn.notify({"note", "closed"}), bokbok::transport_error);
}

TEST_CASE("reconnect: after the server is restarted, exactly the calls in flight and the one that timed out fail") {
  auto dir = std::filesystem::temp_directory_path() / ("bokbok-reconnect-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string address = "unix:" + (dir / "demo.sock").string();
  auto server = std::make_unique<child_process>(
      std::vector<std::string>{built_program("BOKBOK_DEMO_SERVER"), "--listen", address});
  connect_when_up(address, {}).close();

  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> events;
  std::atomic<int> closes{0};
  bokbok::reconnect_policy policy;
  policy.initial_delay = 20ms;
  policy.max_delay = 100ms;
  policy.on_drop = [&](const std::string&) {
    std::lock_guard lock(mu);
    events.push_back("drop");
    cv.notify_all();
  };
  policy.on_reconnect = [&] {
    std::lock_guard lock(mu);
    events.push_back("reconnect");
    cv.notify_all();
  };
  bokbok::options o;
  o.on_close = [&](bokbok::connection&) { ++closes; };
  auto conn = bokbok::connect(address, o, policy);
  CHECK(conn.request({"ping", "1"}) == message{"pong", "1"});

  // Two calls in flight when the server dies: they fail (they may have run).
  auto a = conn.request_async({"sleep", "10000"});
  auto b = conn.request_async({"sleep", "10000"});
  CHECK(conn.request({"ping", "2"}) == message{"pong", "2"});  // both are sent
  kill(server->pid, SIGKILL);
  server->wait();
  REQUIRE(a.wait_for(10s) == std::future_status::ready);
  REQUIRE(b.wait_for(10s) == std::future_status::ready);
  CHECK_THROWS_AS(a.get(), bokbok::transport_error);
  CHECK_THROWS_AS(b.get(), bokbok::transport_error);
  {
    std::unique_lock lock(mu);
    REQUIRE(cv.wait_for(lock, 10s, [&] { return !events.empty(); }));
  }
  // While nothing listens, a call waits up to its deadline, and only that long.
  bokbok::call_options quick;
  quick.timeout = 150ms;
  auto start = steady::now();
  CHECK(call_error_code([&] { conn.request({"ping", "3"}, quick); }) ==
        bokbok::error_code::deadline_exceeded);
  CHECK(ms_since(start) >= 150);
  CHECK(ms_since(start) < 1000);
  CHECK_FALSE(conn.closed());

  // A call made now waits for the restarted server and succeeds.
  std::filesystem::remove(dir / "demo.sock");
  auto patient = std::async(std::launch::async, [&] {
    bokbok::call_options o10;
    o10.timeout = 10s;
    return conn.request({"ping", "4"}, o10);
  });
  server = std::make_unique<child_process>(
      std::vector<std::string>{built_program("BOKBOK_DEMO_SERVER"), "--listen", address});
  CHECK(patient.get() == message{"pong", "4"});
  CHECK(conn.request({"ping", "5"}) == message{"pong", "5"});
  {
    // on_reconnect runs on a handler thread after the new connection is handed to the
    // waiting calls, so those calls may finish first: wait for it, then check it ran once.
    std::unique_lock lock(mu);
    REQUIRE(cv.wait_for(lock, 10s, [&] { return events.size() >= 2; }));
    CHECK(events == std::vector<std::string>{"drop", "reconnect"});
  }
  CHECK(closes == 0);
  conn.close();
  conn.wait_closed();
  CHECK(closes == 1);
  CHECK_THROWS_AS(conn.request({"ping", "6"}), bokbok::transport_error);
  kill(server->pid, SIGTERM);
  // A graceful stop on a signal exits 0 (under TSan: no race between the signal thread's
  // stop() and the destructor's join).
  int status = server->wait();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  std::filesystem::remove_all(dir);
}

TEST_CASE("an idle timeout closes a connection gracefully once no call has run for that long") {
  bokbok::options o;
  o.idle_timeout = 300ms;
  demo d({}, o);
  auto start = steady::now();
  // Calls keep it busy: 3 x 200 ms of calls, each within the timeout of the last.
  for (int i = 0; i < 3; ++i) CHECK(d.conn.request({"sleep", "200"}) == message{"slept"});
  CHECK_FALSE(d.conn.closed());
  auto closed = std::async(std::launch::async, [&] { d.conn.wait_closed(); });
  REQUIRE(closed.wait_for(5s) == std::future_status::ready);
  CHECK(ms_since(start) >= 900);
  CHECK(d.conn.close_reason().find("idle for") != std::string::npos);
  CHECK(d.closes == 1);
  int status = d.child.wait();  // a graceful close: the demo server exits normally
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
