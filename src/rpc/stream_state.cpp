// stream_state: credit bookkeeping and the waits of one stream call (stream_state.hpp).
#include "rpc/stream_state.hpp"

#include <algorithm>

#include "bokbok/error.hpp"

namespace bokbok::detail {

namespace {
constexpr std::uint64_t max_messages = 0xffffffffULL;  // saturation (design15 "Credit")
// The most one credit frame grants of either (its fields are u32, §12 "Credit").
constexpr std::uint64_t max_grant = 0xffffffffULL;
constexpr std::int64_t max_bytes = std::int64_t(1) << 62;
}  // namespace

bool stream_state::take_send_credit(std::size_t bytes) {
  std::lock_guard lock(mu);
  if (send_messages_ < 1 || send_bytes_ <= 0) return false;
  --send_messages_;
  send_bytes_ -= static_cast<std::int64_t>(bytes);
  return true;
}

void stream_state::add_send_credit(std::uint32_t messages, std::uint32_t bytes) {
  {
    std::lock_guard lock(mu);
    send_messages_ = std::min(max_messages, send_messages_ + messages);
    send_bytes_ = std::min(max_bytes, send_bytes_ + std::int64_t(bytes));
  }
  cv.notify_all();
}

void stream_state::grant_initial() {
  std::lock_guard lock(mu);
  grant_messages_ = window_messages;
  grant_bytes_ = window_bytes;
}

void stream_state::consumed_locked(std::size_t bytes, std::uint32_t& regrant_messages,
                                   std::uint32_t& regrant_bytes) {
  regrant_messages = regrant_bytes = 0;
  if (in_ended_ || ended_) return;  // nothing more will come
  consumed_messages_ += 1;
  consumed_bytes_ += bytes;
  if (consumed_messages_ * 2 < window_messages && consumed_bytes_ * 2 < window_bytes) return;
  grant_back_locked(consumed_messages_, consumed_bytes_, regrant_messages, regrant_bytes);
  consumed_messages_ = consumed_bytes_ = 0;
}

// Grants the peer back `messages` and `bytes` (what was read or dropped): added to what
// it may send, and set in `regrant_*` for the credit frame (u32 each, saturating).
void stream_state::grant_back_locked(std::uint64_t messages, std::uint64_t bytes,
                                     std::uint32_t& regrant_messages,
                                     std::uint32_t& regrant_bytes) {
  regrant_messages = static_cast<std::uint32_t>(std::min(messages, max_grant));
  regrant_bytes = static_cast<std::uint32_t>(std::min(bytes, max_grant));
  grant_messages_ = std::min(max_messages, grant_messages_ + regrant_messages);
  grant_bytes_ = std::min(max_bytes, grant_bytes_ + std::int64_t(regrant_bytes));
}

stream_state::receive_result stream_state::receive(message m, std::size_t bytes,
                                                   std::uint32_t& regrant_messages,
                                                   std::uint32_t& regrant_bytes,
                                                   rpc::received_fds fds) {
  regrant_messages = regrant_bytes = 0;
  {
    std::lock_guard lock(mu);
    if (ended_) return receive_result::queued;  // crossed the call's end: dropped
    if (in_ended_) return receive_result::after_end;
    if (grant_messages_ < 1 || grant_bytes_ <= 0) return receive_result::beyond_credit;
    --grant_messages_;
    grant_bytes_ -= static_cast<std::int64_t>(bytes);
    if (discard_) {
      // finish(): nobody will read it, its credit goes back at once, as if read.
      consumed_locked(bytes, regrant_messages, regrant_bytes);
      return receive_result::queued;
    }
    queue_.push_back({std::move(m), bytes, std::move(fds)});
  }
  cv.notify_all();
  return receive_result::queued;
}

bool stream_state::end_incoming() {
  {
    std::lock_guard lock(mu);
    if (ended_) return true;  // the call is over: crossed it
    if (in_ended_) return false;
    in_ended_ = true;
  }
  cv.notify_all();
  return true;
}

void stream_state::end(std::exception_ptr error, message response) {
  {
    std::lock_guard lock(mu);
    if (ended_) return;
    ended_ = true;
    in_ended_ = true;
    error_ = std::move(error);
    response_ = std::move(response);
  }
  cv.notify_all();
}

stream_state::read_status stream_state::wait_read(std::optional<clock::time_point> until,
                                                  message& out, std::uint32_t& regrant_messages,
                                                  std::uint32_t& regrant_bytes) {
  regrant_messages = regrant_bytes = 0;
  std::optional<clock::time_point> limit = deadline;
  bool own_limit = false;
  if (until && (!limit || *until < *limit)) limit = until, own_limit = true;
  std::unique_lock lock(mu);
  auto ready = [&] { return !queue_.empty() || in_ended_ || ended_; };
  if (limit) {
    if (!cv.wait_until(lock, *limit, ready))
      return own_limit ? read_status::timed_out : read_status::stopped;
  } else {
    cv.wait(lock, ready);
  }
  if (!queue_.empty()) {
    out = std::move(queue_.front().m);
    const std::size_t bytes = queue_.front().bytes;
    last_fds_ = queue_.front().fds.take();
    queue_.pop_front();
    // Granted back once half the window has been read (design15 "Credit").
    consumed_locked(bytes, regrant_messages, regrant_bytes);
    return read_status::message;
  }
  if (error_) return read_status::failed;
  if (ended_ && !requester) return read_status::failed;  // the handler has returned
  return read_status::ended;
}

fd_list stream_state::take_fds() {
  std::lock_guard lock(mu);
  return std::move(last_fds_);
}

bool stream_state::wait_send_credit(std::size_t bytes, bool& timed_out, bool& stopped,
                                    bool blocking) {
  timed_out = stopped = false;
  std::unique_lock lock(mu);
  auto ready = [&] { return ended_ || (send_messages_ >= 1 && send_bytes_ > 0); };
  if (!blocking) {
    if (!ready()) return false;
  } else if (deadline) {
    if (!cv.wait_until(lock, *deadline, ready)) {
      timed_out = true;
      return false;
    }
  } else {
    cv.wait(lock, ready);
  }
  if (ended_) return false;
  --send_messages_;
  send_bytes_ -= static_cast<std::int64_t>(bytes);
  return true;
}

bool stream_state::ended() const {
  std::lock_guard lock(mu);
  return ended_;
}

std::exception_ptr stream_state::ended_error() const {
  std::lock_guard lock(mu);
  return error_;
}

bool stream_state::mark_write_closed() {
  std::lock_guard lock(mu);
  return !std::exchange(write_closed_, true);
}

bool stream_state::write_closed() const {
  std::lock_guard lock(mu);
  return write_closed_;
}

bool stream_state::mark_answered() {
  std::lock_guard lock(mu);
  return !std::exchange(answered_, true);
}

bool stream_state::answered() const {
  std::lock_guard lock(mu);
  return answered_;
}

void stream_state::discard(std::uint32_t& regrant_messages, std::uint32_t& regrant_bytes) {
  std::lock_guard lock(mu);
  discard_ = true;
  std::uint64_t m = consumed_messages_ + queue_.size(), b = consumed_bytes_;
  for (auto& q : queue_) b += q.bytes;
  queue_.clear();
  consumed_messages_ = consumed_bytes_ = 0;
  regrant_messages = regrant_bytes = 0;
  if (in_ended_ || ended_ || m == 0) return;
  grant_back_locked(m, b, regrant_messages, regrant_bytes);
}

message stream_state::wait_end() {
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return ended_; });
  if (error_) std::rethrow_exception(error_);
  return std::move(response_);
}

}  // namespace bokbok::detail
