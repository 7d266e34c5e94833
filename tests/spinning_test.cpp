// base::spinning, the bounded spin of a blocking caller before it parks: it sees an
// answer that comes while it looks, and it does not spin when it must not (no time
// given, one CPU online, another caller waiting, a recent spin that ran out, until its
// back-off ends).
// Each case counts the looks taken at the condition rather than timing anything.
#include "base/spinning.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <thread>

using namespace std::chrono_literals;
using bokbok::base::spinning;

namespace {

bool many_cpus() { return ::sysconf(_SC_NPROCESSORS_ONLN) > 1; }

// A condition that turns true on look number `at` (0: never), counting looks.
struct counted {
  unsigned at = 0;
  unsigned looks = 0;
  bool operator()() { return ++looks == at && at != 0; }
};

}  // namespace

TEST_CASE("a spin sees a condition that turns true while it looks") {
  if (!many_cpus()) return;  // one CPU: it never spins ("one CPU online" below)
  spinning s;
  counted c{1000};
  CHECK(s.spin_until(std::ref(c), 10s));
  CHECK(c.looks == 1000);
}

TEST_CASE("no time given: no spin, not one look") {
  spinning s;
  counted c{1};
  CHECK_FALSE(s.spin_until(std::ref(c), 0us));
  CHECK(c.looks == 0);
}

TEST_CASE("one CPU online: no spin, not one look") {
  // On a thread of its own, which has no back-off left by the cases before: only the
  // CPU rule can stop it looking. The same thread with two CPUs does look.
  auto looks_with = [](long cpus) {
    counted c{1};
    std::thread([&] {
      spinning s(cpus);
      s.spin_until(std::ref(c), 10s);
    }).join();
    return c.looks;
  };
  CHECK(looks_with(1) == 0);  // what it waits for would need the CPU it spins on
  CHECK(looks_with(2) == 1);
}

TEST_CASE("a caller that began while another waited does not spin") {
  spinning first;     // a blocked caller already
  spinning second;    // so this one parks at once
  counted c{1};
  CHECK_FALSE(second.spin_until(std::ref(c), 10s));
  CHECK(c.looks == 0);
}

TEST_CASE("a spin that runs out makes the thread's next waits skip spinning, 1, then 2, ...") {
  if (!many_cpus()) return;
  auto wait = [](counted& c) {
    spinning s;
    return s.spin_until(std::ref(c), 200us);
  };
  counted never;
  CHECK_FALSE(wait(never));  // runs out
  CHECK(never.looks > 0);
  counted skipped1{1};
  CHECK_FALSE(wait(skipped1));  // skip 1 of 1
  CHECK(skipped1.looks == 0);
  counted again;
  CHECK_FALSE(wait(again));  // spins again, and runs out again
  CHECK(again.looks > 0);
  for (int i = 0; i < 2; ++i) {  // skip 2
    counted skipped{1};
    CHECK_FALSE(wait(skipped));
    CHECK(skipped.looks == 0);
  }
  counted seen{5};
  CHECK(wait(seen));  // spins, and sees it: the back-off is over
  counted next{5};
  CHECK(wait(next));  // a success leaves no skip behind
  CHECK(next.looks == 5);
}
