// closing: the loop thread's side of a connection's end (PROTOCOL.md §2.3, §8.5): what
// it may still send, whether it waits for the peer's end after its own close, what it
// still reads, and a failure held back until a child peer's exit status is known.
// The phase, the reason and the errors are the lifecycle part's (rpc/lifecycle.hpp).
//
// Threads: loop thread only, no mutex. Other threads never read it: what they need of
// the end (the phase) is in the lifecycle, under the connection's mutex.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "io/loop.hpp"
#include "rpc/lifecycle.hpp"

namespace bokbok::rpc {

class closing {
 public:
  // finish() has run (the lifecycle's phase is closed): the loop thread's own copy, read
  // without the mutex on every read.
  bool finished = false;
  // Send no frame at all: the peer may not speak bokbok (a refused preamble, a reflected
  // hello), or is a plain peer that key mode only listens to for a refusal (§2.3, §9.6).
  bool silent_end = false;
  // Our close frame is queued.
  bool close_sent = false;
  // The peer's close frame or its end of stream came: nothing more will.
  bool peer_done = false;
  // Our output has ended (shutdown of our write side) while we wait for the peer's end.
  bool output_ended = false;
  // What the peer still sends cannot be read (a forged record, a broken stream): only its
  // end of stream is news.
  bool linger_blind = false;

  // Once our last frames are written: true to end our output and keep reading until the
  // peer's close or end (we said close and it has not ended yet); false to drop the link.
  bool awaits_peer_end() const { return close_sent && !peer_done; }

  // A failure of a connection to a child, held back until the child's exit status is
  // known (or a short wait has passed); further failures are ignored meanwhile.
  struct child_failure {
    lifecycle::end_kind kind;
    std::string reason;
    std::string farewell;  // records to send before the close frame
  };
  bool waiting_for_child() const { return child_failure_.has_value(); }
  // The reason has the child's note already: a failure now is not held back again.
  bool child_noted() const { return child_noted_; }
  // Holds `f` back; `timer` (set by the caller once armed) gives up waiting.
  void hold_for_child(child_failure f) { child_failure_ = std::move(f); }
  void set_child_timer(io::timer_id t) { child_timer_ = t; }
  // The timer fired: nothing to cancel any more.
  void child_timer_fired() { child_timer_ = 0; }
  // The held failure, once (none when it was taken already), marked as noted; `timer`
  // receives the wait's timer to cancel (0: none).
  std::optional<child_failure> take_child_failure(io::timer_id& timer) {
    timer = 0;
    if (!child_failure_) return std::nullopt;
    auto f = std::move(child_failure_);
    child_failure_.reset();
    timer = child_timer_;
    child_timer_ = 0;
    child_noted_ = true;
    return f;
  }

 private:
  std::optional<child_failure> child_failure_;
  io::timer_id child_timer_ = 0;
  bool child_noted_ = false;
};

}  // namespace bokbok::rpc
