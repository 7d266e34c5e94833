// fd_queue: the file descriptors a connection has received and no message has claimed
// yet (PROTOCOL.md §13). They arrive (io::stream_events::on_fds) no later than the first
// byte of the record whose first fragment declares them; that fragment takes the first
// n of the queue, in arrival order.
//
// Threads: the connection's loop thread only. Every fd is owned: what is not taken is
// closed when the queue goes (or clear()).
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "base/unique_fd.hpp"
#include "bokbok/fd.hpp"

namespace bokbok::rpc {

class fd_queue {
 public:
  void push(std::vector<base::unique_fd> fds);
  std::size_t size() const { return q_.size(); }
  // Moves the first `n` into `out` (appended); false, nothing taken, when fewer are queued.
  bool take(std::size_t n, fd_list& out);
  void clear() { q_.clear(); }

 private:
  // Oldest first. A vector, not a deque: empty, it allocates nothing (every connection
  // has one; few ever receive fds), and the few a message takes go from the front.
  std::vector<owned_fd> q_;
};

// The fds of one complete received message until the application takes them: counted
// in the connection's `held` (options::max_received_fds) while here; closed with it.
// Any thread (the counter is atomic).
class received_fds {
 public:
  received_fds() = default;
  received_fds(fd_list fds, std::shared_ptr<std::atomic<std::size_t>> held)
      : fds_(std::move(fds)), held_(std::move(held)) {
    if (held_) *held_ += fds_.size();
  }
  received_fds(received_fds&& o) noexcept
      : fds_(std::move(o.fds_)), held_(std::exchange(o.held_, nullptr)) {}
  received_fds& operator=(received_fds&& o) noexcept {
    if (this != &o) {
      take();
      fds_ = std::move(o.fds_);
      held_ = std::exchange(o.held_, nullptr);
    }
    return *this;
  }
  ~received_fds() { take(); }
  // The fds, off the count (closed by the caller's list unless moved on).
  fd_list take() {
    if (held_) *held_ -= fds_.size();
    held_.reset();
    return std::move(fds_);
  }
  bool empty() const { return fds_.empty(); }

 private:
  fd_list fds_;
  std::shared_ptr<std::atomic<std::size_t>> held_;
};

// Whether a connection over (in, out) can carry fds: `in` is an AF_UNIX stream socket
// and `out` is -1 (the same), or one too (stdin and stdout of an exec: child with
// child.socketpair are one socket under two numbers). Checked before the stream is made, so the
// hello (or key mode's handshake) can offer feature_fds; duplex_stream::can_pass_fds
// says the same once it exists.
bool can_carry_fds(int in, int out) noexcept;

}  // namespace bokbok::rpc
