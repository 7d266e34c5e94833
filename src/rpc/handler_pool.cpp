#include "rpc/handler_pool.hpp"

#include <pthread.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>

namespace bokbok::rpc {

// Counts, all guarded by `mu`: threads = idle + running + blocked (a thread counts as
// idle from the moment it is spawned). A task may start only while running < max_threads.
struct handler_pool::state {
  limits lim;
  mutable std::mutex mu;
  std::condition_variable work;
  std::deque<std::function<void()>> queue;
  unsigned threads = 0;
  unsigned idle = 0;
  unsigned running = 0;
  unsigned blocked = 0;
  bool stopping = false;

  // With `mu` held: makes sure someone will pick up queued work that may start now.
  // Empty, or why no thread could be started (the work then waits for a thread that
  // is running or blocked to come back for it, if there is one).
  std::string wake_or_spawn(const std::shared_ptr<state>& self) {
    if (queue.empty() || running >= lim.max_threads) return {};
    if (idle > 0) {
      work.notify_one();
      return {};
    }
    ++threads;
    ++idle;
    try {
      std::thread([self] { self->run(self); }).detach();
    } catch (const std::system_error& e) {
      --threads;
      --idle;
      return std::string("cannot start a handler thread: ") + e.what();
    }
    return {};
  }

  void run(std::shared_ptr<state> self);
};

namespace {
// The pool whose thread this is, so a blocking_scope can find it.
thread_local std::shared_ptr<handler_pool::state>* current_pool = nullptr;
}  // namespace

void handler_pool::state::run(std::shared_ptr<state> self) {
  pthread_setname_np(pthread_self(), "bokbok-handler");
  current_pool = &self;
  std::unique_lock lock(mu);
  for (;;) {
    bool ready = work.wait_for(lock, lim.idle_timeout, [&] {
      return (!queue.empty() && running < lim.max_threads) || (stopping && queue.empty());
    });
    if (!ready || queue.empty()) break;  // idle too long, or stopping with nothing left
    auto task = std::move(queue.front());
    queue.pop_front();
    --idle;
    ++running;
    wake_or_spawn(self);
    lock.unlock();
    task();
    task = nullptr;  // destroy the captures outside the lock
    lock.lock();
    --running;
    ++idle;
    wake_or_spawn(self);
  }
  --idle;
  --threads;
  current_pool = nullptr;
  lock.unlock();
}

handler_pool::handler_pool(limits l) : state_(std::make_shared<state>()) {
  if (l.max_threads == 0) l.max_threads = 1;
  state_->lim = l;
}

handler_pool::~handler_pool() {
  std::lock_guard lock(state_->mu);
  state_->stopping = true;
  state_->work.notify_all();
}

bool handler_pool::submit(std::function<void()> task, std::string* why) {
  return submit_queued(std::move(task), why, false);
}

bool handler_pool::submit_beyond_queue_limit(std::function<void()> task, std::string* why) {
  return submit_queued(std::move(task), why, true);
}

bool handler_pool::submit_queued(std::function<void()> task, std::string* why, bool no_limit) {
  std::function<void()> refused;  // destroyed after the lock is released
  std::lock_guard lock(state_->mu);
  if (!no_limit && state_->queue.size() >= state_->lim.max_queued) {
    if (why) *why = "too many requests waiting for a handler";
    refused = std::move(task);
    return false;
  }
  state_->queue.push_back(std::move(task));
  std::string failed = state_->wake_or_spawn(state_);
  if (failed.empty() || state_->threads > 0) return true;  // a thread will get to it
  // No thread at all, and none could be started: nobody would ever run it.
  refused = std::move(state_->queue.back());
  state_->queue.pop_back();
  if (why) *why = std::move(failed);
  return false;
}

unsigned handler_pool::threads() const {
  std::lock_guard lock(state_->mu);
  return state_->threads;
}

handler_pool::blocking_scope::blocking_scope() : state_(current_pool) {
  if (!current_pool) return;
  // Give up the running slot while waiting, so queued work (perhaps the very callback
  // this thread waits for) can start.
  auto& s = **current_pool;
  std::lock_guard lock(s.mu);
  --s.running;
  ++s.blocked;
  s.wake_or_spawn(*current_pool);
}

handler_pool::blocking_scope::~blocking_scope() {
  if (!state_) return;
  auto& s = **static_cast<std::shared_ptr<state>*>(state_);
  std::lock_guard lock(s.mu);
  --s.blocked;
  ++s.running;  // may pass max_threads briefly; no new task starts until it drops
}

}  // namespace bokbok::rpc
