// Test support: a real child process whose stdout and stderr (its log) go to a file the
// test reads back while it runs (what it logged, waited for with a bound); killed
// (SIGKILL) and reaped when this goes. And a free loopback TCP port. One thread at a time.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "support/settle.hpp"

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

  // Starts argv[0] (a path) with its stdout and stderr in `log` (created or truncated,
  // mode 0600).
  logged_process(std::vector<std::string> argv, std::string log) : log_path(std::move(log)) {
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    const int rc = ::posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    REQUIRE(rc == 0);
  }
  logged_process(const logged_process&) = delete;
  logged_process& operator=(const logged_process&) = delete;
  ~logged_process() { stop(); }

  std::string log() const { return read_text_file(log_path); }
  // Whether the log comes to contain `part` within `limit`.
  bool says(const std::string& part,
            std::chrono::milliseconds limit = std::chrono::seconds(10)) const {
    return settles([&] { return log().find(part) != std::string::npos; }, limit,
                   std::chrono::milliseconds(20));
  }
  void stop() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      pid = -1;
    }
  }
};

// A TCP port on 127.0.0.1 free a moment ago (the kernel's pick for port 0).
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  ::close(fd);
  return ntohs(sa.sin_port);
}

}  // namespace bokbok_test
