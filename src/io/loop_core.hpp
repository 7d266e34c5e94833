// loop_core: the state both backends share. The queue of posted functions with its
// wake-up eventfd and flag, the timers, the identity of the loop thread and the stop
// flag. The backend keeps a read (io_uring) or a watch (epoll) on wake_fd().
//
// Post/wake contract: post() pushes under a mutex and writes the eventfd only when no
// wake-up is pending; the loop consumes the eventfd, then clears the flag, then drains,
// so a burst of posts from other threads costs one eventfd write. Posts from the loop
// thread never write it: the backend drains them before it blocks again.
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
#include <thread>

#include "io/timer_queue.hpp"
#include "base/unique_fd.hpp"

namespace bokbok::io {

class loop_core final {
 public:
  // `eventfd_flags`: EFD_NONBLOCK for epoll, 0 for io_uring. Throws std::system_error.
  explicit loop_core(int eventfd_flags);

  int wake_fd() const noexcept;

  // Any thread. Queues `fn` and wakes the loop if needed. After request_stop() the
  // function is dropped (destroyed at once, never run).
  void post(std::function<void()>&& fn);

  // Loop thread, once the eventfd was consumed (or for local posts): clears the flag,
  // then runs every function queued so far, in order. Functions they post run on the
  // next call. Stops early, dropping the rest, if a function asked the loop to stop.
  void run_posted();

  // Loop thread: whether the loop thread posted something since the last run_posted(),
  // i.e. whether the backend must not block before calling it.
  bool local_posts_pending() const noexcept { return local_posts_; }

  void mark_loop_thread() noexcept { loop_thread_.store(std::this_thread::get_id()); }
  bool in_loop_thread() const noexcept {
    return loop_thread_.load(std::memory_order_relaxed) == std::this_thread::get_id();
  }

  // Any thread: sets the stop flag, drops the queue, closes it to later posts and wakes
  // the loop. Does nothing the second time.
  void request_stop() noexcept;
  bool stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }

  timer_queue& timers() noexcept { return timers_; }

 private:
  struct channel {
    std::mutex mutex;
    std::deque<std::function<void()>> queue;  // guarded by mutex
    bool closed = false;                      // guarded by mutex
    std::atomic<bool> wake_pending{false};
    base::unique_fd wake_fd;
    void wake() noexcept;
  };

  std::shared_ptr<channel> channel_;
  bool local_posts_ = false;  // loop thread only
  std::atomic<bool> stopping_{false};
  std::atomic<std::thread::id> loop_thread_{};
  timer_queue timers_;  // loop thread only
};

}  // namespace bokbok::io
