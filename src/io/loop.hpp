// The event loop: one thread that owns an io_uring ring (or, where io_uring cannot be
// set up, an epoll set) and runs every completion, timer and posted function.
//
// Threads: post() may be called from any thread. Every other member is for the loop
// thread only (from a completion, a timer or a posted function).
// Lifetime: shared; the thread stops and is joined when the last reference goes. Every
// stream on the loop must be closed (and its completions delivered) before then; a
// duplex_stream holds a reference while it has operations in flight, so this holds by
// itself for streams. The last reference may be dropped on any thread, the loop thread
// included (a completion or posted function holding it): then the thread is detached
// instead of joined, finishes the callback it is in, and destroys the loop itself.
// Shutdown drops, without running them, the posted functions not yet run and the
// timers not yet due; a post() during or after shutdown drops its function too.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

namespace bokbok::io {

// One in-flight operation: user_data of its submission points here, and complete() is
// called exactly once, on the loop thread, with the operation's result (bytes, or
// -errno; -ECANCELED after cancel()) and its flags: the CQE's flags on io_uring
// (IORING_CQE_F_*), 0 on epoll.
class completion {
 public:
  virtual void complete(int result, std::uint32_t flags) = 0;

 protected:
  ~completion() = default;
};

enum class backend_kind { automatic, uring, epoll };

// Lent reads (loop::submit_read_lent): the size of a lent buffer, and the flag a
// completion's flags carry when its bytes are in one (io_uring's IORING_CQE_F_BUFFER,
// the buffer's number in the upper 16 bits; the epoll backend says the same).
inline constexpr std::size_t lent_buffer_size = 4096;
inline constexpr std::uint32_t lent_buffer_flag = 1;

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

  // Any thread: runs `fn` on the loop thread soon, in the order posted, never inside
  // this call. Wakes the loop (one eventfd write, skipped when a wake-up is already
  // pending, and never needed from the loop thread). `fn` may hold the last reference
  // to the loop. Dropped (destroyed, not run) once the loop is shutting down.
  virtual void post(std::function<void()> fn) = 0;
  virtual bool in_loop_thread() const noexcept = 0;

  // Loop thread only. One read of up to `len` bytes from `fd` into `buf`; completes with
  // the byte count, 0 at end of file, or -errno. The fd must be non-blocking. The
  // completion never runs inside submit_*() or cancel(), on either backend. Reads and
  // writes use the file position (offset -1), so regular files work too.
  virtual void submit_read(int fd, void* buf, std::size_t len, completion* c) = 0;

  // Loop thread only. A read as submit_read (or, when `msg` is given, a recvmsg as
  // submit_recvmsg, of its control buffer and one iovec whose length caps the read and
  // whose base the loop fills in) into a buffer of lent_buffer_size bytes that the loop
  // lends: a stream waiting for data that may be long in coming holds no buffer of its
  // own. When bytes were read, the completion's flags carry lent_buffer_flag and
  // lent_data(flags) is where they are, valid only until complete() returns (the loop
  // takes the buffer back then). -ENOBUFS: every buffer was lent already (a burst of
  // reads completing at once): read again, into a buffer of your own. Only where
  // lends() (io_uring without provided buffer rings, before 5.19, does not).
  virtual bool lends() const noexcept = 0;
  virtual void submit_read_lent(int fd, msghdr* msg, completion* c) = 0;
  virtual const char* lent_data(std::uint32_t flags) const noexcept = 0;

  // Loop thread only. One vectored write (sendmsg with MSG_NOSIGNAL on sockets, writev
  // otherwise); completes with the bytes written (possibly fewer than asked) or -errno.
  // `iov` and the buffers it points to must stay valid until completion.
  virtual void submit_writev(int fd, bool is_socket, const iovec* iov, int iovcnt,
                             completion* c) = 0;

  // Loop thread only, sockets only. One recvmsg(MSG_CMSG_CLOEXEC) from `fd` into the
  // iovecs and control buffer of `msg`; completes with the bytes read, 0 at end of
  // file, or -errno. On success the kernel has set msg->msg_controllen (the control
  // bytes filled, e.g. SCM_RIGHTS: received fds, already installed close-on-exec) and
  // msg->msg_flags (MSG_CTRUNC: control data was cut off). `msg`, its iovecs and buffers
  // must stay valid and untouched until completion.
  virtual void submit_recvmsg(int fd, msghdr* msg, completion* c) = 0;

  // Loop thread only, sockets only. One sendmsg(MSG_NOSIGNAL) of `msg` (iovecs and
  // control messages, e.g. SCM_RIGHTS) on `fd`; completes with the bytes sent (possibly
  // fewer; control messages went with the first of them) or -errno (nothing sent). `msg`
  // and everything it points to must stay valid until completion.
  virtual void submit_sendmsg(int fd, const msghdr* msg, completion* c) = 0;

  // Loop thread only. Waits, once, until `fd` is readable, hung up or in error, and
  // completes with the poll events seen (POLLIN, POLLHUP, POLLERR, ...: > 0) or -errno.
  // Nothing is read: the caller then accepts, reads a pidfd's exit or a signalfd. Used
  // where the loop watches a descriptor it does not read through a stream (listening
  // sockets, pidfds, signalfds). Submit again to wait again; cancel() ends it with
  // -ECANCELED. A file that cannot be watched (a regular file) is ready at once.
  virtual void submit_poll(int fd, completion* c) = 0;

  // Loop thread only. Asks that every operation of `c` end soon; each still completes
  // (with -ECANCELED if it had not finished, else with its result). io_uring before
  // 5.19 cancels only the first operation of `c`: give each operation its own
  // completion object where that matters.
  virtual void cancel(completion* c) = 0;

  // Loop thread only. Drops what the backend keeps about `fd` (the epoll backend keeps
  // each fd registered from its first operation until then). Call it before closing an
  // fd that had operations, once none is in flight (any still waiting completes with
  // -ECANCELED), so that a new file given the same number starts afresh. Forgetting an
  // fd never used does nothing.
  virtual void forget(int fd) = 0;

  // Loop thread only. Runs `fn` on the loop thread at `when` (never earlier; with
  // epoll up to a millisecond later), unless cancelled first. Equal deadlines run in
  // the order added; a deadline already past runs on the next turn.
  virtual timer_id add_timer(clock::time_point when, std::function<void()> fn) = 0;
  // Loop thread only. Cancelling a timer that already ran or was cancelled does nothing.
  virtual void cancel_timer(timer_id id) = 0;
};

}  // namespace bokbok::io
