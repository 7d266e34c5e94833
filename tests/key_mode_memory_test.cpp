// What key-mode connections cost a server (issue 13, items 3 and 8): memory, not memory
// mappings, and no secret before message 1 has come whole. A responder's key_session
// holds no secret until then and only the two record keys once open; a server with no
// memory left for secrets refuses that one connection and serves the next; and the real
// demo server holds 5,000 idle key-mode connections, and 5,000 that never finish their
// handshake, reporting the mappings and resident memory each costs.
#include <doctest/doctest.h>

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/unique_fd.hpp"
#include "bokbok/bokbok.hpp"
#include "bokbok/key.hpp"
#include "crypto/key_handshake.hpp"
#include "crypto/replay_cache.hpp"
#include "crypto/secret.hpp"
#include "crypto/secret_arena.hpp"
#include "rpc/key_session.hpp"
#include "support/demo_process.hpp"
#include "support/key_users.hpp"
#include "support/raw_socket.hpp"
#include "support/settle.hpp"
#include "transport/address.hpp"
#include "transport/sockets.hpp"
#include "wire/preamble.hpp"
#include "wire/settings.hpp"

using namespace std::chrono_literals;
using namespace bokbok;

namespace {

constexpr auto patience = 10s;  // the longest any single wait here may take

std::size_t slots_in_use() { return crypto::secret_arena::process().usage().slots_in_use; }

const std::string server_preamble = wire::encode_preamble({1, wire::mode::key, ""});
std::string client_preamble(const std::string& user) {
  return wire::encode_preamble({1, wire::mode::key, user});
}

crypto::key crypto_key(const bokbok::key& k) { return crypto::key::from_bytes(k.bytes()); }

// A blocking connection to UNIX socket `path`; invalid if it cannot connect.
base::unique_fd unix_connect(const std::string& path) {
  base::unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fd;
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) return {};
  path.copy(a.sun_path, path.size());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return {};
  return fd;
}

// One record (u16 length || body) read whole, or what came of it.
std::string read_record(int fd) {
  std::string r = bokbok_test::read_some(fd, 2, patience);
  if (r.size() < 2) return r;
  std::size_t len = (std::size_t(std::uint8_t(r[0])) << 8) | std::uint8_t(r[1]);
  return r + bokbok_test::read_some(fd, len, patience);
}

// True if the peer ends the stream within `limit` (reading what comes first).
bool ends_within(int fd, std::chrono::milliseconds limit) {
  std::string got;
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    std::string more = bokbok_test::read_some(fd, 1, 100ms);
    if (more.empty()) {
      char c;
      ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return true;
    }
  }
  return false;
}

std::string hex_of(const bokbok::key& k) { return crypto::to_hex(k.bytes()); }

// Resident memory (VmRSS, bytes) and mapping count of process `pid`.
struct footprint {
  std::size_t rss = 0;
  std::size_t mappings = 0;
};
footprint footprint_of(pid_t pid) {
  footprint f;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.starts_with("VmRSS:")) f.rss = std::stoull(line.substr(6)) * 1024;
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  for (std::string line; std::getline(maps, line);) ++f.mappings;
  return f;
}

}  // namespace

TEST_CASE("a key-mode responder holds no secret before message 1 is whole, and two keys once open") {
  bokbok_test::alice_key u;
  options::key_options keys;
  keys.key_for_user = u.lookup();
  auto cfg = rpc::make_key_config(keys, std::make_shared<crypto::replay_cache>());
  // The client's side first: its secrets are made before the server's are counted.
  crypto::key_initiator ini(crypto_key(*u.alice), client_preamble("alice"), server_preamble,
                            wire::encode_settings({}));
  std::string message1;
  REQUIRE(ini.start(message1) == crypto::handshake_status::need_more);

  const std::size_t before = slots_in_use();
  rpc::key_session server(cfg, server_preamble, wire::encode_settings({}));
  std::string out;
  const std::string peer = client_preamble("alice");
  REQUIRE(server.begin({1, wire::mode::key, "alice"}, peer, out) == rpc::key_session::step::need_more);
  CHECK(out.empty());
  CHECK(slots_in_use() == before);  // the preamble alone costs no secret

  std::string_view in(message1);
  std::string_view most = in.substr(0, in.size() - 1);
  REQUIRE(server.feed(most, out) == rpc::key_session::step::need_more);
  CHECK(most.empty());              // all of it taken, held as plain bytes
  CHECK(slots_in_use() == before);  // nor does message 1 until it is whole

  std::string_view last = in.substr(in.size() - 1);
  // Message 1 checked (no DH yet); answer() makes message 2 (where the connection
  // chooses: on a handler thread, as a server does).
  REQUIRE(server.feed(last, out) == rpc::key_session::step::answer);
  CHECK(out.empty());
  CHECK_FALSE(server.ready());
  REQUIRE(server.answer(out) == rpc::key_session::step::done);
  CHECK(server.ready());
  CHECK(server.peer_user() == "alice");
  // The handshake's state stays until the login is confirmed (the connection does that
  // at the client's first record, PROTOCOL.md §9.6); then the send and receive keys
  // remain, nothing of the handshake (ephemeral, psk, ck).
  CHECK(slots_in_use() > before + 2);
  REQUIRE(server.awaiting_confirmation());
  REQUIRE(server.confirm() == rpc::key_session::step::done);
  CHECK(slots_in_use() == before + 2);

  // And the keys are the right ones: the client opens what the server seals.
  std::string_view m2 = out;
  REQUIRE(ini.feed(m2) == crypto::handshake_status::done);
  auto client = ini.take_ciphers();
  std::string record, frame;
  REQUIRE(server.seal("hello there", record));
  REQUIRE(client.receive.open(std::string_view(record).substr(2), frame));
  CHECK(frame == "hello there");
}

TEST_CASE("a server with no memory left for secrets refuses that connection, logs it, and serves the next") {
  bokbok_test::alice_key u;
  std::mutex mu;
  std::vector<std::string> logged;
  server_options o;
  o.listen = {"tcp:127.0.0.1:0"};
  o.on_request = [](connection&, message m) { return m; };
  o.keys.key_for_user = u.lookup();
  o.on_connection_error = [&](const std::string&, const std::string& why) {
    std::lock_guard lock(mu);
    logged.push_back(why);
  };
  server s(o);
  s.start();
  const std::string address = s.local_addresses().at(0);

  // Message 1, written while there is memory (the client's own secrets).
  crypto::key_initiator ini(crypto_key(*u.alice), client_preamble("alice"), server_preamble,
                            wire::encode_settings({}));
  std::string hello = client_preamble("alice");
  REQUIRE(ini.start(hello) == crypto::handshake_status::need_more);

  // Use up the process arena: no new chunk, every free slot taken.
  auto& arena = crypto::secret_arena::process();
  arena.set_max_bytes_for_test(arena.usage().bytes);
  std::vector<unsigned char*> taken;
  for (;;) {
    try {
      taken.push_back(arena.allocate());
    } catch (const std::bad_alloc&) {
      break;
    }
    REQUIRE(taken.size() < 10'000'000);
  }
  auto give_back = [&] {
    for (auto* p : taken) arena.release(p);
    taken.clear();
    arena.set_max_bytes_for_test(crypto::secret_arena::limits{}.max_bytes);
  };

  std::optional<bool> ended;
  {
    auto sock = transport::connect_socket(transport::parse_address(address), 2s);
    REQUIRE(bokbok_test::write_all(sock.fd.get(), hello));
    ended = ends_within(sock.fd.get(), patience);
  }
  give_back();
  CHECK(*ended);
  bool said = bokbok_test::settles([&] {
    std::lock_guard lock(mu);
    for (auto& why : logged)
      if (why.find("no memory left for the key-mode handshake") != std::string::npos) return true;
    return false;
  }, patience);
  {
    std::lock_guard lock(mu);
    for (auto& why : logged) MESSAGE("server logged: " << why);
  }
  CHECK(said);

  // The server is still there, and the next client is served.
  options co;
  co.keys.user = "alice";
  co.keys.key = u.alice;
  auto c = connect(address, co);
  CHECK(c.request({"still", "here"}) == message{"still", "here"});
}

namespace {

// The demo server in key mode on a UNIX socket, with one user (alice), its connection
// limit above `connections`, once it answers a key-mode client.
struct key_demo_server {
  bokbok_test::temp_dir dir{"key-memory"};
  bokbok_test::alice_key u;
  std::string sock = (dir.path / "s").string();
  std::optional<bokbok_test::demo_process> process;
  footprint base;

  explicit key_demo_server(int connections) {
    bokbok_test::raise_fd_limit();
    const std::string users = (dir.path / "users").string();
    {
      std::ofstream f(users);
      f << "alice " << hex_of(*u.alice) << "\n";
    }
    std::filesystem::permissions(users, std::filesystem::perms::owner_read |
                                            std::filesystem::perms::owner_write,
                                 std::filesystem::perm_options::replace);
    process.emplace(std::vector<std::string>{"--listen", "unix:" + sock, "--users", users,
                                             "--max-connections",
                                             std::to_string(connections + 100)});
    std::optional<connection> probe;
    REQUIRE(bokbok_test::settles([&] {
      try {
        probe.emplace(connect("unix:" + sock, client()));
        return true;
      } catch (const std::exception&) {
        return false;
      }
    }, patience, 20ms));
    REQUIRE(probe->request({"echo", "up"}) == message{"up"});
    base = footprint_of(process->pid);
  }
  options client() const {
    options co;
    co.keys.user = "alice";
    co.keys.key = u.alice;
    return co;
  }
  // After the test's connections: a fresh client is served, the server is alive, and
  // what they cost is reported. Returns the footprint.
  footprint check_and_report(int connections, const char* what) {
    auto last = connect("unix:" + sock, client());
    CHECK(last.request({"whoami"}).at(0) == "user");
    const footprint now = footprint_of(process->pid);
    MESSAGE(connections << " " << std::string(what) << ": mappings " << base.mappings << " -> "
                        << now.mappings << " ("
                        << (double(now.mappings) - double(base.mappings)) / connections
                        << " per connection), resident " << base.rss / 1024 << " KiB -> "
                        << now.rss / 1024 << " KiB ("
                        << (double(now.rss) - double(base.rss)) / connections
                        << " bytes per connection)");
    CHECK(!process->exit_within(0ms));
    // Far less than one mapping per connection (sodium_malloc cost about 24 each).
    CHECK(now.mappings < base.mappings + connections / 20);
    return now;
  }
};

// 5,000, or as many as this process's descriptor limit allows (said when fewer).
int connection_count() {
  bokbok_test::raise_fd_limit();
  rlimit r{};
  ::getrlimit(RLIMIT_NOFILE, &r);
  const int n = static_cast<int>(std::min<rlim_t>(5000, r.rlim_cur > 300 ? r.rlim_cur - 300 : 0));
  if (n < 5000) MESSAGE("RLIMIT_NOFILE " << r.rlim_cur << ": " << n << " connections, not 5,000");
  REQUIRE(n >= 1000);
  return n;
}

}  // namespace

TEST_CASE("5,000 idle key-mode connections on the demo server cost memory, not mappings") {
  const int connections = connection_count();
  key_demo_server demo(connections);
  const auto& u = demo.u;
  const std::string& sock = demo.sock;
  // The replay cache (4,096 entries for the timestamp window, another part of issue 13)
  // is not what this measures: each message 1 carries a timestamp 8 s inside the window's
  // old edge, so its entry leaves the cache within 8 s; batches are paced so that fewer
  // than 4,000 handshakes fall in any 8 s.
  constexpr int batch = 200;
  constexpr auto batch_time = 8000ms * batch / 4000;
  const std::int64_t window_ms = 120'000;
  crypto::clock_ms near_edge = [&] { return crypto::system_clock_ms() - window_ms + 8000; };
  std::vector<base::unique_fd> held;
  held.reserve(connections);
  const auto started = std::chrono::steady_clock::now();
  for (int first = 0; first < connections; first += batch) {
    const auto batch_start = std::chrono::steady_clock::now();
    const int count = std::min(batch, connections - first);
    std::vector<std::optional<crypto::key_initiator>> handshakes(count);
    const std::size_t at = held.size();
    for (int i = 0; i < count; ++i) {
      held.push_back(unix_connect(sock));
      REQUIRE(held.back());
      handshakes[i].emplace(crypto_key(*u.alice), client_preamble("alice"), server_preamble,
                            wire::encode_settings({}), near_edge);
      std::string out = client_preamble("alice");
      REQUIRE(handshakes[i]->start(out) == crypto::handshake_status::need_more);
      REQUIRE(bokbok_test::write_all(held.back().get(), out));
    }
    for (int i = 0; i < count; ++i) {
      const int fd = held[at + i].get();
      REQUIRE(bokbok_test::read_some(fd, server_preamble.size(), patience) == server_preamble);
      std::string m2 = read_record(fd);
      std::string_view in = m2;
      INFO("connection " << first + i);
      REQUIRE(handshakes[i]->feed(in) == crypto::handshake_status::done);
    }
    std::this_thread::sleep_until(batch_start + batch_time);  // pacing (see above), not a wait
    REQUIRE(std::chrono::steady_clock::now() - started < 120s);
  }
  // Every one is open on the server (its message 2 came).
  demo.check_and_report(connections, "idle key-mode connections");
}

TEST_CASE("5,000 connections that send only a key-mode preamble and a message 1 length abort nothing") {
  // The client with no key of issue 13, item 8: it holds connections open for free.
  const int connections = connection_count();
  key_demo_server demo(connections);
  const std::string hello = client_preamble("alice") + std::string("\x00\x38", 2);
  std::vector<base::unique_fd> held;
  held.reserve(connections);
  for (int i = 0; i < connections; ++i) {
    held.push_back(unix_connect(demo.sock));
    REQUIRE(held.back());
    REQUIRE(bokbok_test::write_all(held.back().get(), hello));
  }
  // Each was taken in: the server wrote its preamble on each.
  for (auto& fd : held)
    REQUIRE(bokbok_test::read_some(fd.get(), server_preamble.size(), patience) == server_preamble);
  demo.check_and_report(connections, "connections waiting in the key-mode handshake");
}
