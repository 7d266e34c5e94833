// The peer's requests and notifications on this side of a connection: decoding,
// admission (limits: rpc/inbound_calls.hpp), handing them to handlers, running them, and
// the peer's cancels. Threads: dispatch and cancel on the loop thread; handlers on pool
// threads (or the loop thread, inline); the mutex guards inbound_.
#include <string>

#include "rpc/callback_error.hpp"
#include "rpc/connection_impl.hpp"
#include "rpc/error_ptr.hpp"
#include "rpc/fd_scope.hpp"
#include "wire/message_codec.hpp"

namespace bokbok::detail {

// `bytes` views the message where it was received (valid during this call only).
void connection_impl::dispatch_request(std::uint32_t id, std::string_view bytes,
                                       std::optional<std::uint32_t> deadline_ms,
                                       rpc::received_fds fds) {
  // Checked before decoding: millions of empty fields cost far more than their bytes.
  const std::size_t cost = wire::decoded_cost(bytes);
  if (cost > receive_limit_) {
    last_peer_request_ = id;
    return send_error(id, error_code::too_large,
                      "request of " + std::to_string(bytes.size()) + " bytes in " +
                          std::to_string((cost - bytes.size()) / wire::decoded_field_overhead) +
                          " fields would take " + std::to_string(cost) +
                          " bytes decoded, more than the receive budget of " +
                          std::to_string(receive_limit_) + " bytes");
  }
  message m;
  std::string err;
  if (!wire::decode_message(bytes, m, err)) return protocol_failure("bad request: " + err);
  accept_request(id, std::move(m), cost, deadline_ms, std::move(fds));
}

// A decoded request whose decoded cost was checked against the receive budget: charged
// to it, then held (on_open running), queued or started. No call context is made for it
// (see call_context): most handlers never need one.
void connection_impl::accept_request(std::uint32_t id, message m, std::size_t cost,
                                     std::optional<std::uint32_t> deadline_ms,
                                     rpc::received_fds fds, bool stream) {
  last_peer_request_ = id;
  const auto now = io::clock::now();
  live_.active(now);
  queued_call r{id, std::move(m), nullptr, rpc::receive_charge(account_, cost), std::nullopt,
                std::move(fds), nullptr};
  if (deadline_ms) r.deadline = now + std::chrono::milliseconds(*deadline_ms);
  if (stream) r.stream = register_inbound_stream(id, r.deadline);  // connection_streams.cpp
  if (holding_) {
    std::lock_guard lock(mu_);
    inbound_.hold(std::move(r));
    return;
  }
  dispatch_message(std::move(r));
}

// Starts a handler for the peer's request, or queues it under max_concurrent_calls, or
// refuses it (busy) when that queue is full too.
void connection_impl::dispatch_message(queued_call r) {
  const std::uint32_t id = r.id;
  {
    std::unique_lock lock(mu_);
    if (life_.state() != phase::open) return;
    if (life_.refuses_request(id)) {
      // Nothing new starts once a goaway is out either way (PROTOCOL.md §8.4).
      std::string why = life_.goaway_reason();
      lock.unlock();
      return send_error(id, error_code::shutting_down, why);
    }
    std::string why;
    switch (inbound_.admit(r, why)) {
      case rpc::inbound_calls::admission::queued:
        return;
      case rpc::inbound_calls::admission::refused:
        lock.unlock();
        return send_error(id, error_code::busy, why);
      case rpc::inbound_calls::admission::start:
        inbound_.running(id, r.ctx);  // under the same lock: one per request
        break;
    }
  }
  submit_handler(std::move(r));
}

// Any thread: runs (inline) or submits the handler of a request counted as running.
void connection_impl::start_handler(queued_call r) {
  {
    std::lock_guard lock(mu_);
    inbound_.running(r.id, r.ctx);
  }
  submit_handler(std::move(r));
}

// Any thread: start_handler for a request registered as running. The request (with its
// receive charge) moves into the pool's task; a task refused takes it along.
void connection_impl::submit_handler(queued_call r) {
  if (cfg_.opts.inline_handlers) return run_handler(std::move(r));
  const std::uint32_t id = r.id;
  std::string why;
  bool queued = pool_->submit([self = shared_from_this(), r = std::move(r)]() mutable {
    self->handler_started();
    self->run_handler(std::move(r));
  }, &why);
  if (!queued) {
    {
      std::lock_guard lock(mu_);
      inbound_.left_pool_queue();
    }
    // The pool is full, or no thread can be started: this call fails, nothing else.
    send_error(id, error_code::busy, "busy: " + why);
    handler_done(id);
  }
}

void connection_impl::handler_done(std::uint32_t id) {
  std::optional<queued_call> next;
  {
    std::lock_guard lock(mu_);
    inbound_.handler_done(id);
    next = take_startable_locked();
  }
  if (next) start_handler(std::move(*next));
  close_if_drained();
}

void connection_impl::handler_started() {
  std::optional<queued_call> next;
  {
    std::lock_guard lock(mu_);
    inbound_.left_pool_queue();
    next = take_startable_locked();
  }
  if (next) start_handler(std::move(*next));
}

std::optional<connection_impl::queued_call> connection_impl::take_startable_locked() {
  return inbound_.take_startable(life_.state() == phase::open &&
                                 send_.queued_bytes() < cfg_.opts.max_send_queue);
}

void connection_impl::run_handler(queued_call r) {
  connection handle(shared_from_this());
  struct done_guard {
    connection_impl* c;
    std::uint32_t id;
    ~done_guard() { c->handler_done(id); }
  } guard{this, r.id};
  if (defer_while_send_full(r)) return;
  r.charge.release();  // taken by a handler: off the receive budget
  // A context exists only if a cancel (or the close) made one: looked for under the
  // mutex only while some running request of this connection has one.
  if (!r.ctx && inbound_.any_context()) {
    std::lock_guard lock(mu_);
    r.ctx = inbound_.made_context(r.id);
  }
  if (r.ctx && r.ctx->stop.stop_requested()) return;  // cancelled while queued: nobody waits
  const std::uint32_t id = r.id;
  message request = std::move(r.m);
  running_handler running{this, id, r.deadline, std::move(r.ctx), std::move(r.stream)};
  handler_scope scope(&running);  // this_call, and what nested calls inherit
  fd_list attached;  // this_call::attach_fds: sent with the response
  handler_fds hfds{this, r.fds.take(), &attached};
  handler_fds_scope fd_scope(&hfds);  // this_call::take_fds; the rest closed at the end
  if (running.deadline && *running.deadline <= io::clock::now())
    return send_error(id, error_code::deadline_exceeded,
                      "the call's deadline passed before its handler started");
  if (!cfg_.opts.on_request) {
    send_error(id, error_code::no_such_method,
               "no request handler on this side" +
                   (request.empty() ? std::string() : " for \"" + request[0] + "\""));
    return;
  }
  if (running.stream) {
    // A stream call: the requester may send its stream from now on (§12 "Credit").
    running.stream->grant_initial();
    stream_grant(*running.stream, cfg_.opts.stream_window_messages, cfg_.opts.stream_window_bytes);
  }
  // A stream call the handler cancelled was answered then (stream::cancel): its return
  // or exception is dropped.
  auto answered = [&] { return running.stream && running.stream->answered(); };
  try {
    message response = cfg_.opts.on_request(handle, std::move(request));
    if (!answered()) send_response(id, std::move(response), std::move(attached));
  } catch (const call_error& e) {
    if (!answered()) send_error(id, e.code(), e.message());  // whole: what() ends at a NUL
  } catch (const std::exception& e) {
    if (!answered()) send_error(id, error_code::handler_failed, e.what());
  } catch (...) {
    if (!answered()) send_error(id, error_code::handler_failed, "handler threw a non-standard exception");
  }
}

// Any thread, the request counted as running: while the outbox is over max_send_queue
// (the peer does not read its answers), the request goes back to the front of the queue
// instead of running, still charged to the receive budget; start_queued_locked starts it
// once the outbox has room. Checked and queued under one lock with the outbox, so a
// dequeue that makes room always sees it.
bool connection_impl::defer_while_send_full(queued_call& r) {
  // The usual case, room, costs no lock: a stale "room" lets one more handler run
  // (within the bound on the answers of running handlers); "full" is checked again.
  if (send_.queued_bytes() < cfg_.opts.max_send_queue) return false;
  std::lock_guard lock(mu_);
  if (life_.state() != phase::open || send_.queued_bytes() < cfg_.opts.max_send_queue) return false;
  if (!r.ctx) r.ctx = inbound_.made_context(r.id);  // a cancel's, if one came meanwhile
  inbound_.defer(std::move(r));
  return true;
}

// Any thread, mu_ not held: see running_handler::stop_token.
std::shared_ptr<call_context> connection_impl::handler_context(std::uint32_t id) {
  std::lock_guard lock(mu_);
  return inbound_.context_of(id);
}

// Loop thread: the peer cancelled its call `id`. A request still being received is
// skipped, one waiting for a slot is dropped, a running handler's stop token fires.
void connection_impl::handle_cancel(std::uint32_t id) {
  frames_.messages().drop(wire::frame_type::request, id);
  drop_partial_fds(wire::frame_type::request, id);  // the fds its first fragment brought
  std::shared_ptr<call_context> running;
  bool dropped = false;
  {
    std::lock_guard lock(mu_);
    running = inbound_.cancel(id, dropped);
    if (!inbound_streams_.empty()) {  // its handler's reads and writes fail cancelled
      if (auto it = inbound_streams_.find(id); it != inbound_streams_.end()) {
        it->second->end(error_ptr<call_error>(error_code::cancelled, "the caller cancelled the call"));
        inbound_streams_.erase(it);
      }
    }
  }
  if (running) running->stop.request_stop();  // stop callbacks run here, unlocked
  if (dropped) close_if_drained();
}

// Loop thread: a complete notification from the peer.
void connection_impl::dispatch_notify(std::string_view bytes, rpc::received_fds fds) {
  message m;
  std::string err;
  if (!wire::decode_message(bytes, m, err)) return protocol_failure("bad notification: " + err);
  notify_decoded(std::move(m), std::move(fds));
}

// Loop thread: a complete, decoded notification from the peer.
void connection_impl::notify_decoded(message m, rpc::received_fds fds) {
  if (!cfg_.opts.on_notify) return;
  {
    std::lock_guard lock(mu_);
    if (life_.state() != phase::open) return;
    inbound_.notification_started();  // a graceful close waits for it like for a request
  }
  auto run = [self = shared_from_this(), m = std::move(m), fds = std::move(fds)]() mutable {
    connection handle(self);
    handler_fds hfds{self.get(), fds.take(), nullptr};  // this_call::take_fds
    handler_fds_scope fd_scope(&hfds);
    // A notification has nobody to answer: what the handler throws is reported.
    guard_callback(self->cfg_.opts.on_callback_error, "on_notify",
                   [&] { self->cfg_.opts.on_notify(handle, std::move(m)); });
    self->handler_done(0);
  };
  if (cfg_.opts.inline_handlers) return run();
  if (!pool_->submit(std::move(run))) handler_done(0);  // dropped: the pool is full
}

}  // namespace bokbok::detail
