#include "io/epoll_loop.hpp"

#include <poll.h>
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
constexpr std::uint32_t read_events = EPOLLIN | EPOLLRDHUP;
constexpr std::uint32_t write_events = EPOLLOUT;
// What a fd that wants nothing is left watching: no events, edge triggered, so that
// the EPOLLHUP or EPOLLERR epoll always reports is reported once, not on every wait.
constexpr std::uint32_t idle_events = EPOLLET;

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

epoll_loop::fd_state& epoll_loop::state(int fd) {
  auto i = static_cast<std::size_t>(fd);
  if (i >= fds_.size()) fds_.resize(std::max(i + 1, fds_.size() * 2));
  return fds_[i];
}

void epoll_loop::finish(completion* c, int res) { ready_.push_back({c, res}); }

void epoll_loop::mark_changed(int fd, fd_state& s) {
  if (s.dirty) return;
  s.dirty = true;
  changed_.push_back(fd);
}

void epoll_loop::submit_read(int fd, void* buf, std::size_t len, completion* c) {
  if (fd < 0) return finish(c, -EBADF);
  op o{c, buf, len, nullptr, 0, false};
  fd_state& s = state(fd);
  if (s.unwatchable) return finish(c, try_read(fd, o));
  // No read now: the wait of the next turn tells whether the fd is readable.
  s.reads.push_back(o);
  if (s.reads.size() == 1) mark_changed(fd, s);
}

void epoll_loop::submit_writev(int fd, bool is_socket, const iovec* iov, int iovcnt,
                               completion* c) {
  if (fd < 0) return finish(c, -EBADF);
  op o{c, nullptr, 0, iov, iovcnt, is_socket};
  fd_state& s = state(fd);
  if (s.writes.empty()) {
    int res = try_write(fd, o);
    if (!not_ready(res) || s.unwatchable) return finish(c, res);
  }
  s.writes.push_back(o);
  if (s.writes.size() == 1) mark_changed(fd, s);
}

void epoll_loop::submit_poll(int fd, completion* c) {
  if (fd < 0) return finish(c, -EBADF);
  fd_state& s = state(fd);
  if (s.unwatchable) return finish(c, POLLIN);
  s.polls.push_back(op{c, nullptr, 0, nullptr, 0, false});
  if (s.polls.size() == 1) mark_changed(fd, s);
}

// Loop thread, before waiting: makes epoll watch what the changed fds want. A fd epoll
// refuses with EPERM (a regular file) has its operations made directly from now on;
// any other refusal completes its waiters with the error.
void epoll_loop::apply_changes() {
  // watch() may complete operations but never adds to changed_.
  for (int fd : changed_) {
    fd_state& s = fds_[static_cast<std::size_t>(fd)];
    s.dirty = false;
    watch(fd, s);
  }
  changed_.clear();
}

void epoll_loop::watch(int fd, fd_state& s) {
  if (s.unwatchable) return run_direct(fd, s);
  bool reading = !s.reads.empty() || !s.polls.empty();
  std::uint32_t want = (reading ? read_events : 0u) |
                       (s.writes.empty() ? 0u : write_events);
  if (want == 0) want = idle_events;
  if (s.added && want == s.watched) return;
  if (!s.added && want == idle_events) return;  // nothing to watch yet
  epoll_event ev{};
  ev.events = want;
  ev.data.fd = fd;
  int r = ::epoll_ctl(epoll_fd_.get(), s.added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
  // The number was closed without forget() (the registration went with the file, or
  // belongs to another file): register the file the number holds now.
  if (r < 0 && errno == ENOENT && s.added)
    r = ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev);
  if (r < 0 && errno == EEXIST && !s.added)
    r = ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, fd, &ev);
  if (r == 0) {
    s.added = true;
    s.watched = want;
    return;
  }
  int err = errno;
  if (err == EPERM) {
    s.unwatchable = true;
    return run_direct(fd, s);
  }
  for (auto* q : {&s.reads, &s.writes, &s.polls}) {
    for (const op& o : *q) finish(o.c, -err);
    q->clear();
  }
}

void epoll_loop::run_direct(int fd, fd_state& s) {
  for (const op& o : s.reads) finish(o.c, try_read(fd, o));
  for (const op& o : s.writes) finish(o.c, try_write(fd, o));
  for (const op& o : s.polls) finish(o.c, POLLIN);
  s.reads.clear();
  s.writes.clear();
  s.polls.clear();
}

void epoll_loop::cancel(completion* c) {
  for (std::size_t fd = 0; fd < fds_.size(); ++fd) {
    fd_state& s = fds_[fd];
    for (auto* q : {&s.reads, &s.writes, &s.polls}) {
      if (q->empty()) continue;
      auto keep = std::remove_if(q->begin(), q->end(), [&](const op& o) {
        if (o.c != c) return false;
        finish(c, -ECANCELED);
        return true;
      });
      if (keep == q->end()) continue;
      q->erase(keep, q->end());
      if (q->empty()) mark_changed(static_cast<int>(fd), s);
    }
  }
}

void epoll_loop::forget(int fd) {
  if (fd < 0 || static_cast<std::size_t>(fd) >= fds_.size()) return;
  fd_state& s = fds_[static_cast<std::size_t>(fd)];
  for (auto* q : {&s.reads, &s.writes, &s.polls})
    for (const op& o : *q) finish(o.c, -ECANCELED);
  if (s.added) ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
  if (s.dirty) std::erase(changed_, fd);
  s = fd_state{};
}

timer_id epoll_loop::add_timer(clock::time_point when, std::function<void()> fn) {
  return core_.timers().add(when, std::move(fn));
}

void epoll_loop::cancel_timer(timer_id id) { core_.timers().cancel(id); }

void epoll_loop::on_ready(int fd, std::uint32_t events) {
  if (fd < 0 || static_cast<std::size_t>(fd) >= fds_.size()) return;
  fd_state& s = fds_[static_cast<std::size_t>(fd)];
  std::size_t done_reads = 0, done_writes = 0;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    while (done_reads < s.reads.size()) {
      int res = try_read(fd, s.reads[done_reads]);
      if (not_ready(res)) break;
      finish(s.reads[done_reads++].c, res);
    }
  }
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
    while (done_writes < s.writes.size()) {
      int res = try_write(fd, s.writes[done_writes]);
      if (not_ready(res)) break;
      finish(s.writes[done_writes++].c, res);
    }
  }
  bool polls_done = false;
  if (!s.polls.empty() && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
    // The EPOLL* event bits have the values of the POLL* ones.
    constexpr std::uint32_t poll_bits = EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLHUP | EPOLLERR;
    int revents = static_cast<int>(events & poll_bits);
    for (const op& o : s.polls) finish(o.c, revents != 0 ? revents : POLLIN);
    s.polls.clear();
    polls_done = true;
  }
  s.reads.erase(s.reads.begin(), s.reads.begin() + static_cast<std::ptrdiff_t>(done_reads));
  s.writes.erase(s.writes.begin(),
                 s.writes.begin() + static_cast<std::ptrdiff_t>(done_writes));
  if ((done_reads > 0 && s.reads.empty()) || (done_writes > 0 && s.writes.empty()) ||
      polls_done)
    mark_changed(fd, s);
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
  apply_changes();
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
  for (const ready_op& e : dispatching_) e.c->complete(e.res, 0);
  dispatching_.clear();
}

}  // namespace bokbok::io
