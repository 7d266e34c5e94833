#include "io/epoll_loop.hpp"

#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <system_error>
#include <utility>

namespace bokbok::io {
namespace {

constexpr int max_events = 64;

[[noreturn]] void fail(int err, const char* what) {
  throw std::system_error(err, std::system_category(), what);
}

bool not_ready(int res) noexcept { return res == -EAGAIN || res == -EINTR; }

}  // namespace

std::unique_ptr<loop_backend> make_epoll_loop() { return std::make_unique<epoll_loop>(); }

epoll_loop::epoll_loop() : epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)), core_(EFD_NONBLOCK) {
  if (!epoll_fd_) fail(errno, "epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = core_.wake_fd();
  if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, core_.wake_fd(), &ev) < 0)
    fail(errno, "epoll_ctl(eventfd)");
  ready_.reserve(max_events);
  dispatching_.reserve(max_events);
}

void epoll_loop::post(std::function<void()> fn) { core_.post(std::move(fn)); }

void epoll_loop::request_stop() noexcept { core_.request_stop(); }

int epoll_loop::try_read(int fd, const op& o) noexcept {
  ssize_t n = ::read(fd, o.buf, std::min<std::size_t>(o.len, INT_MAX));
  return n >= 0 ? static_cast<int>(n) : -errno;
}

int epoll_loop::try_write(int fd, const op& o) noexcept {
  ssize_t n;
  if (o.is_socket) {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(o.iov);
    msg.msg_iovlen = static_cast<std::size_t>(o.iovcnt);
    n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } else {
    n = ::writev(fd, o.iov, o.iovcnt);
  }
  if (n >= 0) return static_cast<int>(std::min<ssize_t>(n, INT_MAX));
  int res = -errno;
  if (res == -EPIPE && !o.is_socket) discard_pending_sigpipe();
  return res;
}

void epoll_loop::finish(completion* c, int res) { ready_.push_back({c, res}); }

void epoll_loop::submit_read(int fd, void* buf, std::size_t len, completion* c) {
  op o{c, buf, len, nullptr, 0, false};
  auto it = fds_.find(fd);
  if (it == fds_.end() || it->second.reads.empty()) {
    int res = try_read(fd, o);
    if (!not_ready(res)) return finish(c, res);
  }
  enqueue(fd, o, false);
}

void epoll_loop::submit_writev(int fd, bool is_socket, const iovec* iov, int iovcnt,
                               completion* c) {
  op o{c, nullptr, 0, iov, iovcnt, is_socket};
  auto it = fds_.find(fd);
  if (it == fds_.end() || it->second.writes.empty()) {
    int res = try_write(fd, o);
    if (!not_ready(res)) return finish(c, res);
  }
  enqueue(fd, o, true);
}

void epoll_loop::enqueue(int fd, op o, bool is_write) {
  waiters& w = fds_[fd];
  (is_write ? w.writes : w.reads).push_back(o);
  update_registration(fd);
}

// Makes epoll watch exactly what the waiters of `fd` need; forgets the fd when nothing
// waits. If epoll refuses the fd, its waiters complete with that error.
void epoll_loop::update_registration(int fd) {
  auto it = fds_.find(fd);
  if (it == fds_.end()) return;
  waiters& w = it->second;
  std::uint32_t want = (w.reads.empty() ? 0u : std::uint32_t{EPOLLIN | EPOLLRDHUP}) |
                       (w.writes.empty() ? 0u : std::uint32_t{EPOLLOUT});
  if (want == w.registered) {
    if (want == 0) fds_.erase(it);
    return;
  }
  int r = 0;
  if (want == 0) {
    ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);  // EBADF if closed: fine
    fds_.erase(it);
    return;
  }
  epoll_event ev{};
  ev.events = want;
  ev.data.fd = fd;
  r = ::epoll_ctl(epoll_fd_.get(), w.registered == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
  if (r == 0) {
    w.registered = want;
    return;
  }
  int err = -errno;
  for (const op& o : w.reads) finish(o.c, err);
  for (const op& o : w.writes) finish(o.c, err);
  if (w.registered != 0) ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
  fds_.erase(it);
}

void epoll_loop::cancel(completion* c) {
  std::vector<int> touched;
  for (auto& [fd, w] : fds_) {
    bool hit = false;
    for (auto* q : {&w.reads, &w.writes}) {
      auto keep = std::remove_if(q->begin(), q->end(), [&](const op& o) {
        if (o.c != c) return false;
        finish(c, -ECANCELED);
        return true;
      });
      hit = hit || keep != q->end();
      q->erase(keep, q->end());
    }
    if (hit) touched.push_back(fd);
  }
  for (int fd : touched) update_registration(fd);
}

timer_id epoll_loop::add_timer(clock::time_point when, std::function<void()> fn) {
  return core_.timers().add(when, std::move(fn));
}

void epoll_loop::cancel_timer(timer_id id) { core_.timers().cancel(id); }

void epoll_loop::on_ready(int fd, std::uint32_t events) {
  auto it = fds_.find(fd);
  if (it == fds_.end()) return;
  waiters& w = it->second;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    while (!w.reads.empty()) {
      int res = try_read(fd, w.reads.front());
      if (not_ready(res)) break;
      finish(w.reads.front().c, res);
      w.reads.pop_front();
    }
  }
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
    while (!w.writes.empty()) {
      int res = try_write(fd, w.writes.front());
      if (not_ready(res)) break;
      finish(w.writes.front().c, res);
      w.writes.pop_front();
    }
  }
  update_registration(fd);
}

void epoll_loop::run() {
  core_.mark_loop_thread();
  while (!core_.stopping()) {
    wait_once();
    dispatch();
    if (core_.stopping()) break;
    core_.timers().run_due(clock::now());
    if (core_.local_posts_pending()) core_.run_posted();
  }
}

void epoll_loop::wait_once() {
  int timeout = -1;
  if (!ready_.empty() || core_.local_posts_pending()) {
    timeout = 0;
  } else if (auto d = core_.timers().next_deadline()) {
    auto left = *d - clock::now();
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    timeout = static_cast<int>(std::clamp<decltype(ms)>(ms, 0, INT_MAX));
  }
  epoll_event events[max_events];
  int n = ::epoll_wait(epoll_fd_.get(), events, max_events, timeout);
  // Only EINTR can be expected; anything else would repeat forever, so it ends the
  // loop thread loudly (std::terminate).
  if (n < 0 && errno != EINTR) fail(errno, "epoll_wait");
  bool woken = false;
  for (int i = 0; i < n; ++i) {
    if (events[i].data.fd == core_.wake_fd()) {
      woken = true;
    } else {
      on_ready(events[i].data.fd, events[i].events);
    }
  }
  if (woken) {
    // Consume the eventfd first, then let run_posted() clear the flag and drain.
    std::uint64_t count;
    while (::read(core_.wake_fd(), &count, sizeof count) < 0 && errno == EINTR) {
    }
    if (!core_.stopping()) core_.run_posted();
  }
}

void epoll_loop::dispatch() {
  dispatching_.swap(ready_);
  for (const ready_op& e : dispatching_) e.c->complete(e.res);
  dispatching_.clear();
}

}  // namespace bokbok::io
