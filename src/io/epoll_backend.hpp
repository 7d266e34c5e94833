// epoll_backend: the fallback backend under the reactor (contract: io/loop_backend.hpp),
// for where io_uring cannot be set up (seccomp, kernel.io_uring_disabled, kernels before
// 5.6). Same semantics as uring_backend; used only by the loop thread.
//
// - Wake-ups: the reactor's eventfd (non-blocking) is in the epoll set from
//   watch_wakeup() on; when epoll reports it, wait() reads its counter and reports it.
// - Each fd is added to the epoll set once, when an operation first waits on it, and
//   stays registered until forget(fd). Before epoll_wait, wait() compares, for the fds
//   whose waiters changed, the events they want (EPOLLIN|EPOLLRDHUP while a read or a
//   poll waits, EPOLLOUT while a write waits) with what epoll watches, and calls
//   EPOLL_CTL_MOD only where they differ. A fd that wants something is watched level triggered; a fd that
//   wants nothing is left edge triggered with no events, so a hang-up it keeps
//   reporting wakes the loop once, not on every turn.
// - A read is not tried at once: it waits for the fd to be reported readable by the
//   wait() the reactor makes on its next turn anyway (level triggered, so data already there
//   is reported at once). A write is tried at once with writev, or sendmsg(MSG_NOSIGNAL)
//   on sockets, and waits for EPOLLOUT only if the fd is full. submit_recvmsg and
//   submit_sendmsg are reads and writes made with recvmsg(MSG_CMSG_CLOEXEC) and
//   sendmsg(MSG_NOSIGNAL) on the caller's msghdr.
// - Lent reads read, once the fd is ready, into one of up to loop_options::lent_buffers
//   buffers of lent_buffer_size, made when first needed and kept for reuse; a read
//   that finds none free completes with -ENOBUFS, as on io_uring.
// - Results made inside submit_*(), cancel() or forget() (a direct write, an error,
//   -ECANCELED for cancelled waiters) are kept and handed back by the next wait(), which
//   then does not block, as io_uring would deliver them. Flags are 0 but for a lent read's.
// - forget(fd) must be called before the fd is closed (duplex_stream does), so that a
//   number reused by a new file never inherits the old registration.
// - Files that epoll refuses (EPERM: regular files) are never watched: their reads and
//   writes are made directly, as they do not return EAGAIN, and a poll is ready at once.
// - wait(timeout): epoll_wait with the timeout rounded up to a millisecond. (The reactor
//   consumes the SIGPIPE a pipe write that failed with EPIPE queued.)
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "io/loop_backend.hpp"
#include "base/unique_fd.hpp"

namespace bokbok::io {

class epoll_backend final : public loop_backend {
 public:
  // Throws std::system_error when the epoll set cannot be created.
  explicit epoll_backend(const loop_options& opts);
  ~epoll_backend() override = default;
  epoll_backend(const epoll_backend&) = delete;
  epoll_backend& operator=(const epoll_backend&) = delete;

  const char* name() const noexcept override { return "epoll"; }
  int wake_fd_flags() const noexcept override;
  void watch_wakeup(int fd) override;
  void submit_read(int fd, void* buf, std::size_t len, completion* c) override;
  void submit_writev(int fd, bool is_socket, const iovec* iov, int iovcnt,
                     completion* c) override;
  void submit_recvmsg(int fd, msghdr* msg, completion* c) override;
  void submit_sendmsg(int fd, const msghdr* msg, completion* c) override;
  bool lends() const noexcept override { return max_lent_ > 0; }
  void submit_read_lent(int fd, msghdr* msg, completion* c) override;
  const char* lent_data(std::uint32_t flags) const noexcept override;
  void give_back(std::uint32_t flags) noexcept override;
  void submit_poll(int fd, completion* c) override;
  void cancel(completion* c) override;
  void forget(int fd) override;
  bool wait(std::optional<clock::duration> timeout, std::vector<backend_event>& out) override;

 private:
  struct op {
    completion* c;
    void* buf;        // read
    std::size_t len;  // read
    const iovec* iov;  // write
    int iovcnt;        // write
    bool is_socket;    // write
    msghdr* recv_msg = nullptr;        // read with recvmsg (fd passing)
    const msghdr* send_msg = nullptr;  // write with sendmsg of this header (fd passing)
    bool lent = false;                 // read into a lent buffer (submit_read_lent)
  };
  // One per fd number ever used, indexed by the number; reset by forget().
  struct fd_state {
    std::vector<op> reads;   // waiting, oldest first (the capacity is kept)
    std::vector<op> writes;
    std::vector<op> polls;   // submit_poll: completed with the events, nothing read
    std::uint32_t watched = 0;  // the events epoll watches (meaningful once added)
    bool added = false;         // in the epoll set
    bool dirty = false;         // on changed_: the wanted events may differ from watched
    bool unwatchable = false;   // epoll refused it (EPERM): operations are made directly
  };

  static int try_read(int fd, const op& o) noexcept;
  // A read made now; a lent one sets `flags` when it read into a lent buffer.
  int read_once(int fd, const op& o, std::uint32_t& flags);
  static int try_write(int fd, const op& o) noexcept;
  fd_state& state(int fd);
  // The one path of every read (read, recvmsg) and every write (writev, sendmsg): fd
  // checked, then the op made at once (writes; reads of unwatchable files) or queued
  // behind the fd's earlier ops of its kind until epoll reports the fd ready.
  void queue_read(int fd, const op& o);
  void queue_write(int fd, const op& o);
  void finish(completion* c, int res, std::uint32_t flags = 0);
  void mark_changed(int fd, fd_state& s);
  void apply_changes();
  void watch(int fd, fd_state& s);
  void run_direct(int fd, fd_state& s);
  void on_ready(int fd, std::uint32_t events);

  base::unique_fd epoll_fd_;
  int wake_fd_ = -1;
  std::vector<fd_state> fds_;
  std::vector<int> changed_;          // fds whose wanted events may have changed
  std::vector<backend_event> ready_;  // results not yet handed back
  // Lent reads: every buffer made (numbered by index), and those not lent.
  std::size_t max_lent_;
  std::vector<std::unique_ptr<char[]>> lent_;
  std::vector<std::uint32_t> free_lent_;
};

}  // namespace bokbok::io
