// Test support: runs the real `bokbok` tool (BOKBOK_TOOL) as a child process with the
// given arguments, stdin input, extra environment and inherited descriptors; collects its
// stdout and stderr to their end; kills it if it overstays its limit. One thread at a time
// per call (it ignores SIGPIPE in this process, so that a tool exiting before reading its
// input makes the write fail with EPIPE instead of killing the test).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include <doctest/doctest.h>

#include "support/child_process.hpp"

extern char** environ;

namespace bokbok_test {

struct tool_result {
  int status = -1;  // exit status; -1 if it had to be killed or died of a signal
  std::string out, err;
  std::chrono::steady_clock::duration took{};
};

struct tool_spawn {
  std::vector<std::string> args;          // after the program's name
  std::string input;                      // its stdin (small: fits a pipe buffer)
  std::vector<std::string> env;           // "NAME=VALUE", added to this process's
  std::vector<std::string> drop_env;      // "NAME=" prefixes left out of this process's
  std::vector<int*> inherit;              // descriptors passed on; closed here (set to -1)
  std::chrono::milliseconds limit{20000};  // killed after this
};

inline tool_result run_tool_process(const tool_spawn& s) {
  int out[2], err[2], in[2];
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
  for (int* fd : s.inherit) REQUIRE(::fcntl(*fd, F_SETFD, 0) == 0);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  std::vector<std::string> argv_text = {built_program("BOKBOK_TOOL")};
  argv_text.insert(argv_text.end(), s.args.begin(), s.args.end());
  std::vector<char*> argv;
  for (auto& a : argv_text) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_text(s.env);
  std::vector<char*> envp;
  for (auto& e : env_text) envp.push_back(e.data());
  for (char** e = environ; *e; ++e) {
    bool dropped = false;
    for (const auto& d : s.drop_env) dropped = dropped || std::string_view(*e).starts_with(d);
    if (!dropped) envp.push_back(*e);
  }
  envp.push_back(nullptr);
  pid_t pid = -1;
  const auto start = std::chrono::steady_clock::now();
  const int rc = ::posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  for (int* fd : s.inherit) {  // the child has them now
    ::close(*fd);
    *fd = -1;
  }
  REQUIRE(rc == 0);

  ::signal(SIGPIPE, SIG_IGN);
  if (!s.input.empty()) (void)!::write(in[1], s.input.data(), s.input.size());
  ::close(in[1]);
  tool_result r;
  const auto deadline = start + s.limit;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_count = 2;
  bool killed = false;
  while (open_count > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= std::chrono::milliseconds(0)) {
      ::kill(pid, SIGKILL);
      killed = true;
      break;
    }
    if (::poll(fds, 2, int(left.count())) < 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, std::size_t(n));
      } else {
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
  ::close(out[0]);
  ::close(err[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);  // its outputs are closed (or it was killed): it is ending
  r.took = std::chrono::steady_clock::now() - start;
  CHECK_MESSAGE(!killed, "bokbok did not finish within the limit");
  if (!killed && WIFEXITED(status)) r.status = WEXITSTATUS(status);
  return r;
}

}  // namespace bokbok_test
