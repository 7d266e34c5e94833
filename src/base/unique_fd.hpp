// unique_fd: the one owner of a file descriptor, for every layer. Move-only; closes on
// destruction unless the descriptor is borrowed (stdin/stdout under inetd, for example),
// in which case it is never closed by us. Not synchronised: one owner at a time.
#pragma once

#include <unistd.h>

#include <utility>

namespace bokbok::base {

class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  static unique_fd borrow(int fd) noexcept {
    unique_fd u(fd);
    u.borrowed_ = true;
    return u;
  }
  unique_fd(unique_fd&& o) noexcept
      : fd_(std::exchange(o.fd_, -1)), borrowed_(std::exchange(o.borrowed_, false)) {}
  unique_fd& operator=(unique_fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
      borrowed_ = std::exchange(o.borrowed_, false);
    }
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  bool borrowed() const noexcept { return borrowed_; }
  explicit operator bool() const noexcept { return valid(); }

  // Gives up ownership without closing.
  int release() noexcept {
    borrowed_ = false;
    return std::exchange(fd_, -1);
  }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0 && !borrowed_) ::close(fd_);
    fd_ = fd;
    borrowed_ = false;
  }

 private:
  int fd_ = -1;
  bool borrowed_ = false;
};

}  // namespace bokbok::base
