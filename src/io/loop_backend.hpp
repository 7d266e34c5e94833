// Internal to the engine: the narrow interface between the one loop (io/reactor.hpp)
// and the kernel mechanism under it (io/uring_backend.hpp, io/epoll_backend.hpp), and how
// to start a loop with options that tests can vary.
//
// Backend contract (as seastar's reactor_backend under its reactor):
// - A backend does submission (read, writev, recvmsg, sendmsg, poll), cancellation, forget(fd) and wait().
//   It owns no posted functions, timers, thread identity or stop logic: the reactor does,
//   and the reactor calls every completion (dispatch) from what wait() hands back.
// - Threads: a backend is used by one thread at a time, the loop thread once the loop
//   runs (its constructor and destructor may run elsewhere). Nothing in it is
//   synchronised.
// - Lent reads: the backend keeps a set of lent_buffer_size buffers (loop_options::
//   lent_buffers of them); a read completed into one carries lent_buffer_flag and the
//   buffer's number (flags >> 16) in its flags, and stays out of the set until the
//   reactor gives it back, right after the completion ran.
// - submit_*(), cancel() and forget() never call a completion. Whatever they finish at
//   once (an error, a direct write, -ECANCELED) is kept and handed back by the next
//   wait(), as io_uring would deliver it.
// - Every completion is handed back exactly once, as a (completion, res, flags) triple:
//   res is the operation's result (bytes, poll events, or -errno), flags the CQE's flags
//   on io_uring, 0 on epoll.
// - The wake-up: the reactor's eventfd, given once to watch_wakeup() on the loop thread
//   before the first wait(). When it fires, wait() consumes its counter (reads it), keeps
//   watching it, and returns true; the reactor then drains its posted functions.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "io/loop.hpp"

namespace bokbok::io {

// One finished operation, as wait() hands it back.
struct backend_event {
  completion* c;
  int res;
  std::uint32_t flags;
};

class loop_backend {
 public:
  virtual ~loop_backend() = default;

  virtual const char* name() const noexcept = 0;  // "io_uring" or "epoll"

  // The flags the wake-up eventfd must be created with (EFD_NONBLOCK for epoll, 0 for
  // io_uring, whose read of it must wait in the kernel).
  virtual int wake_fd_flags() const noexcept = 0;

  // Loop thread, once, before the first wait(): watch the eventfd `fd` (owned by the
  // caller, open until the backend is destroyed).
  virtual void watch_wakeup(int fd) = 0;

  // The operations of io::loop (loop.hpp states their semantics).
  virtual void submit_read(int fd, void* buf, std::size_t len, completion* c) = 0;
  virtual void submit_writev(int fd, bool is_socket, const iovec* iov, int iovcnt,
                             completion* c) = 0;
  virtual void submit_recvmsg(int fd, msghdr* msg, completion* c) = 0;
  virtual bool lends() const noexcept = 0;
  virtual void submit_read_lent(int fd, msghdr* msg, completion* c) = 0;
  virtual const char* lent_data(std::uint32_t flags) const noexcept = 0;
  // The reactor, once the completion of a lent read whose flags carry lent_buffer_flag
  // has returned: the buffer is free to lend again.
  virtual void give_back(std::uint32_t flags) noexcept = 0;
  virtual void submit_sendmsg(int fd, const msghdr* msg, completion* c) = 0;
  virtual void submit_poll(int fd, completion* c) = 0;
  virtual void cancel(completion* c) = 0;
  virtual void forget(int fd) = 0;

  // Hands the kernel what was submitted, then waits until something finishes, the
  // wake-up fires or `timeout` passes (nullopt: no limit; zero or less: do not block;
  // epoll rounds up to a millisecond). Never blocks while it already holds finished
  // operations. Moves every finished operation into `out`, which must be empty, and
  // returns whether the wake-up fired (its counter is consumed). Spurious returns with
  // nothing are allowed (a signal, a timeout).
  virtual bool wait(std::optional<clock::duration> timeout, std::vector<backend_event>& out) = 0;

  // Loop thread, once, after the last wait(): lets go of what is still in flight before
  // the backend and the buffers go (io_uring waits, bounded, for the kernel to finish
  // with cancelled operations). No completion is called any more.
  virtual void shutdown() noexcept {}
};

struct loop_options {
  // Submission queue entries of the io_uring ring (the completion queue gets twice as
  // many). The kernel refuses more than 32768, which the tests use to make setup fail.
  unsigned ring_entries = 256;
  // Buffers a loop lends for reads (loop::submit_read_lent), lent_buffer_size each: as
  // many reads can complete into them between two of the loop's turns; one more finds
  // none (-ENOBUFS) and is made again into its reader's own buffer. A power of two
  // (io_uring's provided buffer ring), at most 32768; 0: lend none.
  unsigned lent_buffers = 64;
};

// Throw std::system_error when the backend cannot be set up (for io_uring: no ring, or
// one that lacks an opcode or feature we need).
std::unique_ptr<loop_backend> make_uring_backend(const loop_options& opts);
std::unique_ptr<loop_backend> make_epoll_backend(const loop_options& opts);

// Starts a loop thread with `kind` chosen exactly (no environment lookup); `automatic`
// tries io_uring and falls back to epoll when the ring cannot be set up. Throws
// std::system_error when the forced backend cannot start.
std::shared_ptr<loop> start_loop(backend_kind kind, const loop_options& opts);

// The backend BOKBOK_BACKEND asks for: automatic when unset or empty, uring or epoll;
// any other value throws std::invalid_argument.
backend_kind backend_from_env();

// Loop thread, after a write failed with EPIPE: consumes the SIGPIPE the kernel queued
// for this thread (blocked here), so it can never be delivered later.
void discard_pending_sigpipe() noexcept;

}  // namespace bokbok::io
