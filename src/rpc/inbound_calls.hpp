// inbound_calls: the peer's requests on this side of one connection (the responder's
// half of PROTOCOL.md §8.2), from arrival until their handler ends: held while the
// server's open handler runs, waiting for a slot, handed to a handler, running.
//
// Limits. Under options::max_concurrent_calls (`cap`, 0: none) at most that many run at
// once. Whatever the cap, at most `pool_share` of this connection's requests wait in the
// handler pool's shared queue not yet taken by a pool thread; the rest wait here, up to
// options::max_queued_calls, and a request past that is refused (busy). So one connection
// pipelining requests cannot fill the pool's queue ahead of every other connection's
// calls (each gets a place in line per request it has waiting, round robin in effect).
// Inline handlers never wait in the pool. Handlers that wait in nested calls still count
// as running but not as waiting in the pool, so callback chains deeper than the share
// make progress.
//
// What it decides and what the connection does. This part keeps the state and makes the
// decisions (admit, take_startable); the connection acts on them (starts handlers,
// sends refusals) after releasing its lock.
//
// Threads: not synchronised; the connection guards it with its mutex. Every member is
// called with that mutex held, from any thread (the loop thread admits, pool threads
// end handlers).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "base/lazy_deque.hpp"
#include "bokbok/connection.hpp"
#include "io/loop.hpp"
#include "rpc/fd_queue.hpp"
#include "rpc/receive_budget.hpp"

namespace bokbok::detail {
// A running handler's stop state (bokbok::this_call::stop_token), made only when needed:
// a cancel for its call came, the handler asked for its token (or made a nested call,
// which inherits it), or the connection closed under it. Most calls never have one.
struct call_context {
  std::stop_source stop;
};
}  // namespace bokbok::detail

namespace bokbok::rpc {

// A peer request not yet running: held, or waiting for a slot, or on its way to a handler.
struct inbound_request {
  std::uint32_t id = 0;
  message m;
  std::shared_ptr<detail::call_context> ctx;  // usually null (see call_context)
  // Its decoded cost, charged to the connection's receive budget from arrival until its
  // handler starts (or it is dropped unhandled: then with the request).
  receive_charge charge;
  std::optional<io::clock::time_point> deadline;  // from its DEADLINE prefix (§8.2)
  received_fds fds;  // those that came with it (PROTOCOL.md §13), closed if not taken
  std::shared_ptr<detail::stream_state> stream;   // a stream call's (§12), else null
};

class inbound_calls {
 public:
  struct limits {
    unsigned max_concurrent = 0;    // options::max_concurrent_calls, 0: no cap
    std::size_t max_queued = 0;     // options::max_queued_calls
    unsigned pool_share = 1;        // at most this many waiting in the pool (≥ 1)
    bool inline_handlers = false;   // handlers run on the loop thread: no pool wait
  };
  explicit inbound_calls(limits l);

  enum class admission { start, queued, refused };
  // A new request `r`: start (counted as started, `r` left to the caller to start),
  // queued (moved from), or refused (`why` says what is full; `r` left to the caller).
  admission admit(inbound_request& r, std::string& why);
  // The next queued request, counted as started, if one may start now; `may_start`: the
  // connection is open and its send queue has room for an answer.
  std::optional<inbound_request> take_startable(bool may_start);
  // Whether one more request may start now (see Limits).
  bool room_for_handler() const;

  // A request counted as started runs under `id` from now (cancel finds it); `ctx` may
  // be null (made later, if ever: context_of).
  void running(std::uint32_t id, std::shared_ptr<detail::call_context> ctx);
  // The running request `id`'s context, made now if it has none (a fresh one, never
  // stopped, if `id` is not running).
  std::shared_ptr<detail::call_context> context_of(std::uint32_t id);
  // Its context if one was made, else null.
  std::shared_ptr<detail::call_context> made_context(std::uint32_t id) const;
  // Whether any running request has a context: when not, a handler starting need not
  // look for one. Read without the connection's mutex (a cancel racing with the start
  // is seen by the handler's later context_of instead).
  bool any_context() const noexcept { return with_context_.load(std::memory_order_acquire) != 0; }
  // A pool thread took a request: one fewer waits in the pool.
  void left_pool_queue() { --in_pool_queue_; }
  // A handler (id 0: a notification's) ended, or a started request was dropped.
  void handler_done(std::uint32_t id);
  // A notification's handler counts as running (a graceful close waits for it).
  void notification_started() { ++running_handlers_; }
  // A started request goes back to the front of the queue (its answer would not fit the
  // send queue); it counts as running until its handler_done.
  void defer(inbound_request r) { queued_.push_front(std::move(r)); }

  // The peer cancelled `id`: its running context (made now if it had none; null if `id`
  // is not running), and whether it was dropped from the queue.
  std::shared_ptr<detail::call_context> cancel(std::uint32_t id, bool& dropped);

  // Held requests (the server's open handler runs first).
  void hold(inbound_request r) { held_.push_back(std::move(r)); }
  // Released: each counts as running (the connection is not drained) until
  // dispatching_held() for it, right before it is admitted.
  std::vector<inbound_request> take_held();
  void dispatching_held() { --running_handlers_; }

  // The connection closed: the queued requests, dropped, and the running ones' contexts
  // (to tell them to stop; made now for those that had none).
  std::deque<inbound_request> take_queued();
  std::vector<std::shared_ptr<detail::call_context>> running_contexts();

  // Nothing held, queued or running.
  bool idle() const { return running_handlers_ == 0 && held_.empty() && queued_.empty(); }
  unsigned running_count() const { return running_handlers_; }
  unsigned in_pool_queue() const { return in_pool_queue_; }
  std::size_t queued_count() const { return queued_.size(); }

 private:
  void count_started() {
    ++running_handlers_;
    if (!limits_.inline_handlers) ++in_pool_queue_;
  }

  struct running_call {
    std::uint32_t id;
    std::shared_ptr<detail::call_context> ctx;
  };
  running_call* find_running(std::uint32_t id);
  std::shared_ptr<detail::call_context>& make_context(running_call& r);

  limits limits_;
  // Few (bounded by the running handlers): a vector, searched, with no node per call.
  std::vector<running_call> running_;
  std::atomic<unsigned> with_context_{0};  // entries of running_ with a context
  base::lazy_deque<inbound_request> queued_;  // none made while nothing waits
  std::vector<inbound_request> held_;
  unsigned running_handlers_ = 0;  // requests started (and notifications) not yet ended
  unsigned in_pool_queue_ = 0;     // of those, submitted to the pool and not yet taken
};

}  // namespace bokbok::rpc
