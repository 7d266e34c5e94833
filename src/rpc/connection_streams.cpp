// Stream calls on a connection (PROTOCOL.md §12, README "Streams"): opening one, sending
// its messages and control frames, and the frames of the peer's streams as they arrive.
// Threads: open_stream and stream_* from application threads (never the loop's for the
// blocking ones); handle_stream_control and stream_message_arrived on the loop thread.
// The connection's mutex is taken before a stream_state's, never the other way round.
#include <string>

#include "rpc/callback_error.hpp"
#include "rpc/connection_impl.hpp"
#include "rpc/error_ptr.hpp"
#include "wire/message_codec.hpp"

namespace bokbok::detail {

std::shared_ptr<stream_state> connection_impl::open_stream(message request,
                                                           const call_options& opts,
                                                           stream_callback on_message,
                                                           response_callback done) {
  const bool callbacks = static_cast<bool>(on_message);
  if (!callbacks && cfg_.loop->in_loop_thread())
    throw usage_error("bokbok: open_stream() on the event loop thread, where its stream "
                      "could never be read or written without blocking it");
  {
    std::unique_lock lock(mu_);
    // features_stream_ is set before the connection opens; a closed one fails below.
    if (life_.state() == phase::open && !features_stream_) {
      call_error why(error_code::no_such_method,
                     "the peer " + cfg_.peer + " does not take stream calls");
      if (!callbacks) throw why;
      lock.unlock();
      done(std::make_exception_ptr(why), {});
      return nullptr;
    }
  }
  auto s = std::make_shared<stream_state>(true, cfg_.opts.stream_window_messages,
                                          cfg_.opts.stream_window_bytes);
  s->conn = weak_from_this();
  s->deadline = effective_deadline(opts);
  s->on_message = std::move(on_message);
  const std::uint64_t seq = call(
      std::move(request),
      [s, done = std::move(done)](std::exception_ptr e, message m) {
        s->end(e, done ? m : std::move(m));
        if (done) done(std::move(e), std::move(m));  // guarded by run_response_callback
      },
      opts, /*blocking=*/!callbacks, nullptr, {}, s);
  if (seq == 0 && !s->on_message) {  // refused before sending: the callback ended it
    if (auto e = s->ended_error()) std::rethrow_exception(e);
  }
  s->seq = seq;
  return s;
}

void connection_impl::stream_send_framed(stream_state& s, wire::gathered_message framed,
                                         bool blocking, std::vector<base::unique_fd> fds) {
  std::unique_lock lock(mu_);
  std::exception_ptr refused;
  if (life_.state() != phase::open) {
    refused = closed_error_locked();
  } else if (auto why = too_large_locked("stream message", framed)) {
    refused = error_ptr<call_error>(error_code::too_large, *why);
  } else {
    wait_for_room_locked(lock, blocking && !cfg_.loop->in_loop_thread(), s.deadline,
                         std::stop_token(), refused);
    if (!refused && life_.state() != phase::open) refused = closed_error_locked();
  }
  if (refused) {
    lock.unlock();
    std::rethrow_exception(refused);
  }
  if (s.ended()) return;  // answered meanwhile: nothing of the stream after the answer
  // Through the outbox always (no direct write): a message of a stream goes after the
  // stream's earlier messages still being sent (outbox.hpp).
  const auto type = s.requester ? wire::frame_type::stream : wire::frame_type::reply_stream;
  if (fds.empty()) {
    send_.queue().push_message(type, s.id, std::move(framed), framed_headroom);
  } else {  // the FDS flag and count (checked by check_fds) right before the message
    framed.bytes[framed_headroom - wire::fds_prefix_size] = static_cast<char>(fds.size());
    send_.queue().push_message(type, s.id, std::move(framed),
                               framed_headroom - wire::fds_prefix_size, wire::flag_fds,
                               std::move(fds));
  }
  flush_soon(lock);
}

namespace {
// A control frame record: stream_end, credit, reply_credit.
std::string control_record(wire::frame_type type, std::uint32_t id, std::string_view payload) {
  std::string rec;
  wire::append_frame(rec, type, 0, id, payload);
  return rec;
}
}  // namespace

void connection_impl::stream_end_write(stream_state& s) {
  std::string rec = control_record(wire::frame_type::stream_end, s.id, {});
  std::unique_lock lock(mu_);
  if (life_.state() != phase::open || s.ended()) return;
  // A control frame, ahead of long messages, yet never ahead of a message of this
  // stream still being sent (nothing of a stream after its stream_end).
  send_.queue().push_record_after(wire::frame_type::stream, s.id, rec);
  flush_soon(lock);
}

void connection_impl::stream_grant(stream_state& s, std::uint32_t messages, std::uint32_t bytes) {
  if (messages == 0 && bytes == 0) return;
  std::string rec = control_record(
      s.requester ? wire::frame_type::credit : wire::frame_type::reply_credit, s.id,
      wire::encode_credit_payload({messages, bytes}));
  std::unique_lock lock(mu_);
  if (life_.state() != phase::open || s.ended()) return;
  send_.queue().push_record_bytes(rec);
  flush_soon(lock);
}

void connection_impl::stream_cancel_answer(stream_state& s) {
  send_error(s.id, error_code::cancelled, "the handler cancelled its stream");
}

std::shared_ptr<stream_state> connection_impl::register_inbound_stream(
    std::uint32_t id, std::optional<io::clock::time_point> deadline) {
  auto s = std::make_shared<stream_state>(false, cfg_.opts.stream_window_messages,
                                          cfg_.opts.stream_window_bytes);
  s->conn = weak_from_this();
  s->id = id;
  s->deadline = deadline;
  if (auto it = early_credit_.find(id); it != early_credit_.end()) {
    s->add_send_credit(it->second.messages, it->second.bytes);
    early_credit_.erase(it);
  }
  std::lock_guard lock(mu_);
  inbound_streams_[id] = s;
  return s;
}

void connection_impl::end_inbound_stream_locked(std::uint32_t id) {
  auto it = inbound_streams_.find(id);
  if (it == inbound_streams_.end()) return;
  it->second->end(error_ptr<call_error>(error_code::cancelled, "the stream call has been answered"));
  inbound_streams_.erase(it);
}

void connection_impl::fail_inbound_streams() {
  std::unordered_map<std::uint32_t, std::shared_ptr<stream_state>> streams;
  std::exception_ptr why;
  {
    std::lock_guard lock(mu_);
    streams.swap(inbound_streams_);
    why = closed_error_locked();
  }
  for (auto& [id, s] : streams) s->end(why);
}

// Loop thread: the stream call a frame of `type` names (§12.5): one of ours for
// reply_stream and reply_credit, one of the peer's (an inbound stream) for the others.
// Null when the id is not a live stream call; `not_stream` when it is a live call of
// ours without a stream (a violation; the peer's ordinary calls are not looked at).
std::shared_ptr<stream_state> connection_impl::stream_of(wire::frame_type type, std::uint32_t id,
                                                         bool& not_stream) {
  not_stream = false;
  std::lock_guard lock(mu_);
  if (type == wire::frame_type::reply_stream || type == wire::frame_type::reply_credit) {
    auto* c = calls_.find(id);
    if (!c) return nullptr;
    not_stream = !c->stream;
    return c->stream;
  }
  auto it = inbound_streams_.find(id);
  return it == inbound_streams_.end() ? nullptr : it->second;
}

void connection_impl::handle_stream_control(const wire::frame_view& f) {
  bool not_stream = false;
  std::shared_ptr<stream_state> s = stream_of(f.type, f.call_id, not_stream);
  if (not_stream)
    return protocol_failure(std::string("a ") + wire::to_string(f.type) + " frame on call " +
                            std::to_string(f.call_id) + ", which is not a stream call");
  if (!s) {
    // Credit may overtake a fragmented stream request it follows (it is a control
    // frame): kept until that request is accepted. Bounded like the partial messages.
    if (f.type == wire::frame_type::credit && f.call_id > last_peer_request_ &&
        early_credit_.size() < wire::max_partial_messages) {
      auto g = wire::parse_credit_payload(f.payload);
      auto& e = early_credit_[f.call_id];
      e.messages += g.messages;
      e.bytes += g.bytes;
    }
    return;  // crossed the call's end (§12): ignored
  }
  if (f.type == wire::frame_type::stream_end) {
    if (!s->end_incoming())
      return protocol_failure("stream_end on call " + std::to_string(f.call_id) + " after its stream_end");
    return;
  }
  auto g = wire::parse_credit_payload(f.payload);
  s->add_send_credit(g.messages, g.bytes);
}

void connection_impl::stream_message_arrived(wire::frame_type type, std::uint32_t id,
                                             message m, std::size_t bytes,
                                             rpc::received_fds fds) {
  bool not_stream = false;
  std::shared_ptr<stream_state> s = stream_of(type, id, not_stream);
  const char* name = wire::to_string(type);
  if (not_stream)
    return protocol_failure(std::string("a ") + name + " frame on call " + std::to_string(id) +
                            ", which is not a stream call");
  if (!s) return;  // crossed the call's end: ignored
  std::uint32_t rm = 0, rb = 0;
  switch (s->receive(std::move(m), bytes, rm, rb, std::move(fds))) {
    case stream_state::receive_result::beyond_credit:
      return protocol_failure("stream message on call " + std::to_string(id) +
                              " beyond the credit granted");
    case stream_state::receive_result::after_end:
      return protocol_failure(std::string(name) + " frame on call " + std::to_string(id) +
                              " after its stream_end");
    case stream_state::receive_result::queued:
      break;
  }
  stream_grant(*s, rm, rb);
  if (!s->on_message) return;
  // The callback form: delivered now, and so consumed (credit granted back).
  message got;
  while (s->wait_read(io::clock::now(), got, rm, rb) == stream_state::read_status::message) {
    guard_callback(cfg_.opts.on_callback_error, "stream callback",
                   [&] { s->on_message(std::move(got)); });
    stream_grant(*s, rm, rb);
  }
}

}  // namespace bokbok::detail
