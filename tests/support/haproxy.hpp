// Test support: real HAProxy (Debian's haproxy) in front of demo servers, on loopback:
// where its binary is, a demo server listening for PROXY clients, the suite's HAProxy
// configuration made from examples/haproxy/haproxy.cfg (haproxy_config), and HAProxy's
// stats socket (a backend server's status). One thread at a time.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "support/demo_process.hpp"
#include "support/logged_process.hpp"

namespace bokbok_test {

const char* haproxy_path() {
  for (const char* p : {"/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"})
    if (::access(p, X_OK) == 0) return p;
  return nullptr;
}

// HAProxy's path, or nullptr once the case has said it is skipped.
inline const char* haproxy_or_skip() {
  const char* p = haproxy_path();
  if (!p) MESSAGE("skipped: haproxy is not installed (tools/install-deps.sh installs it)");
  return p;
}

// examples/haproxy/haproxy.cfg in the source tree.
inline std::string example_path() {
  const char* root = std::getenv("BOKBOK_SOURCE_ROOT");
  REQUIRE_MESSAGE(root != nullptr, "BOKBOK_SOURCE_ROOT must name the source tree");
  return std::string(root) + "/examples/haproxy/haproxy.cfg";
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

// The backend of examples/haproxy/haproxy.cfg.
inline constexpr const char* example_backend = "bokbok_servers";

// Column `col` of server `srv` of the example's backend in `show stat` ("" if none).
inline std::string server_stat(const std::string& socket_path, const std::string& srv,
                               std::size_t col) {
  std::istringstream lines(stats_command(socket_path, "show stat"));
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with(std::string(example_backend) + "," + srv + ",")) continue;
    std::vector<std::string> cols;
    std::istringstream cs(line);
    for (std::string c; std::getline(cs, c, ',');) cols.push_back(c);
    return cols.size() > col ? cols[col] : "";
  }
  return "";
}

// The status column ("UP", "DOWN", ...) of server `srv`.
inline std::string server_status(const std::string& socket_path, const std::string& srv) {
  return server_stat(socket_path, srv, 17);
}

// The sessions HAProxy has opened to server `srv` for clients (column stot; its health
// checks are not counted), -1 if it cannot be read.
inline long long server_sessions(const std::string& socket_path, const std::string& srv) {
  const std::string s = server_stat(socket_path, srv, 7);
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(s);
}

// What differs between the suite's HAProxy and the shipped example: where it listens,
// its stats socket, its servers, how often it checks them and options every server
// gets. Everything else (mode, timeouts, balance, the tcp-check of the preamble,
// send-proxy-v2, check-send-proxy) is the example's, unchanged.
struct haproxy_setup {
  std::string bind;                                          // "127.0.0.1:PORT"
  std::string stats_socket;                                  // a path
  std::vector<std::pair<std::string, std::string>> servers;  // name, "127.0.0.1:PORT"
  std::string inter = "200ms", fall = "2", rise = "1";       // the check timing
  std::string server_extra;                                  // e.g. "source 127.0.0.2"
};

// examples/haproxy/haproxy.cfg with `s` swapped in. Each line swapped must be where the
// example had it (its bind, stats socket, default-server with inter/fall/rise, three
// servers): an example that changes shape fails here, so it cannot rot unseen.
inline std::string haproxy_config(const haproxy_setup& s) {
  std::ifstream in(example_path());
  REQUIRE_MESSAGE(in, "cannot read examples/haproxy/haproxy.cfg");
  std::ostringstream out;
  int binds = 0, sockets = 0, defaults = 0, servers = 0;
  for (std::string line; std::getline(in, line);) {
    const auto first = line.find_first_not_of(' ');
    const std::string body = first == std::string::npos ? "" : line.substr(first);
    const std::string indent(first == std::string::npos ? 0 : first, ' ');
    if (body.starts_with("bind ")) {
      ++binds;
      out << indent << "bind " << s.bind << "\n";
    } else if (body.starts_with("stats socket ")) {
      ++sockets;
      out << indent << "stats socket " << s.stats_socket << "\n";
    } else if (body.starts_with("default-server ")) {
      ++defaults;
      std::istringstream words(body);
      std::vector<std::string> w;
      for (std::string x; words >> x;) w.push_back(x);
      int timing = 0;
      for (std::size_t i = 0; i + 1 < w.size(); ++i) {
        if (w[i] == "inter") w[i + 1] = s.inter, ++timing;
        if (w[i] == "fall") w[i + 1] = s.fall, ++timing;
        if (w[i] == "rise") w[i + 1] = s.rise, ++timing;
      }
      REQUIRE_MESSAGE(timing == 3, "the example's default-server line lost inter/fall/rise: " << body);
      out << indent;
      for (auto& x : w) out << x << " ";
      out << s.server_extra << "\n";
    } else if (body.starts_with("server ")) {
      if (servers++ == 0)
        for (auto& [name, at] : s.servers) out << indent << "server " << name << " " << at << "\n";
    } else {
      out << line << "\n";
    }
  }
  REQUIRE_MESSAGE((binds == 1 && sockets == 1 && defaults == 1 && servers == 3),
                  "examples/haproxy/haproxy.cfg changed shape: " << binds << " bind, " << sockets
                      << " stats socket, " << defaults << " default-server, " << servers
                      << " server lines (1, 1, 1, 3 expected)");
  return out.str();
}

}  // namespace bokbok_test
