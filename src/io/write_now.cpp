#include "io/write_now.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

namespace bokbok::io {
namespace {

ssize_t write_retrying(int fd, std::string_view bytes) noexcept {
  ssize_t n;
  do n = ::write(fd, bytes.data(), bytes.size());
  while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : n;
}

// The calling thread blocks SIGPIPE: takes the one a failed write left pending on it.
void consume_sigpipe(const sigset_t& pipe_only) noexcept {
  timespec zero{0, 0};
  while (sigtimedwait(&pipe_only, nullptr, &zero) < 0 && errno == EINTR) {
  }
}

}  // namespace

ssize_t write_now(int fd, bool socket, std::string_view bytes, bool sigpipe_blocked) noexcept {
  if (socket) {
    ssize_t n;
    do n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
  }
  sigset_t pipe_only;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  if (sigpipe_blocked) {
    ssize_t n = write_retrying(fd, bytes);
    if (n == -EPIPE) consume_sigpipe(pipe_only);
    return n;
  }
  sigset_t old;
  pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  ssize_t n = write_retrying(fd, bytes);
  // The SIGPIPE this write raised is pending on this thread: take it before unblocking.
  if (n == -EPIPE && !sigismember(&old, SIGPIPE)) consume_sigpipe(pipe_only);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return n;
}

}  // namespace bokbok::io
