// epoll_loop: the fallback backend, for where io_uring cannot be set up (seccomp,
// kernel.io_uring_disabled, kernels before 5.6). Same semantics as uring_loop:
//
// - An operation is tried at once with a non-blocking read, writev or
//   sendmsg(MSG_NOSIGNAL); if the fd is not ready it waits for readiness (level
//   triggered, one registration per fd covering its waiting reads and writes).
// - A completion is never called from inside submit_*() or cancel(): results found at
//   once, and -ECANCELED for cancelled waiters, go to a run queue that the loop
//   dispatches on its next turn, as io_uring would deliver them.
// - An fd is removed from the epoll set as soon as nothing waits on it, before any
//   completion runs, so a completion may close it (and the number may be reused) safely.
// - Regular files are never registered: their reads and writes do not return EAGAIN.
// - A pipe write that fails with EPIPE consumes the SIGPIPE queued for the loop thread.
// - Timers: epoll_wait's timeout is the nearest deadline, rounded up to a millisecond.
#pragma once

#include <sys/epoll.h>

#include <deque>
#include <memory>
#include <unordered_map>
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
  void cancel(completion* c) override;
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
  struct waiters {
    std::deque<op> reads;
    std::deque<op> writes;
    std::uint32_t registered = 0;  // the events epoll watches for this fd, 0 = not added
  };
  struct ready_op {
    completion* c;
    int res;
  };

  static int try_read(int fd, const op& o) noexcept;
  static int try_write(int fd, const op& o) noexcept;
  void finish(completion* c, int res);
  void enqueue(int fd, op o, bool is_write);
  void update_registration(int fd);
  void on_ready(int fd, std::uint32_t events);
  void wait_once();
  void dispatch();

  base::unique_fd epoll_fd_;
  loop_core core_;
  std::unordered_map<int, waiters> fds_;
  std::vector<ready_op> ready_;  // results waiting to be delivered
  std::vector<ready_op> dispatching_;
};

}  // namespace bokbok::io
