// handler_pool: the bounded set of threads that run request and close handlers.
//
// At most `max_threads` threads run tasks at once; threads start on demand and leave
// after `idle_timeout` without work. New work goes to the thread that went idle last, so
// after a burst, steady light traffic keeps a few threads and lets the rest leave. A handler that blocks in a nested request() on a
// pool thread (a callback to the peer) is not counted while it waits (see
// blocking_scope), so chains of nested callbacks deeper than max_threads still make
// progress instead of deadlocking; the count of *running* handlers stays bounded.
//
// Threads: every member is thread-safe. Lifetime: shared; the threads keep the pool's
// state alive, so the last reference may be dropped anywhere, even on a pool thread.
// Dropping it lets queued tasks finish, then the threads leave.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "rpc/pool_task.hpp"

namespace bokbok::rpc {

class handler_pool {
 public:
  struct state;  // handler_pool.cpp

  struct limits {
    unsigned max_threads = 16;
    std::size_t max_queued = 4096;  // tasks waiting for a thread beyond this are refused
    std::chrono::milliseconds idle_timeout{5'000};
    // Threads that may wait in nested calls (blocking_scope) at once; 0: 8 x max_threads.
    // Each waiting thread gives its running slot back, so without this bound chains and
    // floods of callbacks would grow the process without limit.
    unsigned max_blocked = 0;
  };
  explicit handler_pool(limits l);
  ~handler_pool();
  handler_pool(const handler_pool&) = delete;
  handler_pool& operator=(const handler_pool&) = delete;

  // Queues `task`; false (and the task is dropped) when the queue is full, or when no
  // thread runs and none can be started (RLIMIT_NPROC, pids.max, memory). Then `why`,
  // if given, says which.
  bool submit(pool_task task, std::string* why = nullptr);
  // The same, but never refused for a full queue (a connection's close handler: once
  // per connection, so bounded by them); refused only when no thread can run it.
  bool submit_beyond_queue_limit(pool_task task, std::string* why = nullptr);
  // Queues `task` only when it can start at once: nothing waits in the queue and a
  // running slot is free (an idle thread, or one can be started). False, and the task
  // dropped, otherwise: the caller does the work itself rather than wait behind
  // handlers (a server's login answers, connection_keys.cpp).
  bool submit_if_free(pool_task task);

  // Threads alive now (running or idle); for tests and diagnostics.
  unsigned threads() const;
  // Threads waiting for work now (idle, asleep); for tests and diagnostics.
  unsigned waiting_threads() const;

  // Marks the current thread as blocked waiting (a nested call) for its lifetime, when
  // the current thread is a pool thread; does nothing on other threads. When max_blocked
  // threads of its pool wait already, or when this is the last thread free to run new
  // work and no thread can be started to stand in for it (RLIMIT_NPROC), it marks nothing
  // and refused() says so: the caller must not wait (a nested call fails busy).
  // limit() then is the number of threads waiting. So while any thread waits, one at
  // least stays free (it does not leave at idle_timeout either), and queued work never
  // waits on threads that may wait forever.
  class blocking_scope {
   public:
    blocking_scope();
    bool refused() const noexcept { return refused_; }
    unsigned limit() const noexcept { return limit_; }
    ~blocking_scope();
    blocking_scope(const blocking_scope&) = delete;
    blocking_scope& operator=(const blocking_scope&) = delete;

   private:
    void* state_;
    bool refused_ = false;
    unsigned limit_ = 0;
  };

  // Holds back, on the calling thread and for its lifetime, the wake-up that submit()
  // gives a thread of `pool` for the tasks it queues; one wake-up follows at its end, and
  // the woken thread wakes the next while tasks remain, as after any submit. The event
  // loop holds one over each read, so that it queues every request of the read first:
  // woken at the first, a handler thread would run at once on a shared CPU, before the
  // loop had queued the second, two context switches per request. A task is never left
  // without a thread: while none is alive, submit() starts one at once, as it does
  // outside a batch. Nested batches on one thread: the outermost wakes. Not movable;
  // `pool` must outlive it.
  class wake_batch {
   public:
    explicit wake_batch(handler_pool& pool);
    ~wake_batch();
    wake_batch(const wake_batch&) = delete;
    wake_batch& operator=(const wake_batch&) = delete;

   private:
    friend class handler_pool;
    state* state_ = nullptr;  // null: a nested batch of the same pool (no-op)
    wake_batch* outer_;             // this thread's enclosing batch, restored at the end
    bool pending_ = false;          // a task was queued without its wake-up
  };

 private:
  bool submit_queued(pool_task task, std::string* why, bool no_limit, bool only_free = false);
  std::shared_ptr<state> state_;
};

}  // namespace bokbok::rpc
