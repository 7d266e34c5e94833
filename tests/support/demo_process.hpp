// Test support: the real demo server as a child process (inheriting our stdio, or
// listening on a UNIX socket in a fresh directory, optionally as another uid), a fresh
// temporary directory, enough descriptors for hundreds of connections at both ends, and
// a census of a process's threads that leaves out the sanitizer's own.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "support/child_process.hpp"
#include "support/settle.hpp"

namespace bokbok_test {

// Built with ThreadSanitizer (gcc says so with a macro, clang with __has_feature).
#if defined(__SANITIZE_THREAD__)
inline constexpr bool under_tsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool under_tsan = true;
#else
inline constexpr bool under_tsan = false;
#endif
#else
inline constexpr bool under_tsan = false;
#endif

// Built with a sanitizer whose allocator keeps freed memory (quarantine): resident sizes
// say little there, so tests check them only in ordinary builds.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool sanitized_allocator = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool sanitized_allocator = true;
#else
inline constexpr bool sanitized_allocator = false;
#endif
#else
inline constexpr bool sanitized_allocator = false;
#endif

// The names of process `pid`'s threads other than its main thread (the one whose id is
// the process id), from /proc/PID/task/*/comm; threads that end meanwhile are skipped.
// ThreadSanitizer's runtime starts one background thread of its own in each process
// (ours and the demo server's), named after the main thread: under TSan one such name is
// left out, so what remains are the threads the program itself started.
inline std::vector<std::string> other_thread_names(pid_t pid) {
  std::vector<std::string> names;
  const std::string proc = "/proc/" + std::to_string(pid);
  std::string main_name;
  {
    std::ifstream comm(proc + "/comm");
    std::getline(comm, main_name);
  }
  bool tsan_thread_left_out = !under_tsan;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(proc + "/task", ec)) {
    if (entry.path().filename() == std::to_string(pid)) continue;
    std::ifstream comm(entry.path() / "comm");
    std::string name;
    if (!std::getline(comm, name)) continue;  // a thread gone meanwhile
    if (!tsan_thread_left_out && name == main_name) {
      tsan_thread_left_out = true;
      continue;
    }
    names.push_back(name);
  }
  return names;
}

// Raises this process's soft RLIMIT_NOFILE to its hard limit.
inline void raise_fd_limit() {
  rlimit r{};
  getrlimit(RLIMIT_NOFILE, &r);
  r.rlim_cur = r.rlim_max;
  setrlimit(RLIMIT_NOFILE, &r);
}

// A fresh directory under the system's temporary directory, removed with what it holds.
struct temp_dir {
  std::filesystem::path path;
  explicit temp_dir(const std::string& what = "test") {
    std::string t =
        std::filesystem::temp_directory_path().string() + "/bokbok-" + what + "-XXXXXX";
    REQUIRE(::mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
};

// `bokbok-demo-server ARGS...`, the real program, its stdio inherited (its log shows in
// the test's output); killed if it is still running when this goes.
struct demo_process {
  pid_t pid = -1;
  explicit demo_process(const std::vector<std::string>& args) {
    std::vector<std::string> argv{built_program("BOKBOK_DEMO_SERVER")};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    REQUIRE(::posix_spawn(&pid, cargv[0], nullptr, nullptr, cargv.data(), environ) == 0);
  }
  demo_process(const demo_process&) = delete;
  demo_process& operator=(const demo_process&) = delete;
  // Its wait status once it has exited within `limit`; nullopt (still running) if not.
  std::optional<int> exit_within(std::chrono::milliseconds limit) {
    int status = 0;
    if (!settles([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, limit))
      return std::nullopt;
    pid = -1;
    return status;
  }
  ~demo_process() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

// The demo server listening on unix:DIR/s in a fresh directory, started as `uid` / `gid`
// when given (setgid and setuid in the child before exec: a test running as root runs
// it as an unprivileged user, whom RLIMIT_NPROC binds). Constructed once it has logged
// where it listens (its threads started); later log lines go to a pipe nobody reads
// (the server ignores EPIPE). Killed when this goes.
struct listening_demo {
  std::filesystem::path dir;
  std::string path, address;
  pid_t pid = -1;
  std::optional<uid_t> uid;
  gid_t gid = 0;

  explicit listening_demo(const std::vector<std::string>& extra,
                          std::optional<uid_t> as_uid = std::nullopt, gid_t as_gid = 0)
      : uid(as_uid), gid(as_gid) {
    char tmpl[] = "/tmp/bokbok-demo-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    ::chmod(tmpl, 0777);
    path = (dir / "s").string();
    address = "unix:" + path;
    std::vector<std::string> args{built_program("BOKBOK_DEMO_SERVER"), "--listen", address,
                                  "--unix-mode", "666"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int err[2];
    REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
    pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::dup2(err[1], 2);
      if (uid && (::setgid(gid) != 0 || ::setuid(*uid) != 0)) ::_exit(120);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(err[1]);
    std::string log;
    const bool listening = settles([&] {
      pollfd pf{err[0], POLLIN, 0};
      char buf[512];
      ssize_t n;
      if (::poll(&pf, 1, 0) == 1 && (n = ::read(err[0], buf, sizeof buf)) > 0)
        log.append(buf, std::size_t(n));
      return log.find("listening on") != std::string::npos;
    });
    ::close(err[0]);
    INFO("demo server log: ", log);
    REQUIRE(listening);
  }
  listening_demo(const listening_demo&) = delete;
  listening_demo& operator=(const listening_demo&) = delete;
  ~listening_demo() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  bool alive() const { return ::waitpid(pid, nullptr, WNOHANG) == 0; }

  // Sets the server's soft `resource` limit (its hard limit stays). Done by a helper
  // process of the server's own uid: only that may when this process lacks
  // CAP_SYS_RESOURCE (as in containers).
  void limit(__rlimit_resource resource, rlim_t soft) const {
    pid_t helper = ::fork();
    REQUIRE(helper >= 0);
    if (helper == 0) {
      if (uid && (::setgid(gid) != 0 || ::setuid(*uid) != 0)) ::_exit(1);
      rlimit now{};
      if (::prlimit(pid, resource, nullptr, &now) != 0) ::_exit(2);
      rlimit lim{std::min(soft, now.rlim_max), now.rlim_max};
      ::_exit(::prlimit(pid, resource, &lim, nullptr) == 0 ? 0 : 3);
    }
    int status = 0;
    REQUIRE(::waitpid(helper, &status, 0) == helper);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
  }
};

}  // namespace bokbok_test
