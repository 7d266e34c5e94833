// Behind real HAProxy (Debian's haproxy, started here on loopback): the demo server
// listening with --proxy-listen behind `mode tcp` + `send-proxy-v2` sees the client's
// address, not HAProxy's; and HAProxy's tcp-check of the bokbok preamble (README
// "Behind a load balancer") marks a backend up while it serves and down once it stops;
// and with --max-connection-age, 30 reconnecting clients that all started on one backend
// spread to two more once they come up. Every case runs examples/haproxy/haproxy.cfg,
// its ports, servers and check timing swapped (haproxy_config), and `haproxy -c` accepts
// the example as shipped.
// Skipped only when haproxy is not installed (tools/install-deps.sh installs it).
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "support/demo_process.hpp"
#include "support/logged_process.hpp"
#include "support/settle.hpp"

using namespace std::chrono_literals;
using bokbok_test::settles;
using bokbok_test::temp_dir;
using bokbok_test::logged_process;
using bokbok_test::free_port;

namespace {

const char* haproxy_path() {
  for (const char* p : {"/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"})
    if (::access(p, X_OK) == 0) return p;
  return nullptr;
}

// HAProxy's path, or nullptr once the case has said it is skipped.
const char* haproxy_or_skip() {
  const char* p = haproxy_path();
  if (!p) MESSAGE("skipped: haproxy is not installed (tools/install-deps.sh installs it)");
  return p;
}

// examples/haproxy/haproxy.cfg in the source tree.
std::string example_path() {
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
std::string stats_command(const std::string& socket_path, const std::string& command) {
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
constexpr const char* example_backend = "bokbok_servers";

// The status column ("UP", "DOWN", ...) of server `srv` of the example's backend in
// `show stat`.
std::string server_status(const std::string& socket_path, const std::string& srv) {
  std::istringstream lines(stats_command(socket_path, "show stat"));
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with(std::string(example_backend) + "," + srv + ",")) continue;
    std::vector<std::string> cols;
    std::istringstream cs(line);
    for (std::string c; std::getline(cs, c, ',');) cols.push_back(c);
    return cols.size() > 17 ? cols[17] : "";
  }
  return "";
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
std::string haproxy_config(const haproxy_setup& s) {
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

}  // namespace

TEST_CASE("HAProxy accepts examples/haproxy/haproxy.cfg as shipped") {
  const char* haproxy = haproxy_or_skip();
  if (!haproxy) return;
  temp_dir dir("haproxy-example");
  logged_process check({haproxy, "-c", "-f", example_path()}, (dir.path / "check.log").string());
  int status = -1;
  REQUIRE(settles([&] { return ::waitpid(check.pid, &status, WNOHANG) == check.pid; }, 20s, 20ms));
  check.pid = -1;
  CHECK_MESSAGE((WIFEXITED(status) && WEXITSTATUS(status) == 0), check.log());
}

TEST_CASE("behind HAProxy with send-proxy-v2 the server sees the client's address, not HAProxy's") {
  const char* haproxy = haproxy_or_skip();
  if (!haproxy) return;
  temp_dir dir("haproxy");
  backend server(dir, "server");
  // The client reaches HAProxy from 127.0.0.1; HAProxy reaches the server from 127.0.0.2.
  int front = free_port();
  haproxy_setup setup;
  setup.bind = "127.0.0.3:" + std::to_string(front);
  setup.stats_socket = (dir.path / "stats.sock").string();
  setup.servers = {{"s1", "127.0.0.1:" + server.port}};
  setup.server_extra = "source 127.0.0.2";
  std::ofstream(dir.path / "haproxy.cfg") << haproxy_config(setup);
  logged_process lb({haproxy, "-db", "-f", (dir.path / "haproxy.cfg").string()},
                    (dir.path / "haproxy.log").string());
  REQUIRE(settles([&] { return !stats_command((dir.path / "stats.sock").string(), "show info").empty(); }, 10s, 20ms));

  bokbok::options o;
  o.connect_timeout = 5s;
  auto c = bokbok::connect("tcp:127.0.0.3:" + std::to_string(front), o);
  // (Linux gives a client of any 127.x address the source 127.0.0.1.)
  CHECK(c.request({"ping", "through haproxy"}) == bokbok::message{"pong", "through haproxy"});
  // The demo server logs "connection from PEER": the client, via HAProxy.
  CHECK_MESSAGE(server.proc.says("connection from tcp:127.0.0.1:"), server.proc.log());
  CHECK_MESSAGE(server.proc.log().find(" via tcp:127.0.0.2:") != std::string::npos,
                server.proc.log());
  c.close();
  c.wait_closed();
}

TEST_CASE("HAProxy's tcp-check of the bokbok preamble marks a backend up while it serves and down when it stops") {
  const char* haproxy = haproxy_or_skip();
  if (!haproxy) return;
  temp_dir dir("haproxy-check");
  backend live(dir, "live");
  backend doomed(dir, "doomed");
  // A plain TCP listener that accepts and says nothing bokbok: never up.
  int front = free_port(), mute_port = free_port();
  int mute = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(std::uint16_t(mute_port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(mute, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  REQUIRE(::listen(mute, 16) == 0);
  std::string sock = (dir.path / "stats.sock").string();
  // The recipe of README "Behind a load balancer", as examples/haproxy/haproxy.cfg has
  // it: the check speaks the PROXY protocol too (check-send-proxy: a LOCAL header),
  // sends a plain-mode preamble and expects the server's ("BOKBOK", version 1, plain
  // mode, no user).
  haproxy_setup setup;
  setup.bind = "127.0.0.1:" + std::to_string(front);
  setup.stats_socket = sock;
  setup.servers = {{"live", "127.0.0.1:" + live.port},
                   {"doomed", "127.0.0.1:" + doomed.port},
                   {"mute", "127.0.0.1:" + std::to_string(mute_port)}};
  std::ofstream(dir.path / "haproxy.cfg") << haproxy_config(setup);
  logged_process lb({haproxy, "-db", "-f", (dir.path / "haproxy.cfg").string()},
                    (dir.path / "haproxy.log").string());
  auto status = [&](const char* s) { return server_status(sock, s); };
  CHECK_MESSAGE(settles([&] { return status("live") == "UP" && status("doomed") == "UP"; }, 20s, 50ms),
                "live: " << status("live") << ", doomed: " << status("doomed") << "\n"
                                          << lb.log() << live.proc.log());
  CHECK_MESSAGE(settles([&] { return status("mute").starts_with("DOWN"); }, 20s, 50ms),
                "mute: " << status("mute"));
  doomed.proc.stop();
  CHECK_MESSAGE(settles([&] { return status("doomed").starts_with("DOWN"); }, 20s, 50ms),
                "doomed: " << status("doomed"));
  CHECK(status("live") == "UP");
  // The health checks are LOCAL connections: the server logs no failure for them.
  CHECK(live.proc.log().find("PROXY protocol") == std::string::npos);
  ::close(mute);
}

TEST_CASE("with a maximum connection age, 30 clients on one backend spread over three behind HAProxy") {
  const char* haproxy = haproxy_or_skip();
  if (!haproxy) return;
  temp_dir dir("haproxy-age");
  int ports[3] = {free_port(), free_port(), free_port()};
  auto start_backend = [&](int i) {
    return std::make_unique<logged_process>(
        std::vector<std::string>{bokbok_test::built_program("BOKBOK_DEMO_SERVER"),
                                 "--proxy-listen", "tcp:127.0.0.1:" + std::to_string(ports[i]),
                                 "--max-connection-age", "300"},
        (dir.path / ("b" + std::to_string(i) + ".log")).string());
  };
  std::vector<std::unique_ptr<logged_process>> backends;
  backends.push_back(start_backend(0));
  REQUIRE(backends[0]->says("listening on"));
  int front = free_port();
  std::string sock = (dir.path / "stats.sock").string();
  haproxy_setup setup;
  setup.bind = "127.0.0.1:" + std::to_string(front);
  setup.stats_socket = sock;
  for (int i = 0; i < 3; ++i)
    setup.servers.push_back({"b" + std::to_string(i), "127.0.0.1:" + std::to_string(ports[i])});
  setup.inter = "100ms";
  setup.fall = "1";
  std::ofstream(dir.path / "haproxy.cfg") << haproxy_config(setup);
  logged_process lb({haproxy, "-db", "-f", (dir.path / "haproxy.cfg").string()},
                    (dir.path / "haproxy.log").string());
  auto status = [&](const char* s) { return server_status(sock, s); };
  REQUIRE(settles([&] {
    return status("b0") == "UP" && status("b1").starts_with("DOWN") && status("b2").starts_with("DOWN");
  }, 20s, 50ms));

  // 30 clients, all on b0 (the only backend up), each reconnecting when told goaway.
  std::vector<bokbok::connection> clients;
  bokbok::reconnect_policy p;
  p.initial_delay = 10ms;
  bokbok::options o;
  o.connect_timeout = 5s;
  for (int i = 0; i < 30; ++i)
    clients.push_back(bokbok::connect("tcp:127.0.0.1:" + std::to_string(front), o, p));
  backends.push_back(start_backend(1));
  backends.push_back(start_backend(2));
  REQUIRE(settles([&] { return status("b1") == "UP" && status("b2") == "UP"; }, 20s, 50ms));

  // Connections each backend opened for a client through HAProxy (health checks are
  // not: they end before the handshake).
  auto opened = [&](int i) {
    std::istringstream lines(backends[i]->log());
    int n = 0;
    for (std::string line; std::getline(lines, line);)
      if (line.find("connection from tcp:127.0.0.1:") != std::string::npos &&
          line.find(" via tcp:127.0.0.1:") != std::string::npos &&
          line.find(" closed: ") == std::string::npos)
        ++n;
    return n;
  };
  auto baseline1 = opened(1), baseline2 = opened(2);
  // Calls from every client, in rounds (at most 200 rounds, 30 s), until b1 and b2 have
  // each taken at least 5 of the clients' new connections.
  int calls = 0, failed = 0;
  std::string why;
  const auto end = std::chrono::steady_clock::now() + 30s;
  for (int round = 0; round < 200 && std::chrono::steady_clock::now() < end; ++round) {
    if (opened(1) - baseline1 >= 5 && opened(2) - baseline2 >= 5) break;
    for (auto& c : clients) {
      ++calls;
      bokbok::call_options co;
      co.timeout = 5s;
      try {
        c.request({"ping", "x"}, co);
      } catch (const std::exception& e) {
        ++failed;
        if (why.size() < 2000) why += std::string(e.what()) + "\n";
      }
    }
  }
  MESSAGE(calls << " calls, " << failed << " failed:\n" << why);
  CHECK_MESSAGE(opened(1) - baseline1 >= 5, "b1: " << opened(1) - baseline1);
  CHECK_MESSAGE(opened(2) - baseline2 >= 5, "b2: " << opened(2) - baseline2);
  for (auto& c : clients) c.close();
  for (auto& c : clients) c.wait_closed();
}
