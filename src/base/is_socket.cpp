#include "base/is_socket.hpp"

#include <sys/stat.h>

namespace bokbok::base {

bool is_socket(int fd) noexcept {
  struct stat st;
  return ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

fd_kind fd_kind::of(int fd) noexcept {
  fd_kind k;
  k.socket = is_socket(fd);
  if (!k.socket) return k;
  int value = 0;
  socklen_t len = sizeof value;
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &value, &len) == 0) k.family = value;
  len = sizeof value;
  k.stream = ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &value, &len) == 0 && value == SOCK_STREAM;
  return k;
}

}  // namespace bokbok::base
