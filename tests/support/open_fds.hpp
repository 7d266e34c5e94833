// Test support: this process's open descriptors, each with what it refers to
// ("5 -> pipe:[123]"), so a test can compare before and after and a failure shows what
// leaked.
#pragma once

#include <dirent.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <set>
#include <string>

namespace bokbok_test {

inline std::set<std::string> open_fds() {
  std::set<std::string> fds;
  DIR* d = opendir("/proc/self/fd");
  REQUIRE(d);
  int own = dirfd(d);
  while (auto* e = readdir(d)) {
    if (e->d_name[0] == '.' || std::stoi(e->d_name) == own) continue;
    char target[256] = {};
    std::string link = std::string("/proc/self/fd/") + e->d_name;
    ssize_t n = readlink(link.c_str(), target, sizeof target - 1);
    fds.insert(std::string(e->d_name) + " -> " + (n > 0 ? std::string(target, std::size_t(n)) : "?"));
  }
  closedir(d);
  return fds;
}

// The descriptors open now that were not in `before` ("" when none), for a test that
// checks it leaked nothing. Only new ones count: a descriptor of an earlier test that
// closes meanwhile (a connection still draining in the background) is not a leak.
inline std::string opened_since(const std::set<std::string>& before) {
  std::string out;
  for (const auto& fd : open_fds())
    if (!before.count(fd)) out += (out.empty() ? "" : "; ") + fd;
  return out;
}

}  // namespace bokbok_test
