// rpc::liveness, the heartbeat and idle-timeout rules of a connection (PROTOCOL.md
// §8.3), with made-up times: what each tick finds due, and when the next one is. The
// timer and the actions around it are tested against real peers (robust_test: a peer
// frozen with SIGSTOP; timeouts_test: a stdio server whose client answers nothing).
#include "rpc/liveness.hpp"

#include <doctest/doctest.h>

#include <chrono>

using namespace std::chrono_literals;
using bokbok::rpc::liveness;
using end = liveness::verdict::end;

namespace {
const liveness::time_point t0{std::chrono::hours(1)};
}

TEST_CASE("both off: nothing to watch") {
  liveness l(0ms, 0ms);
  CHECK_FALSE(l.enabled());
  CHECK(liveness(-5ms, 0ms).enabled() == false);
}

TEST_CASE("the first tick is the sooner of the two rules") {
  CHECK(liveness(100ms, 0ms).start(t0) == t0 + 100ms);
  CHECK(liveness(0ms, 300ms).start(t0) == t0 + 300ms);
  CHECK(liveness(100ms, 300ms).start(t0) == t0 + 100ms);
  CHECK(liveness(500ms, 300ms).start(t0) == t0 + 300ms);
}

TEST_CASE("heartbeat: a ping after a quiet interval, unresponsive one interval later") {
  liveness l(100ms, 0ms);
  REQUIRE(l.enabled());
  l.start(t0);
  auto v = l.tick(t0 + 100ms, false, false);
  CHECK(v.ping);
  CHECK(v.ends == end::none);
  CHECK(v.next == t0 + 200ms);
  v = l.tick(t0 + 150ms, false, false);  // early (another timer's turn): waits for the ping
  CHECK_FALSE(v.ping);
  CHECK(v.next == t0 + 200ms);
  v = l.tick(t0 + 200ms, false, false);
  CHECK(v.ends == end::unresponsive);
  CHECK(v.why == "peer unresponsive: nothing received for 200 ms (heartbeat every 100 ms)");
  CHECK_FALSE(v.next);
}

TEST_CASE("heartbeat: anything received after the ping keeps the connection") {
  liveness l(100ms, 0ms);
  l.start(t0);
  REQUIRE(l.tick(t0 + 100ms, false, false).ping);
  l.received(t0 + 130ms);  // not only a pong: any byte counts
  auto v = l.tick(t0 + 200ms, false, false);
  CHECK(v.ends == end::none);
  CHECK_FALSE(v.ping);
  CHECK(v.next == t0 + 230ms);  // an interval after what came
  v = l.tick(t0 + 230ms, false, false);
  CHECK(v.ping);  // quiet again for an interval: the next ping
  CHECK(v.next == t0 + 330ms);
}

TEST_CASE("heartbeat: a peer that keeps talking is never pinged") {
  liveness l(100ms, 0ms);
  l.start(t0);
  for (int i = 1; i <= 10; ++i) {
    l.received(t0 + i * 90ms);
    auto v = l.tick(t0 + i * 90ms + 50ms, true, false);
    CHECK_FALSE(v.ping);
    CHECK(v.ends == end::none);
    CHECK(v.next == t0 + i * 90ms + 100ms);
  }
}

TEST_CASE("idle timeout: no call for the timeout ends it; calls under way count as activity") {
  liveness l(0ms, 300ms);
  l.start(t0);
  l.active(t0 + 100ms);  // a call ended
  auto v = l.tick(t0 + 300ms, false, false);
  CHECK(v.ends == end::none);
  CHECK(v.next == t0 + 400ms);
  v = l.tick(t0 + 400ms, true, false);  // a call still runs: active now
  CHECK(v.ends == end::none);
  CHECK(v.next == t0 + 700ms);
  v = l.tick(t0 + 700ms, false, false);
  CHECK(v.ends == end::idle);
  CHECK(v.why == "idle for 300 ms");
  CHECK_FALSE(v.ping);
}

TEST_CASE("idle timeout: a connection going away already is not timed out again") {
  liveness l(0ms, 300ms);
  l.start(t0);
  auto v = l.tick(t0 + 900ms, false, true);
  CHECK(v.ends == end::none);
  CHECK_FALSE(v.next);  // nothing left to watch
}

TEST_CASE("both: the heartbeat goes on watching while the idle goaway drains") {
  liveness l(100ms, 300ms);
  l.start(t0);
  l.received(t0 + 250ms);
  auto v = l.tick(t0 + 300ms, false, false);
  CHECK(v.ends == end::idle);
  CHECK_FALSE(v.ping);
  CHECK(v.next == t0 + 350ms);  // the heartbeat's next look
  v = l.tick(t0 + 350ms, false, true);
  CHECK(v.ping);
  CHECK(v.ends == end::none);
  CHECK(v.next == t0 + 450ms);
}
