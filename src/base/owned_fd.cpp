// bokbok::owned_fd (include/bokbok/fd.hpp). In base, not api: the rpc layer holds received
// fds in it, and a layer may use only symbols of its own and lower layers.
#include "bokbok/fd.hpp"

#include <unistd.h>

namespace bokbok {

owned_fd::~owned_fd() { reset(); }

owned_fd& owned_fd::operator=(owned_fd&& o) noexcept {
  if (this != &o) reset(o.release());
  return *this;
}

void owned_fd::reset(int fd) noexcept {
  // close() is not retried on EINTR: on Linux the fd is released either way.
  if (fd_ >= 0 && fd_ != fd) ::close(fd_);
  fd_ = fd;
}

}  // namespace bokbok
