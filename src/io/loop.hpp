// The event loop: one thread that owns an io_uring ring (or, where io_uring cannot be
// set up, an epoll set) and runs every completion, timer and posted function.
//
// Threads: post() may be called from any thread. Every other member is for the loop
// thread only (from a completion, a timer or a posted function).
// Lifetime: shared; the thread stops and is joined when the last reference goes. Every
// stream on the loop must be closed (and its completions delivered) before then.
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

namespace bokbok::io {

// One in-flight operation: user_data of its submission points here, and complete() is
// called exactly once, on the loop thread, with the operation's result (bytes, or
// -errno; -ECANCELED after cancel()).
class completion {
 public:
  virtual void complete(int result) = 0;

 protected:
  ~completion() = default;
};

enum class backend_kind { automatic, uring, epoll };

using timer_id = std::uint64_t;
using clock = std::chrono::steady_clock;

class loop {
 public:
  virtual ~loop() = default;

  // Starts a loop thread. `automatic` honours BOKBOK_BACKEND=uring|epoll when set (any
  // other value is an error), else picks io_uring when a ring can be created and falls
  // back to epoll otherwise (seccomp, kernel.io_uring_disabled, old kernels). Forcing
  // uring when it cannot be set up throws std::system_error.
  // The loop thread blocks SIGPIPE, so a write to a closed pipe returns -EPIPE and never
  // kills the process.
  static std::shared_ptr<loop> start(backend_kind kind = backend_kind::automatic);

  virtual const char* backend_name() const noexcept = 0;  // "io_uring" or "epoll"

  // Any thread: runs `fn` on the loop thread soon, in the order posted. Wakes the loop
  // (one eventfd write, skipped when a wake-up is already pending).
  virtual void post(std::function<void()> fn) = 0;
  virtual bool in_loop_thread() const noexcept = 0;

  // Loop thread only. One read of up to `len` bytes from `fd` into `buf`; completes with
  // the byte count, 0 at end of file, or -errno. The fd must be non-blocking.
  virtual void submit_read(int fd, void* buf, std::size_t len, completion* c) = 0;

  // Loop thread only. One vectored write (sendmsg with MSG_NOSIGNAL on sockets, writev
  // otherwise); completes with the bytes written (possibly fewer than asked) or -errno.
  // `iov` and the buffers it points to must stay valid until completion.
  virtual void submit_writev(int fd, bool is_socket, const iovec* iov, int iovcnt,
                             completion* c) = 0;

  // Loop thread only. Asks that every operation of `c` end soon; each still completes
  // (with -ECANCELED if it had not finished).
  virtual void cancel(completion* c) = 0;

  // Loop thread only. Runs `fn` on the loop thread at `when`, unless cancelled first.
  virtual timer_id add_timer(clock::time_point when, std::function<void()> fn) = 0;
  // Loop thread only. Cancelling a timer that already ran or was cancelled does nothing.
  virtual void cancel_timer(timer_id id) = 0;
};

}  // namespace bokbok::io
