// lifecycle: how a connection is leaving (goaway either way, a graceful close begun) and
// how it ended (PROTOCOL.md §8.4, §8.5): what new calls and peer requests are refused
// with meanwhile, and the error its calls fail with once it has ended (close_error()).
//
// What it holds and what it does not. The phase (handshaking, open, closed) stays the
// connection's: the send path reads it on every write. This part keeps the goaway and
// end state and answers from it; the connection sends the frames and fails the calls.
//
// Threads: not synchronised; the connection guards it with its mutex. Every member is
// called with that mutex held, from any thread.
#pragma once

#include <cstdint>

#include "bokbok/error.hpp"
#include <exception>
#include <string>
#include <string_view>

namespace bokbok::rpc {

class lifecycle {
 public:
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

  // Ending (once; the connection's phase says whether it has).
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

 private:
  bool peer_goaway_ = false;
  bool self_goaway_ = false;       // we sent goaway: no new calls either way
  bool closing_ = false;           // close(grace) called: no new calls of ours
  std::uint32_t goaway_last_id_ = 0;  // the last peer request our goaway promised to answer
  std::string goaway_reason_;
  error_code refusal_code_ = error_code::shutting_down;
  end_kind kind_ = end_kind::clean;
  std::string reason_;
};

}  // namespace bokbok::rpc
