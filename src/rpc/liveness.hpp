// liveness: the heartbeat (PROTOCOL.md §8.3) and the idle timeout of one connection, as
// decisions. The connection tells it what happened (bytes received, a call started or
// ended) and asks, when its timer fires, what is due and when to look again; it sends
// the ping, ends the connection or starts its goaway itself (connection_heartbeat.cpp).
// No timer, no clock, no I/O here: every time is given, so the rules are tested with
// made-up times (tests/liveness_test.cpp) rather than by waiting.
//
// The rules. Heartbeat (interval hb > 0): once nothing has been received for hb, send a
// ping; when still nothing has come hb after that ping, the peer is unresponsive. Idle
// timeout (idle > 0): a connection with no call started or ended, either way, for idle
// goes away, unless calls are under way (then it counts as active) or it is going away
// already. A setting of zero (or less) is off.
//
// Threads: not synchronised; the connection's loop thread only.
#pragma once

#include <optional>
#include <string>

#include "io/loop.hpp"

namespace bokbok::rpc {

class liveness {
 public:
  using time_point = io::clock::time_point;
  using duration = io::clock::duration;

  liveness(duration heartbeat, duration idle) : heartbeat_(heartbeat), idle_(idle) {}

  // Whether either rule is on (else no timer is armed and nothing need be told).
  bool enabled() const { return on(heartbeat_) || on(idle_); }

  // The connection opened at `now`: when to look first (enabled() only).
  time_point start(time_point now);

  // Bytes came from the peer: any byte is a sign of life (§8.3).
  void received(time_point now) { last_rx_ = now; }
  // A call started or ended, either way.
  void active(time_point now) { last_activity_ = now; }

  // What the timer's tick finds due at `now`. `busy`: calls are under way, either way;
  // `going_away`: the connection is leaving already.
  struct verdict {
    enum class end { none, unresponsive, idle } ends = end::none;
    std::string why;                 // for an end: what the log and the peer are told
    bool ping = false;               // send a ping now (heartbeat)
    std::optional<time_point> next;  // when to look again (none: no rule wants to)
  };
  verdict tick(time_point now, bool busy, bool going_away);

 private:
  static bool on(duration d) { return d > duration::zero(); }

  const duration heartbeat_;
  const duration idle_;
  time_point last_rx_{};
  time_point last_activity_{};
  std::optional<time_point> ping_sent_at_;
};

}  // namespace bokbok::rpc
