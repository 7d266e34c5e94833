// A duplex byte stream over an (in fd, out fd) pair: a read half and a write half. Works
// for pipes (read/write), sockets (recv-like reads, sendmsg with MSG_NOSIGNAL), a socket
// used for both halves (in == out), and stdin/stdout.
//
// Threads: create() from any thread; every other member on the loop's thread only.
// Events are delivered on the loop thread.
// Lifetime: owned by shared_ptr; in-flight operations keep it alive. After close()
// returns, no event is delivered any more, and the fds are closed (unless borrowed) once
// the kernel has let go of them.
#pragma once

#include <sys/uio.h>

#include <memory>
#include <string_view>
#include <vector>

#include "io/loop.hpp"
#include "base/unique_fd.hpp"

namespace bokbok::io {

class stream_events {
 public:
  // Bytes arrived; `bytes` is valid only during the call.
  virtual void on_data(std::string_view bytes) = 0;
  // The read half ended: 0 at end of file, else -errno. No more on_data after this.
  virtual void on_read_end(int err) = 0;
  // The whole batch given to write() is written (0), or writing failed (-errno).
  virtual void on_write_done(int err) = 0;

 protected:
  ~stream_events() = default;
};

class duplex_stream {
 public:
  virtual ~duplex_stream() = default;

  // `out` may be empty, meaning "write to `in` too" (a socket); `out` holding the same
  // number as `in` means the same (one fd, closed once; if either is borrowed it is not
  // closed). Sets both fds non-blocking (on a borrowed stdin/stdout this changes the
  // file description shared with other processes). Sockets are told apart with fstat.
  // `events` must outlive the stream or close() must be called first. Throws
  // std::system_error when an fd is not usable, std::invalid_argument when `in` is empty.
  static std::shared_ptr<duplex_stream> create(std::shared_ptr<loop> l, base::unique_fd in,
                                               base::unique_fd out, stream_events* events);

  // Starts reading continuously into an internal buffer; events arrive until the read
  // half ends or close(). Also resumes after stop_reading(): bytes held back meanwhile
  // are delivered first, from the loop (never from inside this call).
  virtual void start_reading() = 0;

  // Backpressure: no on_data (nor on_read_end) until start_reading() is called again.
  // No new read is submitted; what a read already in flight brings is held (at most one
  // buffer: 4 KiB to 256 KiB, growing with the traffic), so the peer is slowed by the
  // kernel's buffers filling up.
  virtual void stop_reading() = 0;

  // Writes every byte of `iov` (partial writes are continued internally), then
  // on_write_done. At most one batch in flight: call again only after on_write_done
  // (a second batch throws std::logic_error). Any number of iovecs (more than IOV_MAX
  // are written in turns). A batch with no bytes completes on the next loop turn.
  // The buffers must stay valid until on_write_done, or, if close() came first and no
  // on_write_done will come, until the kernel has let go of them: pass `keep_alive`
  // (the owner of the buffers) and the stream releases it only then. After
  // shutdown_write(), a batch completes with -EPIPE; after close(), nothing happens.
  virtual void write(std::vector<iovec> iov, std::shared_ptr<const void> keep_alive = {}) = 0;
  virtual bool writing() const = 0;

  // Ends the write half once any batch in flight is written (before its
  // on_write_done): shutdown(SHUT_WR) on a socket, closing the out fd on a pipe, so the
  // peer reads end of file. A borrowed pipe fd (stdout) is not closed but replaced by
  // /dev/null with dup2, so its number stays taken and the pipe is let go. A single
  // non-socket fd for both halves (a tty) cannot be half-closed: nothing happens.
  virtual void shutdown_write() = 0;

  // Stops everything; no event after this returns. Operations in flight are cancelled;
  // the fds are closed (unless borrowed) once their completions have arrived, which may
  // be after close() returns. Idempotent.
  virtual void close() = 0;

  virtual loop& owner() const = 0;
};

}  // namespace bokbok::io
