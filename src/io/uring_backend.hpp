// uring_backend: the io_uring backend under the reactor (contract: io/loop_backend.hpp).
// One ring, used only by the loop thread.
//
// - Wake-ups: a read kept armed on the reactor's eventfd (created blocking, so the read
//   waits in the kernel). post() writes it from any thread. (IORING_OP_MSG_RING would
//   need a ring on the posting side; callers are arbitrary threads, so the eventfd it
//   is. It also works on every kernel with IORING_OP_READ.) When its CQE arrives, wait()
//   re-arms the read and reports the wake-up.
// - wait() hands back each CQE's result and flags. forget(fd) does nothing: nothing is
//   kept per fd.
// - Every SQE's user_data points to a completion: the caller's, or an internal one
//   (wake-up read, cancel requests, sendmsg headers). sqe() is the one place that
//   obtains SQEs; when the queue is full it submits and retries, moving CQEs aside to be
//   handed back by the next wait().
// - Reads are IORING_OP_READ (pipes and sockets alike); writes are IORING_OP_WRITEV on
//   non-sockets and IORING_OP_SENDMSG with MSG_NOSIGNAL on sockets; a poll is a one-shot
//   IORING_OP_POLL_ADD for POLLIN. The msghdr of a sendmsg lives in a pooled internal
//   completion until its CQE arrives, so it is stable even on kernels without
//   IORING_FEAT_SUBMIT_STABLE.
// - submit_recvmsg/submit_sendmsg (fd passing) are IORING_OP_RECVMSG with
//   MSG_CMSG_CLOEXEC and IORING_OP_SENDMSG with MSG_NOSIGNAL on the caller's msghdr,
//   which the caller keeps stable until the CQE; the kernel writes msg_controllen and
//   msg_flags (MSG_CTRUNC) back into it as recvmsg(2) does.
// - Lent reads are IORING_OP_READ or IORING_OP_RECVMSG with IOSQE_BUFFER_SELECT from one
//   provided buffer ring (5.19) over loop_options::lent_buffers buffers, mapped at setup
//   (untouched pages cost nothing). The kernel picks a buffer only when data arrives, so
//   a read waiting on an idle socket holds none. give_back() puts a buffer back on the
//   ring. Where the ring cannot be registered (an older kernel), lends() is false.
// - cancel(c) is IORING_OP_ASYNC_CANCEL by user_data with IORING_ASYNC_CANCEL_ALL
//   (5.19); before 5.19 only the first matching operation is cancelled, which is all a
//   duplex_stream needs (one operation per completion object).
// - wait(timeout) is io_uring_submit_and_wait_timeout (no SQE with IORING_FEAT_EXT_ARG,
//   5.11; liburing uses a timeout SQE before), or io_uring_submit_and_get_events when it
//   must not block.
// - shutdown() cancels what is left (by contract only the wake-up read) and waits, at
//   most 2 s, for the kernel to let go of it before the ring and the buffers go.
// - Setup probes IORING_OP_READ, WRITEV, SENDMSG, RECVMSG, ASYNC_CANCEL and POLL_ADD (5.6) and
//   makes one NOP round trip; any failure throws std::system_error so that loop::start
//   can fall back to epoll.
// - ThreadSanitizer is told that a ring's unmapping comes before the next ring's mapping
//   (it does not see liburing's raw mmap and munmap).
#pragma once

#include <liburing.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "io/loop_backend.hpp"

namespace bokbok::io {

class uring_backend final : public loop_backend {
 public:
  // Throws std::system_error when the ring cannot be set up or lacks an opcode we need.
  explicit uring_backend(const loop_options& opts);
  ~uring_backend() override;
  uring_backend(const uring_backend&) = delete;
  uring_backend& operator=(const uring_backend&) = delete;

  const char* name() const noexcept override { return "io_uring"; }
  int wake_fd_flags() const noexcept override { return 0; }
  void watch_wakeup(int fd) override;
  void submit_read(int fd, void* buf, std::size_t len, completion* c) override;
  void submit_writev(int fd, bool is_socket, const iovec* iov, int iovcnt,
                     completion* c) override;
  void submit_recvmsg(int fd, msghdr* msg, completion* c) override;
  void submit_sendmsg(int fd, const msghdr* msg, completion* c) override;
  bool lends() const noexcept override { return lent_ring_ != nullptr; }
  void submit_read_lent(int fd, msghdr* msg, completion* c) override;
  const char* lent_data(std::uint32_t flags) const noexcept override;
  void give_back(std::uint32_t flags) noexcept override;
  void submit_poll(int fd, completion* c) override;
  void cancel(completion* c) override;
  void forget(int) override {}  // nothing is kept per fd
  bool wait(std::optional<clock::duration> timeout, std::vector<backend_event>& out) override;
  void shutdown() noexcept override;

 private:
  class cancel_op;
  class send_op;

  void check_features(unsigned features);
  void check_enter();
  io_uring_sqe* sqe();
  void submit_cancel(const void* target);
  void arm_wakeup();
  void reap();
  void set_up_lending(unsigned count);
  void tear_down_lending() noexcept;

  io_uring ring_{};
  int wake_fd_ = -1;
  std::uint64_t wake_value_ = 0;  // the armed read's buffer
  bool woken_ = false;            // the wake-up CQE was reaped, not yet reported
  std::unique_ptr<cancel_op> cancel_op_;
  bool cancel_all_ = false;  // IORING_ASYNC_CANCEL_ALL/ANY supported (5.19)
  std::vector<std::unique_ptr<send_op>> send_ops_;  // every one ever made, reused
  std::vector<send_op*> free_send_ops_;
  std::vector<backend_event> ready_;  // reaped, not yet handed back
  unsigned inflight_ = 0;  // SQEs submitted or queued whose CQE has not arrived
  // Lent reads: the provided buffer ring (null: none) and the buffers it lends.
  io_uring_buf_ring* lent_ring_ = nullptr;
  char* lent_base_ = nullptr;
  unsigned lent_count_ = 0;
};

}  // namespace bokbok::io
