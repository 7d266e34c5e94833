// rpc::lifecycle on its own (the connection part; tests/lifecycle_test.cpp drives whole
// connections): what goaway either way and a graceful close refuse, with what reason,
// and the error type an ended connection's calls fail with.
#include <doctest/doctest.h>

#include <string>

#include "bokbok/error.hpp"
#include "rpc/lifecycle.hpp"

using bokbok::rpc::lifecycle;
using end_kind = lifecycle::end_kind;

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
