// The inbound side of a connection (loop thread only): preamble, then frames from the
// frame source (rpc/frame_source.hpp: records, key-mode opening, reassembly), handing
// whole messages on: the peer's requests to connection_requests.cpp, answers to our
// calls to connection_calls.cpp. The connection mutex guards what other threads share (phase, calls,
// inbound calls, lifecycle, outbox); the frame source needs none.
#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "base/log.hpp"
#include "rpc/connection_impl.hpp"
#include "rpc/error_ptr.hpp"
#include "wire/message_codec.hpp"

namespace bokbok::detail {

// Answers read in one batch end their calls together (deliver_answers): one lock. What
// this thread sends after the read's first frame is corked (in_read_, set by
// read_frames): one write for the rest of the read, made by the flush the outbox posts,
// which runs on this thread once the loop's completions are handled (a local post: no
// wake-up). The first frame's answer still goes out at once: a read of one request (a
// lone caller's round trip) keeps the direct write's latency. Likewise the requests of
// one read are all queued for the handler pool before a handler thread is woken
// (handler_pool::wake_batch), which then wakes the next while requests remain.
void connection_impl::on_data(std::string_view bytes) {
  auto keep = shared_from_this();  // a frame may end the connection and its last owner
  const bool outer = !in_read_;    // on_data({}) may run inside a callback of on_data
  {
    std::optional<rpc::handler_pool::wake_batch> batch;  // nested (on_data({})): no-op
    if (pool_) batch.emplace(*pool_);
    read_frames(bytes);
  }  // the handler threads are woken before the answers' callbacks run
  if (!answers_.empty()) deliver_answers();
  if (outer) in_read_ = false;
}

void connection_impl::read_frames(std::string_view bytes) {
  if (tick_timer_) live_.received(io::clock::now());  // any byte is a sign of life (§8.3)
  if (closing_.finished) return linger_on_data(bytes);
  if (!preamble_done_) {
    auto st = preamble_reader_.feed(bytes);
    if (st == wire::preamble_reader::status::need_more) return;
    if (st == wire::preamble_reader::status::error) {
      // Say where the bytes came from: for a child, its stdout (a banner, a greeting).
      silent_failure((cfg_.process ? "the stdout of " + cfg_.peer + " does not carry bokbok: "
                                     : "peer " + cfg_.peer + " does not speak bokbok: ") +
                       preamble_reader_.error());
      return;
    }
    const auto& theirs = preamble_reader_.value();
    if (std::string mismatch = wire::mode_mismatch(cfg_.local.mode, theirs); !mismatch.empty()) {
      if (theirs.mode == wire::mode::plain && key_) {
        // A plain server may be refusing us (at its limit) with a goaway in place of
        // its hello: read on for that news; anything else fails (handle_frame), and
        // nothing is sent to it in plain mode either way (§9.6).
        expect_refusal_ = true;
        closing_.silent_end = true;
        key_.reset();
      } else {
        silent_failure(mismatch);
        return;
      }
    }
    preamble_done_ = true;
  }
  if (key_ && !key_step(bytes)) return;
  // Frames come as views into the read buffer (frame_source.hpp). After a frame that
  // completed a message or was a control frame (its answer may fill the send queue),
  // reading may have to pause: looked at first without the connection mutex (the
  // outbox's and the budget's counts are atomic), which is taken only when one of them
  // is over its bound. A stale "room" lets one more frame in, and the next frame looks
  // again.
  rpc::key_session* key = key_ ? key_.get() : nullptr;
  wire::frame_view f;
  for (;;) {
    auto st = frames_.next(bytes, key, f);
    if (st == rpc::frame_source::status::need_more) return note_partial_record();
    if (st == rpc::frame_source::status::error) {
      // Key mode, a forged record: our own direction is intact; tell the peer,
      // authenticated, that its stream was altered, so that it never takes this end for
      // a clean close (§9.6). Nothing after it can be opened.
      if (frames_.forged()) closing_.linger_blind = true;
      if (!answers_.empty()) deliver_answers();  // the answers read before it still count
      protocol_failure(frames_.error());
      return;
    }
    record_since_.reset();  // a whole record came (one frame each)
    if (trace_) rpc::trace_received(trace_, f);
    if (key && !key_record_opened()) return;  // a responder's login (§9.6)
    if (!answers_.empty() && f.type != wire::frame_type::response &&
        f.type != wire::frame_type::error)
      deliver_answers();  // before anything that may end the connection or its calls
    handle_frame(f);
    in_read_ = true;  // what the next frames of this read make is sent together
    if (!stream_) return;  // the frame ended the connection
    if (f.flags & wire::flag_more) continue;  // a fragment: nothing queued, nothing charged
    if (closing_.finished) return;  // the loop thread's copy of the closed phase
    if (send_.queued_bytes() < cfg_.opts.max_send_queue && !account_->over())
      continue;
    std::lock_guard lock(mu_);
    if (life_.state() == phase::closed) return;
    // Backpressure (PROTOCOL.md §8.8): answers pile up because the peer does not read
    // them; stop reading its requests until they drain (after_dequeue_locked resumes).
    if (!reading_paused_ && send_.queued_bytes() >= cfg_.opts.max_send_queue) {
      reading_paused_ = true;
      if (!budget_paused_) stream_->stop_reading();
      frames_.keep(bytes);  // the rest of this read, handled on resume
      return;
    }
    if (pause_for_budget_locked()) {  // the same, until handlers take requests
      frames_.keep(bytes);
      return;
    }
  }
}

// The read ended inside a record: from now on (or from when that record began, if it
// began in an earlier read) it has record_timeout to arrive whole.
void connection_impl::note_partial_record() {
  const auto limit = cfg_.opts.record_timeout;
  if (limit.count() <= 0 || frames_.partial_record_bytes() == 0) return;
  if (!record_since_) record_since_ = io::clock::now();
  if (record_timer_) return;  // it will look at record_since_ when it fires
  record_timer_ = cfg_.loop->add_timer(*record_since_ + limit, [weak = weak_from_this()] {
    if (auto self = weak.lock()) self->check_record_deadline();
  });
}

void connection_impl::check_record_deadline() {
  record_timer_ = 0;
  if (closing_.finished || !record_since_) return;
  const auto limit = cfg_.opts.record_timeout;
  const auto now = io::clock::now();
  if (now - *record_since_ < limit) {  // a later record than the one the timer was for
    record_timer_ = cfg_.loop->add_timer(*record_since_ + limit, [weak = weak_from_this()] {
      if (auto self = weak.lock()) self->check_record_deadline();
    });
    return;
  }
  finish(end_kind::transport,
         "connection lost: a record the peer began " +
             std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now - *record_since_).count()) +
             " ms ago has not arrived whole (" + std::to_string(frames_.partial_record_bytes()) +
             " bytes of it so far; record_timeout " + std::to_string(limit.count()) + " ms)");
}

void connection_impl::handle_frame(const wire::frame_view& f) {
  if (!hello_seen_) {  // the phase leaves handshaking once, for good: asked until then
    std::lock_guard lock(mu_);
    hello_seen_ = life_.state() != phase::handshaking;
  }
  if (!hello_seen_) {
    if (f.type == wire::frame_type::goaway) {
      // A server that will not take us (at its connection limit, stopping) says why
      // instead of a hello (PROTOCOL.md §8.1).
      auto [code, text] = wire::parse_code_payload(f.payload);
      return finish(code == std::uint16_t(error_code::not_authorized) ? end_kind::auth
                                                                      : end_kind::transport,
                    "refused by the peer: " +
                        std::string(to_string(static_cast<error_code>(code))) + ": " +
                        std::string(text));
    }
    if (expect_refusal_)  // the mode mismatch the preamble showed, now final
      return protocol_failure(wire::mode_mismatch(cfg_.local.mode, preamble_reader_.value()));
    if (f.type != wire::frame_type::hello)
      return protocol_failure(std::string("expected a hello frame first, got ") +
                              wire::to_string(f.type));
    return handle_hello(f);
  }
  switch (f.type) {
    case wire::frame_type::hello:
      return protocol_failure("a second hello frame");
    case wire::frame_type::request:
    case wire::frame_type::response:
    case wire::frame_type::notify:
      return handle_message_frame(f);
    case wire::frame_type::error:
      return handle_error_frame(f);
    case wire::frame_type::cancel:
      return handle_cancel(f.call_id);
    case wire::frame_type::ping: {
      std::string rec;
      wire::append_frame(rec, wire::frame_type::pong, 0, 0, f.payload);
      std::lock_guard lock(mu_);
      send_.queue().push_record_bytes(rec);
      schedule_flush_locked();
      return;
    }
    case wire::frame_type::pong:
      return;
    case wire::frame_type::goaway:
      return handle_goaway(f);
    case wire::frame_type::stream:
    case wire::frame_type::reply_stream:
      return handle_message_frame(f);
    case wire::frame_type::stream_end:
    case wire::frame_type::credit:
    case wire::frame_type::reply_credit:
      return handle_stream_control(f);  // connection_streams.cpp
    case wire::frame_type::close: {
      closing_.peer_done = true;  // nothing follows: no need to wait for its end (§8.5)
      // After the peer's goaway, its reason (lifecycle::peer_close_reason).
      std::unique_lock lock(mu_);
      std::string why = life_.peer_close_reason();
      lock.unlock();
      return finish(end_kind::clean, why);
    }
  }
}

void connection_impl::handle_hello(const wire::frame_view& f) { handle_settings(f.payload); }

// The peer's settings, from its hello or (key mode) its handshake message: the
// connection is open.
void connection_impl::handle_settings(std::string_view payload) {
  wire::settings theirs;
  std::string err;
  if (!wire::decode_settings(payload, theirs, err)) return protocol_failure(err);
  if (hello_nonce_ && theirs.hello_nonce == hello_nonce_)
    return silent_failure(
        "the peer sent back this side's own hello (its hello_nonce): the connection is "
        "reflected by something that echoes its input, e.g. `cat`, not a bokbok server");
  wire::settings mine;
  mine.max_message_size = static_cast<std::uint32_t>(cfg_.opts.max_message_size);
  std::uint32_t limit = wire::negotiate_max_message_size(mine, theirs);
  frames_.messages().set_max_message_size(limit);
  cfg_.loop->cancel_timer(handshake_timer_);
  handshake_timer_ = 0;
  {
    std::lock_guard lock(mu_);
    send_limit_ = limit;
    features_deadline_ = (theirs.features & wire::feature_deadline) != 0;
    features_notify_ = (theirs.features & wire::feature_notify) != 0;
    features_fds_ = cfg_.carries_fds && (theirs.features & wire::feature_fds) != 0;
    features_stream_ = (theirs.features & wire::feature_stream) != 0;
    life_.opened();
  }
  arm_tick();
  if (auto done = std::move(opened_)) done(shared_from_this(), nullptr);
}

void connection_impl::handle_message_frame(const wire::frame_view& f) {
  const bool stream_message =
      f.type == wire::frame_type::stream || f.type == wire::frame_type::reply_stream;
  // A stream request's flag is on its first fragment only: remembered until it is whole.
  bool stream_request = (f.flags & wire::flag_stream) != 0;
  if (stream_request && (f.flags & wire::flag_more)) partial_stream_requests_.insert(f.call_id);
  // The fds its first fragment declares (§13), or, at its last, those kept with it.
  fd_list fds;
  if (!take_frame_fds(f, fds)) return;
  // Past options::max_received_fds: refused once the reassembler has seen the frame.
  const bool fds_over = fds_over_budget(f, fds);
  std::string_view bytes;  // the whole message: in the read buffer, or the reassembler's
  std::string err;
  auto st = frames_.add_message(f, bytes, err);
  if (f.flags & (wire::flag_more | wire::flag_continued)) sync_partial_charge();
  if (st != wire::reassembler::status::complete && st != wire::reassembler::status::incomplete)
    drop_partial_fds(f.type, f.call_id);  // refused or skipped: the fds kept for it close
  switch (st) {
    case wire::reassembler::status::incomplete:
      if (fds_over)
        refuse_fds_over_budget(f);
      else if (!stream_message && refuse_partial_over_budget(f))  // streams: bounded by credit
        drop_partial_fds(f.type, f.call_id);
      return;
    case wire::reassembler::status::skipped:
      return;
    case wire::reassembler::status::error:
      return protocol_failure(err);
    case wire::reassembler::status::too_large: {
      if (f.type == wire::frame_type::notify) return;  // dropped silently (§8.7)
      if (stream_message)  // its writer checks the negotiated size before sending
        return protocol_failure(std::string("a ") + wire::to_string(f.type) + " message on call " +
                                std::to_string(f.call_id) + " exceeds the maximum message size");
      std::string text = std::string(f.type == wire::frame_type::request ? "request" : "response") +
                         " exceeds the maximum message size of " +
                         std::to_string(send_limit_) + " bytes";
      if (f.type == wire::frame_type::request)
        send_error(f.call_id, error_code::too_large, text);
      else
        complete_call(f.call_id,
                      error_ptr<call_error>(error_code::too_large, text), {});
      return;
    }
    case wire::reassembler::status::complete:
      if (fds_over) {
        refuse_fds_over_budget(f);  // `fds` closed here
        return;
      }
      break;
  }
  message m;
  std::size_t cost = 0;
  const bool decoded = frames_.messages().has_decoded();
  if (decoded) m = frames_.messages().take_decoded(cost);  // fragmented: decoded as it came
  if (f.type == wire::frame_type::request) {
    if (!partial_stream_requests_.empty() && partial_stream_requests_.erase(f.call_id))
      stream_request = true;
    if (stream_request) {  // decoded here: its cost is bounded by the message size
      if (!decoded && !wire::decode_message(bytes, m, err))
        return protocol_failure("bad request: " + err);
      if (!decoded) cost = wire::decoded_cost(bytes);
      return accept_request(f.call_id, std::move(m), cost, frames_.messages().deadline_ms(),
                            hold_fds(std::move(fds)), true);
    }
    if (decoded)
      return accept_request(f.call_id, std::move(m), cost, frames_.messages().deadline_ms(),
                            hold_fds(std::move(fds)));
    return dispatch_request(f.call_id, bytes, frames_.messages().deadline_ms(),
                            hold_fds(std::move(fds)));
  }
  if (stream_message) {
    if (!decoded && !wire::decode_message(bytes, m, err))
      return protocol_failure(std::string("bad ") + wire::to_string(f.type) + ": " + err);
    const std::size_t size = decoded ? wire::encoded_size(m) : bytes.size();
    return stream_message_arrived(f.type, f.call_id, std::move(m), size,
                                  hold_fds(std::move(fds)));
  }
  if (f.type == wire::frame_type::notify) {
    if (decoded) return notify_decoded(std::move(m), hold_fds(std::move(fds)));
    return dispatch_notify(bytes, hold_fds(std::move(fds)));
  }
  if (!decoded && !wire::decode_message(bytes, m, err)) {
    deliver_answers();  // the answers read before it still end their calls
    return protocol_failure("bad response: " + err);
  }
  complete_call(f.call_id, nullptr, std::move(m), std::move(fds));
}

// Loop thread: the server-wide pool counts our partial messages as the reassembler holds
// them now.
void connection_impl::sync_partial_charge() {
  std::size_t now = frames_.messages().buffered_bytes();
  if (now == partial_charged_) return;
  if (cfg_.receive_pool)
    cfg_.receive_pool->add(static_cast<std::ptrdiff_t>(now) -
                           static_cast<std::ptrdiff_t>(partial_charged_));
  partial_charged_ = now;
}

// Loop thread, after a fragment of `f`'s message was stored: partial messages may not
// pass the receive budget, nor (beyond the floor) the server's. Waiting for the rest with
// reading stopped could stall for good (a peer may interleave many large messages), so
// the message is refused now and its rest skipped.
bool connection_impl::refuse_partial_over_budget(const wire::frame_view& f) {
  const std::size_t partial = frames_.messages().buffered_bytes();
  const auto& pool = cfg_.receive_pool;
  bool over = partial > receive_limit_;
  bool pool_over = !over && pool && partial + account_->held() > rpc::receive_account::default_floor &&
                   pool->over();
  if (!over && !pool_over) return false;
  // This message alone (decoded as it comes: its fields reserved at their announced
  // lengths, about 48 bytes each besides) would pass the budget: it never fits.
  const std::size_t own = frames_.messages().message_bytes(f.type, f.call_id);
  const bool never = own > receive_limit_;
  frames_.messages().drop(f.type, f.call_id);
  sync_partial_charge();
  const error_code code = never ? error_code::too_large : error_code::busy;
  std::string text =
      never ? std::string(f.type == wire::frame_type::request ? "request" : "response") +
                  " would take more than " + std::to_string(own) +
                  " bytes decoded, more than the receive budget of " +
                  std::to_string(receive_limit_) + " bytes"
      : over ? "busy: partial messages being received would pass this connection's receive "
               "budget of " + std::to_string(receive_limit_) + " bytes"
             : "busy: the server's receive budget of " + std::to_string(pool->limit()) +
                   " bytes is spent; try again later";
  if (f.type == wire::frame_type::request) {
    last_peer_request_ = std::max(last_peer_request_, f.call_id);
    send_error(f.call_id, code, text);
  } else if (f.type == wire::frame_type::response) {
    complete_call(f.call_id, error_ptr<call_error>(code, text), {});
  }  // a notification is dropped, as one too large is (§8.7)
  return true;
}

// Loop thread, mu_ held: stops reading while the requests waiting for a handler are over
// the budget; the account calls back once handlers have taken enough of them.
bool connection_impl::pause_for_budget_locked() {
  if (budget_paused_ || !account_->over()) return false;
  budget_paused_ = true;
  if (!reading_paused_) stream_->stop_reading();
  account_->wait_for_room([weak = weak_from_this(), l = cfg_.loop] {
    l->post([weak] {
      if (auto self = weak.lock()) self->resume_after_budget();
    });
  });
  return true;
}

// Loop thread: the budget has room again.
void connection_impl::resume_after_budget() {
  {
    std::lock_guard lock(mu_);
    if (!budget_paused_) return;
    budget_paused_ = false;
    if (life_.state() == phase::closed || !stream_ || reading_paused_) return;
  }
  stream_->start_reading();
  on_data({});  // records read before the pause wait in frames_
}

}  // namespace bokbok::detail
