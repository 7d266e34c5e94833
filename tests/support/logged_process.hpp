// Test support: a real program whose stderr (its log) goes to a file that the test reads
// back while it runs; killed (SIGKILL) and reaped when this goes. One thread at a time.
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace bokbok_test {

// The whole of a file ("" if it cannot be read).
inline std::string read_text_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct logged_process {
  pid_t pid = -1;
  std::string log_path;

  // Starts argv[0] (a path) with its stderr in `log` (created or truncated, mode 0600).
  logged_process(std::vector<std::string> argv, std::string log) : log_path(std::move(log)) {
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int rc = ::posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    REQUIRE(rc == 0);
  }
  logged_process(const logged_process&) = delete;
  logged_process& operator=(const logged_process&) = delete;
  ~logged_process() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }

  std::string log() const { return read_text_file(log_path); }
};

}  // namespace bokbok_test
