// epoll_loop: the fallback backend, for where io_uring cannot be set up (seccomp,
// kernel.io_uring_disabled, kernels before 5.6). Same semantics as uring_loop:
//
// - Each fd is added to the epoll set once, when an operation first waits on it, and
//   stays registered until forget(fd). Before each wait the loop compares, for the fds
//   whose waiters changed, the events they want (EPOLLIN|EPOLLRDHUP while a read or a
//   poll waits,
//   EPOLLOUT while a write waits) with what epoll watches, and calls EPOLL_CTL_MOD only
//   where they differ. A fd that wants something is watched level triggered; a fd that
//   wants nothing is left edge triggered with no events, so a hang-up it keeps
//   reporting wakes the loop once, not on every turn.
// - A read is not tried at once: it waits for the fd to be reported readable by the
//   wait the loop makes on its next turn anyway (level triggered, so data already there
//   is reported at once). A write is tried at once with writev, or sendmsg(MSG_NOSIGNAL)
//   on sockets, and waits for EPOLLOUT only if the fd is full.
// - A completion is never called from inside submit_*(), cancel() or forget(): results,
//   and -ECANCELED for cancelled waiters, go to a run queue that the loop dispatches on
//   its next turn, as io_uring would deliver them. Completions get flags 0.
// - forget(fd) must be called before the fd is closed (duplex_stream does), so that a
//   number reused by a new file never inherits the old registration.
// - Files that epoll refuses (EPERM: regular files) are never watched: their reads and
//   writes are made directly, as they do not return EAGAIN, and a poll is ready at once.
// - A pipe write that fails with EPIPE consumes the SIGPIPE queued for the loop thread.
// - Timers: epoll_wait's timeout is the nearest deadline, rounded up to a millisecond.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "io/loop_backend.hpp"
#include "io/loop_core.hpp"
#include "base/unique_fd.hpp"

namespace bokbok::io {

// Throws std::system_error when epoll or the eventfd cannot be created.
std::unique_ptr<loop_backend> make_epoll_loop();

class epoll_loop final : public loop_backend {
 public:
  epoll_loop();
  ~epoll_loop() override = default;
  epoll_loop(const epoll_loop&) = delete;
  epoll_loop& operator=(const epoll_loop&) = delete;

  const char* backend_name() const noexcept override { return "epoll"; }
  void post(std::function<void()> fn) override;
  bool in_loop_thread() const noexcept override { return core_.in_loop_thread(); }
  void submit_read(int fd, void* buf, std::size_t len, completion* c) override;
  void submit_writev(int fd, bool is_socket, const iovec* iov, int iovcnt,
                     completion* c) override;
  void submit_poll(int fd, completion* c) override;
  void cancel(completion* c) override;
  void forget(int fd) override;
  timer_id add_timer(clock::time_point when, std::function<void()> fn) override;
  void cancel_timer(timer_id id) override;

  void run() override;
  void request_stop() noexcept override;

 private:
  struct op {
    completion* c;
    void* buf;        // read
    std::size_t len;  // read
    const iovec* iov;  // write
    int iovcnt;        // write
    bool is_socket;    // write
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
  struct ready_op {
    completion* c;
    int res;
  };

  static int try_read(int fd, const op& o) noexcept;
  static int try_write(int fd, const op& o) noexcept;
  fd_state& state(int fd);
  void finish(completion* c, int res);
  void mark_changed(int fd, fd_state& s);
  void apply_changes();
  void watch(int fd, fd_state& s);
  void run_direct(int fd, fd_state& s);
  void on_ready(int fd, std::uint32_t events);
  void wait_once();
  void dispatch();

  base::unique_fd epoll_fd_;
  loop_core core_;
  std::vector<fd_state> fds_;
  std::vector<int> changed_;     // fds whose wanted events may have changed
  std::vector<ready_op> ready_;  // results waiting to be delivered
  std::vector<ready_op> dispatching_;
};

}  // namespace bokbok::io
