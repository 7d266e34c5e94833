// Key-mode logins against the real demo server (PROTOCOL.md §9.4 step 4, §9.6 "Login"):
// a login happens only once the client has proved it holds the session keys, so a
// first message replayed to another server logs nobody in; and the replay cache, which
// records only logins and evicts rather than refuses, cannot be filled by one user or by
// a campaign of forged and replayed handshakes to lock the others out.
//
// Real processes and sockets: `$BOKBOK_DEMO_SERVER --users FILE` on UNIX sockets, its
// log (stderr) captured to a file; honest clients are bokbok::connect(), hostile ones
// raw sockets speaking the handshake with crypto::key_initiator.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sodium.h>

#include "base/unique_fd.hpp"
#include "bokbok/bokbok.hpp"
#include "crypto/key_handshake.hpp"
#include "support/child_process.hpp"
#include "support/demo_process.hpp"
#include "support/logged_process.hpp"
#include "support/raw_socket.hpp"
#include "support/relay.hpp"
#include "support/settle.hpp"
#include "transport/address.hpp"
#include "transport/sockets.hpp"
#include "wire/frame.hpp"
#include "wire/preamble.hpp"
#include "wire/settings.hpp"

using namespace std::chrono_literals;
namespace crypto = bokbok::crypto;
namespace wire = bokbok::wire;
using bokbok::message;

namespace {

constexpr auto patience = 10s;

bool contains(const std::string& hay, std::string_view needle) {
  return hay.find(needle) != std::string::npos;
}

std::size_t count_of(const std::string& hay, std::string_view needle) {
  std::size_t n = 0;
  for (auto at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
  return n;
}

// Users alice, bob and carol, each with a fresh key, in a users file of `dir`.
struct user_keys {
  std::shared_ptr<const bokbok::key> alice = std::make_shared<const bokbok::key>(bokbok::key::generate());
  std::shared_ptr<const bokbok::key> bob = std::make_shared<const bokbok::key>(bokbok::key::generate());
  std::shared_ptr<const bokbok::key> carol = std::make_shared<const bokbok::key>(bokbok::key::generate());
  std::string file;

  explicit user_keys(const bokbok_test::temp_dir& dir) : file((dir.path / "users").string()) {
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    for (auto [name, k] : {std::pair{"alice", alice}, {"bob", bob}, {"carol", carol}})
    {
      auto line = k->users_line(name);
      REQUIRE(::write(fd, line.view().data(), line.view().size()) == ssize_t(line.view().size()));
    }
    ::close(fd);
  }
  bokbok::options client(const std::string& user) const {
    bokbok::options o;
    o.keys.user = user;
    o.keys.key = user == "alice" ? alice : user == "bob" ? bob : carol;
    o.connect_timeout = patience;
    return o;
  }
};

// The real demo server on unix:DIR/NAME.sock with the users file, its log in
// DIR/NAME.log; killed when this goes.
struct logged_server {
  std::string address;
  bokbok_test::logged_process proc;

  logged_server(const bokbok_test::temp_dir& dir, const std::string& name, const user_keys& users,
                std::vector<std::string> extra = {})
      : address("unix:" + (dir.path / (name + ".sock")).string()),
        proc(args(address, users, extra), (dir.path / (name + ".log")).string()) {
    REQUIRE(bokbok_test::settles([&] { return contains(log(), "listening on"); }, patience));
  }
  static std::vector<std::string> args(const std::string& address, const user_keys& users,
                                       const std::vector<std::string>& extra) {
    std::vector<std::string> argv{bokbok_test::built_program("BOKBOK_DEMO_SERVER"), "--listen",
                                  address, "--users", users.file};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }
  std::string log() const { return proc.log(); }
  bool log_shows(std::string_view what, std::size_t times = 1) const {
    return bokbok_test::settles([&] { return count_of(log(), what) >= times; }, patience);
  }
};

// The user name the demo server's `whoami` reports for this connection.
std::string who(bokbok::connection& c) {
  message m = c.request({"whoami"});
  return m.size() >= 2 && m[0] == "user" ? m[1] : "<" + std::to_string(m.size()) + " fields>";
}

bokbok::base::unique_fd raw_connect(const std::string& address) {
  auto s = bokbok::transport::connect_socket(bokbok::transport::parse_address(address), 2s);
  return std::move(s.fd);
}

using bokbok_test::read_record;

// Whether the peer ends the stream within `limit`, reading and dropping what comes first.
bool ends_within(int fd, std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    std::string got = bokbok_test::read_some(fd, 4096, 100ms);
    if (got.empty()) {
      char c;
      ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return true;
    }
  }
  return false;
}

const std::string server_preamble = wire::encode_preamble({1, wire::mode::key, ""});
std::string client_preamble(const std::string& user) {
  return wire::encode_preamble({1, wire::mode::key, user});
}

crypto::key crypto_key(const bokbok::key& k) { return crypto::key::from_bytes(k.bytes()); }

// An honest login by hand: preamble, message 1, message 2, the login ping; `answer` is
// what the server's first record says: "pong" (logged in), "busy: <text>" (a goaway:
// refused at the login), or else what went wrong. `m1` is message 1, for replays.
struct login {
  bokbok::base::unique_fd fd;
  std::string answer, m1;
};

login log_in(const std::string& address, const std::string& user, const bokbok::key& k) {
  login r{raw_connect(address), "", ""};
  int fd = r.fd.get();
  crypto::key_initiator ini(crypto_key(k), client_preamble(user), server_preamble,
                            wire::encode_settings({}));
  if (ini.start(r.m1) != crypto::handshake_status::need_more) return r.answer = "<start>", std::move(r);
  if (!bokbok_test::write_all(fd, client_preamble(user) + r.m1)) return r.answer = "<write>", std::move(r);
  if (bokbok_test::read_some(fd, 9, 3s) != server_preamble) return r.answer = "<preamble>", std::move(r);
  std::string m2 = read_record(fd);
  std::string_view in = m2;
  if (ini.feed(in) != crypto::handshake_status::done) return r.answer = "<message 2>", std::move(r);
  auto ciphers = ini.take_ciphers();
  std::string ping, sealed, frame;
  wire::append_frame(ping, wire::frame_type::ping, 0, 0, {});
  if (!ciphers.send.seal(std::string_view(ping).substr(2), sealed) || !bokbok_test::write_all(fd, sealed))
    return r.answer = "<ping>", std::move(r);
  std::string rec = read_record(fd);  // read, so that our hang-up is no reset
  wire::frame_view f;
  std::string err;
  if (rec.size() < 2 || !ciphers.receive.open(std::string_view(rec).substr(2), frame) ||
      !wire::parse_frame(frame, f, err))
    return r.answer = "<no record>", std::move(r);
  if (f.type == wire::frame_type::pong) {
    r.answer = "pong";
  } else if (f.type == wire::frame_type::goaway) {
    auto [code, text] = wire::parse_code_payload(f.payload);
    r.answer = std::string(bokbok::to_string(static_cast<bokbok::error_code>(code))) + ": " + std::string(text);
  } else {
    r.answer = "<" + std::string(wire::to_string(f.type)) + ">";
  }
  return r;
}

// log_in, then hang up; message 1 when it logged in, else "".
std::string raw_login(const std::string& address, const std::string& user, const bokbok::key& k) {
  login r = log_in(address, user, k);
  return r.answer == "pong" ? r.m1 : "";
}

}  // namespace

TEST_CASE("a first message replayed to a second server with the same users logs nobody in there, and its slot goes within the handshake timeout") {
  bokbok_test::temp_dir dir("login");
  user_keys users(dir);
  logged_server x(dir, "x", users);
  logged_server y(dir, "y", users, {"--handshake-timeout", "1000"});

  // alice talks to X through a relay that records what she sends.
  std::string preamble, message1;
  {
    bokbok_test::relay r(raw_connect(x.address).release());
    int fd = r.client_fd();
    auto c = bokbok::connect_fds(fd, fd, users.client("alice"), "relay");
    CHECK(who(c) == "alice");
    c.close();
    c.wait_closed();
    REQUIRE(r.wait_ended(patience));
    auto units = r.units(bokbok_test::direction::to_server);
    REQUIRE(units.size() >= 2);
    preamble = units[0];
    message1 = units[1];
  }
  CHECK(x.log_shows("logged in as \"alice\""));

  // The same bytes to Y, at once (well inside the timestamp window): Y has never seen
  // this message 1, so it answers with message 2, and that is all the replay gets.
  auto t0 = std::chrono::steady_clock::now();
  auto fd = raw_connect(y.address);
  REQUIRE(bokbok_test::write_all(fd.get(), preamble + message1));
  CHECK(bokbok_test::read_some(fd.get(), 9, 3s) == server_preamble);
  CHECK(read_record(fd.get()).size() == 2 + crypto::message2_min_body + wire::encode_settings({}).size());
  // No login: the replayer cannot send a record under keys it does not have, and the
  // handshake timeout (1 s) takes the slot back, though the replayer never hangs up.
  CHECK(ends_within(fd.get(), 5s));
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took < 5s);
  CHECK(y.log_shows("failed: "));
  std::string ylog = y.log();
  CHECK(!contains(ylog, "logged in"));
  CHECK(contains(ylog, "timed out"));

  // The control: Y logs alice in when it is alice, so the silence above means something.
  auto c = bokbok::connect(y.address, users.client("alice"));
  CHECK(who(c) == "alice");
  c.close();
  CHECK(y.log_shows("logged in as \"alice\""));
  MESSAGE("the replay held its slot on Y for "
          << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
}

TEST_CASE("one user flooding logins and a campaign of forged and replayed handshakes lock no other user out") {
  bokbok_test::raise_fd_limit();
  bokbok_test::temp_dir dir("flood");
  user_keys users(dir);
  // A short handshake timeout: a replayed first message that the cache no longer holds
  // costs a slot until then.
  // Per-user limits off (the default): alice's flood must reach the cache.
  logged_server z(dir, "z", users, {"--handshake-timeout", "2000", "--max-per-user", "0",
                                    "--logins-per-user", "0"});

  // carol connects, calls and hangs up, again and again, throughout: never refused.
  std::atomic<bool> stop{false};
  std::atomic<int> carol_calls{0}, carol_failures{0};
  std::mutex mu;
  std::string carol_error;
  std::thread carol([&] {
    while (!stop) {
      try {
        auto c = bokbok::connect(z.address, users.client("carol"));
        if (who(c) == "carol") ++carol_calls;
        else ++carol_failures;
        c.close();
      } catch (const std::exception& e) {
        ++carol_failures;
        std::lock_guard lock(mu);
        carol_error = e.what();
      }
    }
  });

  // alice logs in as fast as she can, past twice the size of the whole replay cache (4096),
  // from three threads, within a bounded time; some of her first messages are kept.
  constexpr int per_thread = 3334, threads = 3;  // 10,002 logins (issue 13)
  std::atomic<int> logins{0}, login_failures{0};
  std::vector<std::string> kept;  // message 1s that logged in, in order, for the replays
  auto flood_start = std::chrono::steady_clock::now();
  {
    std::vector<std::thread> floods;
    for (int t = 0; t < threads; ++t)
      floods.emplace_back([&] {
        for (int i = 0; i < per_thread; ++i) {
          if (std::chrono::steady_clock::now() - flood_start > 90s) return;
          std::string m1 = raw_login(z.address, "alice", *users.alice);
          if (m1.empty()) {
            ++login_failures;
            continue;
          }
          ++logins;
          std::lock_guard lock(mu);
          kept.push_back(std::move(m1));
        }
      });
    for (auto& t : floods) t.join();
  }
  auto flood_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - flood_start).count();

  // The campaign: replays of alice's latest logged-in first messages (the cache keeps
  // her newest 1024), the same with a byte flipped, unknown users and random bytes of a
  // valid length. Each is answered with a decoy (or a message 2 that leads nowhere) and
  // ended by the server.
  constexpr int campaign = 20000;
  REQUIRE(kept.size() > 500);
  kept.erase(kept.begin(), kept.end() - 500);
  std::atomic<int> campaign_ended{0};
  {
    std::vector<std::thread> attackers;
    for (int t = 0; t < 2; ++t)
      attackers.emplace_back([&, t] {
        for (int i = t; i < campaign; i += 2) {
          std::string user = "alice", m1;
          {
            std::lock_guard lock(mu);
            m1 = kept.empty() ? std::string(2 + crypto::message1_min_body, '\0') : kept[i % kept.size()];
          }
          switch (i % 4) {
            case 0: break;  // a replay
            case 1: m1[2 + i % (m1.size() - 2)] ^= 0x20; break;
            case 2: user = "mallory" + std::to_string(i); break;
            case 3: randombytes_buf(m1.data() + 2, m1.size() - 2); break;
          }
          auto fd = raw_connect(z.address);
          if (!bokbok_test::write_all(fd.get(), client_preamble(user) + m1)) continue;
          if (ends_within(fd.get(), patience)) ++campaign_ended;
        }
      });
    for (auto& t : attackers) t.join();
  }

  // bob, who has not connected before, is admitted at once.
  auto t0 = std::chrono::steady_clock::now();
  std::string bob_error;
  try {
    auto c = bokbok::connect(z.address, users.client("bob"));
    CHECK(who(c) == "bob");
    c.close();
  } catch (const std::exception& e) {
    bob_error = e.what();
  }
  auto bob_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  stop = true;
  carol.join();

  std::string log = z.log();
  MESSAGE(logins.load() << " logins by alice in " << flood_ms << " ms (" << login_failures.load()
                        << " failed); " << campaign_ended.load() << " of " << campaign
                        << " hostile handshakes ended by the server; carol called "
                        << carol_calls.load() << " times, " << carol_failures.load()
                        << " failed; bob admitted in " << bob_ms << " ms");
  CHECK(logins + login_failures == threads * per_thread);  // the flood ran to its end
  CHECK(logins > int(crypto::default_replay_capacity));
  CHECK(login_failures == 0);  // a flooding user is limited by work, not locked out
  CHECK(campaign_ended == campaign);
  CHECK(bob_error == "");
  CHECK(bob_ms < 5000);
  CHECK(carol_calls > 0);
  CHECK(carol_failures == 0);
  CHECK(carol_error == "");
  CHECK(!contains(log, "replay cache full"));
  CHECK(contains(log, "replayed handshake"));  // the replays were refused, before any DH
}

TEST_CASE("a user past its connections at once is refused busy at the login, while other users are served") {
  bokbok_test::temp_dir dir("peruser");
  user_keys users(dir);
  logged_server s(dir, "s", users, {"--max-per-user", "3"});
  std::vector<login> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(log_in(s.address, "alice", *users.alice));
    CHECK(held.back().answer == "pong");
  }
  CHECK(log_in(s.address, "alice", *users.alice).answer ==
        "busy: too many connections of user \"alice\": 3 at once (at most 3)");
  // Another user is served meanwhile.
  auto bob = bokbok::connect(s.address, users.client("bob"));
  CHECK(who(bob) == "bob");
  bob.close();
  // alice's places come back when her connections end.
  held.clear();
  CHECK(bokbok_test::settles([&] { return log_in(s.address, "alice", *users.alice).answer == "pong"; }, patience));
  CHECK(s.log_shows("refused: busy: too many connections of user"));
}

TEST_CASE("a user logging in faster than its rate is refused busy at the login, while other users are served") {
  bokbok_test::temp_dir dir("peruser");
  user_keys users(dir);
  logged_server s(dir, "s", users, {"--logins-per-user", "5"});
  int served = 0, refused = 0;
  std::string refusal;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 30; ++i) {
    std::string a = log_in(s.address, "alice", *users.alice).answer;
    if (a == "pong") ++served;
    else if (a.starts_with("busy: ")) ++refused, refusal = a;
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto bob = bokbok::connect(s.address, users.client("bob"));
  CHECK(who(bob) == "bob");
  bob.close();
  MESSAGE(served << " of alice's logins served, " << refused << " refused in " << seconds << " s");
  CHECK(served >= 5);
  CHECK(served <= 5 + int(5 * seconds) + 1);
  CHECK(served + refused == 30);
  CHECK(refusal == "busy: too many new connections of user \"alice\" (at most 5 a second)");
}

TEST_CASE("a client refused at the login sees busy and the server's reason, not a shutdown") {
  bokbok_test::temp_dir dir("refused");
  user_keys users(dir);
  logged_server s(dir, "s", users, {"--max-per-user", "1"});
  login held = log_in(s.address, "alice", *users.alice);
  REQUIRE(held.answer == "pong");
  const std::string reason =
      "refused by the peer: busy: too many connections of user \"alice\": 1 at once (at most 1)";
  // The handshake completes (alice's key is good), so the connection opens on the
  // client's side; the server's refusal comes as the answer to its first record.
  auto c = bokbok::connect(s.address, users.client("alice"));
  std::optional<bokbok::error_code> code;
  std::string what;
  try {
    c.request({"whoami"});
  } catch (const bokbok::call_error& e) {
    code = e.code();
    what = e.message();
  } catch (const bokbok::error& e) {
    what = e.what();
  }
  CHECK(what.find(reason) != std::string::npos);
  if (code) CHECK(*code == bokbok::error_code::busy);
  c.wait_closed();
  CHECK(c.close_reason() == reason);
  CHECK(s.log_shows("refused: busy: too many connections of user \"alice\""));
}

TEST_CASE("a key-mode opening that times out says it waited for the handshake or the login proof, not for a hello") {
  bokbok_test::temp_dir dir("timeout");
  user_keys users(dir);
  // The server's side: a client that completes the handshake but never sends its first
  // record (the login proof) is timed out waiting for exactly that.
  logged_server s(dir, "s", users, {"--handshake-timeout", "1000"});
  {
    auto fd = raw_connect(s.address);
    std::string m1;
    crypto::key_initiator ini(crypto_key(*users.alice), client_preamble("alice"), server_preamble,
                              wire::encode_settings({}));
    REQUIRE(ini.start(m1) == crypto::handshake_status::need_more);
    REQUIRE(bokbok_test::write_all(fd.get(), client_preamble("alice") + m1));
    REQUIRE(bokbok_test::read_some(fd.get(), 9, 3s) == server_preamble);
    std::string m2 = read_record(fd.get());
    std::string_view in = m2;
    REQUIRE(ini.feed(in) == crypto::handshake_status::done);
    CHECK(ends_within(fd.get(), patience));
  }
  CHECK(s.log_shows("timed out after 1000 ms waiting for the client's login proof"));
  CHECK(!contains(s.log(), "preamble and hello"));

  // The client's side: a "server" that sends its key-mode preamble and then nothing.
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  bokbok::base::unique_fd mute(sv[1]);
  REQUIRE(bokbok_test::write_all(mute.get(), server_preamble));
  auto o = users.client("alice");
  o.connect_timeout = 1000ms;
  std::string what;
  try {
    auto c = bokbok::connect_fds(sv[0], sv[0], o, "mute");
    c.request({"whoami"});
  } catch (const bokbok::error& e) {
    what = e.what();
  }
  CHECK(what.find("timed out after 1000 ms waiting for the key-mode handshake") != std::string::npos);
  CHECK(what.find("hello") == std::string::npos);
}
