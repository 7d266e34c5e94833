// The watching side of a child process, all on an event loop: waiting for it to exit
// (a poll on its pidfd), the grace period, SIGTERM and SIGKILL (loop timers), reaping,
// and its stderr (reads on the loop). Spawning is in spawn.cpp.
#include "transport/child_process.hpp"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <optional>

#include "transport/child_state.hpp"

namespace bokbok::transport {

namespace {

constexpr std::size_t stderr_tail_limit = 4096;
constexpr auto poll_fallback_tick = std::chrono::milliseconds(20);
constexpr int drain_reads_limit = 64;  // after the reap: at most 1 MiB more of stderr

void send_signal(child_process::state& st, int sig) {
  if (st.pidfd.valid())
    syscall(SYS_pidfd_send_signal, st.pidfd.get(), sig, nullptr, 0u);
  else
    ::kill(st.pid, sig);  // only before it is reaped: we reap, so the pid is ours
}

}  // namespace

void child_process::state::op::complete(int result, std::uint32_t) {
  auto hold = st->shared_from_this();  // mark_done() may drop the last other reference
  (st->*on_done)(result);
}

void child_process::state::start_watching() {
  if (pidfd.valid())
    loop->submit_poll(pidfd.get(), &pid_op);
  else
    schedule_tick();
  if (stderr_pipe.valid()) read_stderr_more();
}

void child_process::state::begin_grace() {
  if (reaped || at != stage::running) return;
  at = stage::grace;
  std::weak_ptr<state> weak = weak_from_this();
  signal_timer = loop->add_timer(io::clock::now() + grace, [weak] {
    if (auto self = weak.lock()) self->on_signal_timer();
  });
}

void child_process::state::on_signal_timer() {
  signal_timer = 0;
  if (reaped) return;
  if (at == stage::grace) {
    send_signal(*this, SIGTERM);
    at = stage::terminated;
    std::weak_ptr<state> weak = weak_from_this();
    signal_timer = loop->add_timer(io::clock::now() + grace, [weak] {
      if (auto self = weak.lock()) self->on_signal_timer();
    });
  } else if (at == stage::terminated) {
    send_signal(*this, SIGKILL);
    at = stage::killed;
  }
}

void child_process::state::schedule_tick() {
  std::weak_ptr<state> weak = weak_from_this();
  tick_timer = loop->add_timer(io::clock::now() + poll_fallback_tick, [weak] {
    auto self = weak.lock();
    if (!self) return;
    self->tick_timer = 0;
    if (self->try_reap())
      self->after_reap();
    else
      self->schedule_tick();
  });
}

void child_process::state::on_pid_ready(int result) {
  if (reaped) return;
  if (result < 0) return schedule_tick();  // cannot watch it: poll for the exit instead
  if (try_reap()) return after_reap();
  loop->submit_poll(pidfd.get(), &pid_op);  // not waitable yet: wait again
}

void child_process::state::read_stderr_more() {
  reading_stderr = true;
  loop->submit_read(stderr_pipe.get(), err_buf, sizeof err_buf, &err_op);
}

void child_process::state::on_stderr_read(int result) {
  reading_stderr = false;
  if (result > 0) pass_on(std::string_view(err_buf, std::size_t(result)));
  bool ended = result == 0 || (result < 0 && result != -EAGAIN && result != -EINTR &&
                               result != -ECANCELED);
  if (ended) close_stderr();
  if (reaped) return finish_after_reap();  // the read was cancelled, or raced the reap
  if (!ended) read_stderr_more();
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

// Never blocks: the caller knows (pidfd) or guesses (fallback) that the child exited.
bool child_process::state::try_reap() {
  int status = 0;
  pid_t r;
  do r = ::waitpid(pid, &status, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0) return false;  // still running
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

void child_process::state::after_reap() {
  reaped = true;
  if (signal_timer) loop->cancel_timer(signal_timer);
  if (tick_timer) loop->cancel_timer(tick_timer);
  signal_timer = tick_timer = 0;
  if (reading_stderr)
    loop->cancel(&err_op);  // its completion finishes
  else
    finish_after_reap();
}

// What the child wrote just before it ended; a grandchild that keeps stderr open does
// not keep the watch going.
void child_process::state::finish_after_reap() {
  for (int i = 0; i < drain_reads_limit && stderr_pipe.valid(); ++i) {
    ssize_t n = ::read(stderr_pipe.get(), err_buf, sizeof err_buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pass_on(std::string_view(err_buf, std::size_t(n)));
  }
  close_stderr();
  mark_done();
}

void child_process::state::close_stderr() {
  if (!stderr_pipe.valid()) return;
  loop->forget(stderr_pipe.get());
  stderr_pipe.reset();
}

void child_process::state::mark_done() {
  if (pidfd.valid()) loop->forget(pidfd.get());
  pidfd.reset();
  std::shared_ptr<io::loop> last_loop;  // both may be the last references: dropped unlocked
  std::shared_ptr<state> last_self;
  std::lock_guard lock(mu);
  done = true;  // no descriptor outlives the child: done means all are closed
  cv.notify_all();
  last_loop = std::move(loop);
  last_self = std::move(keep);
}

child_process::child_process(std::shared_ptr<state> st) : st_(std::move(st)) {}

child_process::~child_process() { release(); }

int child_process::pid() const { return st_->pid; }

void child_process::release() {
  std::shared_ptr<io::loop> l;
  {
    std::lock_guard lock(st_->mu);
    if (st_->released || st_->done) return;
    st_->released = true;
    l = st_->loop;
  }
  l->post([st = st_] { st->begin_grace(); });
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

}  // namespace bokbok::transport
