// lifecycle: where a connection is in its life (handshaking, open, closed), how it is
// leaving (goaway either way, a graceful close begun) and how it ended (PROTOCOL.md
// §8.4, §8.5): what new calls and peer requests are refused with meanwhile, the error
// its calls fail with once it has ended (closed_error()), and its reference to itself,
// let go of once its close handler has returned and its stream is dropped.
//
// What it holds and what it does not. This part keeps the state and answers from it;
// the connection sends the frames, fails the calls and drops the stream
// (connection_close.cpp). The loop thread's closing flags, which need no mutex, are a
// part of their own (rpc/closing.hpp).
//
// Threads: not synchronised; the connection guards it with its mutex. Every member is
// called with that mutex held, from any thread (keep_alive: also before the connection
// is started, when no other thread knows it).
#pragma once

#include <cstdint>

#include "bokbok/error.hpp"
#include <exception>
#include <memory>
#include <string>
#include <string_view>

namespace bokbok::rpc {

class lifecycle {
 public:
  // The phase leaves handshaking once (opened) and ends closed (ended), each for good.
  // The send path reads it on every write: an inline read.
  enum class phase { handshaking, open, closed };
  phase state() const { return phase_; }
  // The handshake is done: handshaking becomes open (a closed connection stays closed).
  void opened() {
    if (phase_ == phase::handshaking) phase_ = phase::open;
  }

  // How a connection ended, which decides the error type pending calls see.
  // drained: a clean end after goaway once nothing was outstanding; what is queued (the
  // last answers) still goes out before the close frame. clean: a close; queued frames
  // are dropped (their calls have failed). auth: key mode refused the peer's
  // credentials, or the peer refused ours.
  enum class end_kind { clean, drained, transport, protocol, unresponsive, auth };

  // Going away.
  // The peer sent goaway with `code` and `text`. Any code but shutting_down is a refusal
  // (a key-mode login refused busy, PROTOCOL.md §9.6): the reason says so, and refused
  // calls fail with that code.
  void peer_going_away(error_code code, std::string_view text);
  // We send goaway promising to answer the peer's requests up to `last_id`; false: our
  // goaway is out already.
  bool start_goaway(std::uint32_t last_id, std::string_view text);
  // close(grace) was called: our new calls fail from now on; false when that was so
  // already (closing, or our goaway out).
  bool start_closing();
  bool going_away() const { return peer_goaway_ || self_goaway_; }
  bool goaway_sent() const { return self_goaway_; }
  bool goaway_received() const { return peer_goaway_; }
  // Our new calls (and notifications) are refused: goaway either way, or closing.
  bool refuses_new_calls() const { return going_away() || closing_; }
  // The peer's request `id` is refused: nothing new starts once a goaway is out either
  // way, past the last request our goaway promised to answer.
  bool refuses_request(std::uint32_t id) const {
    return peer_goaway_ || (self_goaway_ && id > goaway_last_id_);
  }
  // What refused calls and requests fail with: refusal_code() (shutting_down unless the
  // peer's goaway refused us) and goaway_reason().
  const std::string& goaway_reason() const { return goaway_reason_; }
  error_code refusal_code() const { return refusal_code_; }

  // The peer's close frame came: the reason the connection ends with. After the peer's
  // goaway its close may come before our drain (same end), and after a refusal it keeps
  // the refusal's reason.
  std::string peer_close_reason() const;

  // Ending: the phase becomes closed, with how and why (once: the caller checks state()).
  void ended(end_kind kind, std::string reason);
  end_kind kind() const { return kind_; }
  const std::string& reason() const { return reason_; }
  // A clean end (clean or drained) fails nothing that was answered.
  bool failed() const { return kind_ != end_kind::clean && kind_ != end_kind::drained; }
  // Why calls fail now, naming the connection's peer once.
  std::string closed_text(const std::string& peer) const;
  // The error calls fail with once the connection has ended: protocol_error,
  // authentication_error, peer_unresponsive_error, or transport_error (for clean ends
  // too: the connection is gone).
  std::exception_ptr closed_error(const std::string& peer) const;
  // Whether a call that never had a byte written keeps closed_error() (an end that is
  // not the transport's keeps its own error type) rather than failing as not sent.
  bool keeps_own_error() const {
    return kind_ == end_kind::protocol || kind_ == end_kind::auth ||
           kind_ == end_kind::unresponsive;
  }

  // Lifetime. The connection holds a reference to itself from its start until it has
  // ended, its close handler has returned (or there is none to run: opening failed) and
  // its stream is dropped, so it stays open with no user handle left. Each of the two
  // notes returns that reference once both are in, for the caller to let go of after
  // unlocking (its last owner may be there); else null.
  void keep_alive(std::shared_ptr<void> self) { self_ = std::move(self); }
  [[nodiscard]] std::shared_ptr<void> close_handler_returned();
  [[nodiscard]] std::shared_ptr<void> stream_dropped();
  bool close_handler_done() const { return close_handler_done_; }
  bool stream_is_dropped() const { return stream_dropped_; }
  // Both done: wait_closed() returns (after a child peer's reap).
  bool fully_closed() const { return close_handler_done_ && stream_dropped_; }
  bool keeps_itself_alive() const { return self_ != nullptr; }

 private:
  std::shared_ptr<void> release_if_fully_closed();

  phase phase_ = phase::handshaking;
  bool peer_goaway_ = false;
  bool self_goaway_ = false;       // we sent goaway: no new calls either way
  bool closing_ = false;           // close(grace) called: no new calls of ours
  std::uint32_t goaway_last_id_ = 0;  // the last peer request our goaway promised to answer
  std::string goaway_reason_;
  error_code refusal_code_ = error_code::shutting_down;
  end_kind kind_ = end_kind::clean;
  std::string reason_;
  bool close_handler_done_ = false;
  bool stream_dropped_ = false;
  std::shared_ptr<void> self_;
};

}  // namespace bokbok::rpc
