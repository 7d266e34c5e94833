// base::parking, the futex word that blocking callers and idle handler threads sleep on:
// no wake-up lost between two threads (the store-buffering race its memory orders close),
// a wake for an earlier condition does not end a later wait, timeouts.
#include "base/parking.hpp"
#include "support/proc_status.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using bokbok::base::parking;

using bokbok_test::wait_until_sleeping;

TEST_CASE("two threads taking turns through parking never lose a wake-up") {
  // Each round: one side sets the turn to the other and unparks it, then parks until the
  // turn is back. A wake lost between "about to sleep" and "condition set" hangs a side
  // for good, so the whole exchange is bounded, and a stuck side is released at the end.
  constexpr int rounds = 20'000;
  parking park_a, park_b;
  std::atomic<int> turn{0};  // even: a's turn, odd: b's; seq_cst (parking's contract)
  std::atomic<bool> stop{false};
  auto side = [&](parking& mine, parking& other, int parity) {
    for (int i = parity; i < 2 * rounds; i += 2) {
      mine.park_until([&] { return turn.load() == i || stop.load(); });
      if (stop.load()) return;
      turn.store(i + 1);
      other.unpark();
    }
  };
  auto b = std::async(std::launch::async, [&] { side(park_b, park_a, 1); });
  side(park_a, park_b, 0);
  const bool finished = b.wait_for(30s) == std::future_status::ready;
  stop = true;
  park_a.unpark();
  park_b.unpark();
  b.get();
  CHECK(finished);
  CHECK(turn.load() == 2 * rounds);
}

TEST_CASE("a wake for an earlier condition does not end a later wait") {
  parking park;
  std::atomic<bool> ready{false};
  park.unpark();  // late: nobody parked
  auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(park.park_until_for([&] { return ready.load(); }, 100ms));
  CHECK(std::chrono::steady_clock::now() - start >= 100ms);

  // The same while the thread is asleep: woken, it finds the condition false and sleeps
  // again, until the condition is set.
  std::atomic<long> tid{0};
  auto waiter = std::async(std::launch::async, [&] {
    tid = static_cast<long>(::syscall(SYS_gettid));
    park.park_until([&] { return ready.load(); });
  });
  REQUIRE(wait_until_sleeping(tid, 10s));
  park.unpark();  // spurious: the condition is still false
  CHECK(waiter.wait_for(200ms) == std::future_status::timeout);
  ready = true;
  park.unpark();
  CHECK(waiter.wait_for(10s) == std::future_status::ready);
}

TEST_CASE("park_until_for returns true at once when the condition holds, false after its timeout") {
  parking park;
  std::atomic<bool> ready{true};
  auto start = std::chrono::steady_clock::now();
  CHECK(park.park_until_for([&] { return ready.load(); }, 10s));
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  ready = false;
  start = std::chrono::steady_clock::now();
  CHECK_FALSE(park.park_until_for([&] { return ready.load(); }, 50ms));
  CHECK(std::chrono::steady_clock::now() - start >= 50ms);
  // Set from another thread before the timeout: true.
  auto setter = std::async(std::launch::async, [&] {
    ready = true;
    park.unpark();
  });
  CHECK(park.park_until_for([&] { return ready.load(); }, 10s));
  setter.get();
}
