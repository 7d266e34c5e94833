// The bounded replay cache (src/crypto/replay_cache.hpp).
#include <doctest/doctest.h>

#include <stdexcept>

#include "crypto/replay_cache.hpp"

using namespace bokbok::crypto;
using verdict = replay_cache::verdict;

namespace {
replay_cache::id id_of(unsigned char b) {
  replay_cache::id i{};
  i.fill(b);
  return i;
}
}  // namespace

TEST_CASE("a new key is fresh once, then replayed until it expires") {
  replay_cache c(4);
  CHECK(c.check_and_insert(id_of(1), 1000, 0) == verdict::fresh);
  CHECK(c.check_and_insert(id_of(1), 1000, 500) == verdict::replayed);
  CHECK(c.check_and_insert(id_of(1), 1000, 1000) == verdict::replayed);  // expiry inclusive
  CHECK(c.size() == 1);
  CHECK(c.check_and_insert(id_of(1), 3000, 1001) == verdict::fresh);  // expired, new entry
}

TEST_CASE("a full cache refuses new keys without growing, and expiry makes room") {
  replay_cache c(3);
  CHECK(c.capacity() == 3);
  CHECK(c.check_and_insert(id_of(1), 100, 0) == verdict::fresh);
  CHECK(c.check_and_insert(id_of(2), 200, 0) == verdict::fresh);
  CHECK(c.check_and_insert(id_of(3), 300, 0) == verdict::fresh);
  CHECK(c.check_and_insert(id_of(4), 400, 0) == verdict::full);
  CHECK(c.size() == 3);
  CHECK(c.check_and_insert(id_of(2), 200, 50) == verdict::replayed);  // full, still a replay
  CHECK(c.check_and_insert(id_of(4), 400, 101) == verdict::fresh);    // 1 expired
  CHECK(c.size() == 3);
  CHECK(c.check_and_insert(id_of(5), 500, 301) == verdict::fresh);    // 2 and 3 expired
  CHECK(c.size() == 2);
}

TEST_CASE("a replay cache needs room for at least one entry") {
  CHECK_THROWS_AS(replay_cache(0), std::invalid_argument);
  CHECK(replay_cache().capacity() == default_replay_capacity);
}
