// Test support: the real demo server as a child process, a fresh temporary directory, and
// enough descriptors for hundreds of connections at both ends.
#pragma once

#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "support/child_process.hpp"
#include "support/settle.hpp"

namespace bokbok_test {

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

}  // namespace bokbok_test
