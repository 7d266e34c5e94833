// call_table on its own: ids in call order, one slot per call, and the id reuse rule of
// PROTOCOL.md §8.2 (a call ended here leaves its id unused until the counter wraps).
#include <doctest/doctest.h>

#include <set>
#include <vector>

#include "rpc/call_table.hpp"

using bokbok::rpc::call_table;
using bokbok::rpc::outgoing_call;

TEST_CASE("calls get ids counting up from 1 and are found by id and by seq") {
  call_table t;
  std::vector<std::uint64_t> seqs;
  for (std::uint32_t want = 1; want <= 5; ++want) {
    outgoing_call& c = t.start();
    CHECK(c.id == want);
    CHECK(c.seq != 0);
    seqs.push_back(c.seq);
  }
  CHECK(t.size() == 5);
  for (std::uint32_t id = 1; id <= 5; ++id) {
    REQUIRE(t.find(id) != nullptr);
    CHECK(t.find(id)->id == id);
    CHECK(t.find_seq(seqs[id - 1]) == t.find(id));
  }
  CHECK(t.find(6) == nullptr);
  CHECK(t.find(0) == nullptr);
}

TEST_CASE("a call ended here frees its slot, and a late answer to its id finds nothing") {
  call_table t;
  outgoing_call& first = t.start();
  const std::uint32_t old_id = first.id;
  const std::uint64_t old_seq = first.seq;
  t.take(first);  // cancelled or timed out: the peer may still answer old_id
  CHECK(t.empty());
  // Many calls later, in the slot the first one had and all the others, its id is never
  // given again, so the peer's late answer to it is ignored.
  std::set<std::uint32_t> seen;
  for (int i = 0; i < 10000; ++i) {
    outgoing_call& c = t.start();
    CHECK(c.id != old_id);
    CHECK(seen.insert(c.id).second);
    CHECK(t.find(old_id) == nullptr);
    CHECK(t.find_seq(old_seq) == nullptr);
    t.take(c);
  }
  CHECK(t.capacity() == 8);  // one call at a time needs no more slots
}

TEST_CASE("ids keep the order calls were made in while calls end out of order") {
  call_table t;
  std::vector<std::uint32_t> live;
  std::uint32_t last = 0;
  // A long call holds its slot while thousands of others come and go around it, and the
  // table grows and moves calls meanwhile.
  const std::uint32_t long_call = t.start().id;
  last = long_call;
  for (int round = 0; round < 200; ++round) {
    for (int k = 0; k < 1 + round % 40; ++k) {
      outgoing_call& c = t.start();
      CHECK(c.id > last);  // a goaway compares ids as numbers (§8.4)
      last = c.id;
      live.push_back(c.id);
    }
    // End every other one, newest first.
    for (std::size_t i = live.size(); i-- > 0;)
      if (i % 2 == 0) {
        outgoing_call* c = t.find(live[i]);
        REQUIRE(c != nullptr);
        t.take(*c);
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
      }
    for (auto id : live) CHECK(t.find(id) != nullptr);
    REQUIRE(t.find(long_call) != nullptr);
    CHECK(t.size() == live.size() + 1);
    CHECK(t.capacity() >= 2 * t.size());
  }
}

TEST_CASE("take_if ends the calls a goaway leaves unanswered and keeps the rest") {
  call_table t;
  for (int i = 0; i < 20; ++i) t.start();
  auto gone = t.take_if([](const outgoing_call& c) { return c.id > 12; });
  CHECK(gone.size() == 8);
  for (auto& c : gone) CHECK(c.id > 12);
  CHECK(t.size() == 12);
  for (std::uint32_t id = 1; id <= 12; ++id) CHECK(t.find(id) != nullptr);
  for (std::uint32_t id = 13; id <= 20; ++id) CHECK(t.find(id) == nullptr);
}
