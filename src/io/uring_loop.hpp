// uring_loop: the io_uring backend. One ring, used only by the loop thread.
//
// - Wake-ups: an eventfd with a read kept armed on the ring. post() writes it from any
//   thread. (IORING_OP_MSG_RING would need a ring on the posting side; callers are
//   arbitrary threads, so the eventfd it is. It also works on every kernel with
//   IORING_OP_READ.)
// - Completions get the CQE's result and flags. forget(fd) does nothing: nothing is
//   kept per fd.
// - Every SQE's user_data points to a completion: the caller's, or an internal one
//   (wake-up read, cancel requests, sendmsg headers). sqe() is the one place that
//   obtains SQEs; when the queue is full it submits and retries.
// - Reads are IORING_OP_READ (pipes and sockets alike); writes are IORING_OP_WRITEV on
//   non-sockets and IORING_OP_SENDMSG with MSG_NOSIGNAL on sockets; a poll is a one-shot
//   IORING_OP_POLL_ADD for POLLIN. The msghdr of a
//   sendmsg lives in a pooled internal completion until its CQE arrives, so it is stable
//   even on kernels without IORING_FEAT_SUBMIT_STABLE.
// - cancel(c) is IORING_OP_ASYNC_CANCEL by user_data with IORING_ASYNC_CANCEL_ALL
//   (5.19); before 5.19 only the first matching operation is cancelled, which is all a
//   duplex_stream needs (one operation per completion object).
// - Timers: the loop waits with io_uring_submit_and_wait_timeout until the nearest
//   deadline (no SQE with IORING_FEAT_EXT_ARG, 5.11; liburing uses a timeout SQE before).
// - Setup probes IORING_OP_READ, WRITEV, SENDMSG, ASYNC_CANCEL and POLL_ADD (5.6) and makes one
//   NOP round trip; any failure throws std::system_error so that loop::start can fall
//   back to epoll.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "io/loop_backend.hpp"
#include "io/loop_core.hpp"

namespace bokbok::io {

// Throws std::system_error when the ring cannot be set up or lacks an opcode we need.
std::unique_ptr<loop_backend> make_uring_loop(const loop_options& opts);

class uring_loop final : public loop_backend {
 public:
  explicit uring_loop(const loop_options& opts);
  ~uring_loop() override;
  uring_loop(const uring_loop&) = delete;
  uring_loop& operator=(const uring_loop&) = delete;

  const char* backend_name() const noexcept override { return "io_uring"; }
  void post(std::function<void()> fn) override;
  bool in_loop_thread() const noexcept override { return core_.in_loop_thread(); }
  void submit_read(int fd, void* buf, std::size_t len, completion* c) override;
  void submit_writev(int fd, bool is_socket, const iovec* iov, int iovcnt,
                     completion* c) override;
  void submit_poll(int fd, completion* c) override;
  void cancel(completion* c) override;
  void forget(int) override {}  // nothing is kept per fd
  timer_id add_timer(clock::time_point when, std::function<void()> fn) override;
  void cancel_timer(timer_id id) override;

  void run() override;
  void request_stop() noexcept override;

 private:
  struct ready_cqe {
    completion* c;
    int res;
    std::uint32_t flags;
  };
  class wake_op;
  class cancel_op;
  class send_op;

  void check_features(unsigned features);
  void check_enter();
  io_uring_sqe* sqe();
  void submit_cancel(const void* target);
  void arm_wakeup();
  void on_wakeup();
  void wait_once();
  void reap();
  void dispatch();
  void drain_at_exit();

  io_uring ring_{};
  loop_core core_{0};  // a blocking eventfd: io_uring polls it
  std::unique_ptr<wake_op> wake_op_;
  std::unique_ptr<cancel_op> cancel_op_;
  bool cancel_all_ = false;  // IORING_ASYNC_CANCEL_ALL/ANY supported (5.19)
  std::vector<std::unique_ptr<send_op>> send_ops_;  // every one ever made, reused
  std::vector<send_op*> free_send_ops_;
  std::vector<ready_cqe> ready_;  // reaped, not yet dispatched
  std::vector<ready_cqe> dispatching_;
  unsigned inflight_ = 0;         // SQEs submitted or queued whose CQE has not arrived
};

}  // namespace bokbok::io
