// reactor: THE event loop, one class over either backend (io/loop_backend.hpp). It owns
// the run loop, the queue of posted functions with its wake-up eventfd, the timers, the
// identity of the loop thread, the stop flag, and the dispatch of completions; the
// backend only submits, cancels, forgets and waits.
//
// One turn of run(): wait in the backend (not at all when posts of the loop thread are
// pending, else until the nearest timer, else without limit), call every completion it
// handed back (an -EPIPE result first consumes the SIGPIPE a pipe write queued), then,
// if the wake-up fired, the posted functions, then the timers that are due, then what
// the loop thread posted meanwhile. A timer is run on the turn its deadline passes even
// while completions keep arriving.
//
// Threads: post() and request_stop() from any thread; in_loop_thread() from any thread;
// everything else on the loop thread only (run() makes the thread calling it the loop
// thread). The backend is touched by the loop thread only.
//
// Post/wake contract: post() pushes under a mutex and writes the eventfd only when no
// wake-up is pending; the backend consumes the eventfd, then run_posted() clears the flag
// and drains, so a burst of posts from other threads costs one eventfd write. Posts from
// the loop thread never write it: the next wait does not block while they are pending.
//
// The queue, flag and eventfd live in a channel that post() holds a reference to for
// the whole call: the function it posts may drop the last reference to the loop and the
// loop may be destroyed before post() returns, without post() touching freed memory or
// writing to a recycled fd number.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "base/unique_fd.hpp"
#include "io/loop.hpp"
#include "io/loop_backend.hpp"
#include "io/timer_queue.hpp"

namespace bokbok::io {

class reactor final : public loop {
 public:
  // Creates the wake-up eventfd with the flags `backend` asks for. Throws
  // std::system_error.
  explicit reactor(std::unique_ptr<loop_backend> backend);
  ~reactor() override;
  reactor(const reactor&) = delete;
  reactor& operator=(const reactor&) = delete;

  const char* backend_name() const noexcept override { return backend_->name(); }
  void post(std::function<void()> fn) override;
  bool in_loop_thread() const noexcept override {
    return loop_thread_.load(std::memory_order_relaxed) == std::this_thread::get_id();
  }
  void submit_read(int fd, void* buf, std::size_t len, completion* c) override {
    backend_->submit_read(fd, buf, len, c);
  }
  void submit_writev(int fd, bool is_socket, const iovec* iov, int iovcnt,
                     completion* c) override {
    backend_->submit_writev(fd, is_socket, iov, iovcnt, c);
  }
  void submit_recvmsg(int fd, msghdr* msg, completion* c) override {
    backend_->submit_recvmsg(fd, msg, c);
  }
  bool lends() const noexcept override { return backend_->lends(); }
  void submit_read_lent(int fd, msghdr* msg, completion* c) override {
    backend_->submit_read_lent(fd, msg, c);
  }
  const char* lent_data(std::uint32_t flags) const noexcept override {
    return backend_->lent_data(flags);
  }
  void submit_sendmsg(int fd, const msghdr* msg, completion* c) override {
    backend_->submit_sendmsg(fd, msg, c);
  }
  void submit_poll(int fd, completion* c) override { backend_->submit_poll(fd, c); }
  void cancel(completion* c) override { backend_->cancel(c); }
  void forget(int fd) override { backend_->forget(fd); }
  timer_id add_timer(clock::time_point when, std::function<void()> fn) override {
    return timers_.add(when, std::move(fn));
  }
  void cancel_timer(timer_id id) override { timers_.cancel(id); }

  // Loop thread (the calling thread becomes it): runs turns until request_stop(), then
  // lets the backend shut down and returns. The reactor is destroyed afterwards, on
  // whichever thread dropped the last reference or on the loop thread (see loop.cpp).
  void run();

  // Any thread: sets the stop flag, drops the queue, closes it to later posts and wakes
  // the loop. Does nothing the second time.
  void request_stop() noexcept;
  bool stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }

 private:
  struct channel {
    std::mutex mutex;
    std::deque<std::function<void()>> queue;  // guarded by mutex
    bool closed = false;                      // guarded by mutex
    std::atomic<bool> wake_pending{false};
    base::unique_fd wake_fd;
    void wake() noexcept;
  };

  std::optional<clock::duration> wait_limit();
  void dispatch();
  void run_posted();

  // Declared first, destroyed last: the backend may watch the eventfd until it goes.
  std::shared_ptr<channel> channel_;
  std::unique_ptr<loop_backend> backend_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::thread::id> loop_thread_{};
  bool local_posts_ = false;  // loop thread only: posted by the loop thread, not yet run
  timer_queue timers_;        // loop thread only
  std::vector<backend_event> events_;  // loop thread only: handed back, being dispatched
};

}  // namespace bokbok::io
