// The lifecycle of a connection: opening, handing over held requests, closing. Our calls:
// connection_calls.cpp; the peer's requests: connection_requests.cpp; inbound frames:
// connection_reader.cpp.
#include "rpc/connection_impl.hpp"

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <future>
#include <system_error>
#include <thread>

#include "base/log.hpp"
#include "rpc/callback_error.hpp"
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

connection_impl::connection_impl(config cfg)
    : cfg_(std::move(cfg)),
      trace_(rpc::choose_trace_sink(cfg_.opts.trace, cfg_.peer)),
      frames_(cfg_.opts.max_message_size, wire::max_partial_messages),
      inbound_({cfg_.opts.max_concurrent_calls, cfg_.opts.max_queued_calls,
                cfg_.opts.max_threads, cfg_.opts.inline_handlers}) {
  pool_ = cfg_.pool;
  if (!pool_)
    pool_ = std::make_shared<rpc::handler_pool>(rpc::handler_pool::limits{
        cfg_.opts.max_threads, std::max<std::size_t>(cfg_.opts.max_queued_calls, 1),
        std::chrono::seconds(5), cfg_.opts.max_waiting_handlers});
  receive_limit_ = cfg_.opts.max_receive_bytes ? cfg_.opts.max_receive_bytes
                                                : 2 * cfg_.opts.max_message_size;
  account_ = std::make_shared<rpc::receive_account>(receive_limit_, cfg_.receive_pool);
  user_ = cfg_.local.user;
  if (cfg_.keys) {
    cfg_.local.mode = wire::mode::key;
    cfg_.local.user = cfg_.keys->initiator() ? cfg_.keys->user : std::string();
    user_ = cfg_.local.user;
    key_ = std::make_unique<rpc::key_session>(cfg_.keys, wire::encode_preamble(cfg_.local),
                                              settings_payload());
  }
}

connection_impl::~connection_impl() {
  if (cfg_.receive_pool && partial_charged_)
    cfg_.receive_pool->add(-static_cast<std::ptrdiff_t>(partial_charged_));
}

void check_options(const options& o) {
  if (o.max_message_size < wire::min_max_message_size)
    throw usage_error("bokbok: options::max_message_size must be at least 65536");
  if (o.max_message_size > 0xffffffffu)
    throw usage_error("bokbok: options::max_message_size must fit in 32 bits");
  if (o.max_send_queue == 0)
    throw usage_error("bokbok: options::max_send_queue must be at least 1 byte (0 would let "
                      "nothing be sent)");
  rpc::make_key_config(o.keys, nullptr);  // throws for keys that cannot work
}

namespace {
void check_config(const connection_impl::config& cfg) { check_options(cfg.opts); }
}  // namespace

void connection_impl::open_async(config cfg, base::unique_fd in, base::unique_fd out,
                                 open_callback done) {
  start_async(std::move(cfg), std::move(in), std::move(out), std::move(done));
}

std::shared_ptr<connection_impl> connection_impl::start_async(config cfg, base::unique_fd in,
                                                              base::unique_fd out,
                                                              open_callback done) {
  check_config(cfg);
  auto c = std::make_shared<connection_impl>(std::move(cfg));
  c->self_ = c;
  c->opened_ = std::move(done);
  c->holding_ = c->cfg_.hold_requests;
  auto in_fd = std::make_shared<base::unique_fd>(std::move(in));
  auto out_fd = std::make_shared<base::unique_fd>(std::move(out));
  c->cfg_.loop->post([c, in_fd, out_fd] { c->start(std::move(*in_fd), std::move(*out_fd)); });
  return c;
}

std::shared_ptr<connection_impl> connection_impl::open(config cfg, base::unique_fd in,
                                                       base::unique_fd out) {
  struct outcome {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    std::shared_ptr<connection_impl> conn;
    std::exception_ptr error;
  };
  auto o = std::make_shared<outcome>();
  auto c = start_async(std::move(cfg), std::move(in), std::move(out),
             [o](std::shared_ptr<connection_impl> c, std::exception_ptr e) {
               std::lock_guard lock(o->mu);
               o->conn = std::move(c);
               o->error = std::move(e);
               o->done = true;
               o->cv.notify_all();
             });
  std::unique_lock lock(o->mu);
  o->cv.wait(lock, [&] { return o->done; });
  if (o->error) {
    auto error = std::move(o->error);  // this thread is its only owner now
    lock.unlock();
    // What the failure still sends (a key-mode refusal's decoy, a goaway saying why)
    // goes out before the caller hears of it: a process that exits on this error (a
    // child serving stdio) would otherwise cut it off. Bounded by close_drain_timeout.
    std::unique_lock wait(c->mu_);
    c->closed_cv_.wait(wait, [&] { return c->stream_dropped_; });
    wait.unlock();
    std::rethrow_exception(std::move(error));
  }
  return std::move(o->conn);
}

void connection_impl::release_requests() {
  cfg_.loop->post([self = shared_from_this()] {
    self->holding_ = false;
    std::vector<queued_call> held;
    {
      std::lock_guard lock(self->mu_);
      held = self->inbound_.take_held();  // counted as running until dispatched
    }
    for (auto& h : held) {
      {
        std::lock_guard lock(self->mu_);
        self->inbound_.dispatching_held();
      }
      self->dispatch_message(std::move(h));
    }
  });
}

void connection_impl::go_away(std::string text) {
  cfg_.loop->post([self = shared_from_this(), text = std::move(text)] { self->start_goaway(text); });
}

void connection_impl::start_goaway(const std::string& text) {
  {
    std::unique_lock lock(mu_);
    if (phase_ != phase::open || !life_.start_goaway(last_peer_request_, text)) return;
    std::string record;
    wire::append_frame(record, wire::frame_type::goaway, 0, last_peer_request_,
                       wire::encode_code_payload(std::uint16_t(error_code::shutting_down), text));
    queue_record_locked(lock, record);
    if (room_waiters_) room_cv_.notify_all();
  }
  close_if_drained();
}

// Loop thread: sends our preamble and hello at once, then reads.
void connection_impl::start(base::unique_fd in, base::unique_fd out) {
  try {
    stream_ = io::duplex_stream::create(cfg_.loop, std::move(in), std::move(out), this);
  } catch (const std::exception& e) {
    {
      std::lock_guard lock(mu_);
      stream_dropped_ = true;
    }
    return finish(end_kind::transport, std::string("cannot use the file descriptors: ") + e.what());
  }
  std::string hello = wire::encode_preamble(cfg_.local);
  {
    std::lock_guard lock(mu_);
    direct_stream_ = stream_;  // callers may write to it from here on
    if (key_) {
      raw_pending_ = hello;  // key mode: the settings travel in the handshake (§9.6)
    } else {
      hello_nonce_ = new_hello_nonce();  // must not come back (§6.1)
      wire::append_frame(hello, wire::frame_type::hello, 0, 0, settings_payload());
      outbox_.push_record_bytes(hello);
    }
  }
  auto weak = weak_from_this();
  handshake_timer_ = cfg_.loop->add_timer(
      io::clock::now() + cfg_.opts.connect_timeout, [this, weak] {
        if (auto self = weak.lock())
          finish(end_kind::transport,
                 "timed out after " + std::to_string(cfg_.opts.connect_timeout.count()) +
                     " ms waiting for " + handshake_awaited());
      });
  stream_->start_reading();
  flush();
}

void connection_impl::close() {  // abrupt (connection::abort)
  cfg_.loop->post([self = shared_from_this()] {
    self->finish(end_kind::clean, "closed by this side");
  });
}

bool connection_impl::closed() const {
  std::lock_guard lock(mu_);
  return phase_ == phase::closed;
}

void connection_impl::wait_closed() const {
  std::unique_lock lock(mu_);
  // Also until the stream has stopped: our close frame is then written (or the link
  // failed), so a process may exit right after without the peer seeing it as lost.
  closed_cv_.wait(lock, [&] { return close_handler_done_ && stream_dropped_; });
  lock.unlock();
  if (cfg_.process) cfg_.process->wait_reaped();
}

std::string connection_impl::close_reason() const {
  std::lock_guard lock(mu_);
  return life_.reason();
}

std::exception_ptr connection_impl::failure() const {
  std::lock_guard lock(mu_);
  if (phase_ != phase::closed || !life_.failed()) return nullptr;
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
    if (phase_ == phase::closed) return;
  }
  if (child_wait_) return;  // a failure is waiting for the child: it is the one reported
  // A child that broke the connection is usually dying: say how it ended. A lost
  // transport waits for that (wait_for_child), and the child's end, usually the
  // cause, comes first; a protocol failure says what is known.
  if (cfg_.process && kind == end_kind::transport && !child_noted_)
    return wait_for_child(kind, std::move(reason), farewell);
  if (cfg_.process && kind == end_kind::protocol && !child_noted_)
    reason += " (" + cfg_.process->end_note() + ")";
  {
    std::unique_lock lock(mu_);
    if (phase_ == phase::closed) return;
    // A caller's thread writing its request directly finishes first, so each pending
    // call knows whether any of it was written (a non-blocking write: brief).
    closed_cv_.wait(lock, [&] { return !direct_writing_; });
    was_handshaking = phase_ == phase::handshaking;
    phase_ = phase::closed;
    finished_ = true;
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
  // Partial messages will never complete: their memory and budget go now.
  frames_.drop_messages(cfg_.opts.max_message_size, wire::max_partial_messages);
  sync_partial_charge();
  for (auto& pc : pending) {
    const std::uint32_t id = pc.id;
    std::unique_lock lock(mu_);
    // One each: waiters on other threads own them.
    bool unread = peer_reset_ && cfg_.peer_credentials && id == last_written_request_;
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

  // Say goodbye when the transport still works, and drop the link once that is written
  // (on_write_done), or after close_drain_timeout if the peer does not read.
  if (stream_) {
    std::unique_lock lock(mu_);
    // Unsent calls were failed above, so their requests go; the batch in flight owns its
    // bytes. After a goaway drained the connection, only answers are queued: they stay.
    if (kind != end_kind::drained) outbox_ = rpc::outbox();
    // Key mode before the ciphers exist: no plaintext frames for a key-mode peer (a
    // refusal's decoy, in raw_pending_, still goes out). A refused preamble: no frame
    // at all (§2.3).
    bool can_frame = (!key_ || key_->ready()) && !silent_end_;
    if (kind != end_kind::transport && kind != end_kind::unresponsive && can_frame) {
      std::string rec(farewell);
      wire::append_frame(rec, wire::frame_type::close, 0, 0, {});
      outbox_.push_record_bytes(rec);
      close_sent_ = true;
    }
    bool idle = !writing_;
    bool nothing_to_say = idle && outbox_.empty() && raw_pending_.empty();
    lock.unlock();
    if (kind == end_kind::transport || kind == end_kind::unresponsive || nothing_to_say) {
      drop_stream();
    } else {
      if (idle) flush();
      auto weak = weak_from_this();
      cfg_.loop->add_timer(io::clock::now() + close_drain_timeout, [weak] {
        if (auto self = weak.lock(); self && self->stream_) self->drop_stream();
      });
    }
  }
  auto self = shared_from_this();
  if (was_handshaking) {
    // Opening failed: nobody saw this connection, so there is no close handler.
    std::exception_ptr error;
    {
      std::lock_guard lock(mu_);
      error = closed_error_locked();
      close_handler_done_ = true;
      closed_cv_.notify_all();
    }
    if (auto done = std::move(opened_)) done(nullptr, std::move(error));
    std::lock_guard lock(mu_);
    release_self_locked();
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
  child_wait_ = child_wait{kind, std::move(reason), std::string(farewell)};
  if (stream_) {
    stream_->stop_reading();
    reading_paused_ = false;  // so backpressure does not start reading again
    std::lock_guard lock(mu_);
    budget_paused_ = false;   // nor the receive budget
  }
  auto weak = weak_from_this();
  child_wait_timer_ = cfg_.loop->add_timer(io::clock::now() + child_end_wait, [weak] {
    if (auto self = weak.lock()) {
      self->child_wait_timer_ = 0;
      self->finish_after_child();
    }
  });
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
  if (!child_wait_) return;
  child_wait w = std::move(*child_wait_);
  child_wait_.reset();
  if (child_wait_timer_) cfg_.loop->cancel_timer(child_wait_timer_);
  child_wait_timer_ = 0;
  child_noted_ = true;
  finish(w.kind, cfg_.process->end_note() + "; " + w.reason, w.farewell);
}

std::exception_ptr connection_impl::not_sent_error_locked() const {
  // Ends that are not a transport's keep their own error type.
  if (life_.keeps_own_error()) return closed_error_locked();
  return error_ptr<not_sent_error>(closed_text_locked());
}

void connection_impl::run_close_handler() {
  if (cfg_.opts.on_close) {
    connection handle(shared_from_this());
    // A close handler has nobody to answer to: what it throws is reported.
    guard_callback(cfg_.opts.on_callback_error, "on_close", [&] { cfg_.opts.on_close(handle); });
  }
  auto keep = shared_from_this();  // the last reference may go below, not under the lock
  std::lock_guard lock(mu_);
  close_handler_done_ = true;
  closed_cv_.notify_all();
  release_self_locked();
}

// Loop thread, closed, our last frames written: drops the link, unless we said close
// and the peer has not ended yet: then our output ends (the peer reads end of stream)
// and we keep reading, discarding, until its close or end of stream (PROTOCOL.md §8.5),
// at most until the drain timer set by finish(). Closing a socket with the peer's
// frames unread would reset it, and the peer's own close would fail to go out.
void connection_impl::end_output() {
  if (!stream_) return;
  if (!close_sent_ || peer_done_) return drop_stream();
  if (output_ended_) return;
  output_ended_ = true;
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
// to this object, which is why self_ is kept until both this and the close handler are done.
void connection_impl::drop_stream() {
  {
    std::lock_guard lock(mu_);
    direct_stream_.reset();  // a writer mid-write has its own reference; close() waits
  }
  stream_->close();
  stream_.reset();
  if (cfg_.process) cfg_.process->release();
  auto keep = shared_from_this();
  std::lock_guard lock(mu_);
  stream_dropped_ = true;
  closed_cv_.notify_all();
  release_self_locked();
}

void connection_impl::release_self_locked() {
  if (close_handler_done_ && stream_dropped_) self_.reset();
}

}  // namespace bokbok::detail
