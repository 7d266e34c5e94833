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
#include "io/unique_fd.hpp"

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

  // `out` may be empty, meaning "write to `in` too" (a socket). Sets both fds
  // non-blocking. `events` must outlive the stream or close() must be called first.
  static std::shared_ptr<duplex_stream> create(std::shared_ptr<loop> l, unique_fd in,
                                               unique_fd out, stream_events* events);

  // Starts reading continuously into an internal buffer; events arrive until the read
  // half ends or close().
  virtual void start_reading() = 0;

  // Writes every byte of `iov` (partial writes are continued internally), then
  // on_write_done. At most one batch in flight: call again only after on_write_done.
  // The buffers must stay valid until on_write_done.
  virtual void write(std::vector<iovec> iov) = 0;
  virtual bool writing() const = 0;

  // Ends the write half once any batch in flight is written: shutdown(SHUT_WR) on a
  // socket, closing the out fd on a pipe, so the peer reads end of file.
  virtual void shutdown_write() = 0;

  // Stops everything; no event after this returns.
  virtual void close() = 0;

  virtual loop& owner() const = 0;
};

}  // namespace bokbok::io
