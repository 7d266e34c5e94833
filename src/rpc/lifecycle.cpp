// lifecycle: see lifecycle.hpp. The connection's mutex is held in every member.
#include "rpc/lifecycle.hpp"

#include "bokbok/error.hpp"
#include "rpc/error_ptr.hpp"

namespace bokbok::rpc {

void lifecycle::peer_going_away(error_code code, std::string_view text) {
  peer_goaway_ = true;
  refusal_code_ = code;
  goaway_reason_ = code == error_code::shutting_down
                       ? "the peer is shutting down: " + std::string(text)
                       : "refused by the peer: " + std::string(to_string(code)) + ": " +
                             std::string(text);
}

bool lifecycle::start_goaway(std::uint32_t last_id, std::string_view text) {
  if (self_goaway_) return false;
  self_goaway_ = true;
  goaway_last_id_ = last_id;
  goaway_reason_ = "this side is shutting down: " + std::string(text);
  return true;
}

bool lifecycle::start_closing() {
  if (closing_ || self_goaway_) return false;
  closing_ = true;
  if (goaway_reason_.empty()) goaway_reason_ = "this side is shutting down: closed by this side";
  return true;
}

std::string lifecycle::peer_close_reason() const {
  return peer_goaway_ ? goaway_reason_ : "closed by peer";
}

void lifecycle::ended(end_kind kind, std::string reason) {
  phase_ = phase::closed;
  kind_ = kind;
  reason_ = std::move(reason);
}

std::string lifecycle::closed_text(const std::string& peer) const {
  // The cause first, then where: the peer named once.
  std::string what = "bokbok: " + (reason_.empty() ? "not open" : reason_);
  if (reason_.find(peer) == std::string::npos) what += " (connection to " + peer + ")";
  return what;
}

std::exception_ptr lifecycle::closed_error(const std::string& peer) const {
  std::string what = closed_text(peer);
  if (kind_ == end_kind::protocol) return detail::error_ptr<protocol_error>(what);
  if (kind_ == end_kind::auth) return detail::error_ptr<authentication_error>(what);
  if (kind_ == end_kind::unresponsive) return detail::error_ptr<peer_unresponsive_error>(what);
  return detail::error_ptr<transport_error>(what);
}

std::shared_ptr<void> lifecycle::close_handler_returned() {
  close_handler_done_ = true;
  return release_if_fully_closed();
}

std::shared_ptr<void> lifecycle::stream_dropped() {
  stream_dropped_ = true;
  return release_if_fully_closed();
}

std::shared_ptr<void> lifecycle::release_if_fully_closed() {
  if (!fully_closed()) return nullptr;
  return std::move(self_);
}

}  // namespace bokbok::rpc
