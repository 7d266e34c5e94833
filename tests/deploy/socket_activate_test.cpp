// bokbok-demo-server under systemd-socket-activate, systemd's own tool for running a
// program the way a .socket unit would: in each of the modes a superserver can hand a
// server its sockets. Real processes, real loopback sockets, real clients (the library
// and `bokbok call`).
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <filesystem>

#include "deploy_support.hpp"

using namespace deploy_test;

namespace {

std::string socket_activate_path() {
  for (const char* p : {"/usr/bin/systemd-socket-activate", "/lib/systemd/systemd-socket-activate",
                        "/usr/lib/systemd/systemd-socket-activate"})
    if (::access(p, X_OK) == 0) return p;
  return "";
}

// systemd-socket-activate listening on a fresh loopback TCP port (and optionally more
// addresses), started with `flags` and running the demo server with `server_args`.
struct activator {
  unsigned short port = 0;
  std::unique_ptr<process> proc;
};

activator start(const std::vector<std::string>& flags, const std::vector<std::string>& more_listen,
                const std::vector<std::string>& server_args) {
  std::string ssa = socket_activate_path();
  REQUIRE_MESSAGE(!ssa.empty(),
                  "systemd-socket-activate not found (Debian package systemd; tools/install-deps.sh "
                  "installs it)");
  std::string server = env_or_throw("BOKBOK_DEMO_SERVER");
  std::string last;
  // A free port can be taken by someone else before systemd-socket-activate binds it:
  // a few fresh ports, then give up.
  for (int attempt = 0; attempt < 5; ++attempt) {
    activator a;
    a.port = free_tcp_port();
    std::vector<std::string> argv = {ssa, "-l", "127.0.0.1:" + std::to_string(a.port)};
    for (auto& l : more_listen) argv.insert(argv.end(), {"-l", l});
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.push_back(server);
    argv.insert(argv.end(), server_args.begin(), server_args.end());
    a.proc = std::make_unique<process>(argv);
    if (a.proc->wait_for_output("Listening on", 1 + more_listen.size())) return a;
    a.proc->stop();
    last = a.proc->report();
    if (last.find("in use") == std::string::npos) break;
  }
  FAIL("systemd-socket-activate did not start listening:\n" << last);
  return {};
}

// `bokbok call ADDRESS ping TEXT` prints "pong" and TEXT, one per line, and exits 0.
void check_bokbok_call(const std::string& address, const std::string& text) {
  call_result r = bokbok_call(address, {"ping", text});
  INFO("bokbok call " << address << " ping " << text << "\nstdout:\n"
                      << r.out << "\nstderr:\n" << r.err);
  CHECK(r.exit_code() == 0);
  CHECK(r.out == "pong\n" + text + "\n");
  // --echo answers the server's callbacks.
  call_result cb = bokbok_call(address, {"--echo", "callback", "2"});
  INFO("bokbok call --echo " << address << " callback 2\nstdout:\n" << cb.out << "\nstderr:\n" << cb.err);
  CHECK(cb.exit_code() == 0);
  CHECK(cb.out == "did\n2\n");
}

// The calls every mode must serve: one client at a time, `bokbok call`, then two clients
// open at once, A's call held open in the server while B is served. Returns how many
// connections were made.
int serve_the_clients(const activator& a, const std::string& label) {
  INFO(a.proc->report());
  int connections = 0;
  for (int i = 0; i < 3; ++i) {
    auto c = client::tcp(a.port);
    ++connections;
    CHECK(exercise(*c, label + "-" + std::to_string(i)) == "");
  }
  check_bokbok_call("tcp:127.0.0.1:" + std::to_string(a.port), label + " via bokbok call");
  connections += 2;
  {
    auto first = client::tcp(a.port);
    auto second = client::tcp(a.port);
    connections += 2;
    CHECK(two_at_once(*first, *second) == "");
    CHECK(exercise(*first, label + "-A-again") == "");
  }
  return connections;
}

// Per-connection modes: each connection had its own server, and each exited with status 0
// once its client hung up (systemd-socket-activate says "Child N died with code 0").
void check_each_server_exited(activator& a, int connections) {
  bool all = a.proc->wait_for_output("died with code 0", static_cast<std::size_t>(connections), 15s);
  INFO(a.proc->report());
  CHECK_MESSAGE(all, "expected " << connections
                                 << " servers to exit with code 0 after their client closed");
  CHECK(count_of(a.proc->output(), "died with code") == count_of(a.proc->output(), "died with code 0"));
}

// A datagram socket standing in for systemd's $NOTIFY_SOCKET.
struct notify_socket {
  int fd = -1;
  std::string path;
  explicit notify_socket(std::string p) : path(std::move(p)) {
    fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.data(), path.size());
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  ~notify_socket() { ::close(fd); }
  // Until its queue is full (net.unix.max_dgram_qlen datagrams unread): sends probes of
  // its own, without waiting, until one is refused (EAGAIN). Bounded.
  bool fill_up() {
    int probe = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (probe < 0) return false;
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.data(), path.size());
    bool full = false;
    for (int i = 0; i < 100'000 && !full; ++i)
      full = ::sendto(probe, "X", 1, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 &&
             errno == EAGAIN;
    ::close(probe);
    return full;
  }
  // Waits (bounded) for a datagram containing `what`; returns every datagram read.
  bool wait_for(const std::string& what, std::string& seen, std::chrono::milliseconds limit) {
    auto deadline = clock::now() + limit;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) continue;
      std::string msg(buf, static_cast<std::size_t>(n));
      seen += msg + "|";
      for (std::size_t start = 0; start <= msg.size();) {
        auto nl = msg.find('\n', start);
        if (msg.substr(start, nl - start) == what) return true;
        if (nl == std::string::npos) break;
        start = nl + 1;
      }
    }
  }
};

}  // namespace

TEST_SUITE("deploy") {

TEST_CASE("systemd-socket-activate --accept: one server per connection, on fd 3 (--systemd)") {
  auto a = start({"--accept"}, {}, {"--systemd"});
  int n = serve_the_clients(a, "accept");
  check_each_server_exited(a, n);
}

TEST_CASE("systemd-socket-activate --accept: the server finds its connection on fd 3 by itself") {
  auto a = start({"--accept"}, {}, {});
  auto c = client::tcp(a.port);
  CHECK(exercise(*c, "accept-detected") == "");
  c.reset();
  check_each_server_exited(a, 1);
}

TEST_CASE("systemd-socket-activate --accept --inetd: one server per connection, on fds 0 and 1 (--inetd)") {
  auto a = start({"--accept", "--inetd"}, {}, {"--inetd"});
  int n = serve_the_clients(a, "accept-inetd");
  check_each_server_exited(a, n);
}

TEST_CASE("systemd-socket-activate --accept --inetd: the server finds its connection on fd 0 by itself") {
  auto a = start({"--accept", "--inetd"}, {}, {});
  auto c = client::tcp(a.port);
  CHECK(exercise(*c, "inetd-detected") == "");
  c.reset();
  check_each_server_exited(a, 1);
}

TEST_CASE("systemd-socket-activate --inetd without --accept: a listening socket on fd 0 (inetd wait mode)") {
  auto a = start({"--inetd"}, {}, {"--inetd"});
  serve_the_clients(a, "inetd-wait");
  // One server accepted every connection: systemd-socket-activate exec'd it once and
  // spawned nothing.
  INFO(a.proc->report());
  CHECK(count_of(a.proc->output(), "Execing") == 1);
  CHECK(count_of(a.proc->output(), "Spawned") == 0);
  CHECK_FALSE(a.proc->wait_exit(0ms).has_value());
}

TEST_CASE("systemd-socket-activate without --accept: two named listeners, one server (--systemd, Type=notify)") {
  temp_dir dir;
  std::string sock = dir / "demo.sock";
  notify_socket notify(dir / "notify");
  auto a = start({"--fdname=bokbok-demo", "-E", "NOTIFY_SOCKET=" + notify.path, "-E",
                  "WATCHDOG_USEC=200000"},
                 {sock}, {"--systemd"});
  INFO(a.proc->report());
  // The server is exec'd at the first connection; READY=1 says it serves both sockets.
  auto first = client::tcp(a.port);
  std::string seen;
  CHECK_MESSAGE(notify.wait_for("READY=1", seen, 15s), "no READY=1 on $NOTIFY_SOCKET; got: " << seen);
  CHECK(exercise(*first, "systemd-tcp") == "");
  auto over_unix = client::unix(sock);
  CHECK(exercise(*over_unix, "systemd-unix") == "");
  CHECK(two_at_once(*first, *over_unix) == "");
  CHECK_MESSAGE(notify.wait_for("WATCHDOG=1", seen, 15s),
                "no WATCHDOG=1 though WATCHDOG_USEC=200000; got: " << seen);
  first.reset();
  over_unix.reset();
  serve_the_clients(a, "systemd");
  check_bokbok_call("unix:" + sock, "over unix via bokbok call");
  CHECK(count_of(a.proc->output(), "Execing") == 1);
  CHECK(count_of(a.proc->output(), "Spawned") == 0);

  // shutdown-server! stops the whole server, which exits with status 0.
  {
    auto last = client::tcp(a.port);
    CHECK(last->call({"shutdown-server!"}) == bokbok::message{"ok"});
  }
  auto status = a.proc->wait_exit(15s);
  REQUIRE_MESSAGE(status.has_value(), "the server did not exit after shutdown-server!");
  CHECK_MESSAGE(WIFEXITED(*status), describe_status(*status));
  CHECK(WEXITSTATUS(*status) == 0);
}

TEST_CASE("a server whose $NOTIFY_SOCKET is not read goes on serving (its watchdog pings never wait)") {
  // A datagram to a full queue waits until the receiver reads, and the watchdog pings
  // are sent from the server's event loop: it stopped serving every connection once ten
  // pings were unread (an unoptimized ASan build took long enough in the test above).
  temp_dir dir;
  notify_socket notify(dir / "notify");
  auto a = start({"-E", "NOTIFY_SOCKET=" + notify.path, "-E", "WATCHDOG_USEC=20000"}, {},
                 {"--systemd"});
  INFO(a.proc->report());
  auto c = client::tcp(a.port);
  std::string seen;
  REQUIRE_MESSAGE(notify.wait_for("READY=1", seen, 15s), "no READY=1; got: " << seen);
  REQUIRE(notify.fill_up());
  // From now on every ping (one each 10 ms) finds the queue full: calls for 200 ms, more
  // than a dozen pings, each answered.
  const auto until = clock::now() + 200ms;
  int calls = 0;
  while (clock::now() < until && calls < 100'000) {
    const std::string n = std::to_string(calls++);
    bokbok::call_options within;
    within.timeout = 5s;
    REQUIRE(c->conn->request({"ping", n}, within) == bokbok::message{"pong", n});
  }
  CHECK(exercise(*c, "notify-unread") == "");
}

}  // TEST_SUITE
