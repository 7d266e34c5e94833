// The monitoring side of a child process: waiting for it to exit, the grace period,
// SIGTERM and SIGKILL, reaping, and its stderr. Spawning is in spawn.cpp.
#include "transport/child_process.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "transport/child_state.hpp"

namespace bokbok::transport {

namespace {

constexpr std::size_t stderr_tail_limit = 4096;
constexpr auto poll_fallback_tick = std::chrono::milliseconds(20);

using clock = std::chrono::steady_clock;

int ms_until(std::optional<clock::time_point> t, bool tick) {
  int limit = tick ? int(poll_fallback_tick.count()) : -1;
  if (!t) return limit;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(*t - clock::now()).count();
  ms = std::max<long long>(ms, 0);
  return limit < 0 ? int(std::min<long long>(ms, 1 << 30)) : int(std::min<long long>(ms, limit));
}

void send_signal(child_process::state& st, int sig) {
  if (st.pidfd.valid())
    syscall(SYS_pidfd_send_signal, st.pidfd.get(), sig, nullptr, 0u);
  else
    ::kill(st.pid, sig);  // only before it is reaped: the monitor reaps, so the pid is ours
}

}  // namespace

// Monitor thread: one per child, detached, ends once the child is reaped.
void child_state_monitor(std::shared_ptr<child_process::state> st) {
  enum class stage { running, grace, terminated, killed } at = stage::running;
  std::optional<clock::time_point> deadline;
  bool reaped = false;
  while (!reaped) {
    pollfd fds[3];
    nfds_t n = 0;
    int ctl_i = -1, pid_i = -1, err_i = -1;
    fds[ctl_i = int(n++)] = {st->control.get(), POLLIN, 0};
    if (st->pidfd.valid()) fds[pid_i = int(n++)] = {st->pidfd.get(), POLLIN, 0};
    if (st->stderr_pipe.valid()) fds[err_i = int(n++)] = {st->stderr_pipe.get(), POLLIN, 0};
    int r = ::poll(fds, n, ms_until(deadline, !st->pidfd.valid()));
    if (r < 0 && errno != EINTR) break;
    if (ctl_i >= 0 && (fds[ctl_i].revents & POLLIN)) {
      std::uint64_t v;
      (void)!::read(st->control.get(), &v, sizeof v);
      if (at == stage::running) {
        at = stage::grace;
        deadline = clock::now() + st->grace;
      }
    }
    if (err_i >= 0 && fds[err_i].revents) st->read_stderr();
    if (pid_i < 0 || (fds[pid_i].revents & POLLIN)) reaped = st->try_reap(pid_i >= 0);
    if (!reaped && deadline && clock::now() >= *deadline) {
      if (at == stage::grace) {
        send_signal(*st, SIGTERM);
        at = stage::terminated;
        deadline = clock::now() + st->grace;
      } else if (at == stage::terminated) {
        send_signal(*st, SIGKILL);
        at = stage::killed;
        deadline.reset();
      }
    }
  }
  // What the child wrote just before it ended; a grandchild that keeps stderr open does
  // not keep this thread alive.
  st->drain_stderr();
  st->mark_done();
}

child_process::child_process(std::shared_ptr<state> st) : st_(std::move(st)) {}

child_process::~child_process() { release(); }

int child_process::pid() const { return st_->pid; }

void child_process::release() {
  std::uint64_t one = 1;
  std::lock_guard lock(st_->mu);  // the monitor closes `control` under it once done
  if (st_->released || st_->done) return;
  st_->released = true;
  (void)!::write(st_->control.get(), &one, sizeof one);
}

void child_process::wait_reaped() {
  std::unique_lock lock(st_->mu);
  st_->cv.wait(lock, [&] { return st_->done; });
}

std::optional<child_exit> child_process::exit_status() {
  std::lock_guard lock(st_->mu);
  return st_->exit;
}

void child_process::when_ended(std::function<void()> ended) {
  {
    std::lock_guard lock(st_->mu);
    if (!st_->exit) return st_->on_ended.push_back(std::move(ended));
  }
  ended();
}

std::string child_process::end_note() {
  std::lock_guard lock(st_->mu);
  std::string tail = st_->stderr_tail;
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r')) tail.pop_back();
  if (auto nl = tail.rfind('\n', tail.size() > 1000 ? tail.size() - 1000 : 0);
      tail.size() > 1000 && nl != std::string::npos)
    tail.erase(0, nl + 1);  // the last lines, not a wall of text
  if (!st_->exit) return "child " + std::to_string(st_->pid) + " is still running";
  if (st_->is_ssh && st_->exit->signal == 0 && st_->exit->code == 255)
    return "ssh failed, exit status 255" + (tail.empty() ? std::string() : ": " + tail);
  std::string note = st_->exit->describe();
  if (st_->is_ssh && !tail.empty()) note += "; ssh said: " + tail;
  return note;
}

void child_process::state::read_stderr() {
  char buf[16384];
  ssize_t n = ::read(stderr_pipe.get(), buf, sizeof buf);
  if (n <= 0) {
    if (n == 0 || (errno != EINTR && errno != EAGAIN)) stderr_pipe.reset();
    return;
  }
  pass_on(std::string_view(buf, std::size_t(n)));
}

void child_process::state::drain_stderr() {
  if (!stderr_pipe.valid()) return;
  for (int i = 0; i < 64 && stderr_pipe.valid(); ++i) {  // at most 1 MiB more
    pollfd p{stderr_pipe.get(), POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) break;
    read_stderr();
  }
  stderr_pipe.reset();
}

void child_process::state::pass_on(std::string_view bytes) {
  if (keep_tail) {
    std::lock_guard lock(mu);
    stderr_tail.append(bytes);
    if (stderr_tail.size() > stderr_tail_limit)
      stderr_tail.erase(0, stderr_tail.size() - stderr_tail_limit);
  }
  if (on_stderr) {
    try {
      on_stderr(bytes);
    } catch (...) {
      // The application's callback failing must not stop the reaping.
    }
  } else {
    while (!bytes.empty()) {
      ssize_t w = ::write(STDERR_FILENO, bytes.data(), bytes.size());
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      bytes.remove_prefix(std::size_t(w));
    }
  }
}

bool child_process::state::try_reap(bool exited) {
  int status = 0;
  pid_t r;
  do r = ::waitpid(pid, &status, exited ? 0 : WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0) return false;  // still running (polling fallback)
  child_exit e;
  e.pid = pid;
  if (r == pid && WIFEXITED(status)) e.code = WEXITSTATUS(status);
  if (r == pid && WIFSIGNALED(status)) e.signal = WTERMSIG(status);
  // r < 0 (ECHILD): someone else reaped it; the status is unknown (code -1, signal 0).
  std::vector<std::function<void()>> ended;
  {
    std::lock_guard lock(mu);
    exit = e;
    cv.notify_all();
    ended.swap(on_ended);
  }
  for (auto& f : ended) {
    try {
      f();
    } catch (...) {
      // A waiter failing must not stop the reaping.
    }
  }
  return true;
}

void child_process::state::mark_done() {
  pidfd.reset();
  stderr_pipe.reset();
  std::lock_guard lock(mu);
  control.reset();  // no descriptor outlives the child: done means all are closed
  done = true;
  cv.notify_all();
}

}  // namespace bokbok::transport
