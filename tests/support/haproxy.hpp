// Test support: real HAProxy (Debian's haproxy) in front of demo servers, on loopback:
// where its binary is, a demo server listening for PROXY clients, and HAProxy's stats
// socket (a backend server's status). One thread at a time.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "support/demo_process.hpp"
#include "support/logged_process.hpp"

namespace bokbok_test {

inline const char* haproxy_path() {
  for (const char* p : {"/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"})
    if (::access(p, X_OK) == 0) return p;
  return nullptr;
}

// The demo server listening for PROXY clients on 127.0.0.1; its port, once it says so.
struct backend {
  logged_process proc;
  std::string port;
  backend(const temp_dir& dir, const std::string& name)
      : proc({bokbok_test::built_program("BOKBOK_DEMO_SERVER"), "--proxy-listen",
              "tcp:127.0.0.1:0"},
             (dir.path / (name + ".log")).string()) {
    REQUIRE(proc.says("listening on tcp:127.0.0.1:"));
    auto t = proc.log();
    auto at = t.find("listening on tcp:127.0.0.1:") + std::string("listening on tcp:127.0.0.1:").size();
    port = t.substr(at, t.find_first_not_of("0123456789", at) - at);
  }
};

// HAProxy's answer to a command on its stats socket.
inline std::string stats_command(const std::string& socket_path, const std::string& command) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", socket_path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    return "";
  }
  std::string c = command + "\n";
  (void)::write(fd, c.data(), c.size());
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, std::size_t(n));
  ::close(fd);
  return out;
}

// The status column ("UP", "DOWN", ...) of server `srv` of backend "be" in `show stat`.
inline std::string server_status(const std::string& socket_path, const std::string& srv) {
  std::istringstream lines(stats_command(socket_path, "show stat"));
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("be," + srv + ",")) continue;
    std::vector<std::string> cols;
    std::istringstream cs(line);
    for (std::string c; std::getline(cs, c, ',');) cols.push_back(c);
    return cols.size() > 17 ? cols[17] : "";
  }
  return "";
}

}  // namespace bokbok_test
