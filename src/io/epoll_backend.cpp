#include "io/epoll_backend.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

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

std::unique_ptr<loop_backend> make_epoll_backend(const loop_options& opts) {
  return std::make_unique<epoll_backend>(opts);
}

epoll_backend::epoll_backend(const loop_options& opts)
    : epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)), max_lent_(std::min(opts.lent_buffers, 32768u)) {
  if (!epoll_fd_) fail(errno, "epoll_create1");
  ready_.reserve(max_events);
}

int epoll_backend::wake_fd_flags() const noexcept { return EFD_NONBLOCK; }

void epoll_backend::watch_wakeup(int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) fail(errno, "epoll_ctl(eventfd)");
  wake_fd_ = fd;
}

int epoll_backend::try_read(int fd, const op& o) noexcept {
  ssize_t n = o.recv_msg ? ::recvmsg(fd, o.recv_msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT)
                         : ::read(fd, o.buf, std::min<std::size_t>(o.len, INT_MAX));
  return n >= 0 ? static_cast<int>(n) : -errno;
}

int epoll_backend::read_once(int fd, const op& o, std::uint32_t& flags) {
  flags = 0;
  if (!o.lent) return try_read(fd, o);
  if (free_lent_.empty()) {
    if (lent_.size() >= max_lent_) return -ENOBUFS;
    lent_.push_back(std::make_unique_for_overwrite<char[]>(lent_buffer_size));
    free_lent_.push_back(static_cast<std::uint32_t>(lent_.size() - 1));
  }
  const std::uint32_t id = free_lent_.back();
  op into = o;
  if (o.recv_msg) {
    o.recv_msg->msg_iov[0].iov_base = lent_[id].get();
    o.recv_msg->msg_iov[0].iov_len = std::min(o.recv_msg->msg_iov[0].iov_len, lent_buffer_size);
  } else {
    into.buf = lent_[id].get();
    into.len = lent_buffer_size;
  }
  int res = try_read(fd, into);
  if (res > 0) {
    free_lent_.pop_back();
    flags = lent_buffer_flag | (id << 16);
  }
  return res;
}

const char* epoll_backend::lent_data(std::uint32_t flags) const noexcept {
  return lent_[flags >> 16].get();
}

void epoll_backend::give_back(std::uint32_t flags) noexcept { free_lent_.push_back(flags >> 16); }

int epoll_backend::try_write(int fd, const op& o) noexcept {
  ssize_t n;
  if (o.send_msg) {
    n = ::sendmsg(fd, o.send_msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } else if (o.is_socket) {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(o.iov);
    msg.msg_iovlen = static_cast<std::size_t>(o.iovcnt);
    n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } else {
    n = ::writev(fd, o.iov, o.iovcnt);
  }
  if (n >= 0) return static_cast<int>(std::min<ssize_t>(n, INT_MAX));
  return -errno;
}

epoll_backend::fd_state& epoll_backend::state(int fd) {
  auto i = static_cast<std::size_t>(fd);
  if (i >= fds_.size()) fds_.resize(std::max(i + 1, fds_.size() * 2));
  return fds_[i];
}

void epoll_backend::finish(completion* c, int res, std::uint32_t flags) {
  ready_.push_back({c, res, flags});
}

void epoll_backend::mark_changed(int fd, fd_state& s) {
  if (s.dirty) return;
  s.dirty = true;
  changed_.push_back(fd);
}

void epoll_backend::submit_read(int fd, void* buf, std::size_t len, completion* c) {
  queue_read(fd, op{c, buf, len, nullptr, 0, false, nullptr, nullptr});
}

void epoll_backend::submit_writev(int fd, bool is_socket, const iovec* iov, int iovcnt,
                                  completion* c) {
  queue_write(fd, op{c, nullptr, 0, iov, iovcnt, is_socket, nullptr, nullptr});
}

void epoll_backend::submit_recvmsg(int fd, msghdr* msg, completion* c) {
  queue_read(fd, op{c, nullptr, 0, nullptr, 0, true, msg, nullptr});
}

void epoll_backend::submit_read_lent(int fd, msghdr* msg, completion* c) {
  op o{c, nullptr, 0, nullptr, 0, msg != nullptr, msg, nullptr};
  o.lent = true;
  queue_read(fd, o);
}

void epoll_backend::submit_sendmsg(int fd, const msghdr* msg, completion* c) {
  queue_write(fd, op{c, nullptr, 0, nullptr, 0, true, nullptr, msg});
}

void epoll_backend::queue_read(int fd, const op& o) {
  if (fd < 0) return finish(o.c, -EBADF);
  fd_state& s = state(fd);
  if (s.unwatchable) {
    std::uint32_t flags;
    int res = read_once(fd, o, flags);
    return finish(o.c, res, flags);
  }
  // No read now: the wait of the next turn tells whether the fd is readable.
  s.reads.push_back(o);
  if (s.reads.size() == 1) mark_changed(fd, s);
}

void epoll_backend::queue_write(int fd, const op& o) {
  if (fd < 0) return finish(o.c, -EBADF);
  fd_state& s = state(fd);
  // Tried at once unless earlier writes wait (they go first: a stream's bytes stay in order).
  if (s.writes.empty()) {
    int res = try_write(fd, o);
    if (!not_ready(res) || s.unwatchable) return finish(o.c, res);
  }
  s.writes.push_back(o);
  if (s.writes.size() == 1) mark_changed(fd, s);
}

void epoll_backend::submit_poll(int fd, completion* c) {
  if (fd < 0) return finish(c, -EBADF);
  fd_state& s = state(fd);
  if (s.unwatchable) return finish(c, POLLIN);
  s.polls.push_back(op{c, nullptr, 0, nullptr, 0, false, nullptr, nullptr});
  if (s.polls.size() == 1) mark_changed(fd, s);
}

// Loop thread, before waiting: makes epoll watch what the changed fds want. A fd epoll
// refuses with EPERM (a regular file) has its operations made directly from now on;
// any other refusal completes its waiters with the error.
void epoll_backend::apply_changes() {
  // watch() may complete operations but never adds to changed_.
  for (int fd : changed_) {
    fd_state& s = fds_[static_cast<std::size_t>(fd)];
    s.dirty = false;
    watch(fd, s);
  }
  changed_.clear();
}

void epoll_backend::watch(int fd, fd_state& s) {
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

void epoll_backend::run_direct(int fd, fd_state& s) {
  for (const op& o : s.reads) {
    std::uint32_t flags;
    int res = read_once(fd, o, flags);
    finish(o.c, res, flags);
  }
  for (const op& o : s.writes) finish(o.c, try_write(fd, o));
  for (const op& o : s.polls) finish(o.c, POLLIN);
  s.reads.clear();
  s.writes.clear();
  s.polls.clear();
}

void epoll_backend::cancel(completion* c) {
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

void epoll_backend::forget(int fd) {
  if (fd < 0 || static_cast<std::size_t>(fd) >= fds_.size()) return;
  fd_state& s = fds_[static_cast<std::size_t>(fd)];
  for (auto* q : {&s.reads, &s.writes, &s.polls})
    for (const op& o : *q) finish(o.c, -ECANCELED);
  if (s.added) ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
  if (s.dirty) std::erase(changed_, fd);
  s = fd_state{};
}

void epoll_backend::on_ready(int fd, std::uint32_t events) {
  if (fd < 0 || static_cast<std::size_t>(fd) >= fds_.size()) return;
  fd_state& s = fds_[static_cast<std::size_t>(fd)];
  std::size_t done_reads = 0, done_writes = 0;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    while (done_reads < s.reads.size()) {
      std::uint32_t flags;
      int res = read_once(fd, s.reads[done_reads], flags);
      if (not_ready(res)) break;
      finish(s.reads[done_reads++].c, res, flags);
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

bool epoll_backend::wait(std::optional<clock::duration> timeout,
                         std::vector<backend_event>& out) {
  apply_changes();
  int ms = -1;
  if (!ready_.empty()) {
    ms = 0;
  } else if (timeout) {
    auto up = std::chrono::ceil<std::chrono::milliseconds>(*timeout).count();
    ms = static_cast<int>(std::clamp<decltype(up)>(up, 0, INT_MAX));
  }
  epoll_event events[max_events];
  int n = ::epoll_wait(epoll_fd_.get(), events, max_events, ms);
  // Only EINTR can be expected; anything else would repeat forever, so it ends the
  // loop thread loudly (std::terminate).
  if (n < 0 && errno != EINTR) fail(errno, "epoll_wait");
  bool woken = false;
  for (int i = 0; i < n; ++i) {
    if (events[i].data.fd == wake_fd_) {
      woken = true;
    } else {
      on_ready(events[i].data.fd, events[i].events);
    }
  }
  if (woken) {
    // Consume the eventfd; the reactor then clears its flag and drains.
    std::uint64_t count;
    while (::read(wake_fd_, &count, sizeof count) < 0 && errno == EINTR) {
    }
  }
  out.swap(ready_);
  return woken;
}

}  // namespace bokbok::io
