// How a connection leaves (goaway either way, graceful and abrupt close) and ends:
// finish() once, the wait for a child's exit status, the close handler, the stream's
// last bytes and its drop, and what the public API asks of the end (closed, failure,
// close_reason, wait_closed). The state is the lifecycle part's (rpc/lifecycle.hpp);
// this file sends the frames, fails the calls and lets go of the link.
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "rpc/callback_error.hpp"
#include "rpc/connection_impl.hpp"
#include "rpc/error_ptr.hpp"
#include "wire/message_codec.hpp"

namespace bokbok::detail {

namespace {
// How long a closing side waits for its final frames to drain before it drops the link.
constexpr auto close_drain_timeout = std::chrono::seconds(2);
// How long a failed connection to a child waits for the child's exit status (on a
// timer: the loop goes on meanwhile).
constexpr auto child_end_wait = std::chrono::seconds(1);
}  // namespace

void connection_impl::go_away(std::string text) {
  cfg_.loop->post([self = shared_from_this(), text = std::move(text)] { self->start_goaway(text); });
}

void connection_impl::start_goaway(const std::string& text) {
  {
    std::unique_lock lock(mu_);
    if (life_.state() != phase::open || !life_.start_goaway(last_peer_request_, text)) return;
    std::string record;
    wire::append_frame(record, wire::frame_type::goaway, 0, last_peer_request_,
                       wire::encode_code_payload(std::uint16_t(error_code::shutting_down), text));
    queue_record_locked(lock, record);
    if (room_waiters_) room_cv_.notify_all();
  }
  close_if_drained();
}

void connection_impl::close() {  // abrupt (connection::abort)
  cfg_.loop->post([self = shared_from_this()] {
    self->finish(end_kind::clean, "closed by this side");
  });
}

bool connection_impl::closed() const {
  std::lock_guard lock(mu_);
  return life_.state() == phase::closed;
}

void connection_impl::wait_closed() const {
  std::unique_lock lock(mu_);
  // Also until the stream has stopped: our close frame is then written (or the link
  // failed), so a process may exit right after without the peer seeing it as lost.
  closed_cv_.wait(lock, [&] { return life_.fully_closed(); });
  lock.unlock();
  if (cfg_.process) cfg_.process->wait_reaped();
}

std::string connection_impl::close_reason() const {
  std::lock_guard lock(mu_);
  return life_.reason();
}

std::exception_ptr connection_impl::failure() const {
  std::lock_guard lock(mu_);
  if (life_.state() != phase::closed || !life_.failed()) return nullptr;
  return closed_error_locked();
}

std::string connection_impl::closed_text_locked() const {
  return life_.closed_text(cfg_.peer);
}

std::exception_ptr connection_impl::closed_error_locked() const {
  return life_.closed_error(cfg_.peer);
}

// Loop thread: ends the connection once. Pending calls fail at once, the peer gets a
// close frame if the link still works, and the close handler runs on a handler thread.
void connection_impl::finish(end_kind kind, std::string reason, std::string_view farewell) {
  std::vector<pending_call> pending;
  std::deque<queued_call> queued;
  bool was_handshaking;
  {
    std::lock_guard lock(mu_);
    if (life_.state() == phase::closed) return;
  }
  if (closing_.waiting_for_child()) return;  // that failure is the one reported
  // A child that broke the connection is usually dying: say how it ended. A lost
  // transport waits for that (wait_for_child), and the child's end, usually the
  // cause, comes first; a protocol failure says what is known.
  if (cfg_.process && kind == end_kind::transport && !closing_.child_noted())
    return wait_for_child(kind, std::move(reason), farewell);
  if (cfg_.process && kind == end_kind::protocol && !closing_.child_noted())
    reason += " (" + cfg_.process->end_note() + ")";
  {
    std::unique_lock lock(mu_);
    if (life_.state() == phase::closed) return;
    // A caller's thread writing its request directly finishes first, so each pending
    // call knows whether any of it was written (a non-blocking write: brief).
    direct_write_cv_.wait(lock, [&] { return !send_.direct_writing(); });
    was_handshaking = life_.state() == phase::handshaking;
    closing_.finished = true;
    life_.ended(kind, std::move(reason));
    pending = calls_.take_if([](const pending_call&) { return true; });
    queued = inbound_.take_queued();
    room_cv_.notify_all();  // senders waiting for room give up
  }
  if (kind == end_kind::protocol && !was_handshaking)  // (before open: the server logs it)
    base::log_limited(log_level::warning, "connection", "connections ended by a protocol violation",
                      cfg_.peer + ": " + life_.reason());
  if (handshake_timer_) cfg_.loop->cancel_timer(handshake_timer_);
  if (tick_timer_) cfg_.loop->cancel_timer(tick_timer_);
  if (record_timer_) cfg_.loop->cancel_timer(record_timer_);
  if (deadline_timer_) cfg_.loop->cancel_timer(deadline_timer_);
  if (grace_timer_) cfg_.loop->cancel_timer(grace_timer_);
  grace_timer_ = 0;
  // Partial messages will never complete: their memory and budget go now.
  frames_.drop_messages(cfg_.opts.max_message_size, wire::max_partial_messages);
  sync_partial_charge();
  for (auto& pc : pending) {
    const std::uint32_t id = pc.id;
    std::unique_lock lock(mu_);
    // One each: waiters on other threads own them.
    bool unread = peer_reset_ && cfg_.peer_credentials && id == send_.last_written_request();
    auto err = pc.not_sent || unread ? not_sent_error_locked() : closed_error_locked();
    lock.unlock();
    run_response_callback(pc.done, std::move(err), {});
  }
  pending.clear();
  {
    // Running handlers are told to stop: nobody will get their answers.
    std::vector<std::shared_ptr<call_context>> running;
    {
      std::lock_guard lock(mu_);
      running = inbound_.running_contexts();
    }
    for (auto& ctx : running) ctx->stop.request_stop();
  }
  fail_inbound_streams();  // their handlers' reads and writes fail now

  // Say goodbye when the transport still works, and drop the link once that is written
  // (on_write_done), or after close_drain_timeout if the peer does not read.
  if (stream_) {
    std::unique_lock lock(mu_);
    // Unsent calls were failed above, so their requests go; the batch in flight owns its
    // bytes. After a goaway drained the connection, only answers are queued: they stay.
    if (kind != end_kind::drained) send_.drop_queued();
    // Key mode before the ciphers exist: no plaintext frames for a key-mode peer (a
    // refusal's decoy, raw bytes of the send path, still goes out). A refused preamble: no frame
    // at all (§2.3).
    bool can_frame = (!key_ || key_->ready()) && !closing_.silent_end;
    if (kind != end_kind::transport && kind != end_kind::unresponsive && can_frame) {
      std::string rec(farewell);
      wire::append_frame(rec, wire::frame_type::close, 0, 0, {});
      send_.queue().push_record_bytes(rec);
      closing_.close_sent = true;
    }
    bool idle = !send_.writing();
    bool nothing_to_say = idle && !send_.has_unsent();
    lock.unlock();
    if (kind == end_kind::transport || kind == end_kind::unresponsive || nothing_to_say) {
      drop_stream();
    } else {
      if (idle) flush();
      auto weak = weak_from_this();
      drain_timer_ = cfg_.loop->add_timer(io::clock::now() + close_drain_timeout, [weak] {
        if (auto self = weak.lock(); self && self->stream_) self->drop_stream();
      });
    }
  }
  auto self = shared_from_this();
  if (was_handshaking) {
    // Opening failed: nobody saw this connection, so there is no close handler.
    std::exception_ptr error;
    std::shared_ptr<void> last;  // let go of after unlocking (`self` outlives it here)
    {
      std::lock_guard lock(mu_);
      error = closed_error_locked();
      last = life_.close_handler_returned();
      closed_cv_.notify_all();
    }
    if (auto done = std::move(opened_)) done(nullptr, std::move(error));
    return;
  }
  // No close handler: the bookkeeping below is quick, so it is done here rather than
  // starting a handler thread for it (a client's first thread, on every short-lived
  // connection, was the largest cost of opening one).
  if (!cfg_.opts.on_close) return run_close_handler();
  // The close handler runs on the connection's handler pool, even when its queue of
  // calls is full; only when no pool thread can be had (RLIMIT_NPROC, pids.max) does it
  // run here, on the loop thread, rather than never.
  if (pool_->submit_beyond_queue_limit([self] { self->run_close_handler(); })) return;
  run_close_handler();
}

// Loop thread: the transport to a child failed. The child is usually dying; the failure
// completes once it has been reaped, with its exit status in the reason, or after
// child_end_wait with "child N is still running" first. The loop goes on meanwhile (other
// connections on it are not held up); this one reads nothing more, and further
// failures are ignored.
void connection_impl::wait_for_child(end_kind kind, std::string reason,
                                     std::string_view farewell) {
  closing_.hold_for_child({kind, std::move(reason), std::string(farewell)});
  if (stream_) {
    stream_->stop_reading();
    reading_paused_ = false;  // so backpressure does not start reading again
    std::lock_guard lock(mu_);
    budget_paused_ = false;   // nor the receive budget
  }
  auto weak = weak_from_this();
  closing_.set_child_timer(cfg_.loop->add_timer(io::clock::now() + child_end_wait, [weak] {
    if (auto self = weak.lock()) {
      self->closing_.child_timer_fired();
      self->finish_after_child();
    }
  }));
  // On the loop that reaps the child (or here, when it has been): only posts.
  std::weak_ptr<io::loop> loop = cfg_.loop;
  cfg_.process->when_ended([weak, loop] {
    if (auto l = loop.lock())
      l->post([weak] {
        if (auto self = weak.lock()) self->finish_after_child();
      });
  });
}

void connection_impl::finish_after_child() {
  io::timer_id timer = 0;
  auto w = closing_.take_child_failure(timer);
  if (!w) return;
  if (timer) cfg_.loop->cancel_timer(timer);
  finish(w->kind, cfg_.process->end_note() + "; " + w->reason, w->farewell);
}

std::exception_ptr connection_impl::not_sent_error_locked() const {
  // Ends that are not a transport's keep their own error type.
  if (life_.keeps_own_error()) return closed_error_locked();
  return error_ptr<not_sent_error>(closed_text_locked());
}

// Any thread: records a step of the end (`step`, under `mu_`, returns the lifecycle's
// last reference when the step was the last), then wakes the waiters on closed_cv_
// after unlocking: a waiter woken under `mu_` would run (on a shared CPU, at once) only
// to block on it again, two context switches more per close. Only a step that makes a
// waiter's condition true wakes them: both wait for the stream to be dropped
// (wait_closed() for the close handler too), so a close handler returning first wakes
// nobody. (It used to: a graceful close woke wait_closed() once for nothing, as its
// goaway went out, two context switches of about ten per short-lived connection.)
// `keep` holds this object until the notify.
template <typename Step>
void connection_impl::notify_closed(Step step) {
  auto keep = shared_from_this();
  std::shared_ptr<void> last;  // the last reference may go here: after unlocking
  bool wake;
  {
    std::lock_guard lock(mu_);
    last = step();
    wake = life_.stream_is_dropped();
  }
  if (wake) closed_cv_.notify_all();
}

void connection_impl::run_close_handler() {
  if (cfg_.before_close_handler) cfg_.before_close_handler();
  if (cfg_.opts.on_close) {
    connection handle(shared_from_this());
    // A close handler has nobody to answer to: what it throws is reported.
    guard_callback(cfg_.opts.on_callback_error, "on_close", [&] { cfg_.opts.on_close(handle); });
  }
  if (cfg_.after_close_handler) cfg_.after_close_handler();
  notify_closed([this] { return life_.close_handler_returned(); });
}

// Loop thread, closed, our last frames written: drops the link, unless we said close
// and the peer has not ended yet: then our output ends (the peer reads end of stream)
// and we keep reading, discarding, until its close or end of stream (PROTOCOL.md §8.5),
// at most until the drain timer set by finish(). Closing a socket with the peer's
// frames unread would reset it, and the peer's own close would fail to go out.
void connection_impl::end_output() {
  if (!stream_) return;
  if (!closing_.awaits_peer_end()) return drop_stream();
  if (closing_.output_ended) return;
  closing_.output_ended = true;
  stream_->shutdown_write();
  bool paused;
  {
    std::lock_guard lock(mu_);
    paused = reading_paused_ || budget_paused_;
    reading_paused_ = budget_paused_ = false;
  }
  if (paused) stream_->start_reading();
}

// Loop thread: stops the stream for good. Until then the stream may still deliver events
// to this object, which is why the lifecycle keeps it alive until both this and the close
// handler are done.
void connection_impl::drop_stream() {
  {
    std::lock_guard lock(mu_);
    send_.drop_stream();  // a writer mid-write has its own reference; close() waits
  }
  stream_->close();
  stream_.reset();
  if (drain_timer_) cfg_.loop->cancel_timer(drain_timer_);  // nothing left to drain
  drain_timer_ = 0;
  fd_queue_.clear();  // fds received and not yet claimed: closed (PROTOCOL.md §13)
  partial_fds_.clear();
  partial_fd_count_ = 0;
  if (cfg_.process) cfg_.process->release();
  notify_closed([this] { return life_.stream_dropped(); });
}

// The peer is shutting down (PROTOCOL.md §8.4): it answers our calls up to the goaway's
// id; later ones fail now, new ones are refused, and once nothing is outstanding either
// way the connection closes.
void connection_impl::handle_goaway(const wire::frame_view& f) {
  auto [code, text] = wire::parse_code_payload(f.payload);
  if (code == std::uint16_t(error_code::protocol))
    return finish(end_kind::protocol, "the peer reported a protocol error: " + std::string(text));
  // Any other code than shutting_down is a refusal (a key-mode login refused busy, §9.6):
  // our calls fail with that code and the peer's reason (lifecycle::peer_going_away).
  const auto why = static_cast<error_code>(code);
  std::vector<pending_call> unanswered;
  std::string reason;
  error_code life_code;
  {
    std::lock_guard lock(mu_);
    life_.peer_going_away(why, text);
    reason = life_.goaway_reason();
    life_code = life_.refusal_code();
    const std::uint32_t last = f.call_id;
    unanswered = calls_.take_if([last](const pending_call& c) { return c.id > last; });
    if (room_waiters_) room_cv_.notify_all();
  }
  // The peer will not run them: a reconnecting connection sends them again (§8.4).
  for (auto& pc : unanswered)
    run_response_callback(pc.done,
                          life_code == error_code::shutting_down
                              ? error_ptr<unrun_refusal_error>(life_code, reason)
                              : error_ptr<call_error>(life_code, reason),
                          {});
  close_if_drained();
}

// Any thread: after a goaway, closes once no call is outstanding either way.
// The post is made after unlocking (a loop post may write the loop's eventfd).
void connection_impl::close_if_drained() {
  std::string reason;
  {
    std::lock_guard lock(mu_);
    if (!life_.going_away() || life_.state() != phase::open || !calls_.empty() ||
        !inbound_.idle())
      return;
    reason = life_.goaway_reason();
  }
  cfg_.loop->post([self = shared_from_this(), reason = std::move(reason)] {
    self->finish(end_kind::drained, reason);
  });
}

void connection_impl::on_read_end(int err) {
  auto keep = shared_from_this();
  peer_reset_ = err == -ECONNRESET;  // see send_.last_written_request()
  closing_.peer_done = true;
  {
    std::unique_lock lock(mu_);
    if (life_.state() == phase::closed) {
      // We said close and waited for the peer's end (§8.5): it came. Let go of the link
      // once our own last frames are out (on_write_done drops it otherwise).
      bool written = send_.all_written();
      lock.unlock();
      if (written && stream_) drop_stream();
      return;
    }
  }
  if (!preamble_done_) {
    // Say what little the peer sent: it tells a crashed child from a wrong program.
    const std::string& got = preamble_reader_.received();
    return finish(end_kind::transport,
                  "the peer closed the connection before speaking bokbok" +
                      (err < 0 ? std::string(" (") + std::strerror(-err) + ")" : "") +
                      (got.empty() ? "" : " (it sent only \"" + wire::escape_bytes(got) + "\")"));
  }
  if (key_ && !key_->ready())
    return finish(end_kind::transport,
                  "the peer closed the connection during the key-mode handshake" +
                      (err < 0 ? std::string(" (") + std::strerror(-err) + ")" : ""));
  if (err < 0) return finish(end_kind::transport, std::string("read failed: ") + std::strerror(-err));
  if (std::size_t part = frames_.partial_record_bytes())
    return finish(end_kind::transport,
                  "connection lost: the peer's stream ended in the middle of a record (" +
                      std::to_string(part) + " bytes of it received)");
  finish(end_kind::transport, "connection lost: the peer's stream ended without a close frame");
}

// The peer's preamble (or, key mode meeting a plain peer, its first record) was refused,
// or its hello was our own: the peer may not speak bokbok at all, so nothing more is
// sent to it (PROTOCOL.md §2.3).
void connection_impl::silent_failure(const std::string& what) {
  closing_.silent_end = true;
  finish(end_kind::protocol, "protocol error: " + what);
}

// After our close (PROTOCOL.md §8.5): reads and discards what the peer still sends,
// looking only for its close; its end of stream comes to on_read_end.
void connection_impl::linger_on_data(std::string_view bytes) {
  if (closing_.linger_blind || !preamble_done_ || (key_ && !key_->ready())) return;
  rpc::key_session* key = key_ ? key_.get() : nullptr;
  wire::frame_view f;
  for (;;) {
    auto st = frames_.next(bytes, key, f);
    if (st == rpc::frame_source::status::need_more) return;
    if (st == rpc::frame_source::status::error) break;
    if (trace_) rpc::trace_received(trace_, f);
    if (f.type == wire::frame_type::close) {
      closing_.peer_done = true;
      std::unique_lock lock(mu_);
      bool written = send_.all_written();
      lock.unlock();
      if (written && stream_) drop_stream();
      return;
    }
  }
  closing_.linger_blind = true;  // the stream is broken: only its end is news now
}

// Tells the peer what went wrong (goaway with code protocol), then ends the connection.
void connection_impl::protocol_failure(const std::string& what) {
  if (expect_refusal_ || !preamble_done_) return silent_failure(what);
  std::string goaway;
  wire::append_code_frame(goaway, wire::frame_type::goaway, 0,
                          std::uint16_t(error_code::protocol), what);
  finish(end_kind::protocol, "protocol error: " + what, goaway);
}

void connection_impl::close_gracefully(std::chrono::milliseconds grace) {
  {
    // From now on our new calls fail (shutting_down), even before the goaway is out.
    std::lock_guard lock(mu_);
    if (life_.state() == phase::open) life_.start_closing();
  }
  cfg_.loop->post([self = shared_from_this(), grace] {
    phase ph;
    {
      std::lock_guard lock(self->mu_);
      ph = self->life_.state();
    }
    if (ph == phase::closed) return;
    if (ph == phase::handshaking) return self->finish(end_kind::clean, "closed by this side");
    // The text is the peer's to read: "the peer is shutting down: it is closing the
    // connection".
    self->start_goaway("it is closing the connection");
    auto weak = self->weak_from_this();
    self->grace_timer_ = self->cfg_.loop->add_timer(io::clock::now() + grace, [weak, grace] {
      if (auto s = weak.lock())
        s->finish(end_kind::clean, "closed by this side (calls still running after the " +
                                       std::to_string(grace.count()) + " ms grace period)");
    });
  });
}

}  // namespace bokbok::detail
