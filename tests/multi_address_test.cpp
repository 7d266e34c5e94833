// Multi-address clients (README "Addresses", "Behind a load balancer"): a tcp: list with
// one dead address and two real demo server processes on loopback. Round robin spreads
// connections over both live servers, first-healthy always lands on the first live one,
// a reconnecting client fails over when its server is killed, and an address that
// failed is dialed again only when its backoff has ended, not at every redial.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "bokbok/server.hpp"
#include "api/address_picker.hpp"
#include "support/child_process.hpp"
#include "transport/address.hpp"
#include "support/logged_process.hpp"
#include "support/settle.hpp"
#include "support/tool_run.hpp"

using namespace std::chrono_literals;
using bokbok::message;
using bokbok_test::built_program;
using bokbok_test::free_port;
using bokbok_test::logged_process;
using bokbok_test::settles;

namespace {

std::string tcp_entry(int port) { return "127.0.0.1:" + std::to_string(port); }

// A demo server listening on 127.0.0.1:port, its log in a fresh file; ready on return.
struct live_server {
  int port = free_port();
  std::unique_ptr<logged_process> proc;
  explicit live_server(std::vector<std::string> extra = {}) {
    auto log = (std::filesystem::temp_directory_path() /
                ("bokbok-multi-" + std::to_string(::getpid()) + "-" + std::to_string(port) + ".log"))
                   .string();
    std::vector<std::string> argv{built_program("BOKBOK_DEMO_SERVER"), "--listen",
                                  "tcp:" + tcp_entry(port)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    proc = std::make_unique<logged_process>(argv, log);
    REQUIRE(proc->says("listening on"));
  }
  ~live_server() {
    proc->stop();
    std::filesystem::remove(proc->log_path);
  }
  std::string peer() const { return "tcp:" + tcp_entry(port); }
};

// A listening socket on 127.0.0.1 that accepts each connection and closes it at once,
// counting them: a dead backend whose dials can be counted. Its thread stops with it.
struct counting_listener {
  int fd = -1;
  int port = 0;
  std::atomic<int> accepted{0};
  std::atomic<bool> stop{false};
  std::thread thread;
  counting_listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    REQUIRE(::listen(fd, 64) == 0);
    socklen_t len = sizeof sa;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    port = ntohs(sa.sin_port);
    thread = std::thread([this] {
      while (!stop) {  // bounded by the test's lifetime: stop is set on destruction
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        // Count before closing: the close wakes the client, which may read the count
        // before this thread runs again.
        ++accepted;
        ::close(c);
      }
    });
  }
  ~counting_listener() {
    stop = true;
    thread.join();
    ::close(fd);
  }
};

// The server a connection landed on, as the client names its peer.
std::string landed_on(bokbok::connection& c) { return c.peer_address(); }

// The real bokbok tool run with `args`.
bokbok_test::tool_result run_tool(std::vector<std::string> args) {
  bokbok_test::tool_spawn s;
  s.args = std::move(args);
  return bokbok_test::run_tool_process(s);
}

}  // namespace

TEST_CASE("round robin spreads new connections over both live servers of a list and skips the dead address") {
  live_server a, b;
  const int dead = free_port();
  const std::string list = "tcp:" + tcp_entry(dead) + "," + tcp_entry(a.port) + "," + tcp_entry(b.port);
  bokbok::options o;
  o.address_choice = bokbok::address_choice::round_robin;
  std::map<std::string, int> per_server;
  constexpr int n = 12;
  for (int i = 0; i < n; ++i) {
    auto c = bokbok::connect(list, o);
    CHECK(c.request(message{"ping", "x"}) == message{"pong", "x"});
    ++per_server[landed_on(c)];
    c.close(0ms);
  }
  CAPTURE(per_server[a.peer()]);
  CAPTURE(per_server[b.peer()]);
  CHECK(per_server[a.peer()] + per_server[b.peer()] == n);
  // Rotating over three addresses, the dead one's turn falls through to the next: a gets
  // two in three, b one in three. Each gets at least a quarter.
  CHECK(per_server[a.peer()] >= n / 4);
  CHECK(per_server[b.peer()] >= n / 4);
}

TEST_CASE("first healthy always uses the first live server of a list") {
  live_server a, b;
  const int dead = free_port();
  const std::string list = "tcp:" + tcp_entry(dead) + "," + tcp_entry(a.port) + "," + tcp_entry(b.port);
  for (int i = 0; i < 6; ++i) {
    auto c = bokbok::connect(list, bokbok::options{});
    CHECK(landed_on(c) == a.peer());
    CHECK(c.request(message{"ping", "y"}) == message{"pong", "y"});
    c.close(0ms);
  }
  // With a reconnect policy too.
  bokbok::reconnect_policy policy;
  policy.initial_delay = 20ms;
  auto r = bokbok::connect(list, bokbok::options{}, policy);
  CHECK(landed_on(r) == a.peer());
  r.close(0ms);
}

TEST_CASE("round robin with a reconnect policy: each redial starts at the next address") {
  // Servers ending each connection after 150 ms (goaway) make the client redial.
  live_server a({"--max-connection-age", "150"}), b({"--max-connection-age", "150"});
  const std::string list = "tcp:" + tcp_entry(a.port) + "," + tcp_entry(b.port);
  bokbok::options o;
  o.address_choice = bokbok::address_choice::round_robin;
  bokbok::reconnect_policy policy;
  policy.initial_delay = 10ms;
  std::atomic<int> reconnects{0};
  policy.on_reconnect = [&] { ++reconnects; };
  auto c = bokbok::connect(list, o, policy);
  std::map<std::string, int> seen;
  // Each redial alternates, so both servers are seen within a few redials.
  CHECK(settles(
      [&] {
        seen[landed_on(c)]++;
        return seen.count(a.peer()) && seen.count(b.peer()) && reconnects >= 2;
      },
      20s, 20ms));
  c.close(0ms);
}

TEST_CASE("failover: a reconnecting client whose server is killed lands on the other live server and its calls succeed") {
  auto a = std::make_unique<live_server>();
  live_server b;
  const int dead = free_port();
  const std::string list = "tcp:" + tcp_entry(dead) + "," + tcp_entry(a->port) + "," + tcp_entry(b.port);
  bokbok::reconnect_policy policy;
  policy.initial_delay = 20ms;
  policy.max_delay = 200ms;
  std::atomic<int> drops{0};
  policy.on_drop = [&](const std::string&) { ++drops; };
  auto c = bokbok::connect(list, bokbok::options{}, policy);
  REQUIRE(landed_on(c) == a->peer());
  CHECK(c.request(message{"ping", "1"}) == message{"pong", "1"});
  a.reset();  // SIGKILL
  // A call sent before the client has read the end of the stream fails (it was in
  // flight on the dead connection); from the drop on, calls wait for the redial.
  REQUIRE(settles([&] { return drops.load() == 1; }, 10s));
  bokbok::call_options deadline;
  deadline.deadline = std::chrono::steady_clock::now() + 20s;
  CHECK(c.request(message{"ping", "2"}, deadline) == message{"pong", "2"});
  CHECK(landed_on(c) == b.peer());
  for (int i = 0; i < 5; ++i) CHECK(c.request(message{"ping", "3"}, deadline) == message{"pong", "3"});
  c.close(0ms);
}

TEST_CASE("an address that failed is dialed again only after its backoff, not at every redial") {
  counting_listener dead;  // accepts and closes: the handshake fails there
  // The live server ends each connection after 100 ms, so the client redials often.
  live_server a({"--max-connection-age", "100"});
  const std::string list = "tcp:" + tcp_entry(dead.port) + "," + tcp_entry(a.port);
  bokbok::reconnect_policy policy;
  policy.initial_delay = 50ms;
  policy.max_delay = 60s;  // doubling: dialed about log2(elapsed / 50 ms) times
  std::atomic<int> reconnects{0};
  policy.on_reconnect = [&] { ++reconnects; };
  auto c = bokbok::connect(list, bokbok::options{}, policy);
  CHECK(dead.accepted.load() == 1);  // tried first, failed, then the live one
  CHECK(landed_on(c) == a.peer());
  constexpr int redials = 20;
  REQUIRE(settles([&] { return reconnects.load() >= redials; }, 60s, 10ms));
  c.close(0ms);
  const int dials = dead.accepted.load();
  CAPTURE(dials);
  // Without backoff the dead address comes first at each of the 21 dials; with it, at
  // most a handful (it is still retried once its backoff ends).
  CHECK(dials >= 2);
  CHECK(dials <= 12);
}

TEST_CASE("the bokbok tool takes a list: ping and call reach the live server past the dead address") {
  live_server a;
  const int dead = free_port();
  const std::string list = "tcp:" + tcp_entry(dead) + "," + tcp_entry(a.port);
  auto ping = run_tool({"ping", list});
  CAPTURE(ping.err);
  CHECK(ping.status == 0);
  auto call = run_tool({"call", list, "echo", "via-list"});
  CAPTURE(call.err);
  CHECK(call.status == 0);
  CHECK(call.out.find("via-list") != std::string::npos);
  // A malformed list is refused with the list quoted.
  auto bad = run_tool({"ping", list + ","});
  CHECK(bad.status != 0);
  CHECK(bad.err.find("\"" + list + ",\"") != std::string::npos);
}

TEST_CASE("a list skips an address that accepts the connection but closes it before the opening exchange") {
  counting_listener dead;
  live_server a;
  const std::string list = "tcp:" + tcp_entry(dead.port) + "," + tcp_entry(a.port);
  auto c = bokbok::connect(list, bokbok::options{});
  CHECK(landed_on(c) == a.peer());
  CHECK(dead.accepted.load() == 1);
  CHECK(c.request(message{"ping", "z"}) == message{"pong", "z"});
  c.close(0ms);
  // Alone, the address fails with what opening it threw, with or without a policy.
  auto error_of = [](auto open) -> std::string {
    try {
      open();
    } catch (const bokbok::transport_error& e) {
      return e.what();
    }
    return "(opened)";
  };
  const std::string alone = "tcp:" + tcp_entry(dead.port);
  std::string plain = error_of([&] { bokbok::connect(alone, bokbok::options{}); });
  std::string redialling =
      error_of([&] { bokbok::connect(alone, bokbok::options{}, bokbok::reconnect_policy{}); });
  CAPTURE(plain);
  CAPTURE(redialling);
  const std::string said = "bokbok: the peer closed the connection before speaking bokbok";
  CHECK(plain.rfind(said, 0) == 0);
  CHECK(redialling.rfind(said, 0) == 0);
}

TEST_CASE("a server refuses to listen on a list, saying it is for connecting") {
  bokbok::server_options o;
  o.listen = {"tcp:127.0.0.1:0,127.0.0.1:0"};
  try {
    bokbok::server srv(o);
    srv.start();
    FAIL("listened on a list");
  } catch (const bokbok::address_error& e) {
    CHECK(std::string(e.what()).find("a list of addresses is for connecting") != std::string::npos);
  }
}

// The picker itself, over two real listening sockets; `open` stands for the opening
// exchange (which the tests above run for real) so that a test can say which address
// opens when, and nullptr stands for the opened connection.
TEST_CASE("an address's backoff doubles with each failure and is forgotten once it opens") {
  using bokbok::detail::address_picker;
  counting_listener x, y;
  auto where = std::get<bokbok::transport::tcp_address>(bokbok::transport::parse_address(
      "tcp:" + tcp_entry(x.port) + "," + tcp_entry(y.port)));
  address_picker picker(where, bokbok::address_choice::first_healthy, 100ms, 60s);
  const std::string x_name = "tcp:" + tcp_entry(x.port);
  bool x_opens = false, y_opens = false;
  std::string opened;
  auto open = [&](bokbok::transport::connected_socket s) -> std::shared_ptr<bokbok::detail::connection_impl> {
    bool ok = s.peer == x_name ? x_opens : y_opens;
    if (!ok) throw bokbok::transport_error("refused by the test: " + s.peer);
    opened = s.peer;
    return nullptr;
  };
  // Both fail three times: x's backoff is 100, 200, then 400 ms.
  for (int i = 0; i < 3; ++i) CHECK_THROWS_AS(picker.dial(5s, open), bokbok::transport_error);
  // Both still backing off, x's ends first: it is tried first, and opens.
  x_opens = true;
  picker.dial(5s, open);
  CHECK(opened == x_name);
  // x fails once more: a fresh backoff of 100 ms (not 800), while y takes the dials.
  x_opens = false;
  y_opens = true;
  picker.dial(5s, open);
  CHECK(opened != x_name);
  x_opens = true;
  // x is first again once its 100 ms are over; had its backoff not been reset, not for 800.
  CHECK(settles(
      [&] {
        picker.dial(5s, open);
        return opened == x_name;
      },
      600ms, 20ms));
}
