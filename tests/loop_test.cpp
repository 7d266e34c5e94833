// The event loop on real pipes and sockets. Runs once per backend: tests/meson.build
// sets BOKBOK_BACKEND=uring and =epoll, and every loop here is started the ordinary way.
#include "io/loop.hpp"
#include "support/engine.hpp"

#include <dirent.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <vector>

#include "io/loop_backend.hpp"
#include "base/unique_fd.hpp"

using namespace bokbok::io;
using bokbok::base::unique_fd;
using namespace std::chrono_literals;
using bokbok_test::on_loop;
using bokbok_test::patience;
using bokbok_test::start_checked;

namespace {




// A completion that records its results; safe to watch from the test thread.
class recording_completion final : public completion {
 public:
  void complete(int result, std::uint32_t) override {
    std::lock_guard lock(mutex_);
    results_.push_back(result);
    cv_.notify_all();
  }
  std::optional<int> wait() {
    std::unique_lock lock(mutex_);
    if (!cv_.wait_for(lock, patience, [&] { return !results_.empty(); })) return std::nullopt;
    return results_.front();
  }
  std::size_t count() {
    std::lock_guard lock(mutex_);
    return results_.size();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<int> results_;
};

struct pipe_fds {
  unique_fd read_end, write_end;
};

pipe_fds make_pipe() {
  int fds[2];
  REQUIRE(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
  return {unique_fd(fds[0]), unique_fd(fds[1])};
}

// The loop's contract (loop.hpp): forget(fd) on the loop thread before the fd is closed,
// since the epoll backend keeps an fd registered and may still change its registration
// on the turn after an operation completes. Declared after the descriptors, so it runs
// before they close.
struct forget_at_end {
  loop& l;
  std::vector<int> fds;
  ~forget_at_end() {
    on_loop(l, [&] {
      for (int fd : fds) l.forget(fd);
      return 0;
    });
  }
};

// Threads of this process with the given name, from /proc/self/task/*/comm.
int threads_named(const std::string& name) {
  int n = 0;
  DIR* d = ::opendir("/proc/self/task");
  REQUIRE(d != nullptr);
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream comm(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string line;
    if (std::getline(comm, line) && line == name) ++n;
  }
  ::closedir(d);
  return n;
}

bool wait_until(const std::function<bool()>& done) {
  auto give_up = std::chrono::steady_clock::now() + patience;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::yield();
  }
  return true;
}

// Sets BOKBOK_BACKEND for one scope and restores it after.
class scoped_backend_env {
 public:
  explicit scoped_backend_env(const char* value) {
    if (const char* old = std::getenv("BOKBOK_BACKEND")) old_ = old;
    ::setenv("BOKBOK_BACKEND", value, 1);
  }
  ~scoped_backend_env() {
    if (old_) {
      ::setenv("BOKBOK_BACKEND", old_->c_str(), 1);
    } else {
      ::unsetenv("BOKBOK_BACKEND");
    }
  }

 private:
  std::optional<std::string> old_;
};

}  // namespace

TEST_CASE("the loop runs on a thread named bokbok-loop that blocks SIGPIPE") {
  auto l = start_checked();
  CHECK_FALSE(l->in_loop_thread());
  auto [name, blocked, inside] = on_loop(*l, [&] {
    char buf[32] = {};
    pthread_getname_np(pthread_self(), buf, sizeof buf);
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, nullptr, &cur);
    return std::tuple(std::string(buf), sigismember(&cur, SIGPIPE) == 1, l->in_loop_thread());
  });
  CHECK(name == "bokbok-loop");
  CHECK(blocked);
  CHECK(inside);
}

TEST_CASE("post from many threads runs every function exactly once and in order per thread") {
  auto l = start_checked();
  constexpr int threads = 4;
  constexpr int per_thread = 20000;
  std::vector<std::vector<int>> seen(threads);  // touched on the loop thread only
  std::vector<std::thread> posters;
  for (int t = 0; t < threads; ++t) {
    posters.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) l->post([&seen, t, i] { seen[t].push_back(i); });
    });
  }
  for (auto& p : posters) p.join();
  // Posted after every other function, so it runs after all of them.
  auto result = on_loop(*l, [&] { return seen; });
  for (int t = 0; t < threads; ++t) {
    REQUIRE(result[t].size() == per_thread);
    for (int i = 0; i < per_thread; ++i) REQUIRE(result[t][i] == i);
  }
}

TEST_CASE("a ping-pong of posts never loses a wake-up") {
  auto l = start_checked();
  for (int i = 0; i < 20000; ++i) REQUIRE(on_loop(*l, [i] { return i; }) == i);
}

TEST_CASE("functions posted from the loop thread run later, in order, never inline") {
  auto l = start_checked();
  std::vector<int> order;
  std::promise<void> done;
  l->post([&] {
    l->post([&] { order.push_back(2); });
    l->post([&] {
      order.push_back(3);
      done.set_value();
    });
    order.push_back(1);
  });
  REQUIRE(done.get_future().wait_for(patience) == std::future_status::ready);
  CHECK(order == std::vector<int>{1, 2, 3});
}

TEST_CASE("a function that keeps posting itself starves neither reads nor timers") {
  auto l = start_checked();
  auto p = make_pipe();
  forget_at_end forget{*l, {p.read_end.get()}};
  recording_completion read_done;
  char buf[8];
  std::atomic<bool> timer_fired{false};
  std::atomic<int> spins{0};
  constexpr int max_spins = 5'000'000;  // a bound, far above what the test needs
  std::function<void()> spin = [&] {
    bool done = read_done.count() > 0 && timer_fired;
    if (!done && ++spins < max_spins) l->post(spin);
  };
  on_loop(*l, [&] {
    l->submit_read(p.read_end.get(), buf, sizeof buf, &read_done);
    l->add_timer(clock::now() + 5ms, [&] { timer_fired = true; });
    l->post(spin);
    return 0;
  });
  REQUIRE(::write(p.write_end.get(), "x", 1) == 1);
  CHECK(read_done.wait() == 1);
  auto give_up = std::chrono::steady_clock::now() + patience;
  while (!timer_fired && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
  CHECK(timer_fired);
  CHECK(spins < max_spins);
  on_loop(*l, [] { return 0; });  // the spinning has stopped (it checks on each turn)
}

TEST_CASE("timers fire in deadline order and cancelled ones never fire") {
  auto l = start_checked();
  std::vector<int> fired;  // loop thread only until `done`
  std::promise<void> done;
  on_loop(*l, [&] {
    auto base = clock::now();
    auto at = [&](int ms, int label) {
      return l->add_timer(base + std::chrono::milliseconds(ms), [&fired, label] {
        fired.push_back(label);
      });
    };
    at(40, 40);
    at(10, 10);
    timer_id t30 = at(30, 30);
    at(20, 20);
    timer_id t60 = at(60, 60);
    at(20, 21);  // same deadline as 20: runs after it, in the order added
    // A timer that cancels a later one when it runs.
    l->add_timer(base + 45ms, [&, t60] {
      fired.push_back(45);
      l->cancel_timer(t60);
    });
    l->add_timer(base + 80ms, [&] { done.set_value(); });  // after 60 would have fired
    l->cancel_timer(t30);
    l->cancel_timer(t30);  // twice: does nothing
    l->add_timer(base - 5ms, [&fired] { fired.push_back(0); });  // already due
    return 0;
  });
  REQUIRE(done.get_future().wait_for(patience) == std::future_status::ready);
  auto result = on_loop(*l, [&] { return fired; });
  CHECK(result == std::vector<int>{0, 10, 20, 21, 40, 45});
}

TEST_CASE("a timer does not fire before its deadline") {
  auto l = start_checked();
  std::promise<clock::time_point> fired;
  auto deadline = on_loop(*l, [&] {
    auto when = clock::now() + 30ms;
    l->add_timer(when, [&] { fired.set_value(clock::now()); });
    return when;
  });
  auto f = fired.get_future();
  REQUIRE(f.wait_for(patience) == std::future_status::ready);
  CHECK(f.get() >= deadline);
}

TEST_CASE("forcing an invalid BOKBOK_BACKEND throws std::invalid_argument") {
  scoped_backend_env env("io_urinq");
  CHECK_THROWS_AS(loop::start(), std::invalid_argument);
  try {
    loop::start();
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("BOKBOK_BACKEND") != std::string::npos);
    CHECK(std::string(e.what()).find("io_urinq") != std::string::npos);
  }
}

TEST_CASE("BOKBOK_BACKEND=epoll always gives a working epoll loop") {
  scoped_backend_env env("epoll");
  auto l = loop::start();
  CHECK(std::string(l->backend_name()) == "epoll");
  CHECK(on_loop(*l, [] { return 7; }) == 7);
}

TEST_CASE("when the io_uring ring cannot be set up, the automatic choice falls back to epoll") {
  // The kernel refuses rings of more than 32768 entries: a real io_uring_queue_init
  // failure, the same path as seccomp or kernel.io_uring_disabled.
  loop_options absurd;
  absurd.ring_entries = 1u << 20;
  auto l = start_loop(backend_kind::automatic, absurd);
  CHECK(std::string(l->backend_name()) == "epoll");
  CHECK(on_loop(*l, [] { return 1; }) == 1);
  CHECK_THROWS_AS(start_loop(backend_kind::uring, absurd), std::system_error);
}

#if defined(__x86_64__) || defined(__aarch64__)
namespace {

// In a child process: refuses the system call `nr` with EPERM (as container runtimes'
// seccomp profiles do for io_uring), then checks what loop::start picks. Exit status 0
// when it fell back to epoll and a forced uring start threw std::system_error.
int child_without_syscall(long nr) {
  alarm(20);  // a hung child dies instead of hanging the test
#if defined(__x86_64__)
  constexpr std::uint32_t arch = AUDIT_ARCH_X86_64;
#else
  constexpr std::uint32_t arch = AUDIT_ARCH_AARCH64;
#endif
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<std::uint32_t>(nr), 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 10;
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) return 11;
  ::unsetenv("BOKBOK_BACKEND");
  try {
    auto l = loop::start();
    if (std::string(l->backend_name()) != "epoll") return 12;
    std::promise<int> p;
    l->post([&] { p.set_value(42); });
    auto f = p.get_future();
    if (f.wait_for(patience) != std::future_status::ready || f.get() != 42) return 13;
  } catch (...) {
    return 14;
  }
  try {
    loop::start(backend_kind::uring);
    return 15;
  } catch (const std::system_error&) {
  }
  return 0;
}

int run_in_child(long nr) {
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) ::_exit(child_without_syscall(nr));
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

}  // namespace

TEST_CASE("under seccomp that refuses io_uring, the automatic choice falls back to epoll") {
  SUBCASE("io_uring_setup refused") { CHECK(run_in_child(__NR_io_uring_setup) == 0); }
  SUBCASE("io_uring_setup allowed but io_uring_enter refused") {
    CHECK(run_in_child(__NR_io_uring_enter) == 0);
  }
}
#endif

TEST_CASE("a read on an empty pipe completes when data arrives") {
  auto l = start_checked();
  auto p = make_pipe();
  forget_at_end forget{*l, {p.read_end.get()}};
  recording_completion c;
  char buf[64] = {};
  on_loop(*l, [&] {
    l->submit_read(p.read_end.get(), buf, sizeof buf, &c);
    return 0;
  });
  on_loop(*l, [] { return 0; });  // one more turn: the read is waiting in the kernel
  CHECK(c.count() == 0);
  REQUIRE(::write(p.write_end.get(), "hello", 5) == 5);
  auto res = c.wait();
  REQUIRE(res.has_value());
  CHECK(*res == 5);
  CHECK(std::string(buf, 5) == "hello");
}

TEST_CASE("a number forgotten and reused for another file within one turn is watched afresh") {
  // The old file stays open elsewhere (a dup), so only forget() can end its
  // registration; the new file under the same number must be the one watched.
  auto l = start_checked();
  auto old_pipe = make_pipe();
  auto new_pipe = make_pipe();
  int number = old_pipe.read_end.get();
  unique_fd old_kept(::dup(number));
  REQUIRE(old_kept);
  recording_completion waiting, fresh;
  char buf[16] = {};
  on_loop(*l, [&] {
    l->submit_read(number, buf, sizeof buf, &waiting);
    return 0;
  });
  on_loop(*l, [] { return 0; });  // the read is waiting: the number is watched
  on_loop(*l, [&] {
    l->cancel(&waiting);
    l->forget(number);
    // The same number now holds the new pipe's read end.
    REQUIRE(::dup2(new_pipe.read_end.get(), number) == number);
    l->submit_read(number, buf, sizeof buf, &fresh);
    return 0;
  });
  CHECK(waiting.wait() == -ECANCELED);
  REQUIRE(::write(new_pipe.write_end.get(), "new", 3) == 3);
  auto res = fresh.wait();
  REQUIRE(res.has_value());
  CHECK(*res == 3);
  CHECK(std::string(buf, 3) == "new");
  on_loop(*l, [&] {
    l->forget(number);
    return 0;
  });
}

TEST_CASE("a hung-up socket that nothing waits on does not keep the loop busy") {
  auto l = start_checked();
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
  unique_fd a(sv[0]), b(sv[1]);
  recording_completion c;
  char buf[8];
  on_loop(*l, [&] {
    l->submit_read(a.get(), buf, sizeof buf, &c);
    return 0;
  });
  b.reset();  // `a` now reports a hang-up, level after level, until it is closed
  REQUIRE(c.wait() == 0);
  // The fd stays open and known to the loop with nothing waiting: the loop must sleep
  // until a timer 200 ms away, not spin on the hang-up.
  auto cpu_now = [] {
    rusage u{};
    ::getrusage(RUSAGE_THREAD, &u);
    return std::chrono::seconds(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           std::chrono::microseconds(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
  };
  std::promise<std::chrono::microseconds> used;
  on_loop(*l, [&] {
    auto start = cpu_now();
    l->add_timer(clock::now() + 200ms, [&, start] { used.set_value(cpu_now() - start); });
    return 0;
  });
  auto f = used.get_future();
  REQUIRE(f.wait_for(patience) == std::future_status::ready);
  CHECK(f.get() < 100ms);
  on_loop(*l, [&] {
    l->forget(a.get());
    return 0;
  });
}

TEST_CASE("a read completes with 0 at end of file") {
  auto l = start_checked();
  auto p = make_pipe();
  forget_at_end forget{*l, {p.read_end.get()}};
  recording_completion c;
  char buf[8];
  on_loop(*l, [&] {
    l->submit_read(p.read_end.get(), buf, sizeof buf, &c);
    return 0;
  });
  p.write_end.reset();
  CHECK(c.wait() == 0);
}

TEST_CASE("cancel of a pending read completes with -ECANCELED") {
  auto l = start_checked();
  auto p = make_pipe();
  forget_at_end forget{*l, {p.read_end.get()}};
  char buf[16];
  SUBCASE("after the read reached the kernel") {
    recording_completion c;
    on_loop(*l, [&] {
      l->submit_read(p.read_end.get(), buf, sizeof buf, &c);
      return 0;
    });
    on_loop(*l, [] { return 0; });
    on_loop(*l, [&] {
      l->cancel(&c);
      return 0;
    });
    CHECK(c.wait() == -ECANCELED);
    on_loop(*l, [] { return 0; });
    CHECK(c.count() == 1);
  }
  SUBCASE("in the same turn as the submission") {
    recording_completion c;
    on_loop(*l, [&] {
      l->submit_read(p.read_end.get(), buf, sizeof buf, &c);
      l->cancel(&c);
      return 0;
    });
    CHECK(c.wait() == -ECANCELED);
  }
  SUBCASE("on a socket") {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    unique_fd a(sv[0]), b(sv[1]);
    forget_at_end forget_socket{*l, {a.get()}};
    recording_completion c;
    on_loop(*l, [&] {
      l->submit_read(a.get(), buf, sizeof buf, &c);
      return 0;
    });
    on_loop(*l, [&] {
      l->cancel(&c);
      return 0;
    });
    CHECK(c.wait() == -ECANCELED);
  }
}

TEST_CASE("a poll on a listening socket completes when a client connects, reading nothing") {
  auto l = start_checked();
  unique_fd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  REQUIRE(listener);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;  // abstract name, unique per process
  std::string name = "bokbok-loop-poll-" + std::to_string(::getpid());
  std::memcpy(addr.sun_path + 1, name.data(), name.size());
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), len) == 0);
  REQUIRE(::listen(listener.get(), 8) == 0);
  forget_at_end forget{*l, {listener.get()}};
  recording_completion c;
  on_loop(*l, [&] {
    l->submit_poll(listener.get(), &c);
    return 0;
  });
  on_loop(*l, [] { return 0; });  // one more turn: the poll is waiting
  CHECK(c.count() == 0);
  unique_fd client(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), len) == 0);
  auto res = c.wait();
  REQUIRE(res.has_value());
  CHECK((*res & POLLIN) != 0);
  // The poll accepted nothing: the connection is still there to accept, once.
  unique_fd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  CHECK(accepted);
  CHECK(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC) == -1);
  CHECK(c.count() == 1);
}

TEST_CASE("a poll on a pidfd completes when the child exits") {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0));
  if (fd < 0) {
    MESSAGE("pidfd_open unavailable (", std::strerror(errno), "): skipped");
    return;
  }
  ::close(fd);
  auto l = start_checked();
  auto p = make_pipe();
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    char b;
    p.write_end.reset();
    while (::read(p.read_end.get(), &b, 1) < 0 && (errno == EINTR || errno == EAGAIN)) {
      pollfd pf{p.read_end.get(), POLLIN, 0};
      ::poll(&pf, 1, -1);
    }
    ::_exit(7);
  }
  unique_fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, child, 0)));
  REQUIRE(pidfd);
  forget_at_end forget{*l, {pidfd.get()}};
  recording_completion c;
  on_loop(*l, [&] {
    l->submit_poll(pidfd.get(), &c);
    return 0;
  });
  on_loop(*l, [] { return 0; });
  CHECK(c.count() == 0);  // the child waits for its pipe to end
  p.write_end.reset();    // now it exits
  auto res = c.wait();
  REQUIRE(res.has_value());
  CHECK((*res & POLLIN) != 0);
  int status = 0;
  REQUIRE(::waitpid(child, &status, WNOHANG) == child);  // exited: reaped without blocking
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 7);
}

TEST_CASE("cancel of a pending poll completes with -ECANCELED") {
  auto l = start_checked();
  auto p = make_pipe();
  forget_at_end forget{*l, {p.read_end.get()}};
  recording_completion c;
  on_loop(*l, [&] {
    l->submit_poll(p.read_end.get(), &c);
    return 0;
  });
  on_loop(*l, [] { return 0; });
  on_loop(*l, [&] {
    l->cancel(&c);
    return 0;
  });
  CHECK(c.wait() == -ECANCELED);
  on_loop(*l, [] { return 0; });
  CHECK(c.count() == 1);
}

TEST_CASE("a vectored write to a pipe and to a socket delivers every byte in order") {
  auto l = start_checked();
  char a[] = "abc", b[] = "defgh";
  iovec iov[2] = {{a, 3}, {b, 5}};
  recording_completion pipe_done, sock_done;
  auto p = make_pipe();
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
  unique_fd s0(sv[0]), s1(sv[1]);
  forget_at_end forget{*l, {p.write_end.get(), s0.get()}};
  on_loop(*l, [&] {
    l->submit_writev(p.write_end.get(), false, iov, 2, &pipe_done);
    l->submit_writev(s0.get(), true, iov, 2, &sock_done);
    return 0;
  });
  CHECK(pipe_done.wait() == 8);
  CHECK(sock_done.wait() == 8);
  char got[16] = {};
  CHECK(::read(p.read_end.get(), got, sizeof got) == 8);
  CHECK(std::string(got, 8) == "abcdefgh");
  CHECK(::read(s1.get(), got, sizeof got) == 8);
  CHECK(std::string(got, 8) == "abcdefgh");
}

TEST_CASE("writing to a pipe whose read end is closed returns -EPIPE and the process survives") {
  // Default disposition: a SIGPIPE that reached this process would kill it.
  struct sigaction old {};
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigaction(SIGPIPE, &dfl, &old);
  auto l = start_checked();
  char data[] = "doomed";
  iovec iov{data, 6};
  SUBCASE("a pipe") {
    auto p = make_pipe();
    forget_at_end forget{*l, {p.write_end.get()}};
    p.read_end.reset();
    for (int i = 0; i < 3; ++i) {
      recording_completion c;
      on_loop(*l, [&] {
        l->submit_writev(p.write_end.get(), false, &iov, 1, &c);
        return 0;
      });
      CHECK(c.wait() == -EPIPE);
    }
  }
  SUBCASE("a socket") {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    unique_fd a(sv[0]);
    forget_at_end forget{*l, {a.get()}};
    ::close(sv[1]);
    recording_completion c;
    on_loop(*l, [&] {
      l->submit_writev(a.get(), true, &iov, 1, &c);
      return 0;
    });
    CHECK(c.wait() == -EPIPE);
  }
  // Nothing is left pending to surface later, on the loop thread or for the process.
  bool pending_in_loop = on_loop(*l, [] {
    sigset_t set;
    sigpending(&set);
    return sigismember(&set, SIGPIPE) == 1;
  });
  CHECK_FALSE(pending_in_loop);
  sigset_t set;
  sigpending(&set);
  CHECK(sigismember(&set, SIGPIPE) == 0);
  sigaction(SIGPIPE, &old, nullptr);
}

TEST_CASE("the last loop reference may be dropped on the loop thread itself") {
  int before = threads_named("bokbok-loop");
  auto l = start_checked();
  REQUIRE(wait_until([&] { return threads_named("bokbok-loop") == before + 1; }));
  std::weak_ptr<loop> watch = l;
  loop* raw = l.get();
  std::atomic<bool> late_ran{false};
  std::promise<bool> late_dropped;
  raw->post([l = std::move(l), raw, &late_ran, &late_dropped]() mutable {
    l.reset();  // the last reference: stop, detach; destroyed once this returns
    auto token = std::make_shared<int>(0);
    std::weak_ptr<int> token_watch = token;
    raw->post([token, &late_ran] { late_ran = true; });  // shutting down: dropped
    token.reset();
    late_dropped.set_value(token_watch.expired());
  });
  auto f = late_dropped.get_future();
  REQUIRE(f.wait_for(patience) == std::future_status::ready);
  CHECK(f.get());
  CHECK(watch.expired());
  // The thread ends by itself.
  CHECK(wait_until([&] { return threads_named("bokbok-loop") == before; }));
  CHECK_FALSE(late_ran);
}

TEST_CASE("dropping the loop from another thread stops it with timers and posts pending") {
  int before = threads_named("bokbok-loop");
  std::atomic<bool> ran{false};
  {
    auto l = start_checked();
    on_loop(*l, [&] {
      l->add_timer(clock::now() + 1h, [&] { ran = true; });
      return 0;
    });
  }
  CHECK(threads_named("bokbok-loop") == before);  // joined
  CHECK_FALSE(ran);
}
