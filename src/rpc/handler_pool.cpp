#include "rpc/handler_pool.hpp"

#include <pthread.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "base/parking.hpp"

namespace bokbok::rpc {

// Counts, all guarded by `mu`: threads = idle + running + blocked (a thread counts as
// idle from the moment it is spawned). A task may start only while running < max_threads.
//
// Idle threads wait each on a slot of their own, kept in a stack: new work wakes the one
// that went idle last. So under light traffic the same few threads take every task and
// the others reach idle_timeout and leave (a shared condition variable would wake them
// in turn, each often enough never to time out).
//
// One thread at most is on its way to the queue (`waking`: woken or spawned, not yet
// looked at the queue): a burst of tasks wakes one thread, which wakes the next as it
// takes a task, and so on while tasks remain (a chain). Waking one thread per task
// instead had the submitting thread (the event loop, handling a read of 16 requests)
// preempted by each thread it woke, on a busy CPU, before it had queued the rest. The
// chain costs no task a thread: each thread wakes the next before it runs its task.
//
// An idle thread sleeps on its slot's parking word (base/parking.hpp), without `mu`:
// woken from a condition variable it would get `mu` back marked contended, and its next
// unlock (before running the task) would make a system call for nobody. A waker unparks
// after releasing `mu` where it can (submit, a thread taking a task), so the woken
// thread does not wake only to sleep again on `mu`; each thread's slot is shared with
// whoever is about to unpark it, so a late unpark never finds it gone (a late one may
// wake it spuriously: it waits for its own `signalled`).
struct handler_pool::state : std::enable_shared_from_this<handler_pool::state> {
  struct waiter {
    base::parking park;
    bool woken = false;  // guarded by mu: taken off `waiters` for new work
    // Set with `woken` or `stopping` (under mu), read by the sleeping thread without it.
    std::atomic<bool> signalled{false};
    void signal() {
      signalled.store(true, std::memory_order_seq_cst);
    }
  };
  // Unparks `w` when it goes out of scope: declared before a lock, after its release.
  struct wake_after_unlock {
    std::shared_ptr<waiter> w;
    void now() {
      if (w) w->park.unpark();
      w.reset();
    }
    ~wake_after_unlock() { now(); }
  };

  limits lim;
  mutable std::mutex mu;
  std::vector<std::shared_ptr<waiter>> waiters;  // idle threads waiting, the most recent last
  std::deque<pool_task> queue;
  unsigned threads = 0;
  unsigned idle = 0;
  unsigned running = 0;
  unsigned blocked = 0;
  unsigned waking = 0;  // threads woken or spawned for work, not yet at the queue
  bool stopping = false;

  // With `mu` held: makes sure someone will pick up queued work that may start now.
  // Empty, or why no thread could be started (the work then waits for a thread that
  // is running or blocked to come back for it, if there is one). An idle thread not yet
  // waiting (just spawned, or just done with a task) looks at the queue before it waits.
  // `later`: the thread woken is notified by it, after `mu` is released; null: now.
  std::string wake_or_spawn(wake_after_unlock* later = nullptr) {
    if (queue.empty() || running >= lim.max_threads) return {};
    if (waking > 0) return {};  // it will look at the queue, and wake the next
    if (idle > 0) {
      if (!waiters.empty()) {
        std::shared_ptr<waiter> w = std::move(waiters.back());
        waiters.pop_back();
        w->woken = true;
        w->signal();
        ++waking;
        if (later)
          later->w = std::move(w);
        else
          w->park.unpark();
      }
      return {};
    }
    return spawn();
  }

  // With `mu` held: starts one more thread, idle until it finds work. Empty, or why it
  // could not be started.
  std::string spawn() {
    ++threads;
    ++idle;
    ++waking;
    try {
      std::thread([self = shared_from_this()] { self->run(self); }).detach();
    } catch (const std::system_error& e) {
      --threads;
      --idle;
      --waking;
      return std::string("cannot start a handler thread: ") + e.what();
    }
    return {};
  }

  // With `mu` held: whether the calling thread, idle, is the last one free to run work
  // while others wait in nested calls; it must stay (see blocking_scope).
  bool last_free_thread() const { return blocked > 0 && idle + running == 1 && !stopping; }

  // With `mu` held (released while it sleeps): waits on a slot of its own until woken
  // for work, stopping, or idle_timeout; false when it timed out unwoken.
  // `w` is the calling thread's own slot.
  bool wait_idle(std::unique_lock<std::mutex>& lock, const std::shared_ptr<waiter>& w) {
    w->woken = false;
    w->signalled.store(false, std::memory_order_relaxed);
    waiters.push_back(w);
    lock.unlock();
    w->park.park_until_for([&] { return w->signalled.load(std::memory_order_seq_cst); },
                           lim.idle_timeout);
    lock.lock();
    const bool woken = w->woken || stopping;  // a wake after the timeout still counts
    if (!w->woken) std::erase(waiters, w);
    return woken;
  }

  void run(std::shared_ptr<state> self);
};

namespace {
// The pool whose thread this is, so a blocking_scope can find it.
thread_local std::shared_ptr<handler_pool::state>* current_pool = nullptr;
// This thread's innermost wake_batch, or null.
thread_local handler_pool::wake_batch* current_batch = nullptr;
}  // namespace

void handler_pool::state::run(std::shared_ptr<state> self) {
  pthread_setname_np(pthread_self(), "bokbok-handler");
  current_pool = &self;
  auto me = std::make_shared<waiter>();
  wake_after_unlock wake;
  std::unique_lock lock(mu);
  bool on_way = true;  // spawned: counted in `waking`
  for (;;) {
    if (on_way) {
      --waking;
      on_way = false;
    }
    if (queue.empty() || running >= lim.max_threads) {
      if (stopping && queue.empty()) break;
      const bool woken = wait_idle(lock, me);
      on_way = me->woken;  // woken for work: counted in `waking` by its waker
      if (!woken && (queue.empty() || running >= lim.max_threads) && !last_free_thread())
        break;  // idle too long (not woken: not counted in `waking`)
      continue;
    }
    auto task = std::move(queue.front());
    queue.pop_front();
    --idle;
    ++running;
    wake_or_spawn(&wake);
    lock.unlock();
    wake.now();
    task();
    task = nullptr;  // destroy the captures outside the lock
    lock.lock();
    --running;
    ++idle;
    wake_or_spawn();
  }
  --idle;
  --threads;
  current_pool = nullptr;
  lock.unlock();
}

handler_pool::handler_pool(limits l) : state_(std::make_shared<state>()) {
  if (l.max_threads == 0) l.max_threads = 1;
  if (l.max_blocked == 0) l.max_blocked = 8 * l.max_threads;
  state_->lim = l;
}

handler_pool::~handler_pool() {
  std::lock_guard lock(state_->mu);
  state_->stopping = true;
  for (auto& w : state_->waiters) {
    w->signal();
    w->park.unpark();
  }
}

bool handler_pool::submit(pool_task task, std::string* why) {
  return submit_queued(std::move(task), why, false);
}

bool handler_pool::submit_beyond_queue_limit(pool_task task, std::string* why) {
  return submit_queued(std::move(task), why, true);
}

bool handler_pool::submit_if_free(pool_task task) {
  return submit_queued(std::move(task), nullptr, false, true);
}

bool handler_pool::submit_queued(pool_task task, std::string* why, bool no_limit, bool only_free) {
  pool_task refused;  // destroyed after the lock is released
  state::wake_after_unlock wake;  // likewise: the thread woken is notified unlocked
  std::lock_guard lock(state_->mu);
  const bool slot_free = state_->queue.empty() &&
                         state_->running + state_->waking < state_->lim.max_threads;
  if (only_free && !slot_free) {
    refused = std::move(task);
    return false;
  }
  if (!no_limit && state_->queue.size() >= state_->lim.max_queued) {
    if (why) *why = "too many requests waiting for a handler";
    refused = std::move(task);
    return false;
  }
  state_->queue.push_back(std::move(task));
  // In a batch of this pool, a live thread will see the task: woken at the batch's end,
  // or on its own (an idle thread that times out looks at the queue before leaving, a
  // running one when its task is done).
  for (handler_pool::wake_batch* b = current_batch; b; b = b->outer_)
    if (b->state_ == state_.get() && state_->threads > 0) {
      b->pending_ = true;
      return true;
    }
  std::string failed = state_->wake_or_spawn(&wake);
  if (failed.empty() || state_->threads > 0) return true;  // a thread will get to it
  // No thread at all, and none could be started: nobody would ever run it.
  refused = std::move(state_->queue.back());
  state_->queue.pop_back();
  if (why) *why = std::move(failed);
  return false;
}

handler_pool::wake_batch::wake_batch(handler_pool& pool) : outer_(current_batch) {
  for (wake_batch* b = outer_; b; b = b->outer_)
    if (b->state_ == pool.state_.get()) return;  // nested: the outer one wakes
  state_ = pool.state_.get();
  current_batch = this;
}

handler_pool::wake_batch::~wake_batch() {
  if (!state_) return;
  current_batch = outer_;
  if (!pending_) return;
  state::wake_after_unlock wake;  // notified after the lock is released
  std::lock_guard lock(state_->mu);
  state_->wake_or_spawn(&wake);  // a failure: the live threads get to the queue
}

unsigned handler_pool::threads() const {
  std::lock_guard lock(state_->mu);
  return state_->threads;
}

unsigned handler_pool::waiting_threads() const {
  std::lock_guard lock(state_->mu);
  return unsigned(state_->waiters.size());
}

handler_pool::blocking_scope::blocking_scope() : state_(current_pool) {
  if (!current_pool) return;
  // Give up the running slot while waiting, so queued work (perhaps the very callback
  // this thread waits for) can start.
  auto& s = **current_pool;
  std::lock_guard lock(s.mu);
  if (s.blocked >= s.lim.max_blocked) {
    refused_ = true;
    limit_ = s.lim.max_blocked;
    state_ = nullptr;
    return;
  }
  --s.running;
  ++s.blocked;
  s.wake_or_spawn();
  // Some thread must stay free to run new work while this one waits, perhaps forever
  // (a peer that never answers): were every thread waiting and no new one could be
  // started (RLIMIT_NPROC), queued work would wait for them and every caller would hang.
  // So the last free thread starts a stand-in before it waits, or does not wait.
  if (s.idle + s.running == 0 && !s.spawn().empty()) {
    ++s.running;
    --s.blocked;
    refused_ = true;
    limit_ = s.blocked;
    state_ = nullptr;
  }
}

handler_pool::blocking_scope::~blocking_scope() {
  if (!state_) return;
  auto& s = **static_cast<std::shared_ptr<state>*>(state_);
  std::lock_guard lock(s.mu);
  --s.blocked;
  ++s.running;  // may pass max_threads briefly; no new task starts until it drops
}

}  // namespace bokbok::rpc
