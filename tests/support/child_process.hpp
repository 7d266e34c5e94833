// Test support: a real child process whose stdin/stdout are pipes to us.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace bokbok_test {

struct child_process {
  pid_t pid = -1;
  int to_child = -1;    // write end of the child's stdin
  int from_child = -1;  // read end of the child's stdout

  // Starts argv[0] (a path) with the given arguments.
  explicit child_process(const std::vector<std::string>& argv) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
      throw std::runtime_error("pipe2 failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    if (rc != 0) throw std::runtime_error("posix_spawn " + argv[0] + " failed");
    to_child = in[1];
    from_child = out[0];
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
  }
};

// Path of a program the build made, from the environment tests/meson.build sets.
inline std::string built_program(const char* env) {
  const char* p = std::getenv(env);
  if (!p) throw std::runtime_error(std::string(env) + " is not set (run through meson test)");
  return p;
}

}  // namespace bokbok_test
