// The handler pool on its own: bounded threads, started on demand, leaving when idle.
#include "rpc/handler_pool.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "support/settle.hpp"

using namespace std::chrono_literals;
using bokbok::rpc::handler_pool;

namespace {

// Runs `n` tasks at once on `pool` (each waits until all have started), so the pool
// grows to `n` threads.
void burst(handler_pool& pool, unsigned n) {
  std::mutex mu;
  std::condition_variable cv;
  unsigned started = 0, finished = 0;
  for (unsigned i = 0; i < n; ++i) {
    REQUIRE(pool.submit([&] {
      std::unique_lock lock(mu);
      ++started;
      cv.notify_all();
      cv.wait_for(lock, 10s, [&] { return started == n; });
      ++finished;
      cv.notify_all();
    }));
  }
  std::unique_lock lock(mu);
  REQUIRE(cv.wait_for(lock, 10s, [&] { return finished == n; }));
}

// One task, waited for.
void one_task(handler_pool& pool) {
  std::promise<void> done;
  REQUIRE(pool.submit([&] { done.set_value(); }));
  REQUIRE(done.get_future().wait_for(10s) == std::future_status::ready);
}

}  // namespace

TEST_CASE("after a burst, steady light traffic keeps few threads and lets the rest leave") {
  handler_pool pool({16, 1024, 300ms});
  burst(pool, 16);
  CHECK(pool.threads() == 16);
  // A task every 10 ms for 1.2 s, four times the idle timeout: with the work spread over
  // all 16 threads each would get one every 160 ms and none would ever time out.
  auto end = std::chrono::steady_clock::now() + 1200ms;
  auto next = std::chrono::steady_clock::now();
  int tasks = 0;
  while (std::chrono::steady_clock::now() < end && tasks < 1000) {
    one_task(pool);
    ++tasks;
    next += 10ms;
    std::this_thread::sleep_until(next);  // the traffic's pace, not a wait for a result
  }
  MESSAGE(pool.threads(), " threads left after ", tasks, " light tasks");
  CHECK(pool.threads() <= 3);
}

// A burst wakes one idle thread, which wakes the next as it takes a task (a chain): every
// task still gets a thread of its own at once (each of these waits for all the others),
// and no thread is started while idle ones are there to wake.
TEST_CASE("a burst onto idle threads runs every task at once, waking them in a chain") {
  handler_pool pool({16, 1024, 10s});
  burst(pool, 16);  // 16 threads, then idle
  REQUIRE(pool.threads() == 16);
  for (int round = 0; round < 3; ++round) {
    burst(pool, 16);
    CHECK(pool.threads() == 16);
    burst(pool, 5);  // fewer tasks than idle threads
    CHECK(pool.threads() == 16);
  }
}

TEST_CASE("idle threads leave after the idle timeout, and new work starts a thread again") {
  handler_pool pool({4, 1024, 50ms});
  burst(pool, 4);
  CHECK(bokbok_test::settles([&] { return pool.threads() == 0; }, 5s));
  one_task(pool);
  CHECK(pool.threads() >= 1);
}

TEST_CASE("at most max_threads tasks run at once; the rest wait in the queue and all run") {
  handler_pool pool({3, 1024, 1s});
  std::atomic<int> running{0}, most{0}, done{0};
  for (int i = 0; i < 30; ++i) {
    REQUIRE(pool.submit([&] {
      int now = ++running;
      int seen = most.load();
      while (now > seen && !most.compare_exchange_weak(seen, now)) {
      }
      std::this_thread::yield();
      --running;
      ++done;
    }));
  }
  CHECK(bokbok_test::settles([&] { return done.load() == 30; }, 10s));
  CHECK(most.load() <= 3);
  CHECK(pool.threads() <= 3);
}

TEST_CASE("while a thread waits in a nested call, another stays free past the idle timeout") {
  handler_pool pool({1, 1024, 50ms});
  std::promise<void> entered, release;
  auto released = release.get_future().share();
  REQUIRE(pool.submit([&] {
    handler_pool::blocking_scope waiting;  // as a nested request() does
    REQUIRE_FALSE(waiting.refused());
    entered.set_value();
    released.wait_for(10s);
  }));
  REQUIRE(entered.get_future().wait_for(10s) == std::future_status::ready);
  // The waiting thread started a stand-in before it waited (under RLIMIT_NPROC it would
  // have refused to wait instead), and the stand-in does not leave at the idle timeout:
  // were it gone, work queued later would wait on a thread that may never come back
  // (when no new thread can be started).
  CHECK(bokbok_test::settles([&] { return pool.threads() == 2; }, 5s));
  CHECK_FALSE(bokbok_test::settles([&] { return pool.threads() < 2; }, 300ms));
  one_task(pool);
  release.set_value();
  // Nobody waits any more: the threads leave as usual.
  CHECK(bokbok_test::settles([&] { return pool.threads() == 0; }, 5s));
}

// The event loop queues every request of a read before a handler thread is woken (issue
// 12's pipelined figure): a thread woken at the first would run at once on a shared CPU,
// before the loop had queued the second.
TEST_CASE("a wake_batch holds back the wake-up of the tasks it queues until it ends") {
  handler_pool pool({1, 1024, 60s});  // idle threads stay: only a wake-up starts a task
  one_task(pool);
  REQUIRE(pool.threads() == 1);
  // Asleep: a thread just done with its task would look at the queue on its own.
  REQUIRE(bokbok_test::settles([&] { return pool.waiting_threads() == 1; }));
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> ran;
  auto task = [&](int i) {
    return [&, i] {
      std::lock_guard lock(mu);
      ran.push_back(i);
      cv.notify_all();
    };
  };
  {
    handler_pool::wake_batch batch(pool);
    {
      handler_pool::wake_batch nested(pool);  // the outer one wakes
      REQUIRE(pool.submit(task(1)));
    }
    // Not started, though a thread is idle: nothing woke it. (Bounded: the wait ends at
    // the first task that runs, or after 200 ms.)
    std::unique_lock lock(mu);
    CHECK_FALSE(cv.wait_for(lock, 200ms, [&] { return !ran.empty(); }));
    lock.unlock();
    REQUIRE(pool.submit(task(2)));
    REQUIRE(pool.submit(task(3)));
  }
  std::unique_lock lock(mu);
  REQUIRE(cv.wait_for(lock, 10s, [&] { return ran.size() == 3; }));
  CHECK(ran == std::vector<int>{1, 2, 3});
}

TEST_CASE("in a wake_batch, a pool with no thread still starts one at once") {
  handler_pool pool({2, 1024, 60s});
  REQUIRE(pool.threads() == 0);
  std::promise<void> done;
  {
    handler_pool::wake_batch batch(pool);
    REQUIRE(pool.submit([&] { done.set_value(); }));
    CHECK(pool.threads() == 1);  // started by submit(): a task is never left alone
  }
  REQUIRE(done.get_future().wait_for(10s) == std::future_status::ready);
}

TEST_CASE("submit_if_free takes a task only when a thread can start it at once") {
  handler_pool pool({1, 1024, 5s});
  // A free slot: taken, and run.
  std::promise<void> first;
  REQUIRE(pool.submit_if_free([&] { first.set_value(); }));
  REQUIRE(first.get_future().wait_for(10s) == std::future_status::ready);
  // The one slot held by a handler: refused, where submit() would queue it behind.
  std::promise<void> release, holding;
  auto released = release.get_future().share();
  REQUIRE(pool.submit([&, released] {
    holding.set_value();
    released.wait_for(10s);
  }));
  REQUIRE(holding.get_future().wait_for(10s) == std::future_status::ready);
  std::atomic<bool> ran{false};
  CHECK_FALSE(pool.submit_if_free([&] { ran = true; }));
  // Work already waiting for the slot: refused as well (it would wait behind it).
  std::promise<void> queued_ran;
  REQUIRE(pool.submit([&] { queued_ran.set_value(); }));
  CHECK_FALSE(pool.submit_if_free([&] { ran = true; }));
  release.set_value();
  REQUIRE(queued_ran.get_future().wait_for(10s) == std::future_status::ready);
  CHECK_FALSE(ran.load());
  // Free again: taken.
  std::promise<void> again;
  CHECK(bokbok_test::settles([&] { return pool.waiting_threads() == 1; }, 10s));
  REQUIRE(pool.submit_if_free([&] { again.set_value(); }));
  CHECK(again.get_future().wait_for(10s) == std::future_status::ready);
}
