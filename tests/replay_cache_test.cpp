// The bounded replay cache (src/crypto/replay_cache.hpp): only logins are recorded, and
// it evicts rather than refuses, so no user can fill it to lock the others out.
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

TEST_CASE("a recorded key is fresh once, then seen and replayed until it expires") {
  replay_cache c(4, 4);
  CHECK(!c.seen(id_of(1), 0));
  CHECK(c.record(id_of(1), "alice", 1000, 0) == verdict::fresh);
  CHECK(c.seen(id_of(1), 500));
  CHECK(c.record(id_of(1), "alice", 1000, 500) == verdict::replayed);
  CHECK(c.record(id_of(1), "bob", 1000, 1000) == verdict::replayed);  // expiry inclusive
  CHECK(c.size() == 1);
  CHECK(!c.seen(id_of(1), 1001));
  CHECK(c.record(id_of(1), "alice", 3000, 1001) == verdict::fresh);  // expired, new entry
}

TEST_CASE("a user at its quota loses its own oldest entry, never another user's") {
  replay_cache c(100, 3);
  CHECK(c.record(id_of(200), "bob", 5000, 0) == verdict::fresh);
  for (unsigned char i = 1; i <= 50; ++i)
    CHECK(c.record(id_of(i), "alice", 1000 + i, 0) == verdict::fresh);
  CHECK(c.size_of("alice") == 3);
  CHECK(c.size_of("bob") == 1);
  CHECK(c.size() == 4);
  CHECK(c.seen(id_of(200), 0));                      // bob's entry survived the flood
  CHECK(c.seen(id_of(50), 0));                       // alice's newest are kept
  CHECK(c.seen(id_of(48), 0));
  CHECK(!c.seen(id_of(47), 0));                      // her oldest went
}

TEST_CASE("a full cache evicts the oldest entry instead of refusing a new one") {
  replay_cache c(3, 3);
  CHECK(c.capacity() == 3);
  CHECK(c.record(id_of(1), "a", 100, 0) == verdict::fresh);
  CHECK(c.record(id_of(2), "b", 200, 0) == verdict::fresh);
  CHECK(c.record(id_of(3), "c", 300, 0) == verdict::fresh);
  CHECK(c.record(id_of(4), "d", 400, 0) == verdict::fresh);
  CHECK(c.size() == 3);
  CHECK(!c.seen(id_of(1), 0));  // the oldest of all
  CHECK(c.size_of("a") == 0);
  CHECK(c.record(id_of(2), "b", 200, 50) == verdict::replayed);  // full, still a replay
  CHECK(c.record(id_of(5), "e", 500, 301) == verdict::fresh);    // 2 and 3 expired
  CHECK(c.size() == 2);
  CHECK(c.size_of("b") == 0);
}

TEST_CASE("a replay cache needs room for at least one entry, and one per user") {
  CHECK_THROWS_AS(replay_cache(0), std::invalid_argument);
  CHECK_THROWS_AS(replay_cache(10, 0), std::invalid_argument);
  CHECK(replay_cache().capacity() == default_replay_capacity);
  CHECK(replay_cache().per_user() == default_replay_per_user);
}
