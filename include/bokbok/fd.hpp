// File descriptors that travel with messages (README "File descriptors", PROTOCOL.md §13).
//
// Only a connection over a UNIX stream socket carries them (a unix: address, a
// socketpair, an exec: child with child.socketpair): connection::request_with_fds and
// notify_with_fds send them, this_call::take_fds receives those of the request or
// notification being handled, this_call::attach_fds sends some with a handler's
// response. What arrives is always owned: an fd the application does not take is closed.
#pragma once

#include <vector>

#include "bokbok/export.hpp"
#include "bokbok/message.hpp"

namespace bokbok {

// An owned file descriptor: closed when destroyed (or reset) unless release()d.
// Move-only. -1 means none. Not synchronised: one owner at a time.
class BOKBOK_API owned_fd {
 public:
  owned_fd() noexcept = default;
  // Takes ownership of `fd` (-1: none).
  explicit owned_fd(int fd) noexcept : fd_(fd) {}
  ~owned_fd();
  owned_fd(owned_fd&& o) noexcept : fd_(o.release()) {}
  owned_fd& operator=(owned_fd&& o) noexcept;
  owned_fd(const owned_fd&) = delete;
  owned_fd& operator=(const owned_fd&) = delete;

  int get() const noexcept { return fd_; }
  // Gives the fd up without closing it (-1 left behind).
  int release() noexcept {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  // Closes the fd held, if any, and holds `fd` instead.
  void reset(int fd = -1) noexcept;
  explicit operator bool() const noexcept { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

using fd_list = std::vector<owned_fd>;

// A message with the fds that came with it (connection::request_with_fds's answer).
struct parcel {
  message fields;
  fd_list fds;
};

}  // namespace bokbok
