// Key mode (PROTOCOL.md §9) against a hostile network and hostile clients, on real
// sockets: a relay in the middle (tests/support/relay.hpp) that flips bytes, replays,
// reorders, splices, reflects and truncates; raw clients that speak the handshake with
// crypto::key_initiator (or by hand, for keys no honest initiator would send) and then
// misbehave: bad record lengths, stalls, floods of half-open and wrong-key connections,
// stale, future and replayed first messages, low-order ephemeral keys.
//
// What must hold throughout: nothing that was not sent ever reaches a handler or a
// caller; the side that notices closes (a refusal, a protocol error, or "connection
// lost", never a clean close); the server keeps its limits and its memory, and keeps
// serving everyone else; a client with a wrong key costs the server no Diffie-Hellman.
#include <doctest/doctest.h>
#include <malloc.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <map>
#include <span>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "support/forged_message1.hpp"
#include "support/settle.hpp"
#include "support/key_users.hpp"
#include "bokbok/key.hpp"
#include "crypto/key_handshake.hpp"
#include "crypto/noise_handshake.hpp"
#include "crypto/noise_symmetric.hpp"
#include "crypto/record_cipher.hpp"
#include "base/unique_fd.hpp"
#include "support/raw_socket.hpp"
#include "support/relay.hpp"
#include "transport/address.hpp"
#include "transport/sockets.hpp"
#include "wire/frame.hpp"
#include "wire/message_codec.hpp"
#include "wire/preamble.hpp"
#include "wire/settings.hpp"

using namespace std::chrono_literals;
using bokbok::message;
using bokbok_test::direction;
using bokbok_test::relay;
namespace crypto = bokbok::crypto;
namespace wire = bokbok::wire;

namespace {

constexpr auto patience = 10s;  // the longest any single wait here may take

bool contains(const std::string& hay, std::string_view needle) {
  return hay.find(needle) != std::string::npos;
}

// Enough descriptors for a thousand connections at both ends.
void raise_fd_limit() {
  rlimit r{};
  getrlimit(RLIMIT_NOFILE, &r);
  r.rlim_cur = r.rlim_max;
  setrlimit(RLIMIT_NOFILE, &r);
}

// Bytes the allocator has handed out and not had back, in KiB (see server_test.cpp;
// reads 0 under ASan, whose own leak check stands in).
long heap_in_use_kib() {
  struct mallinfo2 mi = mallinfo2();
  return static_cast<long>((mi.uordblks + mi.hblkhd) / 1024);
}

template <class F>
bool settles(F done, std::chrono::milliseconds limit = patience) {
  return bokbok_test::settles(done, limit, std::chrono::milliseconds(2));
}

// ---- keys and the server under attack ------------------------------------------------

struct users : bokbok_test::alice_key {
  bokbok::options client(std::chrono::milliseconds connect_timeout = 10s) const {
    bokbok::options o;
    o.keys.user = "alice";
    o.keys.key = alice;
    o.connect_timeout = connect_timeout;
    o.on_request = [](bokbok::connection&, message m) { return message{"client", m.at(0)}; };
    return o;
  }
};

// A key-mode server on loopback TCP that records everything its handler receives and
// every connection's end: through on_connection_error (failed while opening) or
// on_close (after opening), exactly one of the two per connection.
struct watched_server {
  std::mutex mu;
  std::vector<message> received;
  std::vector<std::string> errors;  // on_connection_error
  std::vector<std::string> closes;  // close_reason() in on_close
  std::atomic<int> opened{0};
  std::optional<bokbok::server> srv;
  std::string address;

  explicit watched_server(const users& u,
                          std::function<void(bokbok::server_options&)> tune = {}) {
    bokbok::server_options o;
    o.listen = {"tcp:127.0.0.1:0"};
    o.keys.key_for_user = u.lookup();
    o.on_request = [this](bokbok::connection&, message m) {
      std::lock_guard lock(mu);
      received.push_back(m);
      return m;
    };
    o.on_open = [this](bokbok::connection&) { ++opened; };
    o.on_close = [this](bokbok::connection& c) {
      std::lock_guard lock(mu);
      closes.push_back(c.close_reason());
    };
    o.on_connection_error = [this](const std::string&, const std::string& why) {
      std::lock_guard lock(mu);
      errors.push_back(why);
    };
    if (tune) tune(o);
    srv.emplace(o);
    srv->start();
    address = srv->local_addresses().at(0);
  }
  std::size_t ends() {
    std::lock_guard lock(mu);
    return errors.size() + closes.size();
  }
  bool wait_ends(std::size_t n, std::chrono::milliseconds limit = patience) {
    return settles([&] { return ends() >= n; }, limit);
  }
  std::vector<message> got() {
    std::lock_guard lock(mu);
    return received;
  }
  std::vector<std::string> error_lines() {
    std::lock_guard lock(mu);
    return errors;
  }
  std::vector<std::string> close_lines() {
    std::lock_guard lock(mu);
    return closes;
  }
  // The one way the single connection so far ended, whichever hook told it.
  std::string only_end() {
    std::lock_guard lock(mu);
    if (errors.size() + closes.size() != 1) return "<" + std::to_string(errors.size() + closes.size()) + " ends>";
    return errors.empty() ? closes[0] : errors[0];
  }
};

bokbok::base::unique_fd raw_connect(const std::string& address) {
  auto s = bokbok::transport::connect_socket(bokbok::transport::parse_address(address), 2s);
  return std::move(s.fd);
}

// A relay from a new socketpair (the client's end: client_fd()) to the server.
std::unique_ptr<relay> relay_to(const std::string& address, relay::filter f = {}) {
  return std::make_unique<relay>(raw_connect(address).release(), std::move(f));
}

// ---- raw sockets ------------------------------------------------------------------------

using bokbok_test::write_all;

// Reads until `want` bytes have come (or the stream ends, or `limit` passes).
std::string read_some(int fd, std::size_t want, std::chrono::milliseconds limit = 3s) {
  return bokbok_test::read_some(fd, want, limit);
}

// Reads one record (u16 length || body) whole, or what came of it.
std::string read_record(int fd) {
  std::string r = read_some(fd, 2);
  if (r.size() < 2) return r;
  std::size_t len = (std::size_t(std::uint8_t(r[0])) << 8) | std::uint8_t(r[1]);
  return r + read_some(fd, len);
}

// True if the peer ends the stream (EOF or reset) within `limit`, reading and
// discarding what comes first.
bool ends_within(int fd, std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, int(left.count())) <= 0) return false;
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return true;
  }
}

// ---- the handshake by hand ----------------------------------------------------------------

std::string client_preamble(const std::string& user = "alice") {
  return wire::encode_preamble({1, wire::mode::key, user});
}
// A key-mode server's preamble is always these 9 bytes, so a raw client can write
// message 1 without reading it first (it is the second half of the prologue).
const std::string server_preamble = wire::encode_preamble({1, wire::mode::key, ""});
const std::string client_settings = wire::encode_settings({});
const std::size_t message2_record_size = 2 + crypto::message2_min_body + wire::encode_settings({}).size();

crypto::key crypto_key(const bokbok::key& k) { return crypto::key::from_bytes(k.bytes()); }

// Message 1 as key_initiator writes it (no Diffie-Hellman), with its clock.
std::string message1(const bokbok::key& k, const std::string& user = "alice",
                     crypto::clock_ms clock = crypto::system_clock_ms) {
  crypto::key_initiator ini(crypto_key(k), client_preamble(user), server_preamble,
                            client_settings, std::move(clock));
  std::string out;
  REQUIRE(ini.start(out) == crypto::handshake_status::need_more);
  return out;
}

// Message 1 written by hand from the Noise operations of PROTOCOL.md §9.4, with any
// 32 bytes as the ephemeral public key `e` (an honest initiator cannot send a low-order
// one: its key_initiator derives e from a private key).
std::string message1_with_ephemeral(const bokbok::key& k, std::span<const unsigned char, 32> e) {
  auto m1 = bokbok_test::forged_message1(k.bytes(), client_preamble() + server_preamble, e,
                                         crypto::system_clock_ms(), client_settings);
  REQUIRE(m1);
  return *m1;
}

// The first record of an honest client: a ping, which logs it in (PROTOCOL.md §9.6).
std::string login_ping(crypto::record_cipher_pair& ciphers) {
  std::string frame, sealed;
  wire::append_frame(frame, wire::frame_type::ping, 0, 0, {});
  REQUIRE(ciphers.send.seal(std::string_view(frame).substr(2), sealed));
  return sealed;
}

// Sends the client preamble and `m1` (which `ini` started) on `fd`, reads message 2 and
// logs in with a ping: what an honest client does, by hand.
void finish_log_in(int fd, crypto::key_initiator& ini, const std::string& m1) {
  REQUIRE(write_all(fd, client_preamble() + m1));
  REQUIRE(read_some(fd, 9) == server_preamble);
  std::string m2 = read_record(fd);
  std::string_view in = m2;
  REQUIRE(ini.feed(in) == crypto::handshake_status::done);
  auto ciphers = ini.take_ciphers();
  REQUIRE(write_all(fd, login_ping(ciphers)));
}

void log_in(int fd, const bokbok::key& k, crypto::clock_ms clock = crypto::system_clock_ms) {
  crypto::key_initiator ini(crypto_key(k), client_preamble(), server_preamble, client_settings,
                            std::move(clock));
  std::string m1;
  REQUIRE(ini.start(m1) == crypto::handshake_status::need_more);
  finish_log_in(fd, ini, m1);
}

// A client that does the handshake itself over a raw socket and then holds the ciphers,
// to send records no bokbok connection would.
struct raw_key_client {
  bokbok::base::unique_fd fd;
  std::optional<crypto::record_cipher_pair> ciphers;
  std::uint32_t next_id = 1;

  // Connects and completes the handshake; REQUIREs that it worked.
  explicit raw_key_client(const std::string& address, const bokbok::key& k) : fd(raw_connect(address)) {
    crypto::key_initiator ini(crypto_key(k), client_preamble(), server_preamble, client_settings);
    std::string out = client_preamble();
    REQUIRE(ini.start(out) == crypto::handshake_status::need_more);
    REQUIRE(write_all(fd.get(), out));
    REQUIRE(read_some(fd.get(), 9) == server_preamble);
    std::string m2 = read_record(fd.get());
    std::string_view in = m2;
    REQUIRE(ini.feed(in) == crypto::handshake_status::done);
    ciphers.emplace(ini.take_ciphers());
    REQUIRE(write_all(fd.get(), login_ping(*ciphers)));
    // Its pong, read so that no unread byte makes our hang-up a reset.
    std::string pong = read_frame();
    REQUIRE(!pong.empty());
    REQUIRE(pong[0] == char(wire::frame_type::pong));
  }
  // The sealed records of one request.
  std::string request(const message& m) {
    std::string bytes, plain, sealed;
    wire::encode_message(m, bytes);
    wire::append_message_frames(plain, wire::frame_type::request, next_id++, bytes);
    for (std::size_t at = 0; at < plain.size();) {
      std::size_t len = (std::size_t(std::uint8_t(plain[at])) << 8) | std::uint8_t(plain[at + 1]);
      REQUIRE(ciphers->send.seal(std::string_view(plain).substr(at + 2, len), sealed));
      at += 2 + len;
    }
    return sealed;
  }
  // Reads one record and opens it: the frame, or "" if it did not open.
  std::string read_frame() {
    std::string rec = read_record(fd.get());
    if (rec.size() < 2) return "";
    std::string frame;
    if (!ciphers->receive.open(std::string_view(rec).substr(2), frame)) return "";
    return frame;
  }
};

}  // namespace

// ---- byte flips ------------------------------------------------------------------------

namespace {

struct flip {
  direction d;
  std::size_t unit;  // 0: preamble, 1: handshake message, 2: login ping/pong, 3-4: call A
  std::size_t byte;
};

const message call_a{"echo", "first call, a payload of some length"};
const message call_b{"echo", "second call, another payload"};

// One connection through a relay that XORs one byte of one unit with 0xff; returns ""
// when every rule held, else what went wrong. The client makes call A, then call B.
std::string run_flip(const users& u, const flip& f) {
  watched_server s(u, [](bokbok::server_options& o) { o.handshake_timeout = 1s; });
  auto r = relay_to(s.address, [f](relay&, direction d, std::size_t index, std::string& unit) {
    if (d == f.d && index == f.unit && f.byte < unit.size()) unit[f.byte] ^= '\xff';
    return relay::verdict::forward;
  });
  std::string problems;
  auto fail = [&](const std::string& why) { problems += why + "; "; };
  bool opened = false;
  int answered = 0;  // calls answered correctly, in order
  const bool handshake_unit = f.unit < 2;
  // Unit 2 is the login ping and its pong (PROTOCOL.md §9.6): flipped, no call gets
  // through, as for a flip in call A's own records (unit 3).
  const std::size_t flipped_call = f.unit < 3 ? 0 : f.unit - 3;
  {
    int fd = r->client_fd();
    std::optional<bokbok::connection> c;
    try {
      c.emplace(bokbok::connect_fds(fd, fd, u.client(handshake_unit ? 1s : patience), "relay"));
      opened = true;
    } catch (const bokbok::transport_error&) {
      // Refused. Whichever side noticed may linger a moment (close_drain_timeout) before
      // it lets go of the link; hang up for it, so the flips run quickly.
      r->cut();
    }
    if (c) {
      for (std::size_t call = 0; call < 2; ++call) {
        const message& m = call == 0 ? call_a : call_b;
        auto answer = c->request_async(m);
        // A flipped length may leave a side waiting for bytes that never come: give the
        // flipped call a second, the others all the time they need.
        if (answer.wait_for(call == flipped_call ? 1s : patience) != std::future_status::ready) break;
        try {
          auto got = answer.get();
          if (got != m) fail("a call got an answer that was not sent");
          ++answered;
        } catch (const bokbok::transport_error&) {
          break;
        } catch (const std::exception& e) {
          fail(std::string("a call failed oddly: ") + e.what());
          break;
        }
      }
      c->close();
      c->wait_closed();
    }
  }
  if (!s.wait_ends(1)) fail("the server side never ended");
  // Nothing that was not sent reaches the handler; the flipped unit never gets through.
  auto got = s.got();
  for (std::size_t i = 0; i < got.size(); ++i)
    if (i > 1 || got[i] != (i == 0 ? call_a : call_b)) fail("the handler got a message that was not sent");
  if (handshake_unit && opened) fail("a connection opened despite the flip");
  if (handshake_unit && !got.empty()) fail("a handler ran despite a flipped handshake");
  if (!handshake_unit) {
    if (!opened) fail("the handshake failed, before the flipped record");
    std::size_t call = flipped_call;  // whose request or answer was flipped
    if (answered > int(call)) fail("the call whose record was flipped was answered");
    if (f.d == direction::to_server && got.size() > call) fail("the flipped request reached the handler");
    if (answered < int(call)) fail("a call before the flipped record failed");
  }
  return problems;
}

}  // namespace

TEST_CASE("flipping any byte of the preambles, handshake messages or first records never delivers it") {
  users u;
  // A clean run first, through the same relay, to learn the size of each unit.
  std::vector<std::string> to_server, to_client;
  {
    watched_server s(u);
    auto r = relay_to(s.address);
    int fd = r->client_fd();
    auto c = bokbok::connect_fds(fd, fd, u.client(), "relay");
    CHECK(c.request(call_a) == call_a);
    CHECK(c.request(call_b) == call_b);
    c.close();
    c.wait_closed();
    REQUIRE(r->wait_ended(patience));
    to_server = r->units(direction::to_server);
    to_client = r->units(direction::to_client);
    REQUIRE(to_server.size() >= 5);
    REQUIRE(to_client.size() >= 5);
    CHECK(s.got() == std::vector<message>{call_a, call_b});
  }
  std::vector<flip> flips;
  for (std::size_t unit = 0; unit < 5; ++unit) {
    for (std::size_t b = 0; b < to_server[unit].size(); ++b) flips.push_back({direction::to_server, unit, b});
    for (std::size_t b = 0; b < to_client[unit].size(); ++b) flips.push_back({direction::to_client, unit, b});
  }
  MESSAGE(flips.size() << " flips: units to the server of " << to_server[0].size() << ", "
                       << to_server[1].size() << ", " << to_server[2].size() << ", "
                       << to_server[3].size() << " bytes; to the client of " << to_client[0].size()
                       << ", " << to_client[1].size() << ", " << to_client[2].size() << ", "
                       << to_client[3].size() << " bytes");
  // A few at a time: the flips that make a side wait for bytes that never come each take
  // a timeout (1 s) to end.
  std::mutex mu;
  std::size_t next = 0;
  std::vector<std::string> failures;
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> workers;
  for (int w = 0; w < 8; ++w)
    workers.emplace_back([&] {
      for (;;) {
        flip f;
        {
          std::lock_guard lock(mu);
          if (next == flips.size()) return;
          f = flips[next++];
        }
        std::string problem = run_flip(u, f);
        if (!problem.empty()) {
          std::lock_guard lock(mu);
          failures.push_back(std::string(f.d == direction::to_server ? "to server" : "to client") +
                             ", unit " + std::to_string(f.unit) + ", byte " + std::to_string(f.byte) +
                             ": " + problem);
        }
      }
    });
  for (auto& w : workers) w.join();
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  MESSAGE("all flips took " << took.count() << " ms");
  for (auto& f : failures) MESSAGE(f);
  CHECK(failures.empty());
}

// ---- replay, reorder, splice, reflect ------------------------------------------------------

TEST_CASE("a replayed client record closes the server side after the original is handled once") {
  users u;
  watched_server s(u);
  auto r = relay_to(s.address, [](relay&, direction d, std::size_t index, std::string& unit) {
    // Unit 2 is the login ping (PROTOCOL.md §9.6), unit 3 the first request.
    if (d == direction::to_server && index == 3) unit += unit;  // the first request, twice
    return relay::verdict::forward;
  });
  int fd = r->client_fd();
  auto c = bokbok::connect_fds(fd, fd, u.client(), "relay");
  auto answer = c.request_async(call_a);
  REQUIRE(answer.wait_for(patience) == std::future_status::ready);
  try {
    auto got = answer.get();  // the original may be answered before the replay is seen
    CHECK(got == call_a);
  } catch (const bokbok::transport_error&) {
  }
  REQUIRE(s.wait_ends(1));
  // Handled once at most: the replay is never delivered. (The original may not have
  // been started yet when the replay ends the connection.)
  auto got = s.got();
  CHECK((got == std::vector<message>{call_a} || got.empty()));
  CHECK(contains(s.only_end(), "record failed authentication"));
  c.close();
}

TEST_CASE("two client records swapped in transit are refused, and neither is handled") {
  users u;
  watched_server s(u);
  std::string held;
  auto r = relay_to(s.address, [&held](relay&, direction d, std::size_t index, std::string& unit) {
    if (d == direction::to_server && index == 3) {  // after the login ping
      held = std::move(unit);
      unit.clear();
    } else if (d == direction::to_server && index == 4) {
      unit += held;
    }
    return relay::verdict::forward;
  });
  int fd = r->client_fd();
  auto c = bokbok::connect_fds(fd, fd, u.client(), "relay");
  auto a = c.request_async(call_a);
  auto b = c.request_async(call_b);
  REQUIRE(a.wait_for(patience) == std::future_status::ready);
  REQUIRE(b.wait_for(patience) == std::future_status::ready);
  CHECK_THROWS_AS(a.get(), bokbok::transport_error);
  CHECK_THROWS_AS(b.get(), bokbok::transport_error);
  REQUIRE(s.wait_ends(1));
  CHECK(s.got().empty());
  CHECK(contains(s.only_end(), "record failed authentication"));
}

TEST_CASE("a record spliced in from another connection is refused") {
  users u;
  watched_server s(u);
  // Connection X runs normally; its first request record is kept.
  std::string from_x;
  {
    auto rx = relay_to(s.address);
    int fd = rx->client_fd();
    auto x = bokbok::connect_fds(fd, fd, u.client(), "relay x");
    CHECK(x.request(call_a) == call_a);
    x.close();
    x.wait_closed();
    REQUIRE(rx->wait_ended(patience));
    from_x = rx->units(direction::to_server).at(3);  // unit 2 is the login ping
  }
  REQUIRE(s.wait_ends(1));
  // Connection Y sends the same request; the relay puts X's record in its place (same
  // length, same position, another connection's keys).
  auto ry = relay_to(s.address, [&](relay&, direction d, std::size_t index, std::string& unit) {
    if (d == direction::to_server && index == 3) {
      CHECK(unit.size() == from_x.size());
      unit = from_x;
    }
    return relay::verdict::forward;
  });
  int fd = ry->client_fd();
  auto y = bokbok::connect_fds(fd, fd, u.client(), "relay y");
  auto answer = y.request_async(call_a);
  REQUIRE(answer.wait_for(patience) == std::future_status::ready);
  CHECK_THROWS_AS(answer.get(), bokbok::transport_error);
  REQUIRE(s.wait_ends(2));
  CHECK(s.got() == std::vector<message>{call_a});  // X's call, once; nothing from Y
  auto closes = s.close_lines();
  REQUIRE(closes.size() == 2);
  CHECK(contains(closes[1], "record failed authentication"));
}

TEST_CASE("a client record reflected back to the client is refused by the client") {
  users u;
  watched_server s(u);
  auto r = relay_to(s.address, [](relay& self, direction d, std::size_t index, std::string& unit) {
    if (d == direction::to_server && index == 3) {  // the request, after the login ping
      self.inject(direction::to_client, unit);  // back where it came from
      unit.clear();                             // and not to the server
    }
    return relay::verdict::forward;
  });
  int fd = r->client_fd();
  auto c = bokbok::connect_fds(fd, fd, u.client(), "relay");
  auto answer = c.request_async(call_a);
  REQUIRE(answer.wait_for(patience) == std::future_status::ready);
  try {
    answer.get();
    FAIL("a reflected record was taken as an answer");
  } catch (const bokbok::protocol_error& e) {
    CHECK(contains(e.what(), "record failed authentication"));
  }
  c.wait_closed();
  CHECK(contains(c.close_reason(), "record failed authentication"));
  CHECK(s.got().empty());
}

// ---- what the peer is told (PROTOCOL.md §9.6) ---------------------------------------------

namespace {
// A frame's type and code payload: "goaway 8 <text>", or what else it was.
std::string describe_frame(const std::string& frame) {
  if (frame.empty()) return "<nothing>";
  std::string what = std::string(wire::to_string(static_cast<wire::frame_type>(frame[0])));
  if (frame.size() >= 8 && frame[0] == char(wire::frame_type::goaway))
    what += " " + std::to_string((std::uint8_t(frame[6]) << 8) | std::uint8_t(frame[7])) + " " +
            frame.substr(8);
  return what;
}
}  // namespace

TEST_CASE("a key-mode record too short for a frame header and its tag is a violation: encrypted goaway, then close") {
  users u;
  watched_server s(u);
  raw_key_client rc(s.address, *u.alice);
  REQUIRE(write_all(rc.fd.get(), std::string("\0\x05" "abcde", 7)));
  std::string goaway = describe_frame(rc.read_frame());
  CHECK(contains(goaway, "goaway 8 key-mode record of 5 bytes is shorter than a frame header and its tag (22)"));
  CHECK(describe_frame(rc.read_frame()) == "close");
  CHECK(ends_within(rc.fd.get(), patience));
  REQUIRE(s.wait_ends(1));
  CHECK(contains(s.only_end(), "key-mode record of 5 bytes is shorter"));
}

TEST_CASE("a record that fails authentication is answered with an authenticated goaway that says so, not a bare close") {
  users u;
  watched_server s(u);
  raw_key_client rc(s.address, *u.alice);
  std::string sealed = rc.request(call_a);
  sealed.back() ^= '\x01';  // the tag
  REQUIRE(write_all(rc.fd.get(), sealed));
  CHECK(describe_frame(rc.read_frame()) ==
        "goaway 8 record failed authentication (the stream was altered, replayed, reordered or truncated)");
  CHECK(describe_frame(rc.read_frame()) == "close");
  CHECK(ends_within(rc.fd.get(), patience));
  REQUIRE(s.wait_ends(1));
  CHECK(contains(s.only_end(), "record failed authentication"));
  CHECK(s.got().empty());
}

TEST_CASE("a client whose request was altered in transit fails with an error saying so, never as closed by peer") {
  users u;
  watched_server s(u);
  auto r = relay_to(s.address, [](relay&, direction d, std::size_t index, std::string& unit) {
    if (d == direction::to_server && index == 3) unit[unit.size() / 2] ^= '\x01';  // the request
    return relay::verdict::forward;
  });
  int fd = r->client_fd();
  auto c = bokbok::connect_fds(fd, fd, u.client(), "relay");
  auto answer = c.request_async(call_a);
  REQUIRE(answer.wait_for(patience) == std::future_status::ready);
  try {
    answer.get();
    FAIL("an altered request was answered");
  } catch (const bokbok::protocol_error& e) {
    CHECK(contains(e.what(), "the peer reported a protocol error: record failed authentication"));
  } catch (const std::exception& e) {
    FAIL("the client was not told its stream failed authentication: " << e.what());
  }
  c.wait_closed();
  CHECK(contains(c.close_reason(), "record failed authentication"));
  REQUIRE(s.wait_ends(1));
  CHECK(contains(s.only_end(), "record failed authentication"));
}

// ---- truncation ------------------------------------------------------------------------------

namespace {
// How a side reports a stream that ended without the peer's close: before the preamble,
// during the handshake, or once open (PROTOCOL.md §8.5, §9.6, §9.7).
bool lost(const std::string& why) {
  return contains(why, "connection lost") ||
         contains(why, "closed the connection during the key-mode handshake") ||
         contains(why, "closed the connection before speaking bokbok");
}
}  // namespace

TEST_CASE("a stream cut at any record boundary or inside any record is a lost connection, never a clean close") {
  users u;
  // The conversation: preamble, handshake message, the login ping (its pong), three
  // calls, close; units 0-6 each way.
  const std::vector<message> calls{{"echo", "one"}, {"echo", "two", std::string(300, 'x')}, {"echo", "three"}};
  int cases = 0;
  for (auto d : {direction::to_server, direction::to_client})
    for (std::size_t unit = 0; unit <= 6; ++unit)
      for (bool mid : {false, true}) {
        CAPTURE(d == direction::to_server ? "to server" : "to client");
        CAPTURE(unit);
        CAPTURE(mid);
        ++cases;
        watched_server s(u, [](bokbok::server_options& o) { o.handshake_timeout = 2s; });
        auto r = relay_to(s.address, [&](relay&, direction dd, std::size_t index, std::string& unit_bytes) {
          if (dd != d || index != unit) return relay::verdict::forward;
          unit_bytes.resize(mid ? unit_bytes.size() / 2 : 0);
          return relay::verdict::cut;
        });
        int fd = r->client_fd();
        std::string client_end;
        bool client_closed_itself = false;
        try {
          auto c = bokbok::connect_fds(fd, fd, u.client(2s), "relay");
          bool all = true;
          for (const auto& m : calls) {
            auto answer = c.request_async(m);
            REQUIRE(answer.wait_for(patience) == std::future_status::ready);
            try {
              auto got = answer.get();
              CHECK(got == m);
            } catch (const bokbok::transport_error&) {
              all = false;
              break;
            }
          }
          if (all) {
            client_closed_itself = true;
            c.abort();  // a close frame at once (close() would send a goaway first)
          }
          c.wait_closed();
          client_end = c.close_reason();
        } catch (const bokbok::transport_error& e) {
          client_end = e.what();
        }
        REQUIRE(s.wait_ends(1));
        std::string server_end = s.only_end();
        CAPTURE(client_end);
        CAPTURE(server_end);
        // The client's own close is unit 6 towards the server; the server's is unit 6
        // towards the client. Whoever did not receive the other's close lost the
        // connection.
        bool server_got_close = d == direction::to_client && unit == 6;
        CHECK(client_end != "closed by peer");
        if (!client_closed_itself) CHECK(lost(client_end));
        if (server_got_close) {
          CHECK(server_end == "closed by peer");
        } else {
          CHECK(server_end != "closed by peer");
          CHECK(lost(server_end));
        }
        // Only whole calls were handled, in order.
        auto got = s.got();
        CHECK(got.size() <= calls.size());
        for (std::size_t i = 0; i < got.size() && i < calls.size(); ++i) CHECK(got[i] == calls[i]);
      }
  CHECK(cases == 28);
}

// ---- bad record lengths and stalls -----------------------------------------------------------

TEST_CASE("record lengths of 0, below the tag size, huge, and stalled headers end only those connections") {
  raise_fd_limit();
  users u;
  watched_server s(u, [](bokbok::server_options& o) { o.handshake_timeout = 500ms; });
  // A well-behaved client keeps calling throughout.
  auto good = bokbok::connect(s.address, u.client());
  std::atomic<bool> stop{false};
  std::atomic<int> good_calls{0}, good_failures{0};
  std::thread caller([&] {
    while (!stop) {
      try {
        if (good.request({"echo", "alive"}) == message{"echo", "alive"}) ++good_calls;
        else ++good_failures;
      } catch (const std::exception&) {
        ++good_failures;
      }
    }
  });
  // Each kind of bad input, in place of message 1 and in place of the first record.
  struct bad_kind {
    const char* name;
    std::string bytes;
    bool stalls;  // waits for more bytes that never come
  };
  const std::vector<bad_kind> kinds{
      {"length 0", std::string("\0\0", 2), false},
      {"length 5", std::string("\0\x05" "abcde", 7), false},
      {"half a header", std::string("\0", 1), true},
      {"length 65535 and 10 bytes", std::string("\xff\xff" "0123456789", 12), true},
  };
  constexpr int per_kind = 25;
  auto run_round = [&](bool after_handshake) {
    std::size_t ends_before = s.ends();
    std::vector<bokbok::base::unique_fd> open;
    int expected_ends = 0;
    for (const auto& k : kinds)
      for (int i = 0; i < per_kind; ++i) {
        if (after_handshake) {
          raw_key_client rc(s.address, *u.alice);
          REQUIRE(write_all(rc.fd.get(), k.bytes));
          open.push_back(std::move(rc.fd));
        } else {
          auto fd = raw_connect(s.address);
          REQUIRE(write_all(fd.get(), client_preamble() + k.bytes));
          open.push_back(std::move(fd));
        }
        ++expected_ends;
      }
    // Before the handshake every one ends by itself (refused, or timed out); after it a
    // stalled record is an idle connection the server keeps until its client goes.
    std::size_t ends_alone = after_handshake ? 2 * per_kind : kinds.size() * per_kind;
    CHECK(s.wait_ends(ends_before + ends_alone));
    open.clear();  // the rest hang up now
    CHECK(s.wait_ends(ends_before + std::size_t(expected_ends)));
    return ends_before;
  };
  long before = heap_in_use_kib();
  std::size_t first = run_round(false);
  auto errors = s.error_lines();
  REQUIRE(errors.size() >= first + kinds.size() * per_kind);
  std::string all;
  for (auto& e : errors) all += e + "\n";
  CHECK(contains(all, "message 1 record of 0 bytes (expected 56 to 1080)"));
  CHECK(contains(all, "message 1 record of 5 bytes (expected 56 to 1080)"));
  CHECK(contains(all, "message 1 record of 65535 bytes (expected 56 to 1080)"));
  CHECK(contains(all, "timed out"));
  std::size_t closes_before = s.close_lines().size();
  run_round(true);
  auto closes = s.close_lines();
  std::map<std::string, int> why;
  for (std::size_t i = closes_before; i < closes.size(); ++i) {
    if (contains(closes[i], "record length 0")) ++why["length 0"];
    else if (contains(closes[i], "shorter than a frame header and its tag")) ++why["short"];
    else if (contains(closes[i], "connection lost")) ++why["lost"];
    else ++why["other: " + closes[i]];
  }
  CHECK(why["length 0"] == per_kind);
  CHECK(why["short"] == per_kind);
  CHECK(why["lost"] == 2 * per_kind);  // the stalls, once their clients hung up
  CHECK(why.size() == 3);
  long after = heap_in_use_kib();
  // Connections that ended let go of their memory (drain timers last up to 2 s).
  settles([&] { after = heap_in_use_kib(); return after - before < 4 * 1024; }, 5s);
  MESSAGE("heap in use before " << before << " KiB, after " << 8 * per_kind << " bad clients " << after << " KiB");
  CHECK(after - before < 4 * 1024);
  stop = true;
  caller.join();
  CHECK(good_failures == 0);
  CHECK(good_calls > 0);
  CHECK(s.got().size() == std::size_t(good_calls));  // only the good client's calls
  good.close();
}

// ---- floods ---------------------------------------------------------------------------------

TEST_CASE("1,000 clients that send a valid first message and fall silent never pass the connection limit") {
  raise_fd_limit();
  users u;
  constexpr unsigned limit = 50;
  watched_server s(u, [](bokbok::server_options& o) {
    o.max_connections = limit;
    o.connection_wait = 100ms;
    // A client that sent a valid message 1 and got message 2 is not logged in until its
    // first record (PROTOCOL.md §9.6, "Login"): the handshake timeout takes back the slot
    // of one that falls silent (no idle timeout is set).
    o.handshake_timeout = 500ms;
  });
  std::atomic<bool> stop{false};
  std::atomic<std::size_t> most{0};
  std::thread sampler([&] {
    while (!stop) {
      std::size_t n = s.srv->connection_count();
      if (n > most) most = n;
      std::this_thread::sleep_for(1ms);  // sampling, bounded by `stop`
    }
  });
  long before = 0;
  int accepted = 0, refused_busy = 0, other = 0;
  constexpr int waves = 10, per_wave = 100;
  for (int w = 0; w < waves; ++w) {
    if (w == 1) before = heap_in_use_kib();  // after a warm-up wave
    std::vector<bokbok::base::unique_fd> fds;
    for (int i = 0; i < per_wave; ++i) {
      auto fd = raw_connect(s.address);
      REQUIRE(write_all(fd.get(), client_preamble() + message1(*u.alice)));
      fds.push_back(std::move(fd));
    }
    // Each hears either the key-mode preamble (a slot: message 2 follows) or a plain
    // preamble with a goaway: busy.
    for (auto& fd : fds) {
      std::string pre = read_some(fd.get(), 9);
      if (pre == server_preamble) {
        ++accepted;
      } else if (pre.size() == 9 && pre[7] == 0) {
        // The goaway in place of a hello: code busy (PROTOCOL.md §8.1).
        std::string rec = read_record(fd.get());
        wire::frame_view f;
        std::string err;
        if (rec.size() > 2 && wire::parse_frame(std::string_view(rec).substr(2), f, err) &&
            f.type == wire::frame_type::goaway &&
            wire::parse_code_payload(f.payload).code == std::uint16_t(bokbok::error_code::busy))
          ++refused_busy;
        else
          ++other;
      } else {
        ++other;
      }
    }
    CHECK(s.srv->connection_count() <= limit);
    if (w == 0) {
      // Still connected but silent: the handshake timeout releases their slots.
      CHECK(settles([&] { return s.srv->connection_count() == 0; }));
    }
    fds.clear();  // the silent clients go; their slots must come back
    CHECK(settles([&] { return s.srv->connection_count() == 0; }));
  }
  stop = true;
  sampler.join();
  long after = heap_in_use_kib();
  settles([&] { after = heap_in_use_kib(); return after - before < 4 * 1024; }, 5s);
  MESSAGE(accepted << " got a slot, " << refused_busy << " were refused busy, " << other
                   << " other; at most " << most.load() << " open; heap " << before << " -> "
                   << after << " KiB");
  CHECK(most <= limit);
  CHECK(accepted + refused_busy == waves * per_wave);
  CHECK(other == 0);
  CHECK(accepted >= waves * int(limit));
  CHECK(after - before < 4 * 1024);
  CHECK(s.got().empty());
  // And a real client still gets in.
  auto c = bokbok::connect(s.address, u.client());
  CHECK(c.request({"echo", "in"}) == message{"echo", "in"});
  c.close();
}

TEST_CASE("clients that stall inside message 1 lose their slot after the handshake timeout") {
  raise_fd_limit();
  users u;
  constexpr unsigned limit = 100;
  watched_server s(u, [](bokbok::server_options& o) {
    o.max_connections = limit;
    o.connection_wait = 3s;  // long enough for a waiting client to see slots come back
    o.handshake_timeout = 500ms;
  });
  long before = 0;
  constexpr int waves = 10;
  auto start = std::chrono::steady_clock::now();
  for (int w = 0; w < waves; ++w) {
    if (w == 1) before = heap_in_use_kib();
    std::size_t ends_before = s.ends();
    std::vector<bokbok::base::unique_fd> fds;
    for (unsigned i = 0; i < limit; ++i) {
      auto fd = raw_connect(s.address);
      std::string m1 = message1(*u.alice);
      REQUIRE(write_all(fd.get(), client_preamble() + m1.substr(0, m1.size() / 2)));
      fds.push_back(std::move(fd));
    }
    // The server is full of stalled clients; a real one waits for a slot and gets in
    // once the stalled ones time out — though they never hang up.
    auto t0 = std::chrono::steady_clock::now();
    auto c = bokbok::connect(s.address, u.client());
    CHECK(c.request({"echo", "in"}) == message{"echo", "in"});
    c.close();
    c.wait_closed();
    CHECK(std::chrono::steady_clock::now() - t0 < 3s);
    CHECK(s.wait_ends(ends_before + limit + 1));
    // The real client's end is counted inside on_close, and a connection counts until
    // on_close has returned (server::connection_count).
    CHECK(settles([&] { return s.srv->connection_count() == 0; }));
    for (auto& fd : fds) CHECK(ends_within(fd.get(), 1s));  // the server hung up on each
  }
  auto took = std::chrono::steady_clock::now() - start;
  long after = heap_in_use_kib();
  settles([&] { after = heap_in_use_kib(); return after - before < 4 * 1024; }, 5s);
  auto errors = s.error_lines();
  int timed_out = 0;
  for (auto& e : errors) timed_out += contains(e, "timed out");
  MESSAGE((waves * limit) << " stalled clients in " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                        << " ms; heap " << before << " -> " << after << " KiB");
  CHECK(timed_out == int(waves * limit));
  CHECK(after - before < 4 * 1024);
  CHECK(s.got().size() == waves);
}

TEST_CASE("a flood of wrong-key clients costs the server no Diffie-Hellman") {
  raise_fd_limit();
  users u;
  watched_server s(u);
  auto wrong = bokbok::key::generate();
  constexpr int flood = 200;
  // Raw clients: key_initiator's message 1 needs no DH, and they never read message 2
  // into a handshake, so every DH counted here would be the server's.
  auto dh_before = crypto::handshake_state::dh_count();
  int decoys = 0;
  for (int i = 0; i < flood; ++i) {
    auto fd = raw_connect(s.address);
    REQUIRE(write_all(fd.get(), client_preamble(i % 2 ? "alice" : "nobody") +
                                    message1(i % 2 ? wrong : *u.alice, i % 2 ? "alice" : "nobody")));
    // A decoy shaped like message 2, then the end.
    if (read_some(fd.get(), 9) == server_preamble && read_record(fd.get()).size() == message2_record_size &&
        ends_within(fd.get(), 2s))
      ++decoys;
  }
  REQUIRE(s.wait_ends(flood));
  CHECK(crypto::handshake_state::dh_count() - dh_before == 0);
  CHECK(decoys == flood);
  int refused = 0;
  for (auto& e : s.error_lines()) refused += contains(e, "authentication failed: ");
  CHECK(refused == flood);

  // The counter does move for a right key: one DH (ee) per side and handshake.
  dh_before = crypto::handshake_state::dh_count();
  {
    auto fd = raw_connect(s.address);
    log_in(fd.get(), *u.alice);
    CHECK(settles([&] { return s.opened == 1; }));
  }
  // The server's one (ee), and the raw client's own, which it needs to log in.
  CHECK(crypto::handshake_state::dh_count() - dh_before == 2);
  REQUIRE(s.wait_ends(flood + 1));

  // Real clients with a wrong key: each does its own one DH reading the decoy (it cannot
  // tell it from message 2), the server none.
  constexpr int real = 20;
  bokbok::options o = u.client();
  o.keys.key = std::make_shared<const bokbok::key>(bokbok::key::generate());
  dh_before = crypto::handshake_state::dh_count();
  for (int i = 0; i < real; ++i) CHECK_THROWS_AS(bokbok::connect(s.address, o), bokbok::authentication_error);
  REQUIRE(s.wait_ends(flood + 1 + real));
  CHECK(crypto::handshake_state::dh_count() - dh_before == real);
  CHECK(s.got().empty());
}

// ---- message 1 refusals ---------------------------------------------------------------------

namespace {

// Sends the client preamble and `m1` on a new connection; checks the server answers with
// its preamble and a decoy of message 2's size, then hangs up, and that a key_initiator
// reading it would report the usual authentication failure. Returns the server's reason.
std::string refused_message1(watched_server& s, const std::string& m1) {
  std::size_t ends_before = s.ends();
  auto fd = raw_connect(s.address);
  REQUIRE(write_all(fd.get(), client_preamble() + m1));
  CHECK(read_some(fd.get(), 9) == server_preamble);
  CHECK(read_record(fd.get()).size() == message2_record_size);
  CHECK(ends_within(fd.get(), 2s));
  REQUIRE(s.wait_ends(ends_before + 1));
  auto errors = s.error_lines();
  REQUIRE(!errors.empty());
  return errors.back();
}

}  // namespace

TEST_CASE("stale, future, replayed and low-order first messages are refused, each for its reason") {
  users u;
  watched_server s(u, [](bokbok::server_options& o) { o.keys.clock_window = 120s; });
  auto now = crypto::system_clock_ms;
  SUBCASE("a timestamp 10 minutes old") {
    auto why = refused_message1(s, message1(*u.alice, "alice", [&] { return now() - 600'000; }));
    CHECK(contains(why, "key mode: user \"alice\": stale timestamp: the client's clock is"));
    CHECK(contains(why, "(allowed: 120 s)"));
  }
  SUBCASE("a timestamp 10 minutes ahead") {
    auto why = refused_message1(s, message1(*u.alice, "alice", [&] { return now() + 600'000; }));
    CHECK(contains(why, "key mode: user \"alice\": timestamp in the future: the client's clock is"));
  }
  SUBCASE("a timestamp just inside the window is fine") {
    auto fd = raw_connect(s.address);
    log_in(fd.get(), *u.alice, [&] { return now() - 100'000; });
    CHECK(settles([&] { return s.opened == 1; }));
  }
  SUBCASE("the same message 1 on a second connection") {
    crypto::key_initiator ini(crypto_key(*u.alice), client_preamble(), server_preamble, client_settings);
    std::string m1;
    REQUIRE(ini.start(m1) == crypto::handshake_status::need_more);
    {
      auto fd = raw_connect(s.address);
      finish_log_in(fd.get(), ini, m1);
      CHECK(settles([&] { return s.opened == 1; }));
    }
    auto why = refused_message1(s, m1);
    CHECK(contains(why, "key mode: user \"alice\": replayed handshake: this first message was already accepted"));
    CHECK(s.opened == 1);
  }
  SUBCASE("a hand-made message 1 with an honest ephemeral key is accepted (the control)") {
    unsigned char priv[32], pub[32];
    randombytes_buf(priv, sizeof priv);
    crypto_scalarmult_base(pub, priv);
    const std::int64_t ts = now();
    auto forged = bokbok_test::forged_message1(u.alice->bytes(), client_preamble() + server_preamble,
                                               std::span<const unsigned char, 32>(pub), ts, client_settings);
    REQUIRE(forged);
    // An initiator with the same private key and clock writes the same message 1, and
    // can finish the handshake (log in) after it.
    crypto::key_initiator ini(crypto_key(*u.alice), client_preamble(), server_preamble, client_settings,
                              [ts] { return ts; });
    ini.use_ephemeral_for_test(std::span<const unsigned char, 32>(priv));
    std::string m1;
    REQUIRE(ini.start(m1) == crypto::handshake_status::need_more);
    CHECK(m1 == *forged);
    auto fd = raw_connect(s.address);
    finish_log_in(fd.get(), ini, *forged);
    CHECK(settles([&] { return s.opened == 1; }));
    CHECK(s.error_lines().empty());
  }
  SUBCASE("an all-zero ephemeral key") {
    std::array<unsigned char, 32> zero{};
    auto why = refused_message1(s, message1_with_ephemeral(*u.alice, zero));
    CHECK(contains(why, "key mode: user \"alice\": low-order public key: the Diffie-Hellman result is all zero"));
  }
  SUBCASE("low-order ephemeral keys: orders 1, 2 and 8") {
    const std::vector<std::array<unsigned char, 32>> points{
        {1},  // u = 1
        {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},  // p - 1
        {0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a,
         0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
        {0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef, 0x5b,
         0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57},
    };
    for (const auto& p : points) {
      auto why = refused_message1(s, message1_with_ephemeral(*u.alice, p));
      CHECK(contains(why, "low-order public key"));
    }
  }
  CHECK(s.got().empty());
}
