// Test support: waiting, bounded, for a condition that becomes true a moment after the
// event a test caused (descriptors a loop thread closes, slots a server frees).
#pragma once

#include <chrono>
#include <thread>

namespace bokbok_test {

// Polls `done` every `every` until it holds or `limit` has passed (then checks once
// more). True if it held.
template <class F>
bool settles(F done, std::chrono::milliseconds limit = std::chrono::seconds(10),
             std::chrono::milliseconds every = std::chrono::milliseconds(5)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= end) return done();
    std::this_thread::sleep_for(every);  // polling a condition, with a bound
  }
  return true;
}

}  // namespace bokbok_test
