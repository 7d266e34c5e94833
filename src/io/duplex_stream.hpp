// A duplex byte stream over an (in fd, out fd) pair: a read half and a write half. Works
// for pipes (read/write), sockets (recv-like reads, sendmsg with MSG_NOSIGNAL), a socket
// used for both halves (in == out), and stdin/stdout. On an AF_UNIX socket it also
// carries file descriptors (SCM_RIGHTS): write_with_fds sends them with chosen bytes,
// on_fds hands over those received (reads there are recvmsg with MSG_CMSG_CLOEXEC).
//
// Threads: create() and try_write_now() from any thread; every other member on the
// loop's thread only. Events are delivered on the loop thread.
// Lifetime: owned by shared_ptr; in-flight operations keep it alive. After close()
// returns, no event is delivered any more, and the fds are closed (unless borrowed) once
// the kernel has let go of them.
//
// The writer's shortcut. try_write_now() lets another thread write a few bytes straight
// to the out fd while the write half is idle, saving the loop thread's wake-up (the
// costliest step of a small call). Against write(), shutdown_write() and close() on the
// loop thread the stream guarantees:
// - No interleaving with a batch: from write() until just before its on_write_done,
//   try_write_now writes nothing (busy). A write() that comes while a try_write_now is
//   in its system call waits for it (one non-blocking write), so those bytes go first.
// - No write after the end: once shutdown_write() or close() has been called,
//   try_write_now writes nothing (closed). Either one waits for a try_write_now in its
//   system call, so the out fd is never written once it is shut down, closed, or its
//   number reused by another file.
// - One writer at a time: threads calling at once never mix their bytes (all but one
//   get busy), and what one call wrote is a prefix of its bytes. After a partial write
//   the rest is owed: try_write_now is busy until the loop's next write(), which must
//   begin with that rest (the caller hands it over).
// - No SIGPIPE, whatever the calling thread's mask and the process's disposition (see
//   try_write_now).
// Cost on the loop thread: write(), the end of its batch, shutdown_write() and close()
// each take one uncontended mutex; reads and the continuation of a partial batch take
// nothing.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <memory>
#include <string_view>
#include <optional>
#include <vector>

#include "io/loop.hpp"
#include "base/is_socket.hpp"
#include "base/unique_fd.hpp"

namespace bokbok::io {

// The most fds one sendmsg carries (the kernel's SCM_MAX_FD).
inline constexpr std::size_t max_fds_per_write = 253;

// File descriptors that go with the bytes of a write (write_with_fds): they travel with
// the byte at `offset` of the batch (counted over all its iovecs), in the one sendmsg
// whose first byte that is. 1 to max_fds_per_write fds, each open; the stream owns them
// from the call on and closes its copies once they are sent (the peer gets its own), or
// when the write fails or the stream closes. Pass base::unique_fd::borrow(fd) to keep
// yours open.
struct fd_attachment {
  std::size_t offset = 0;
  std::vector<base::unique_fd> fds;
};

class stream_events {
 public:
  // File descriptors arrived (on an AF_UNIX socket stream only), received close-on-exec,
  // each owned by the vector: those not moved out are closed when it goes. Called just
  // before the on_data of the bytes they came with: those bytes include the first byte
  // of the peer's write that carried them (the kernel never delivers them later than
  // that byte, and never joins two such writes' fds into one read). Same rules as
  // on_data (stop_reading() holds both). The default closes them all.
  virtual void on_fds(std::vector<base::unique_fd> fds) { (void)fds; }
  // Bytes arrived; `bytes` is valid only during the call.
  virtual void on_data(std::string_view bytes) = 0;
  // The read half ended: 0 at end of file, else -errno. No more on_data after this.
  // -EMSGSIZE on a socket stream: fds arrived but the kernel cut them off (MSG_CTRUNC:
  // too many for the control buffer, or RLIMIT_NOFILE reached); the fds of that read
  // that did arrive are closed and its bytes are not delivered: never a silent loss.
  virtual void on_read_end(int err) = 0;
  // The whole batch given to write() is written (0), or writing failed (-errno).
  virtual void on_write_done(int err) = 0;

 protected:
  ~stream_events() = default;
};

// What duplex_stream::try_write_now did.
struct try_write_result {
  enum class status {
    wrote,   // `written` bytes went (fewer than given when the kernel buffer filled up)
    busy,    // nothing written: a batch is in flight, another thread is writing (or the
             // loop thread is changing the write state at this moment), or the rest of
             // a partial write is owed; queue the bytes for the loop
    full,    // nothing written: the kernel buffer is full (EAGAIN)
    closed,  // nothing written, nor ever will be: shutdown_write() or close() came
    failed,  // nothing written: the write failed with `error` (-EPIPE or -ECONNRESET
             // when the peer is gone); the loop's next write will fail likewise
  };
  status what = status::busy;
  std::size_t written = 0;
  int error = 0;  // -errno, when `what` is failed
};

class duplex_stream {
 public:
  virtual ~duplex_stream() = default;

  // `out` may be empty, meaning "write to `in` too" (a socket); `out` holding the same
  // number as `in` means the same (one fd, closed once; if either is borrowed it is not
  // closed). Sets both fds non-blocking (on a borrowed stdin/stdout this changes the
  // file description shared with other processes). Sockets are told apart with fstat,
  // unless the caller states what each fd is (`in_kind`, `out_kind`: base/is_socket.hpp;
  // its `nonblocking` true skips setting it). A stated kind must be true of the fd.
  // `events` must outlive the stream or close() must be called first. Throws
  // std::system_error when an fd is not usable, std::invalid_argument when `in` is empty.
  static std::shared_ptr<duplex_stream> create(std::shared_ptr<loop> l, base::unique_fd in,
                                               base::unique_fd out, stream_events* events,
                                               std::optional<base::fd_kind> in_kind = {},
                                               std::optional<base::fd_kind> out_kind = {});

  // Starts reading continuously into an internal buffer; events arrive until the read
  // half ends or close(). Also resumes after stop_reading(): bytes held back meanwhile
  // are delivered first, from the loop (never from inside this call).
  virtual void start_reading() = 0;

  // Backpressure: no on_data (nor on_read_end) until start_reading() is called again.
  // No new read is submitted; what a read already in flight brings is held (at most one
  // buffer: 4 KiB to 256 KiB, following the traffic), so the peer is slowed by the
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

  // Whether write_with_fds can work: both halves are one AF_UNIX socket (a socketpair
  // end, a UNIX socket connection). Pipes, TCP and ttys cannot carry fds.
  virtual bool can_pass_fds() const = 0;

  // Loop thread. write() with fds: each attachment's fds go with the byte at its offset
  // (see fd_attachment), in a sendmsg that carries no byte of the next attachment, so
  // the peer receives each attachment's fds in one on_fds, before or with the bytes
  // from its offset on. Attachments must be in increasing offset order, each offset
  // within the batch's bytes. No attachments: exactly write(). Refused before anything
  // is written, the stream unchanged: std::system_error(EOPNOTSUPP) when
  // !can_pass_fds(), std::invalid_argument for an attachment with no fd, a closed fd,
  // more than max_fds_per_write fds, or a bad offset; std::logic_error as write().
  // Otherwise as write() (the same on_write_done; the fds are closed, not sent, when it
  // fails first).
  virtual void write_with_fds(std::vector<iovec> iov, std::vector<fd_attachment> fds,
                              std::shared_ptr<const void> keep_alive = {}) = 0;

  // Any thread (the caller keeps the stream alive for the call): writes what the kernel
  // takes of `bytes` at once, without blocking or waiting for another thread, when no
  // batch is in flight and the write half is open (see the contract at the top); the
  // caller queues the rest. Sockets use send() with MSG_NOSIGNAL. Pipes: on the loop
  // thread, which blocks SIGPIPE, a plain write(); on any other thread SIGPIPE is
  // blocked around the write and one it raised is consumed before the mask is restored
  // (two rt_sigprocmask calls; blocking it for good in a thread the application owns
  // would leak into that thread's later life: the children it spawns inherit the mask
  // across exec, and its own EPIPE handling changes). Empty `bytes`: nothing is written,
  // and the status says whether something could have been.
  virtual try_write_result try_write_now(std::string_view bytes) noexcept = 0;

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

  // Loop thread: the size of the read buffer now (4 KiB to 256 KiB; 4 KiB while reads go
  // into buffers the loop lends, and the stream holds none: see duplex_stream.cpp). It doubles while
  // reads fill it, and halves only after several reads in a row used under an eighth
  // of it, so the short read that ends each large message does not make a bulk stream
  // give its buffer back and allocate it again. For tests and statistics.
  virtual std::size_t read_buffer_size() const = 0;
};

}  // namespace bokbok::io
