// bokbok::stream: the public handle of a stream call (include/bokbok/stream.hpp). The
// state and its waits are rpc/stream_state.*; the frames go through the connection
// (rpc/connection_streams.cpp).
#include "bokbok/stream.hpp"

#include "bokbok/error.hpp"
#include "rpc/connection_impl.hpp"
#include "rpc/error_ptr.hpp"
#include "wire/message_codec.hpp"

namespace bokbok {

namespace {

std::shared_ptr<detail::connection_impl> live(const std::shared_ptr<detail::stream_state>& s,
                                              bool blocking) {
  if (!s) throw usage_error("bokbok::stream: an empty stream handle");
  auto c = s->conn.lock();
  if (!c) throw transport_error("bokbok::stream: the connection is gone");
  if (blocking && c->loop()->in_loop_thread())
    throw usage_error("bokbok::stream: would block the event loop thread it waits on");
  return c;
}

// The call is over: why a write cannot go.
[[noreturn]] void throw_ended(const detail::stream_state& s) {
  if (auto e = s.ended_error()) std::rethrow_exception(e);
  throw call_error(error_code::cancelled, "the stream call has ended: the peer answered");
}

// `m`: write()'s own copy, given up once sent (its large fields then go out from its
// memory); try_write()'s caller's, left untouched when it returns false.
bool write_impl(const std::shared_ptr<detail::stream_state>& s, message& m, bool blocking,
                fd_list* fds = nullptr) {
  auto c = live(s, blocking);
  if (s->write_closed()) throw usage_error("bokbok::stream: write() after close_write()");
  if (fds && !fds->empty()) c->check_fds(fds->size(), "stream::write");
  const std::size_t size = wire::encoded_size(m);
  if (size > c->stream_send_limit())
    throw call_error(error_code::too_large,
                     "stream message of " + std::to_string(size) +
                         " bytes exceeds the connection's maximum message size of " +
                         std::to_string(c->stream_send_limit()) + " bytes");
  bool timed_out = false, stopped = false;
  // No lock of the connection is held while waiting for credit.
  if (!s->wait_send_credit(size, timed_out, stopped, blocking)) {
    if (timed_out)
      throw call_error(error_code::deadline_exceeded,
                       "the stream call's deadline passed while waiting for credit");
    if (s->ended()) throw_ended(*s);
    return false;  // non-blocking, out of credit
  }
  if (!blocking) {
    try {
      c->stream_send(*s, m, false);
    } catch (const call_error& e) {
      if (e.code() != error_code::busy) throw;
      s->add_send_credit(1, static_cast<std::uint32_t>(size));  // the send queue is full: given back
      return false;
    }
    return true;
  }
  c->stream_send(*s, std::move(m), true,
                 fds ? detail::connection_impl::to_io_fds(std::move(*fds))
                     : std::vector<base::unique_fd>{});
  return true;
}

}  // namespace

void stream::write(message m) { write_impl(s_, m, true); }

void stream::write(message m, fd_list fds) { write_impl(s_, m, true, &fds); }

fd_list stream::take_fds() {
  if (!s_) throw usage_error("bokbok::stream: an empty stream handle");
  return s_->take_fds();
}

bool stream::try_write(message& m) { return write_impl(s_, m, false); }

void stream::close_write() {
  auto c = live(s_, false);
  if (!s_->requester)
    throw usage_error("bokbok::stream: close_write() on the responder's end: returning from "
                      "the handler ends its stream");
  if (s_->mark_write_closed()) c->stream_end_write(*s_);
}

std::optional<message> stream::read() { return read_until(std::nullopt); }

std::optional<message> stream::read(std::chrono::steady_clock::time_point deadline) {
  return read_until(deadline);
}

std::optional<message> stream::read_until(std::optional<std::chrono::steady_clock::time_point> until) {
  auto c = live(s_, true);
  message m;
  std::uint32_t rm = 0, rb = 0;
  switch (s_->wait_read(until, m, rm, rb)) {
    case detail::stream_state::read_status::message:
      c->stream_grant(*s_, rm, rb);
      return m;
    case detail::stream_state::read_status::ended:
      return std::nullopt;
    case detail::stream_state::read_status::failed:
      throw_ended(*s_);
    case detail::stream_state::read_status::timed_out:
      throw call_error(error_code::deadline_exceeded, "no stream message came before the read's deadline");
    case detail::stream_state::read_status::stopped:
      break;
  }
  throw call_error(error_code::deadline_exceeded, "the stream call's deadline passed");
}

void stream::cancel() {
  auto c = live(s_, false);
  if (s_->requester) return c->cancel_call(s_->seq, error_code::cancelled);
  if (!s_->mark_answered()) return;
  c->stream_cancel_answer(*s_);
}

message stream::finish() {
  auto c = live(s_, true);
  if (!s_->requester)
    throw usage_error("bokbok::stream: finish() on the responder's end: the handler returns "
                      "its final message");
  if (s_->mark_write_closed()) c->stream_end_write(*s_);
  std::uint32_t rm = 0, rb = 0;
  s_->discard(rm, rb);
  c->stream_grant(*s_, rm, rb);
  return s_->wait_end();
}

}  // namespace bokbok
