// rpc::lifecycle and rpc::closing on their own (the connection parts;
// tests/lifecycle_test.cpp drives whole connections): the phase, what goaway either way
// and a graceful close refuse, with what reason, the error type an ended connection's
// calls fail with, when it lets go of itself; the loop thread's closing flags and the
// failure held back for a child's exit status.
#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "bokbok/error.hpp"
#include "rpc/closing.hpp"
#include "rpc/lifecycle.hpp"

using bokbok::rpc::closing;
using bokbok::rpc::lifecycle;
using end_kind = lifecycle::end_kind;
using phase = lifecycle::phase;

namespace {

// Rethrows `e` and returns what() of the type caught as E; empty if it is not an E.
template <class E>
std::string caught_as(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const E& x) {
    return x.what();
  } catch (...) {
  }
  return {};
}

}  // namespace

TEST_CASE("our goaway refuses the peer's requests past the last one it promised to answer") {
  lifecycle l;
  CHECK_FALSE(l.refuses_new_calls());
  CHECK_FALSE(l.refuses_request(9));
  REQUIRE(l.start_goaway(7, "maintenance"));
  CHECK_FALSE(l.start_goaway(9, "again"));  // once: the first promise holds
  CHECK(l.goaway_sent());
  CHECK(l.going_away());
  CHECK_FALSE(l.refuses_request(6));
  CHECK_FALSE(l.refuses_request(7));
  CHECK(l.refuses_request(8));
  CHECK(l.refuses_new_calls());
  CHECK(l.goaway_reason() == "this side is shutting down: maintenance");
}

TEST_CASE("the peer's goaway refuses every new request and call") {
  lifecycle l;
  l.peer_going_away(bokbok::error_code::shutting_down, "restarting");
  CHECK(l.going_away());
  CHECK_FALSE(l.goaway_sent());
  CHECK(l.refuses_request(1));
  CHECK(l.refuses_new_calls());
  CHECK(l.refusal_code() == bokbok::error_code::shutting_down);
  CHECK(l.goaway_reason() == "the peer is shutting down: restarting");
}

TEST_CASE("a goaway with another code than shutting_down is a refusal: calls fail with it") {
  lifecycle l;
  l.peer_going_away(bokbok::error_code::busy, "at its limit for user alice");
  CHECK(l.refuses_new_calls());
  CHECK(l.refusal_code() == bokbok::error_code::busy);
  CHECK(l.goaway_reason() == "refused by the peer: busy: at its limit for user alice");
}

TEST_CASE("a graceful close refuses our new calls before its goaway is out, once") {
  lifecycle l;
  REQUIRE(l.start_closing());
  CHECK_FALSE(l.start_closing());
  CHECK(l.refuses_new_calls());
  CHECK_FALSE(l.going_away());  // the peer's requests are still answered meanwhile
  CHECK_FALSE(l.refuses_request(3));
  CHECK(l.goaway_reason() == "this side is shutting down: closed by this side");
  // The goaway that follows says why; a close after our goaway changes nothing.
  REQUIRE(l.start_goaway(3, "closing"));
  CHECK(l.goaway_reason() == "this side is shutting down: closing");
  lifecycle sent;
  REQUIRE(sent.start_goaway(0, "done"));
  CHECK_FALSE(sent.start_closing());
  CHECK(sent.goaway_reason() == "this side is shutting down: done");
}

TEST_CASE("an ended connection's calls fail with the error type of how it ended, naming the peer once") {
  lifecycle protocol;
  protocol.ended(end_kind::protocol, "protocol error: bad frame");
  CHECK(protocol.failed());
  CHECK(protocol.keeps_own_error());
  CHECK(caught_as<bokbok::protocol_error>(protocol.closed_error("unix:/s")) ==
        "bokbok: protocol error: bad frame (connection to unix:/s)");

  lifecycle auth;
  auth.ended(end_kind::auth, "refused by the peer: not_authorized: who");
  CHECK_FALSE(caught_as<bokbok::authentication_error>(auth.closed_error("p")).empty());

  lifecycle silent;
  silent.ended(end_kind::unresponsive, "peer unresponsive");
  CHECK_FALSE(caught_as<bokbok::peer_unresponsive_error>(silent.closed_error("p")).empty());

  lifecycle lost;
  lost.ended(end_kind::transport, "connection lost: reset by unix:/s");
  CHECK(lost.failed());
  CHECK_FALSE(lost.keeps_own_error());
  CHECK(caught_as<bokbok::protocol_error>(lost.closed_error("unix:/s")).empty());
  // The peer is already named in the reason: not named twice.
  CHECK(caught_as<bokbok::transport_error>(lost.closed_error("unix:/s")) ==
        "bokbok: connection lost: reset by unix:/s");

  for (end_kind clean : {end_kind::clean, end_kind::drained}) {
    lifecycle l;
    l.ended(clean, "closed by peer");
    CHECK_FALSE(l.failed());
    CHECK(l.reason() == "closed by peer");
  }
  lifecycle never;
  CHECK(never.closed_text("p") == "bokbok: not open (connection to p)");
}

TEST_CASE("the phase goes from handshaking to open to closed, and never back") {
  lifecycle l;
  CHECK(l.state() == phase::handshaking);
  l.opened();
  CHECK(l.state() == phase::open);
  l.ended(end_kind::clean, "closed by this side");
  CHECK(l.state() == phase::closed);
  l.opened();  // a handshake finishing late does not reopen it
  CHECK(l.state() == phase::closed);

  lifecycle failed_opening;
  failed_opening.ended(end_kind::transport, "timed out");
  CHECK(failed_opening.state() == phase::closed);
  failed_opening.opened();
  CHECK(failed_opening.state() == phase::closed);
}

TEST_CASE("the peer's close ends the connection with the reason of its goaway, if one came") {
  lifecycle plain;
  CHECK(plain.peer_close_reason() == "closed by peer");

  lifecycle drained;
  drained.peer_going_away(bokbok::error_code::shutting_down, "restarting");
  CHECK(drained.peer_close_reason() == "the peer is shutting down: restarting");

  lifecycle refused;
  refused.peer_going_away(bokbok::error_code::busy, "too many connections");
  CHECK(refused.peer_close_reason() == "refused by the peer: busy: too many connections");

  // Our own goaway or close is not the peer's reason.
  lifecycle ours;
  REQUIRE(ours.start_goaway(0, "maintenance"));
  REQUIRE_FALSE(ours.start_closing());
  CHECK(ours.peer_close_reason() == "closed by peer");
}

TEST_CASE("the connection lets go of itself once its close handler returned and its stream is dropped, either order") {
  for (bool handler_first : {true, false}) {
    CAPTURE(handler_first);
    lifecycle l;
    auto self = std::make_shared<int>(7);
    std::weak_ptr<int> watch = self;
    l.keep_alive(std::move(self));
    CHECK(l.keeps_itself_alive());
    CHECK_FALSE(l.fully_closed());
    auto first = handler_first ? l.close_handler_returned() : l.stream_dropped();
    CHECK(first == nullptr);  // one of two: still held
    CHECK(l.keeps_itself_alive());
    CHECK_FALSE(watch.expired());
    CHECK(l.close_handler_done() == handler_first);
    CHECK(l.stream_is_dropped() == !handler_first);
    CHECK_FALSE(l.fully_closed());
    auto last = handler_first ? l.stream_dropped() : l.close_handler_returned();
    CHECK(l.fully_closed());
    CHECK_FALSE(l.keeps_itself_alive());
    // Handed to the caller (to let go of after unlocking), not destroyed inside.
    REQUIRE(last != nullptr);
    CHECK(*static_cast<int*>(last.get()) == 7);
    CHECK_FALSE(watch.expired());
    last.reset();
    CHECK(watch.expired());
    // Noted again (a second drop): nothing more to hand out.
    CHECK(l.stream_dropped() == nullptr);
  }
}

TEST_CASE("after our close frame the link waits for the peer's end; otherwise it is dropped") {
  closing c;
  CHECK_FALSE(c.awaits_peer_end());  // no close frame of ours: nothing to wait for
  c.close_sent = true;
  CHECK(c.awaits_peer_end());
  c.peer_done = true;  // its close or end of stream came
  CHECK_FALSE(c.awaits_peer_end());

  closing peer_first;
  peer_first.peer_done = true;
  peer_first.close_sent = true;
  CHECK_FALSE(peer_first.awaits_peer_end());
}

TEST_CASE("a failure held back for a child's exit status is taken once, and later ones are not held") {
  closing c;
  CHECK_FALSE(c.waiting_for_child());
  CHECK_FALSE(c.child_noted());
  bokbok::io::timer_id timer = 99;
  CHECK_FALSE(c.take_child_failure(timer).has_value());  // none held
  CHECK(timer == 0);
  CHECK_FALSE(c.child_noted());

  c.hold_for_child({end_kind::transport, "connection lost", "farewell"});
  c.set_child_timer(42);
  CHECK(c.waiting_for_child());
  auto f = c.take_child_failure(timer);
  REQUIRE(f.has_value());
  CHECK(f->kind == end_kind::transport);
  CHECK(f->reason == "connection lost");
  CHECK(f->farewell == "farewell");
  CHECK(timer == 42);  // the caller cancels it
  CHECK_FALSE(c.waiting_for_child());
  CHECK(c.child_noted());
  // The child's exit and the timer both come: the second finds nothing.
  CHECK_FALSE(c.take_child_failure(timer).has_value());
  CHECK(timer == 0);

  closing fired;
  fired.hold_for_child({end_kind::transport, "lost", ""});
  fired.set_child_timer(5);
  fired.child_timer_fired();  // it fired: nothing to cancel
  REQUIRE(fired.take_child_failure(timer).has_value());
  CHECK(timer == 0);
}
