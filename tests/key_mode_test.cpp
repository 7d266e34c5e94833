// Key mode (PROTOCOL.md §9) as a user meets it: a client with the right key calls and is
// called back over a socketpair, a bokbok::server on TCP and on a UNIX socket, and the
// demo server spawned through exec: with a users file; wrong keys and unknown users are
// refused alike; plain mode is never chosen silently; peer credentials on UNIX sockets;
// large messages and many concurrent callers on one encrypted connection; and, through a
// relay that records the wire, no payload or method name in clear.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "support/key_users.hpp"
#include "support/process_temp_dir.hpp"
#include "bokbok/key.hpp"
#include "support/child_process.hpp"
#include "support/relay.hpp"
#include "crypto/noise_handshake.hpp"
#include "transport/command_line.hpp"

using namespace std::chrono_literals;
using bokbok::message;

namespace {

constexpr auto patience = 10s;  // the longest any single wait here may take

using users = bokbok_test::alice_key;

bokbok::options::key_options client_keys(std::string user,
                                         std::shared_ptr<const bokbok::key> key) {
  bokbok::options::key_options k;
  k.user = std::move(user);
  k.key = std::move(key);
  return k;
}

// The handler both kinds of server side use: "back" calls the caller back from the
// handler, "who" names the authenticated user, "creds" the peer's uid, anything else
// echoes.
message serve(bokbok::connection& c, message m) {
  if (!m.empty() && m[0] == "back") return c.request({"called", "back"});
  if (!m.empty() && m[0] == "who") return {c.user()};
  if (!m.empty() && m[0] == "creds") {
    auto cr = c.peer_credentials();
    return {cr ? std::to_string(cr->uid) : "none"};
  }
  return m;
}

// A client that answers calls from its server.
bokbok::options answering_client(bokbok::options::key_options keys) {
  bokbok::options o;
  o.on_request = [](bokbok::connection&, message m) { return message{"client", m.at(0)}; };
  o.keys = std::move(keys);
  return o;
}

std::filesystem::path temp_dir() { return bokbok_test::process_temp_dir("bokbok-key-mode-test"); }

std::string hex_of(const bokbok::key& k) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : k.bytes()) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 15]);
  }
  return out;
}

// Writes a users file (`USER HEX` lines) with mode 0600 and returns its path.
std::string write_users_file(const std::string& name,
                             const std::vector<std::pair<std::string, const bokbok::key*>>& rows) {
  auto path = (temp_dir() / name).string();
  std::filesystem::remove(path);
  {
    std::ofstream f(path);
    f << "# users of a key-mode test\n";
    for (auto& [user, key] : rows) f << user << " " << hex_of(*key) << "\n";
  }
  REQUIRE(::chmod(path.c_str(), 0600) == 0);
  return path;
}

// Collects what a server reports through on_connection_error.
struct connection_error_log {
  std::mutex mu;
  std::vector<std::string> logged;
  void attach(bokbok::server_options& o) {
    o.on_connection_error = [this](const std::string&, const std::string& why) {
      std::lock_guard lock(mu);
      logged.push_back(why);
    };
  }
  // Waits (bounded) until at least `n` lines are in, and returns them.
  std::vector<std::string> wait_for(std::size_t n) {
    auto end = std::chrono::steady_clock::now() + patience;
    for (;;) {
      {
        std::lock_guard lock(mu);
        if (logged.size() >= n || std::chrono::steady_clock::now() > end) return logged;
      }
      std::this_thread::sleep_for(2ms);  // polling a report, with a bound
    }
  }
};

// The two ends of a key-mode connection over a socketpair, each opened by connect_fds
// on its own thread (both block until the handshake is done).
std::pair<bokbok::connection, bokbok::connection> key_pair(const bokbok::options& client,
                                                           const bokbok::options& server) {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  auto srv = std::async(std::launch::async,
                        [&] { return bokbok::connect_fds(sv[1], sv[1], server, "client"); });
  auto cli = bokbok::connect_fds(sv[0], sv[0], client, "server");
  REQUIRE(srv.wait_for(patience) == std::future_status::ready);
  return {cli, srv.get()};
}

std::string what_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

}  // namespace

namespace doctest {
template <>
struct StringMaker<bokbok::message> {
  static String convert(const bokbok::message& m) {
    std::string out = "{";
    for (std::size_t i = 0; i < m.size(); ++i) {
      if (i) out += ", ";
      out += "\"" + (m[i].size() > 40 ? m[i].substr(0, 40) + "...(" + std::to_string(m[i].size()) + " bytes)" : m[i]) + "\"";
    }
    return (out + "}").c_str();
  }
};
}  // namespace doctest

namespace {

}  // namespace

TEST_CASE("a client with the right key calls and is called back over a socketpair") {
  users u;
  bokbok::options server;
  server.on_request = serve;
  server.keys.key_for_user = u.lookup();
  auto [cli, srv] = key_pair(answering_client(client_keys("alice", u.alice)), server);
  CHECK(cli.request({"hello", std::string("bin\0ary", 7)}) ==
        message{"hello", std::string("bin\0ary", 7)});
  CHECK(cli.request({"back"}) == message{"client", "called"});  // the responder calls us
  CHECK(srv.request({"ping"}) == message{"client", "ping"});    // and so may its side
  CHECK(cli.request({"who"}) == message{"alice"});
  CHECK(srv.user() == "alice");
  cli.close();
  cli.wait_closed();
  srv.wait_closed();
  CHECK(srv.close_reason() == "the peer is shutting down: it is closing the connection");
}

TEST_CASE("a key-mode server on TCP and on a UNIX socket serves its users both ways") {
  users u;
  auto users_file = write_users_file("users-server", {{"alice", u.alice.get()}});
  auto path = (temp_dir() / "key-server.sock").string();
  bokbok::server_options o;
  o.listen = {"tcp:127.0.0.1:0", "unix:" + path};
  o.on_request = serve;
  o.keys.key_for_user = bokbok::load_users(users_file);
  std::mutex mu;
  std::vector<std::string> opened_users;
  o.on_open = [&](bokbok::connection& c) {
    std::lock_guard lock(mu);
    opened_users.push_back(c.user());
  };
  bokbok::server s(o);
  s.start();
  auto bound = s.local_addresses();
  REQUIRE(bound.size() == 2);
  for (const auto& address : bound) {
    CAPTURE(address);
    auto c = bokbok::connect(address, answering_client(client_keys("alice", u.alice)));
    CHECK(c.request({"hello"}) == message{"hello"});
    CHECK(c.request({"back"}) == message{"client", "called"});
    CHECK(c.request({"who"}) == message{"alice"});
    CHECK(c.request({"creds"}) ==
          message{address.starts_with("unix:") ? std::to_string(getuid()) : "none"});
    c.close();
    c.wait_closed();
  }
  s.stop();
  s.wait();
  std::lock_guard lock(mu);
  CHECK(opened_users == std::vector<std::string>{"alice", "alice"});
}

TEST_CASE("connect() makes its ephemeral key on the calling thread, not on the shared event loop") {
  // The loop serves every connection connect() opens in this process: a key pair made
  // there (some 45 µs) held up all of them, where the caller's thread only waits.
  users u;
  bokbok::server_options o;
  o.listen = {"unix:@bokbok-key-mode-test-ephemeral-" + std::to_string(getpid())};
  o.on_request = serve;
  o.keys.key_for_user = u.lookup();
  bokbok::server s(o);
  s.start();
  for (int i = 0; i < 3; ++i) {
    const auto before = bokbok::crypto::ephemeral_keypair::made_on_this_thread();
    auto c = bokbok::connect(s.local_addresses().at(0), answering_client(client_keys("alice", u.alice)));
    CHECK(bokbok::crypto::ephemeral_keypair::made_on_this_thread() == before + 1);
    CHECK(c.request({"who"}) == message{"alice"});
    c.close();
    c.wait_closed();
  }
  s.stop();
  s.wait();
}

// A key-mode server knowing alice on an abstract UNIX socket named for `what`, with one
// handler thread, running `handler`.
bokbok::server_options one_thread_key_server(const users& u, const std::string& what,
                                             bokbok::request_handler handler) {
  bokbok::server_options o;
  o.listen = {"unix:@bokbok-key-mode-test-" + what + "-" + std::to_string(getpid())};
  o.max_threads = 1;
  o.on_request = std::move(handler);
  o.keys.key_for_user = u.lookup();
  return o;
}

TEST_CASE("a key-mode server makes each login's key exchange on a handler thread, not its event loop") {
  // The loop serves every connection of the server: a login's ephemeral key and
  // Diffie-Hellman (some 100 µs) held them all up, and logins could use one CPU only.
  // With one handler thread, the thread that answers calls is the one that made them.
  users u;
  bokbok::server s(one_thread_key_server(u, "answer", [](bokbok::connection&, message) {
    return message{std::to_string(bokbok::crypto::handshake_state::dh_count_on_this_thread())};
  }));
  s.start();
  std::vector<bokbok::connection> logins;
  for (int i = 1; i <= 3; ++i) {
    logins.push_back(bokbok::connect(s.local_addresses().at(0),
                                     answering_client(client_keys("alice", u.alice))));
    CHECK(logins.back().request({"dh"}) == message{std::to_string(i)});
  }
  for (auto& c : logins) {
    c.close();
    c.wait_closed();
  }
  s.stop();
  s.wait();
}

TEST_CASE("a login is answered while every handler thread of the server is busy") {
  // A login's answer goes to a handler thread only when one is free at once: it never
  // waits behind slow handlers (here one handler that blocks), up to the handshake
  // timeout.
  users u;
  std::promise<void> entered, release;
  auto released = release.get_future().share();
  bokbok::server s(one_thread_key_server(u, "busy", [&, released](bokbok::connection&, message m) {
    if (!m.empty() && m[0] == "block") {
      entered.set_value();
      released.wait_for(patience);
    }
    return m;
  }));
  s.start();
  const auto address = s.local_addresses().at(0);
  auto first = bokbok::connect(address, answering_client(client_keys("alice", u.alice)));
  auto blocked = first.request_async({"block"});
  REQUIRE(entered.get_future().wait_for(patience) == std::future_status::ready);
  // The one handler thread is held: this login is answered by the loop.
  auto options = answering_client(client_keys("alice", u.alice));
  options.connect_timeout = 5s;
  auto second = bokbok::connect(address, options);
  release.set_value();
  CHECK(blocked.get() == message{"block"});
  CHECK(second.request({"after"}) == message{"after"});
  for (auto* c : {&first, &second}) {
    c->close();
    c->wait_closed();
  }
  s.stop();
  s.wait();
}

TEST_CASE("the demo server spawned through exec: with a users file knows who called") {
  users u;
  auto other = bokbok::key::generate();
  auto users_file = write_users_file("users-demo", {{"bob", &other}, {"alice", u.alice.get()}});
  std::string address = "exec:" +
                        bokbok::transport::shell_quote(bokbok_test::built_program("BOKBOK_DEMO_SERVER")) +
                        " --stdio --users " + bokbok::transport::shell_quote(users_file);
  std::atomic<int> callbacks{0};
  bokbok::options o = answering_client(client_keys("alice", u.alice));
  o.on_request = [&](bokbok::connection&, message m) {
    ++callbacks;
    return message{"ok", m.at(1)};
  };
  auto c = bokbok::connect(address, o);
  CHECK(c.request({"whoami"}) == message{"user", "alice"});
  CHECK(c.request({"callback", "3"}) == message{"did", "3"});  // it calls us back 3 times
  CHECK(callbacks == 3);
  CHECK(c.request({"echo", "x", std::string(100000, 'y')}) ==
        message{"x", std::string(100000, 'y')});
  c.close();
  c.wait_closed();
  auto st = c.child_status();
  REQUIRE(st.has_value());
  CHECK(st->code == 0);

}

TEST_CASE("the demo server spawned through exec: refuses a wrong key and an unknown user in the same words, every time") {
  // The child refuses with a decoy (PROTOCOL.md §9.5), then exits: the client must read
  // the decoy and report an authentication failure, never a connection lost during the
  // handshake. 100 tries of each: the decoy and the child's exit race, and a lost race
  // shows about once in 20-50 tries (on io_uring more than on epoll).
  users u;
  auto users_file = write_users_file("users-demo-refusals", {{"alice", u.alice.get()}});
  std::string address = "exec:" +
                        bokbok::transport::shell_quote(bokbok_test::built_program("BOKBOK_DEMO_SERVER")) +
                        " --stdio --users " + bokbok::transport::shell_quote(users_file);
  bokbok::options quiet;
  quiet.child.on_stderr = [](std::string_view) {};  // the child logs each refusal there
  auto wrong_key = std::make_shared<const bokbok::key>(bokbok::key::generate());
  int authentication_errors = 0;
  std::vector<std::string> other;
  constexpr int tries = 200;
  for (int i = 0; i < tries; ++i) {
    quiet.keys = i % 2 ? client_keys("alice", wrong_key) : client_keys("nobody", u.alice);
    try {
      bokbok::connect(address, quiet);
      FAIL("a refused client was let in");
    } catch (const bokbok::authentication_error& e) {
      if (contains(e.what(), "authentication failed: unknown user or wrong key")) ++authentication_errors;
      else other.push_back(e.what());
    } catch (const std::exception& e) {
      other.push_back(e.what());
    }
  }
  CHECK(authentication_errors == tries);
  if (!other.empty()) MESSAGE(other.size() << " of " << tries << " ended otherwise, e.g.: " << other[0]);
}

TEST_CASE("a wrong key and an unknown user fail alike, reach no handler, and the server says why") {
  users u;
  std::atomic<int> handled{0};
  bokbok::server_options o;
  o.listen = {"tcp:127.0.0.1:0"};
  o.on_request = [&](bokbok::connection&, message m) {
    ++handled;
    return m;
  };
  std::atomic<int> opened{0};
  o.on_open = [&](bokbok::connection&) { ++opened; };
  o.keys.key_for_user = u.lookup();
  connection_error_log log;
  log.attach(o);
  bokbok::server s(o);
  s.start();
  std::string address = s.local_addresses().at(0);
  auto wrong_key = std::make_shared<const bokbok::key>(bokbok::key::generate());

  std::string wrong, unknown;
  try {
    bokbok::connect(address, answering_client(client_keys("alice", wrong_key)));
    FAIL("a wrong key was let in");
  } catch (const bokbok::authentication_error& e) {
    wrong = e.what();
  }
  try {
    bokbok::connect(address, answering_client(client_keys("mallory", u.alice)));
    FAIL("an unknown user was let in");
  } catch (const bokbok::authentication_error& e) {
    unknown = e.what();
  }
  CHECK(contains(wrong, "authentication failed: unknown user or wrong key"));
  CHECK(wrong == unknown);  // nothing tells the client which one it was
  auto logged = log.wait_for(2);
  REQUIRE(logged.size() == 2);
  // "bokbok: key mode: user ...: ... (connection to tcp:127.0.0.1:P)"
  // The server's log tells the two apart; the clients above could not.
  CHECK(contains(logged[0], ": key mode: user \"alice\": authentication failed: wrong key (or an altered message 1) ("));
  CHECK(contains(logged[1], ": key mode: user \"mallory\": authentication failed: unknown user ("));
  // The right key still works, and only its call reached the handler.
  auto c = bokbok::connect(address, answering_client(client_keys("alice", u.alice)));
  CHECK(c.request({"ok"}) == message{"ok"});
  c.close();
  c.wait_closed();
  CHECK(handled == 1);
  CHECK(opened == 1);
}

TEST_CASE("plain mode is never chosen silently, either way round") {
  users u;
  SUBCASE("a key-mode client against a plain server") {
    bokbok::server_options o;
    o.listen = {"tcp:127.0.0.1:0"};
    o.on_request = serve;
    connection_error_log log;
    log.attach(o);
    bokbok::server s(o);
    s.start();
    std::string why;
    try {
      bokbok::connect(s.local_addresses().at(0), answering_client(client_keys("alice", u.alice)));
      FAIL("a key-mode client opened a plain connection");
    } catch (const bokbok::transport_error& e) {
      why = e.what();
    }
    CHECK(contains(why, "the peer offers plain mode, this side requires key mode"));
    auto logged = log.wait_for(1);
    REQUIRE(logged.size() == 1);
    CHECK(contains(logged[0], "key mode"));
  }
  SUBCASE("a plain client against a key-mode server") {
    bokbok::server_options o;
    o.listen = {"tcp:127.0.0.1:0"};
    o.on_request = serve;
    o.keys.key_for_user = u.lookup();
    connection_error_log log;
    log.attach(o);
    bokbok::server s(o);
    s.start();
    std::string why;
    try {
      bokbok::connect(s.local_addresses().at(0), answering_client({}));
      FAIL("a plain client was let into a key-mode server");
    } catch (const bokbok::transport_error& e) {
      why = e.what();
    }
    CHECK(contains(why, "the peer requires key mode"));
    auto logged = log.wait_for(1);
    REQUIRE(logged.size() == 1);
    CHECK(contains(logged[0], "plain"));
  }
  SUBCASE("over a socketpair, both ways") {
    bokbok::options keyed;
    keyed.keys.key_for_user = u.lookup();
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    auto srv = std::async(std::launch::async,
                          [&] { return what_of([&] { bokbok::connect_fds(sv[1], sv[1], keyed, "c"); }); });
    std::string plain_side = what_of([&] { bokbok::connect_fds(sv[0], sv[0], {}, "s"); });
    REQUIRE(srv.wait_for(patience) == std::future_status::ready);
    CHECK(contains(plain_side, "the peer requires key mode"));
    CHECK(contains(srv.get(), "plain mode"));
  }
  SUBCASE("a key-mode client against a plain server at its limit hears busy") {
    bokbok::server_options o;
    o.listen = {"tcp:127.0.0.1:0"};
    o.on_request = serve;
    o.max_connections = 1;
    o.connection_wait = 200ms;
    bokbok::server s(o);
    s.start();
    std::string address = s.local_addresses().at(0);
    auto first = bokbok::connect(address, {});
    std::string why;
    try {
      bokbok::connect(address, answering_client(client_keys("alice", u.alice)));
      FAIL("a key-mode client got past a full plain server");
    } catch (const bokbok::transport_error& e) {
      why = e.what();
    }
    CHECK(contains(why, "refused by the peer: busy"));
    CHECK(first.request({"still"}) == message{"still"});
    first.close();
  }
  SUBCASE("a key-mode client against a key-mode server at its limit hears busy") {
    bokbok::server_options o;
    o.listen = {"tcp:127.0.0.1:0"};
    o.on_request = serve;
    o.keys.key_for_user = u.lookup();
    o.max_connections = 1;
    o.connection_wait = 200ms;
    bokbok::server s(o);
    s.start();
    std::string address = s.local_addresses().at(0);
    auto first = bokbok::connect(address, answering_client(client_keys("alice", u.alice)));
    std::string why = what_of(
        [&] { bokbok::connect(address, answering_client(client_keys("alice", u.alice))); });
    CHECK(contains(why, "refused by the peer: busy"));
    CHECK(first.request({"still"}) == message{"still"});
    first.close();
  }
}

TEST_CASE("on a UNIX socket a key-mode server checks peer credentials before keys") {
  users u;
  auto path = (temp_dir() / "creds.sock").string();
  bokbok::server_options o;
  o.listen = {"unix:" + path};
  o.on_request = serve;
  o.keys.key_for_user = u.lookup();
  std::atomic<bool> allow{false};
  std::atomic<int> asked{0};
  std::atomic<unsigned> asked_uid{~0u};
  o.authorize = [&](const std::optional<bokbok::connection::credentials>& cr) {
    ++asked;
    if (cr) asked_uid = cr->uid;
    return allow.load() && cr && cr->uid == getuid();
  };
  connection_error_log log;
  log.attach(o);
  bokbok::server s(o);
  s.start();
  std::string address = s.local_addresses().at(0);
  auto keys = client_keys("alice", u.alice);

  std::string why;
  try {
    bokbok::connect(address, answering_client(keys));
    FAIL("an unauthorized peer was let in");
  } catch (const bokbok::authentication_error& e) {
    why = e.what();
  }
  CHECK(contains(why, "not_authorized"));
  CHECK(asked == 1);
  CHECK(asked_uid == getuid());
  auto logged = log.wait_for(1);
  REQUIRE(logged.size() == 1);
  CHECK(contains(logged[0], "not_authorized"));

  allow = true;
  auto c = bokbok::connect(address, answering_client(keys));
  CHECK(c.request({"creds"}) == message{std::to_string(getuid())});
  CHECK(c.request({"who"}) == message{"alice"});
  CHECK(c.request({"back"}) == message{"client", "called"});
  c.close();
  c.wait_closed();
  CHECK(asked == 2);
}

TEST_CASE("8 MiB messages cross an encrypted connection both ways intact") {
  users u;
  std::string big(8u << 20, '\0');
  std::mt19937 rng(7);
  for (auto& ch : big) ch = static_cast<char>(rng());
  bokbok::options server;
  server.keys.key_for_user = u.lookup();
  // Two 8 MiB messages are queued at once below: room for both (the default bound of
  // 8 MiB would refuse the second; that is backpressure, tested in robust_test).
  server.max_send_queue = 32u << 20;
  server.on_request = [&](bokbok::connection& c, message m) -> message {
    // Answer with the message reversed, after sending our own big one the other way.
    auto back = c.request({"big", big});
    if (back != message{"got", std::to_string(big.size())}) throw std::runtime_error("bad echo");
    std::string r(m.at(1).rbegin(), m.at(1).rend());
    return {"reversed", std::move(r)};
  };
  bokbok::options client = answering_client(client_keys("alice", u.alice));
  client.max_send_queue = 32u << 20;
  client.on_request = [&](bokbok::connection&, message m) -> message {
    if (m.at(1) != big) throw std::runtime_error("the client got a damaged message");
    return {"got", std::to_string(m.at(1).size())};
  };
  auto [cli, srv] = key_pair(client, server);
  auto answer = cli.request({"big", big});
  REQUIRE(answer.size() == 2);
  CHECK(answer[0] == "reversed");
  CHECK(answer[1].size() == big.size());
  CHECK(std::equal(answer[1].begin(), answer[1].end(), big.rbegin()));
  // A small call still gets through while a big one is on the way.
  auto pending = cli.request_async({"big", big});
  CHECK(cli.request_async({"small", "small"}).get() == message{"reversed", "llams"});
  CHECK(pending.get().at(1).size() == big.size());
  cli.close();
}

TEST_CASE("large messages of many field sizes cross an encrypted connection both ways intact") {
  // Fields sent from the caller's own memory (16 KiB and more) beside copied ones, with
  // frame edges inside and between them: what sealing joins must be what was sent.
  users u;
  std::mt19937 rng(11);
  auto bytes = [&](std::size_t n) {
    std::string s(n, '\0');
    for (auto& ch : s) ch = static_cast<char>(rng());
    return s;
  };
  const message big{"mixed", bytes(16 * 1024), "", bytes(70000), bytes(3), bytes(200001), bytes(16383)};
  bokbok::options server;
  server.keys.key_for_user = u.lookup();
  server.on_request = [&](bokbok::connection& c, message m) -> message {
    if (c.request(big) != big) throw std::runtime_error("the server's call came back damaged");
    return m;
  };
  bokbok::options client = answering_client(client_keys("alice", u.alice));
  client.on_request = [](bokbok::connection&, message m) { return m; };
  auto [cli, srv] = key_pair(client, server);
  for (int i = 0; i < 3; ++i) CHECK(cli.request(big) == big);
  cli.close();
}

TEST_CASE("16 threads calling 200 times each on one encrypted connection all get their own answers") {
  users u;
  bokbok::options server;
  server.keys.key_for_user = u.lookup();
  server.on_request = [](bokbok::connection& c, message m) -> message {
    if (m.at(0) == "back") return {"back", c.request({"nested", m.at(1)}).at(1)};
    return m;
  };
  bokbok::options client = answering_client(client_keys("alice", u.alice));
  client.on_request = [](bokbok::connection&, message m) { return message{"nested", m.at(1)}; };
  auto [cli, srv] = key_pair(client, server);
  constexpr int threads = 16, calls = 200;
  std::atomic<int> wrong{0}, failed{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (int i = 0; i < calls; ++i) {
        // Sizes from tiny to several frames, so records of different calls interleave.
        std::size_t size = (i % 25 == 0) ? 150000 + t * 1000 : std::size_t(1 + (i * 37 + t) % 3000);
        std::string tag = std::to_string(t) + ":" + std::to_string(i) + ":";
        std::string payload = tag + std::string(size, static_cast<char>('a' + (t + i) % 26));
        try {
          message want = (i % 10 == 3) ? message{"back", payload} : message{"echo", payload};
          auto got = cli.request(want);
          if (got != want) ++wrong;
        } catch (const std::exception&) {
          ++failed;
        }
      }
    });
  for (auto& th : pool) th.join();
  CHECK(wrong == 0);
  CHECK(failed == 0);
  // The server's side may call at the same time, too.
  std::vector<std::future<message>> from_server;
  for (int i = 0; i < 100; ++i) from_server.push_back(srv.request_async({"x", std::to_string(i)}));
  for (int i = 0; i < 100; ++i) CHECK(from_server[i].get() == message{"nested", std::to_string(i)});
  cli.close();
  cli.wait_closed();
  srv.wait_closed();
  CHECK(srv.close_reason() == "the peer is shutting down: it is closing the connection");
}

namespace {

// Runs one call each way through a recording relay between a client and a responder on
// a socketpair, in key mode or plain, and returns the relay's record of both directions.
struct wire_record {
  std::string to_server, to_client;
};

wire_record record_one_call(bool key_mode, const std::string& method, const std::string& payload) {
  users u;
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  bokbok_test::relay r(sv[0]);
  bokbok::options server;
  server.on_request = [&](bokbok::connection& c, message m) -> message {
    // The responder calls the client with the same secret, then answers with it.
    auto back = c.request({method, payload});
    return {"answer", m.at(1), back.at(1)};
  };
  bokbok::options client;
  client.on_request = [](bokbok::connection&, message m) { return message{"echoed", m.at(1)}; };
  if (key_mode) {
    server.keys.key_for_user = u.lookup();
    client.keys = client_keys("alice", u.alice);
  }
  auto srv = std::async(std::launch::async,
                        [&] { return bokbok::connect_fds(sv[1], sv[1], server, "relay"); });
  int cfd = r.client_fd();
  auto cli = bokbok::connect_fds(cfd, cfd, client, "relay");
  REQUIRE(srv.wait_for(patience) == std::future_status::ready);
  auto sconn = srv.get();
  CHECK(cli.request({method, payload}) == message{"answer", payload, payload});
  cli.close();
  cli.wait_closed();
  sconn.wait_closed();
  CHECK(r.wait_ended(patience));
  return {r.sent(bokbok_test::direction::to_server), r.sent(bokbok_test::direction::to_client)};
}

// True if any 16-byte piece of `secret` appears in `wire`.
bool leaks(const std::string& wire, const std::string& secret) {
  for (std::size_t at = 0; at + 16 <= secret.size(); at += 8)
    if (contains(wire, secret.substr(at, 16))) return true;
  return false;
}

}  // namespace

TEST_CASE("an encrypted call's payload and method name never appear on the wire") {
  std::string block(64, '\0');
  std::mt19937 rng(20240611);
  for (auto& ch : block) ch = static_cast<char>(rng());
  std::string payload;
  for (int i = 0; i < 8; ++i) payload += block;
  const std::string method = "frobnicate-the-confidential-widget";

  auto plain = record_one_call(false, method, payload);
  // Control: in plain mode the same relay sees both, both ways, so the check can fail.
  CHECK(contains(plain.to_server, payload));
  CHECK(contains(plain.to_client, payload));
  CHECK(contains(plain.to_server, method));
  CHECK(contains(plain.to_client, method));

  auto keyed = record_one_call(true, method, payload);
  CHECK(keyed.to_server.size() > payload.size());  // the call did cross this relay
  CHECK(keyed.to_client.size() > payload.size());
  CHECK_FALSE(leaks(keyed.to_server, payload));
  CHECK_FALSE(leaks(keyed.to_client, payload));
  CHECK_FALSE(contains(keyed.to_server, method));
  CHECK_FALSE(contains(keyed.to_client, method));
  CHECK_FALSE(contains(keyed.to_server, "frobnicate"));
  // The user name is in the clear preamble, by design (PROTOCOL.md §9.3).
  CHECK(keyed.to_server.starts_with(std::string("BOKBOK\x01\x01\x05" "alice", 14)));
}
