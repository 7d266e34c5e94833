// inbound_calls on its own: the limits on the peer's requests (max_concurrent_calls,
// max_queued_calls, the pool fair share), the order queued requests start in, cancel,
// held requests and what a closing connection takes back.
#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "rpc/connection_impl.hpp"  // call_context
#include "rpc/inbound_calls.hpp"

using bokbok::detail::call_context;
using bokbok::rpc::inbound_calls;
using bokbok::rpc::inbound_request;
using admission = inbound_calls::admission;

namespace {

inbound_request request(std::uint32_t id) {
  inbound_request r;
  r.id = id;
  r.m = {"m" + std::to_string(id)};
  r.ctx = std::make_shared<call_context>();
  return r;
}

// Admits `id`; a request that may start is started (running under its id) at once.
admission arrive(inbound_calls& in, std::uint32_t id, std::string* why = nullptr) {
  inbound_request r = request(id);
  std::string text;
  admission a = in.admit(r, text);
  if (a == admission::start) in.running(id, r.ctx);
  if (why) *why = text;
  return a;
}

}  // namespace

TEST_CASE("at most the pool share of a connection's requests wait in the pool; the rest queue, then are refused") {
  inbound_calls in({.max_concurrent = 0, .max_queued = 2, .pool_share = 2});
  CHECK(arrive(in, 1) == admission::start);
  CHECK(arrive(in, 2) == admission::start);
  CHECK(in.in_pool_queue() == 2);
  CHECK(arrive(in, 3) == admission::queued);
  CHECK(arrive(in, 4) == admission::queued);
  std::string why;
  CHECK(arrive(in, 5, &why) == admission::refused);
  CHECK(why == "busy: 2 calls waiting for a handler and 2 more waiting on this connection");
  CHECK(in.queued_count() == 2);
  CHECK(in.running_count() == 2);
  // Nothing starts while both still wait in the pool, even with the send queue free.
  CHECK_FALSE(in.take_startable(true));
  // A pool thread takes request 1: the next queued one (3, in arrival order) may go.
  in.left_pool_queue();
  auto next = in.take_startable(true);
  REQUIRE(next);
  CHECK(next->id == 3);
  CHECK(next->m == bokbok::message{"m3"});
  CHECK(in.running_count() == 3);
  CHECK(in.in_pool_queue() == 2);
  CHECK_FALSE(in.take_startable(true));
}

TEST_CASE("under max_concurrent_calls a queued request starts only when a handler ends") {
  inbound_calls in({.max_concurrent = 1, .max_queued = 1, .pool_share = 4, .inline_handlers = true});
  CHECK(arrive(in, 1) == admission::start);
  CHECK(in.in_pool_queue() == 0);  // inline handlers never wait in the pool
  CHECK(arrive(in, 2) == admission::queued);
  std::string why;
  CHECK(arrive(in, 3, &why) == admission::refused);
  CHECK(why == "busy: 1 calls running and 1 more waiting on this connection");
  CHECK_FALSE(in.take_startable(true));
  in.handler_done(1);
  // The connection closed, or the send queue is full: nothing starts.
  CHECK_FALSE(in.take_startable(false));
  auto next = in.take_startable(true);
  REQUIRE(next);
  CHECK(next->id == 2);
  CHECK_FALSE(in.idle());
  in.running(2, next->ctx);
  in.handler_done(2);
  CHECK(in.idle());
}

TEST_CASE("a request deferred for room to send goes back first in line and starts before later ones") {
  inbound_calls in({.max_concurrent = 0, .max_queued = 4, .pool_share = 1});
  CHECK(arrive(in, 1) == admission::start);
  CHECK(arrive(in, 2) == admission::queued);
  in.left_pool_queue();
  // Request 1's handler found the send queue full: it waits again, ahead of 2.
  in.defer(request(1));
  in.handler_done(1);
  auto next = in.take_startable(true);
  REQUIRE(next);
  CHECK(next->id == 1);
}

TEST_CASE("a cancel drops a queued request and finds a running one's context") {
  inbound_calls in({.max_concurrent = 1, .max_queued = 4, .pool_share = 1, .inline_handlers = true});
  inbound_request first = request(1);
  std::string why;
  REQUIRE(in.admit(first, why) == admission::start);
  in.running(1, first.ctx);
  CHECK(arrive(in, 2) == admission::queued);
  bool dropped = true;
  CHECK(in.cancel(1, dropped) == first.ctx);
  CHECK_FALSE(dropped);
  CHECK(in.cancel(2, dropped) == nullptr);
  CHECK(dropped);
  CHECK(in.queued_count() == 0);
  CHECK(in.cancel(7, dropped) == nullptr);
  CHECK_FALSE(dropped);
  // Once its handler ended, a cancel finds nothing of it.
  in.handler_done(1);
  CHECK(in.cancel(1, dropped) == nullptr);
  CHECK(in.idle());
}

TEST_CASE("a request runs with no context until a cancel or its handler needs one") {
  inbound_calls in({.max_concurrent = 0, .max_queued = 4, .pool_share = 4});
  inbound_request r;
  r.id = 1;
  std::string why;
  REQUIRE(in.admit(r, why) == admission::start);
  in.running(1, nullptr);  // as a connection starts it: no context made
  CHECK_FALSE(in.any_context());
  CHECK(in.made_context(1) == nullptr);
  // The peer's cancel makes one, for the handler to find stopped when it looks.
  bool dropped = true;
  auto ctx = in.cancel(1, dropped);
  REQUIRE(ctx != nullptr);
  CHECK_FALSE(dropped);
  CHECK(in.any_context());
  CHECK(in.made_context(1) == ctx);
  CHECK(in.context_of(1) == ctx);  // the handler asking later gets the same one
  in.handler_done(1);
  CHECK_FALSE(in.any_context());
  // A handler asking first gets one made then, which a cancel finds.
  REQUIRE(in.admit(r, why) == admission::start);
  in.running(2, nullptr);
  auto asked = in.context_of(2);
  CHECK(in.cancel(2, dropped) == asked);
  in.handler_done(2);
  CHECK(in.idle());
}

TEST_CASE("held requests keep the connection busy until each is dispatched") {
  inbound_calls in({.max_concurrent = 0, .max_queued = 4, .pool_share = 4});
  in.hold(request(1));
  in.hold(request(2));
  CHECK_FALSE(in.idle());
  auto held = in.take_held();
  REQUIRE(held.size() == 2);
  CHECK(held[0].id == 1);
  CHECK(held[1].id == 2);
  CHECK(in.running_count() == 2);
  for (auto& h : held) {
    in.dispatching_held();
    std::string why;
    REQUIRE(in.admit(h, why) == admission::start);
  }
  CHECK(in.running_count() == 2);  // now counted as started, not as held
  CHECK(in.in_pool_queue() == 2);
}

TEST_CASE("a closing connection takes the queued requests and the running ones' contexts") {
  inbound_calls in({.max_concurrent = 2, .max_queued = 4, .pool_share = 4});
  CHECK(arrive(in, 1) == admission::start);
  CHECK(arrive(in, 2) == admission::start);
  CHECK(arrive(in, 3) == admission::queued);
  auto running = in.running_contexts();
  REQUIRE(running.size() == 2);
  for (auto& ctx : running) CHECK(ctx != nullptr);  // made for those that had none
  auto queued = in.take_queued();
  REQUIRE(queued.size() == 1);
  CHECK(queued.front().id == 3);
  CHECK(in.queued_count() == 0);
}
