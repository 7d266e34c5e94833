// parking: one thread sleeps until a condition holds; others wake it after making the
// condition true. A futex word, no mutex.
//
// Why not a condition variable: a glibc condition variable hands its mutex back to the
// woken thread marked as contended (it cannot know whether other waiters were requeued
// onto it), so that thread's next unlock always makes a FUTEX_WAKE system call, whether
// or not anyone waits. A blocking caller woken for its answer, and a handler thread
// woken for a request, each paid one on every call (perf showed __lll_lock_wake under
// call_sync and handler_pool::state::run), and a system call costs more than the rest of
// the unlock. Here the woken thread takes no mutex at all, and a wake that finds nobody
// asleep makes no system call.
//
// Contract: park_until(ready) returns only once ready() is true. ready() becomes true by
// a store made before an unpark() of this object, and both that store and ready()'s load
// are memory_order_seq_cst: with the parker's store to the word before its last look at
// the condition, and the waker's exchange of the word after its store, either the parker
// sees the condition or the waker sees it parked (the store-buffering case, which
// acquire and release alone allow to miss both; fences would do too, but ThreadSanitizer
// does not understand them). unpark() may come before the park, during it, or long after
// it returned (a late wake from an earlier condition): the parked thread then wakes
// spuriously, finds ready() false, and sleeps again. So an unpark() needs the object
// alive, not its parker: keep the object where a late waker can still reach it (a
// shared_ptr the waker copies, as rpc::thread_waker is kept).
//
// Threads: one thread parks at a time; unpark() from any thread.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <ctime>

namespace bokbok::base {

class parking {
 public:
  // Sleeps until ready() is true (checked first: no sleep when it already is).
  template <typename Ready>
  void park_until(Ready ready) {
    while (!ready()) {
      if (!announce(ready)) break;
      wait(nullptr);
    }
    word_.store(0, std::memory_order_relaxed);
  }

  // The same, giving up after `timeout`: false when ready() is still false then.
  template <typename Ready>
  bool park_until_for(Ready ready, std::chrono::nanoseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    bool ok = true;
    while (!ready()) {
      const auto left = end - std::chrono::steady_clock::now();
      if (left <= std::chrono::nanoseconds::zero()) {
        ok = ready();
        break;
      }
      if (!announce(ready)) break;
      const auto s = std::chrono::duration_cast<std::chrono::seconds>(left);
      const timespec rel{static_cast<time_t>(s.count()),
                         static_cast<long>(std::chrono::nanoseconds(left - s).count())};
      wait(&rel);
    }
    word_.store(0, std::memory_order_relaxed);
    return ok;
  }

  // Any thread, after making the parker's condition true: wakes it if it sleeps (or is
  // about to), else costs no system call.
  void unpark() {
    if (word_.exchange(0, std::memory_order_seq_cst) == parked)
      ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word_), FUTEX_WAKE_PRIVATE, 1,
                nullptr, nullptr, 0);
  }

 private:
  static constexpr std::uint32_t parked = 1;
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t) &&
                std::atomic<std::uint32_t>::is_always_lock_free);

  // Says "about to sleep", then looks at the condition once more; false: it holds, no
  // sleep.
  template <typename Ready>
  bool announce(Ready& ready) {
    word_.store(parked, std::memory_order_seq_cst);
    return !ready();
  }

  // Sleeps while word_ is still `parked` (an unpark() since announce() cleared it: no
  // sleep), until a wake, a signal, or the relative timeout.
  void wait(const timespec* rel) {
    const int saved = errno;  // a timeout or EAGAIN is not the caller's business
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word_), FUTEX_WAIT_PRIVATE, parked,
              rel, nullptr, 0);
    errno = saved;
  }

  std::atomic<std::uint32_t> word_{0};
};

}  // namespace bokbok::base
