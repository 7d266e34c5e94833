// Test support: a real child process whose stdin/stdout (and, when asked, stderr) are
// pipes to us. One thread at a time.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "support/settle.hpp"

extern char** environ;

namespace bokbok_test {

struct child_process {
  pid_t pid = -1;
  int to_child = -1;    // write end of the child's stdin
  int from_child = -1;  // read end of the child's stdout
  int child_err = -1;   // read end of the child's stderr, with keep_stderr; owned here

  // Starts argv[0] (a path) with the given arguments; with `keep_stderr`, its stderr
  // goes to a pipe that stderr_text() reads (else it shares ours).
  explicit child_process(const std::vector<std::string>& argv, bool keep_stderr = false) {
    int in[2], out[2], err[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 ||
        (keep_stderr && pipe2(err, O_CLOEXEC) < 0))
      throw std::runtime_error("pipe2 failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    if (keep_stderr) posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    if (keep_stderr) close(err[1]);
    child_err = err[0];
    if (rc != 0) throw std::runtime_error("posix_spawn " + argv[0] + " failed");
    to_child = in[1];
    from_child = out[0];
  }

  // Closes our end of its stdin (its input ends) / of its stdout.
  void close_stdin() {
    if (to_child >= 0) close(to_child);
    to_child = -1;
  }
  void close_stdout() {
    if (from_child >= 0) close(from_child);
    from_child = -1;
  }

  // Its wait status once it has exited within `limit` (nullopt: still running).
  std::optional<int> exit_within(std::chrono::milliseconds limit) {
    int status = 0;
    if (!settles([&] { return waitpid(pid, &status, WNOHANG) == pid; }, limit)) return std::nullopt;
    pid = -1;
    return status;
  }

  // All it wrote to stderr (keep_stderr): read to the pipe's end, so call it once the
  // child has exited.
  std::string stderr_text() {
    std::string text;
    char buf[4096];
    ssize_t n;
    while (child_err >= 0 && (n = read(child_err, buf, sizeof buf)) > 0) text.append(buf, std::size_t(n));
    return text;
  }
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  // Waits for the child and returns its wait status.
  int wait() {
    int status = 0;
    if (pid > 0) {
      waitpid(pid, &status, 0);
      pid = -1;
    }
    return status;
  }
  ~child_process() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      wait();
    }
    if (child_err >= 0) close(child_err);
  }
};

// Writes all of `bytes` to a pipe; false if the reader is gone (an error return here,
// not SIGPIPE).
inline bool write_pipe(int fd, std::string_view bytes) {
  ::signal(SIGPIPE, SIG_IGN);
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(std::size_t(n));
  }
  return true;
}

// Path of a program the build made, from the environment tests/meson.build sets.
inline std::string built_program(const char* env) {
  const char* p = std::getenv(env);
  if (!p) throw std::runtime_error(std::string(env) + " is not set (run through meson test)");
  return p;
}

}  // namespace bokbok_test
