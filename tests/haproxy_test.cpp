// Behind real HAProxy (Debian's haproxy, started here on loopback): each of three demo
// servers listening with --proxy-listen behind `mode tcp` + `send-proxy-v2` sees the
// client's address, not HAProxy's; and HAProxy's tcp-check of the bokbok preamble (README
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
#include <memory>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "support/demo_process.hpp"
#include "support/haproxy.hpp"
#include "support/logged_process.hpp"
#include "support/settle.hpp"

using namespace std::chrono_literals;
using bokbok_test::settles;
using bokbok_test::temp_dir;
using bokbok_test::logged_process;
using bokbok_test::free_port;
using bokbok_test::haproxy_or_skip;
using bokbok_test::server_sessions;
using bokbok_test::backend;
using bokbok_test::stats_command;
using bokbok_test::server_status;
using bokbok_test::haproxy_setup;
using bokbok_test::haproxy_config;
using bokbok_test::example_path;


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

TEST_CASE("behind HAProxy with send-proxy-v2 each of three servers sees the client's address, not HAProxy's") {
  const char* haproxy = haproxy_or_skip();
  if (!haproxy) return;
  temp_dir dir("haproxy");
  std::vector<std::unique_ptr<backend>> servers;
  for (int i = 1; i <= 3; ++i)
    servers.push_back(std::make_unique<backend>(dir, "server" + std::to_string(i)));
  // The client reaches HAProxy from 127.0.0.1; HAProxy reaches the servers from 127.0.0.2.
  int front = free_port();
  haproxy_setup setup;
  setup.bind = "127.0.0.3:" + std::to_string(front);
  setup.stats_socket = (dir.path / "stats.sock").string();
  for (int i = 1; i <= 3; ++i)
    setup.servers.push_back({"s" + std::to_string(i), "127.0.0.1:" + servers[std::size_t(i - 1)]->port});
  setup.server_extra = "source 127.0.0.2";
  std::ofstream(dir.path / "haproxy.cfg") << haproxy_config(setup);
  logged_process lb({haproxy, "-db", "-f", (dir.path / "haproxy.cfg").string()},
                    (dir.path / "haproxy.log").string());
  // Every server up, so that round robin gives each of three connections its own server.
  auto status = [&](const char* s) { return server_status(setup.stats_socket, s); };
  REQUIRE_MESSAGE(settles([&] {
    return status("s1") == "UP" && status("s2") == "UP" && status("s3") == "UP";
  }, 20s, 50ms), lb.log());

  bokbok::options o;
  o.connect_timeout = 5s;
  std::vector<bokbok::connection> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(bokbok::connect("tcp:127.0.0.3:" + std::to_string(front), o));
    // (Linux gives a client of any 127.x address the source 127.0.0.1.)
    CHECK(clients.back().request({"ping", "through haproxy"}) ==
          bokbok::message{"pong", "through haproxy"});
  }
  // Each demo server logs "connection from PEER": the client, via HAProxy.
  for (auto& server : servers) {
    CHECK_MESSAGE(server->proc.says("connection from tcp:127.0.0.1:"), server->proc.log());
    CHECK_MESSAGE(server->proc.log().find(" via tcp:127.0.0.2:") != std::string::npos,
                  server->proc.log());
  }
  for (auto& c : clients) {
    c.close();
    c.wait_closed();
  }
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

  // Connections HAProxy opened to each backend for a client (its health checks are not
  // counted). Not counted from the backend's log: the demo server's "connection from"
  // lines are rate limited (5 per 10 s, then only a count while they keep coming), so a
  // backend that took its first five before the baseline logged no more one by one.
  auto opened = [&](int i) { return server_sessions(sock, "b" + std::to_string(i)); };
  auto baseline1 = opened(1), baseline2 = opened(2);
  REQUIRE(baseline1 >= 0);  // the stats are readable
  REQUIRE(baseline2 >= 0);
  // Calls from every client, in rounds (at most 3000 rounds, 30 s), until b1 and b2 have
  // each taken at least 5 of the clients' new connections. Bounded by time more than by
  // rounds: under a sanitizer a health check may miss (fall 1) and take a backend out
  // for a while, and 200 quick rounds (4 s) once ended before b2 came back.
  int calls = 0, failed = 0;
  std::string why;
  const auto end = std::chrono::steady_clock::now() + 30s;
  for (int round = 0; round < 3000 && std::chrono::steady_clock::now() < end; ++round) {
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
