// Test support: one temporary directory for this test process (under TMPDIR, named for
// the test and its pid), made on first use and removed with everything in it when the
// process exits, whatever the tests' outcome. Tests put their UNIX sockets and files
// there; a test run leaves nothing behind in /tmp.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace bokbok_test {

// The directory "<TMPDIR>/<prefix>-<pid>". Every call must pass the same prefix (the
// first one names it).
inline const std::filesystem::path& process_temp_dir(const std::string& prefix) {
  struct owned {
    std::filesystem::path path;
    explicit owned(const std::string& p)
        : path(std::filesystem::temp_directory_path() / (p + "-" + std::to_string(::getpid()))) {
      std::filesystem::create_directories(path);
    }
    ~owned() {
      std::error_code ignored;  // at exit: nothing to tell anyone
      std::filesystem::remove_all(path, ignored);
    }
  };
  static const owned dir(prefix);
  return dir.path;
}

}  // namespace bokbok_test
