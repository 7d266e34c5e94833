// The short call path of a connection (issue 12): what a call costs the caller's thread,
// how handlers see their call (this_call) with no call context made in advance, and
// which wake-ups a caller gets (answers read together; a graceful close).
// Real connections over a socketpair, on the backend BOKBOK_BACKEND names.
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <future>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "support/raw_peer.hpp"

using namespace std::chrono_literals;
using bokbok::message;

// Allocations made by this thread while counting_ is on (operator new, replaced for
// this test program: every other thread and every other moment is not counted).
namespace {
thread_local bool counting = false;
thread_local long allocations = 0;
// A client connection `c` whose peer is `raw`, over a socketpair: the test answers
// calls with the bytes it chooses, several answers in one write.
struct raw_answered {
  raw_answered() : raw(take_end(1)), c(bokbok::connect_fds(ends[0], ends[0], {}, "raw peer")) {}

  // Reads `n` requests, then answers each with its own call id, all in one write: the
  // connection reads them together.
  void answer_together(int n) {
    std::string answers;
    for (int got = 0; got < n;) {
      auto f = raw.next_frame(10s);
      REQUIRE_MESSAGE(f, "no request came: ", raw.error());
      if (f->type != bokbok::wire::frame_type::request) continue;  // a ping
      answers += bokbok_test::response_bytes(f->call_id, {std::to_string(f->call_id)});
      ++got;
    }
    REQUIRE(raw.send(answers));
  }

  bokbok::base::unique_fd take_end(int i) {
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) == 0);
    return bokbok::base::unique_fd(ends[i]);
  }

  int ends[2] = {-1, -1};
  bokbok_test::raw_peer raw;  // greets before c connects, so c's handshake completes
  bokbok::connection c;
};

}  // namespace

#if defined(__GNUC__) && !defined(__clang__)
// GCC, inlining these, sees malloc'd blocks reach a delete expression: they match here.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t n) {
  if (counting) ++allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

bokbok::options echo_options() {
  bokbok::options o;
  o.on_request = [](bokbok::connection&, message m) { return m; };
  return o;
}

}  // namespace

TEST_CASE("a blocking call allocates on the caller's thread only its request's encoding") {
  auto [a, b] = bokbok::connect_socketpair({}, echo_options());
  const message request{"echo", "0123456789abcdef"};
  for (int i = 0; i < 50; ++i) REQUIRE(a.request(request) == request);  // warm up
  constexpr int calls = 200;
  long made = 0;
  for (int i = 0; i < calls; ++i) {
    message copy = request;  // the caller's own request: not counted
    counting = true;
    allocations = 0;
    message answer = a.request(std::move(copy));
    counting = false;
    made += allocations;
    REQUIRE(answer == request);
  }
  // One allocation per call: the encoded request (the answer is decoded on the loop
  // thread). A wait state or a callback holding one would be two more each.
  MESSAGE("allocations per blocking call on the caller's thread: " << double(made) / calls);
  CHECK(made <= calls + calls / 10);
}

TEST_CASE("notify() from a handler with no call context made is refused busy when the send queue is full") {
  // b reads nothing while its first notification's handler (inline: on b's loop) waits,
  // so a's send queue fills. a's request handler never asks this_call for anything: no
  // call context exists, yet its notify() must be refused busy, not hold the shared
  // handler thread until b reads again.
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<std::string> outcome;
  bokbok::options ao;
  ao.max_send_queue = 64 * 1024;
  ao.on_request = [&](bokbok::connection& c, message) {
    const std::string chunk(16 * 1024, 'n');
    for (int i = 0; i < 4096; ++i) {  // 64 MiB: far past the socket and the queue
      try {
        c.notify({"fill", chunk});
      } catch (const bokbok::call_error& e) {
        outcome.set_value(std::string(bokbok::to_string(e.code())) + " after " +
                          std::to_string(i));
        return message{"done"};
      }
    }
    outcome.set_value("never refused");
    return message{"done"};
  };
  bokbok::options bo;
  bo.inline_handlers = true;
  std::atomic<bool> first{true};
  bo.on_notify = [&](bokbok::connection&, message) {
    if (first.exchange(false)) released.wait_for(10s);  // bounded
  };
  auto [a, b] = bokbok::connect_socketpair(ao, bo);
  auto answer = b.request_async({"go"});
  auto result = outcome.get_future();
  const bool ready = result.wait_for(5s) == std::future_status::ready;
  release.set_value();  // b reads again: whatever waited goes on
  REQUIRE(ready);
  const std::string what = result.get();
  INFO(what);
  CHECK(what.rfind("busy after ", 0) == 0);
  REQUIRE(answer.wait_for(10s) == std::future_status::ready);
  CHECK(answer.get() == message{"done"});
}

TEST_CASE("a cancel for a handler that never asked for its stop token still stops it") {
  std::promise<void> started, go_on;
  std::shared_future<void> may_look = go_on.get_future().share();
  std::promise<bool> stopped;
  bokbok::options ao;
  ao.on_request = [&](bokbok::connection&, message m) {
    if (m.at(0) == "ping") return message{"pong"};
    started.set_value();
    may_look.wait_for(10s);  // bounded; the cancel has arrived by then
    // The first look at its token: made now, already stopped by the cancel.
    stopped.set_value(bokbok::this_call::stop_token().stop_requested());
    return message{"late"};
  };
  auto [a, b] = bokbok::connect_socketpair(ao, {});
  std::stop_source stop;
  bokbok::call_options o;
  o.stop = stop.get_token();
  std::promise<std::exception_ptr> failed;
  b.request_async({"wait"}, o, [&](std::exception_ptr e, message) { failed.set_value(e); });
  REQUIRE(started.get_future().wait_for(10s) == std::future_status::ready);
  stop.request_stop();  // b's loop thread queues a cancel frame, then fails the call here
  auto e = failed.get_future();
  REQUIRE(e.wait_for(10s) == std::future_status::ready);
  CHECK(e.get() != nullptr);  // cancelled here at once, handler still running there
  // The cancel frame was queued before the callback ran, so it goes before this ping,
  // and a reads frames in order: once the ping is answered, the cancel was handled.
  // (A ping sent before the callback ran could overtake the cancel, which the stop
  // callback only posts to b's loop thread.)
  CHECK(b.request({"ping"}) == message{"pong"});
  go_on.set_value();
  auto seen = stopped.get_future();
  REQUIRE(seen.wait_for(10s) == std::future_status::ready);
  CHECK(seen.get());
}

// A thread that pipelines waits for its oldest call. Were the oldest completed first, it
// would wake for that answer alone and sleep again on the next: two context switches per
// call on a shared CPU (issue 12's pipelined figure).
TEST_CASE("answers read together run their callbacks newest call first") {
  raw_answered r;
  constexpr int n = 4;
  std::mutex mu;
  std::vector<std::string> order;  // the call ids, as their callbacks ran
  std::promise<void> all_ran;
  for (int i = 0; i < n; ++i)
    r.c.request_async({"call"}, {}, [&](std::exception_ptr e, message m) {
      std::lock_guard lock(mu);
      order.push_back(e ? "error" : m.at(0));
      if (order.size() == n) all_ran.set_value();
    });
  r.answer_together(n);
  REQUIRE(all_ran.get_future().wait_for(10s) == std::future_status::ready);
  std::lock_guard lock(mu);
  CHECK(order == std::vector<std::string>{"4", "3", "2", "1"});
}

TEST_CASE("a thread waiting for the oldest of several futures finds the others of its read ready") {
  raw_answered r;
  constexpr int n = 4;
  std::vector<std::future<message>> futures;
  for (int i = 0; i < n; ++i) futures.push_back(r.c.request_async({"call"}));
  r.answer_together(n);
  REQUIRE(futures[0].wait_for(10s) == std::future_status::ready);
  CHECK(futures[0].get() == message{"1"});
  for (int i = 1; i < n; ++i) {
    // Ready now, without waiting: completed before the oldest was.
    REQUIRE(futures[i].wait_for(0s) == std::future_status::ready);
    CHECK(futures[i].get() == message{std::to_string(i + 1)});
  }
}

namespace {

// The voluntary context switches (times it blocked) of thread `tid` of this process so
// far, and whether it is blocked now ('S'), from /proc.
struct thread_sleeps {
  long count = -1;
  bool sleeping = false;
};
thread_sleeps sleeps_of(long tid) {
  thread_sleeps t;
  std::ifstream status("/proc/self/task/" + std::to_string(tid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("State:")) t.sleeping = line.find('S') != std::string::npos;
    if (line.starts_with("voluntary_ctxt_switches:")) t.count = std::stol(line.substr(24));
  }
  return t;
}

}  // namespace

TEST_CASE("wait_closed() through a graceful close is woken once, when the connection has ended") {
  // It used to be woken as the goaway went out too (the close handler's step), only to
  // block again: two context switches of the ten or so a short-lived connection costs.
  raw_answered r;
  std::atomic<long> tid{0};
  std::promise<void> returned;
  auto done = returned.get_future();
  std::thread waiter([&] {
    tid = static_cast<long>(::syscall(SYS_gettid));
    r.c.wait_closed();
    returned.set_value();
  });
  struct joiner {  // a failed REQUIRE still ends the wait, and joins
    std::thread& t;
    bokbok::connection& c;
    ~joiner() {
      c.abort();
      t.join();
    }
  } join_at_end{waiter, r.c};
  // Until the waiter blocks in wait_closed() (bounded: 10 s).
  const auto limit = std::chrono::steady_clock::now() + 10s;
  thread_sleeps before;
  while (std::chrono::steady_clock::now() < limit) {
    if (tid != 0 && (before = sleeps_of(tid)).sleeping) break;
    std::this_thread::yield();
  }
  REQUIRE(before.sleeping);
  r.c.close();
  // Our goaway and close come; the connection has finished its side (the close handler
  // step), and waits for the peer's close.
  bool close_came = false;
  while (auto f = r.raw.next_frame(10s))
    if (f->type == bokbok::wire::frame_type::close) {
      close_came = true;
      break;
    }
  REQUIRE(close_came);
  // A wake-up now would show as one more time blocked: give it 300 ms to happen.
  thread_sleeps during = sleeps_of(tid);
  for (auto until = std::chrono::steady_clock::now() + 300ms;
       std::chrono::steady_clock::now() < until && during.count == before.count;
       during = sleeps_of(tid))
    std::this_thread::yield();
  CHECK(during.count == before.count);
  CHECK(done.wait_for(0s) == std::future_status::timeout);
  // The peer's close ends it: the waiter returns.
  REQUIRE(r.raw.send(bokbok_test::frame_record(bokbok::wire::frame_type::close, 0, "")));
  CHECK(done.wait_for(10s) == std::future_status::ready);
  CHECK(r.c.closed());
  CHECK(r.c.close_error() == nullptr);  // a clean close
}

// options::caller_spin (base/spinning.hpp; spinning_test covers when a caller spins, and
// that zero never does): checked when a connection opens or a server is made; calls
// complete with the spin off (0) and on (50 µs).
TEST_CASE("caller_spin: a negative value is refused; calls complete at 0 µs and at 50 µs") {
  bokbok::options bad;
  bad.caller_spin = std::chrono::microseconds(-1);
  CHECK_THROWS_WITH_AS(bokbok::connect_socketpair(bad, {}),
                       doctest::Contains("caller_spin must not be negative"),
                       bokbok::usage_error);
  bokbok::server_options so;  // a server's, for its handlers' calls to their clients
  so.listen = {"unix:@bokbok-call-path-spin-" + std::to_string(getpid())};
  so.caller_spin = std::chrono::microseconds(-1);
  CHECK_THROWS_WITH_AS(bokbok::server{so}, doctest::Contains("caller_spin must not be negative"),
                       bokbok::usage_error);
  for (auto spin : {std::chrono::microseconds(0), std::chrono::microseconds(50)}) {
    bokbok::options caller;
    caller.caller_spin = spin;
    auto [a, b] = bokbok::connect_socketpair(caller, echo_options());
    for (int i = 0; i < 100; ++i) REQUIRE(a.request({"x"}) == message{"x"});
  }
}
