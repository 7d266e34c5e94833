#include "rpc/fd_queue.hpp"

#include <sys/socket.h>

namespace bokbok::rpc {

void fd_queue::push(std::vector<base::unique_fd> fds) {
  for (auto& fd : fds) q_.emplace_back(fd.release());
}

bool fd_queue::take(std::size_t n, fd_list& out) {
  if (q_.size() < n) return false;
  const auto first_n = q_.begin() + static_cast<std::ptrdiff_t>(n);
  for (auto it = q_.begin(); it != first_n; ++it) out.push_back(std::move(*it));
  q_.erase(q_.begin(), first_n);
  return true;
}

namespace {
bool unix_stream_socket(int fd) noexcept {
  int domain = 0, type = 0;
  socklen_t len = sizeof domain;
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) return false;
  len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return false;
  return domain == AF_UNIX && type == SOCK_STREAM;
}
}  // namespace

bool can_carry_fds(int in, int out) noexcept {
  if (in < 0 || !unix_stream_socket(in)) return false;
  return out < 0 || out == in || unix_stream_socket(out);
}

}  // namespace bokbok::rpc
