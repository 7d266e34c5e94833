// The key-mode handshake state machines (src/crypto/key_handshake.hpp, PROTOCOL.md §9):
// client and server driven against each other in memory, with a fixed clock.
#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <string_view>

#include "crypto/key_handshake.hpp"
#include "crypto/noise_symmetric.hpp"
#include "support/forged_message1.hpp"
#include "wire/preamble.hpp"

using namespace bokbok::crypto;
using namespace std::chrono_literals;

namespace {

constexpr std::int64_t t0 = 1'700'000'000'000;  // a fixed "now", unix ms

std::string client_preamble(std::string user = "alice") {
  return bokbok::wire::encode_preamble({1, bokbok::wire::mode::key, std::move(user)});
}
std::string server_preamble() {
  return bokbok::wire::encode_preamble({1, bokbok::wire::mode::key, ""});
}

clock_ms fixed(std::int64_t t) {
  return [t] { return t; };
}

struct run_result {
  handshake_status client_status = handshake_status::need_more;
  handshake_status server_status = handshake_status::need_more;
  std::string message1, message2;
  std::string client_error, server_error;
  std::optional<record_cipher_pair> client_ciphers, server_ciphers;
  std::string client_got_settings, server_got_settings;
};

// One handshake: the client holds `client_key`; the server knows `server_key` for the
// user (nullopt: unknown user). `client_now` is the client's clock.
run_result handshake(const key& client_key, std::optional<key> server_key, replay_cache& cache,
                     std::int64_t client_now = t0, std::int64_t server_now = t0,
                     std::string_view client_settings = "client settings",
                     std::string_view server_settings = "server settings, longer",
                     bool login = true) {
  run_result r;
  key_initiator client(client_key, client_preamble(), server_preamble(), client_settings,
                       fixed(client_now));
  REQUIRE(client.start(r.message1) == handshake_status::need_more);
  key_responder server(std::move(server_key), client_preamble(), server_preamble(),
                       server_settings, cache, {120s, fixed(server_now), ""});
  std::string_view in = r.message1;
  r.server_status = server.feed(in, r.message2);
  CHECK(in.empty());
  r.server_error = server.error();
  std::string_view back = r.message2;
  r.client_status = client.feed(back);
  r.client_error = client.error();
  if (r.server_status == handshake_status::done) {
    // The client's first record would log it in (PROTOCOL.md §9.6): confirm it here.
    if (login) CHECK(server.confirm() == handshake_status::done);
    r.server_ciphers = server.take_ciphers();
    r.server_got_settings = server.peer_settings();
  }
  if (r.client_status == handshake_status::done) {
    r.client_ciphers = client.take_ciphers();
    r.client_got_settings = client.peer_settings();
    CHECK(server.handshake_hash() == client.handshake_hash());
  }
  return r;
}

void check_ciphers_match(run_result& r) {
  REQUIRE(r.client_ciphers);
  REQUIRE(r.server_ciphers);
  for (int i = 0; i < 3; ++i) {
    std::string rec, plain;
    REQUIRE(r.client_ciphers->send.seal("client frame " + std::to_string(i), rec));
    REQUIRE(r.server_ciphers->receive.open(std::string_view(rec).substr(2), plain));
    CHECK(plain == "client frame " + std::to_string(i));
    rec.clear();
    plain.clear();
    REQUIRE(r.server_ciphers->send.seal("server frame " + std::to_string(i), rec));
    REQUIRE(r.client_ciphers->receive.open(std::string_view(rec).substr(2), plain));
    CHECK(plain == "server frame " + std::to_string(i));
  }
}

// A message 1 built by hand, so that its ephemeral key can be anything.
std::string forged_message1(const key& psk, std::span<const unsigned char, 32> e,
                            std::int64_t ts, std::string_view settings) {
  auto m1 = bokbok_test::forged_message1(psk.bytes(), client_preamble() + server_preamble(), e,
                                         ts, settings);
  REQUIRE(m1);
  return *m1;
}

std::array<unsigned char, 32> point(std::string_view hex) {
  std::array<unsigned char, 32> p{};
  REQUIRE(from_hex(hex, p));
  return p;
}

// X25519 public keys of small order: zero, one, and a point of order 8.
const char* const low_order_points[] = {
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
};

}  // namespace

TEST_CASE("with the right key both sides finish with matching ciphers and each other's settings") {
  replay_cache cache;
  const key k = key::random();
  auto r = handshake(k, k.clone(), cache);
  REQUIRE_MESSAGE(r.server_status == handshake_status::done, r.server_error);
  REQUIRE_MESSAGE(r.client_status == handshake_status::done, r.client_error);
  CHECK(r.server_got_settings == "client settings");
  CHECK(r.client_got_settings == "server settings, longer");
  CHECK(r.message1.size() == 2 + message1_min_body + 15);
  CHECK(r.message2.size() == 2 + message2_min_body + 23);
  check_ciphers_match(r);
}

TEST_CASE("a wrong key and an unknown user give the client the same error and the same sizes") {
  replay_cache cache;
  const key k = key::random();
  auto good = handshake(k, k.clone(), cache);
  auto wrong = handshake(k, key::random(), cache);
  auto unknown = handshake(k, std::nullopt, cache);
  for (auto* r : {&wrong, &unknown}) {
    CHECK(r->server_status == handshake_status::error);
    CHECK(r->client_status == handshake_status::error);
    CHECK(r->client_error == authentication_failed);
    CHECK(r->server_error == authentication_failed);
    CHECK(r->message1.size() == good.message1.size());
    CHECK(r->message2.size() == good.message2.size());  // the decoy looks like message 2
  }
  CHECK(cache.size() == 1);  // only the authenticated client was recorded
}

TEST_CASE("a flood of wrong-key and unknown-user clients costs the server no Diffie-Hellman") {
  replay_cache cache;
  const key server_key = key::random();
  const std::uint64_t before = handshake_state::dh_count();
  for (int i = 0; i < 100; ++i) {
    key_initiator client(key::random(), client_preamble(), server_preamble(), "s", fixed(t0));
    std::string m1, m2;
    REQUIRE(client.start(m1) == handshake_status::need_more);
    std::optional<key> known;
    if (i % 2 == 0) known = server_key.clone();
    key_responder server(std::move(known), client_preamble(), server_preamble(), "s", cache,
                         {120s, fixed(t0), ""});
    std::string_view in = m1;
    CHECK(server.feed(in, m2) == handshake_status::error);
    CHECK(server.error() == authentication_failed);
    CHECK(m2.size() == 2 + message2_min_body + 1);
  }
  CHECK(handshake_state::dh_count() == before);
  CHECK(cache.size() == 0);
  // The one right client does exactly one DH on the server (in writing message 2).
  key_initiator client(server_key, client_preamble(), server_preamble(), "s", fixed(t0));
  std::string m1, m2;
  REQUIRE(client.start(m1) == handshake_status::need_more);
  key_responder server(server_key.clone(), client_preamble(), server_preamble(), "s", cache,
                       {120s, fixed(t0), ""});
  std::string_view in = m1;
  const std::uint64_t start = handshake_state::dh_count();
  CHECK(server.feed(in, m2) == handshake_status::done);
  CHECK(handshake_state::dh_count() == start + 1);
}

TEST_CASE("stale and future timestamps are refused, skew inside the window is accepted") {
  replay_cache cache;
  const key k = key::random();
  auto stale = handshake(k, k.clone(), cache, t0 - 121'000, t0);
  CHECK(stale.server_status == handshake_status::error);
  CHECK(stale.server_error.starts_with("stale timestamp"));
  CHECK(stale.server_error.find("121 s behind") != std::string::npos);
  CHECK(stale.client_error == authentication_failed);
  auto future = handshake(k, k.clone(), cache, t0 + 121'000, t0);
  CHECK(future.server_status == handshake_status::error);
  CHECK(future.server_error.starts_with("timestamp in the future"));
  CHECK(future.client_error == authentication_failed);
  CHECK(cache.size() == 0);
  auto behind = handshake(k, k.clone(), cache, t0 - 119'000, t0);
  CHECK(behind.server_status == handshake_status::done);
  auto ahead = handshake(k, k.clone(), cache, t0 + 119'000, t0);
  CHECK(ahead.server_status == handshake_status::done);
  CHECK(ahead.client_status == handshake_status::done);
}

TEST_CASE("a replayed message 1 is refused while the cache remembers it") {
  replay_cache cache;
  const key k = key::random();
  auto first = handshake(k, k.clone(), cache);
  REQUIRE(first.server_status == handshake_status::done);
  key_responder again(k.clone(), client_preamble(), server_preamble(), "x", cache,
                      {120s, fixed(t0 + 60'000), ""});
  std::string_view in = first.message1;
  std::string out;
  CHECK(again.feed(in, out) == handshake_status::error);
  CHECK(again.error().starts_with("replayed handshake"));
  CHECK(out.size() == 2 + message2_min_body + 1);  // a decoy, no DH
  // The same message to a server with an empty cache is accepted: the cache refused it.
  replay_cache other;
  key_responder fresh(k.clone(), client_preamble(), server_preamble(), "x", other,
                      {120s, fixed(t0 + 60'000), ""});
  in = first.message1;
  out.clear();
  CHECK(fresh.feed(in, out) == handshake_status::done);
  // After the window the replay is stale instead.
  key_responder late(k.clone(), client_preamble(), server_preamble(), "x", cache,
                     {120s, fixed(t0 + 121'000), ""});
  in = first.message1;
  out.clear();
  CHECK(late.feed(in, out) == handshake_status::error);
  CHECK(late.error().starts_with("stale timestamp"));
}

TEST_CASE("a message 1 enters the replay cache only at the login, and a full cache evicts") {
  replay_cache cache(3, 3);
  const key k = key::random();
  // Answered with message 2 but never logged in: not recorded, so it can be answered
  // again (at the cost of one DH and one message 2; it can still never log in).
  auto pending = handshake(k, k.clone(), cache, t0, t0, "c", "s", /*login=*/false);
  REQUIRE(pending.server_status == handshake_status::done);
  CHECK(cache.size() == 0);
  key_responder again(k.clone(), client_preamble(), server_preamble(), "s", cache,
                      {120s, fixed(t0), ""});
  std::string_view in = pending.message1;
  std::string out;
  CHECK(again.feed(in, out) == handshake_status::done);
  CHECK(cache.size() == 0);
  // Logged in now (the genuine client's first record): recorded; a second login of the
  // same message 1, on a connection that was answered meanwhile, is refused.
  CHECK(again.confirm() == handshake_status::done);
  CHECK(cache.size() == 1);
  key_responder late(k.clone(), client_preamble(), server_preamble(), "s", cache,
                     {120s, fixed(t0), ""});
  in = pending.message1;
  out.clear();
  CHECK(late.feed(in, out) == handshake_status::error);  // refused before any DH
  CHECK(late.error().starts_with("replayed handshake"));
  // A full cache never refuses a client: the oldest entry goes.
  for (int i = 0; i < 5; ++i)
    CHECK(handshake(k, k.clone(), cache).server_status == handshake_status::done);
  CHECK(cache.size() == 3);
}

TEST_CASE("a low-order ephemeral key in message 1 is refused") {
  const key k = key::random();
  for (const char* hex : low_order_points) {
    INFO(hex);
    replay_cache cache;
    const auto e = point(hex);
    const std::string m1 = forged_message1(k, e, t0, "s");
    key_responder server(k.clone(), client_preamble(), server_preamble(), "s", cache,
                         {120s, fixed(t0), ""});
    std::string_view in = m1;
    std::string out;
    CHECK(server.feed(in, out) == handshake_status::error);
    CHECK(server.error().starts_with("low-order public key"));
    CHECK(out.size() == 2 + message2_min_body + 1);  // a decoy
  }
}

TEST_CASE("a low-order ephemeral key in message 2 is refused") {
  const key k = key::random();
  for (const char* hex : low_order_points) {
    INFO(hex);
    key_initiator client(k, client_preamble(), server_preamble(), "s", fixed(t0));
    std::string m1;
    REQUIRE(client.start(m1) == handshake_status::need_more);
    std::string m2;
    m2.push_back(0);
    m2.push_back(static_cast<char>(message2_min_body));
    const auto e = point(hex);
    m2.append(reinterpret_cast<const char*>(e.data()), e.size());
    m2.append(tag_len, '\x5a');
    std::string_view in = m2;
    CHECK(client.feed(in) == handshake_status::error);
    CHECK(client.error().starts_with("low-order public key"));
  }
}

TEST_CASE("every byte of message 1 flipped in turn is refused, with no DH on the server") {
  const key k = key::random();
  key_initiator client(k, client_preamble(), server_preamble(), "settings", fixed(t0));
  std::string m1;
  REQUIRE(client.start(m1) == handshake_status::need_more);
  const std::uint64_t before = handshake_state::dh_count();
  for (std::size_t i = 0; i < m1.size(); ++i) {
    INFO("byte " << i);
    replay_cache cache;
    std::string bad = m1;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    key_responder server(k.clone(), client_preamble(), server_preamble(), "s", cache,
                         {120s, fixed(t0), ""});
    std::string_view in = bad;
    std::string out;
    auto st = server.feed(in, out);
    if (st == handshake_status::need_more) st = server.end_of_stream();  // a longer length
    CHECK(st == handshake_status::error);
    CHECK(cache.size() == 0);
  }
  CHECK(handshake_state::dh_count() == before);
}

TEST_CASE("every byte of message 2 flipped in turn is refused by the client") {
  const key k = key::random();
  std::size_t size = 0;
  for (std::size_t i = 0; size == 0 || i < size; ++i) {
    INFO("byte " << i);
    replay_cache cache;
    key_initiator client(k, client_preamble(), server_preamble(), "c", fixed(t0));
    std::string m1, m2;
    REQUIRE(client.start(m1) == handshake_status::need_more);
    key_responder server(k.clone(), client_preamble(), server_preamble(), "server", cache,
                         {120s, fixed(t0), ""});
    std::string_view in = m1;
    REQUIRE(server.feed(in, m2) == handshake_status::done);
    size = m2.size();
    m2[i] = static_cast<char>(m2[i] ^ 0x80);
    std::string_view back = m2;
    auto st = client.feed(back);
    if (st == handshake_status::need_more) st = client.end_of_stream();
    CHECK(st == handshake_status::error);
  }
  CHECK(size == 2 + message2_min_body + 6);
}

TEST_CASE("records of the wrong length are refused from their length field alone") {
  const key k = key::random();
  replay_cache cache;
  for (std::size_t len : {std::size_t{0}, message1_min_body - 1, message1_max_body + 1,
                          std::size_t{65535}}) {
    INFO("length " << len);
    key_responder server(k.clone(), client_preamble(), server_preamble(), "s", cache,
                         {120s, fixed(t0), ""});
    std::string hdr{static_cast<char>(len >> 8), static_cast<char>(len & 0xff)};
    std::string_view in = hdr;
    std::string out;
    CHECK(server.feed(in, out) == handshake_status::error);
    CHECK(server.error().find("message 1 record of " + std::to_string(len) + " bytes") !=
          std::string::npos);
    CHECK(out.empty());
  }
  key_initiator client(k, client_preamble(), server_preamble(), "c", fixed(t0));
  std::string m1;
  REQUIRE(client.start(m1) == handshake_status::need_more);
  std::string hdr{0, static_cast<char>(message2_min_body - 1)};
  std::string_view in = hdr;
  CHECK(client.feed(in) == handshake_status::error);
  CHECK(client.error().find("message 2 record of 47 bytes") != std::string::npos);
}

TEST_CASE("fed one byte at a time the handshake still completes, leaving later bytes alone") {
  const key k = key::random();
  replay_cache cache;
  key_initiator client(k, client_preamble(), server_preamble(), "c", fixed(t0));
  std::string m1, m2;
  REQUIRE(client.start(m1) == handshake_status::need_more);
  key_responder server(k.clone(), client_preamble(), server_preamble(), "s", cache,
                       {120s, fixed(t0), ""});
  const std::string stream = m1 + "after";
  auto st = handshake_status::need_more;
  std::size_t at = 0;
  for (; at < stream.size() && st == handshake_status::need_more; ++at) {
    std::string_view one = std::string_view(stream).substr(at, 1);
    st = server.feed(one, m2);
    CHECK(one.empty());
  }
  REQUIRE(st == handshake_status::done);
  CHECK(stream.substr(at) == "after");
  const std::string back = m2 + "next record";
  std::string_view in = back;
  REQUIRE(client.feed(in) == handshake_status::done);
  CHECK(in == "next record");
}

TEST_CASE("a tampered preamble (the prologue) makes the handshake fail") {
  const key k = key::random();
  replay_cache cache;
  key_initiator client(k, client_preamble("alice"), server_preamble(), "c", fixed(t0));
  std::string m1, m2;
  REQUIRE(client.start(m1) == handshake_status::need_more);
  key_responder server(k.clone(), client_preamble("alicf"), server_preamble(), "s", cache,
                       {120s, fixed(t0), ""});
  std::string_view in = m1;
  CHECK(server.feed(in, m2) == handshake_status::error);
  CHECK(server.error() == authentication_failed);
}

TEST_CASE("the end of the stream during the handshake is an error on both sides") {
  const key k = key::random();
  replay_cache cache;
  key_initiator client(k, client_preamble(), server_preamble(), "c", fixed(t0));
  std::string m1;
  REQUIRE(client.start(m1) == handshake_status::need_more);
  CHECK(client.end_of_stream() == handshake_status::error);
  CHECK(client.error() == "the server closed the connection during the key-mode handshake");
  key_responder server(k.clone(), client_preamble(), server_preamble(), "s", cache,
                       {120s, fixed(t0), ""});
  std::string_view part = std::string_view(m1).substr(0, 10);
  std::string out;
  CHECK(server.feed(part, out) == handshake_status::need_more);
  CHECK(server.end_of_stream() == handshake_status::error);
  CHECK(server.error() == "the client closed the connection during the key-mode handshake");
  CHECK_THROWS_AS(server.take_ciphers(), std::logic_error);
}

TEST_CASE("settings larger than the limit are refused before anything is sent") {
  const key k = key::random();
  key_initiator client(k, client_preamble(), server_preamble(),
                       std::string(max_handshake_settings + 1, 's'), fixed(t0));
  std::string m1;
  CHECK(client.start(m1) == handshake_status::error);
  CHECK(m1.empty());
  replay_cache cache;
  auto r = handshake(k, k.clone(), cache, t0, t0, std::string(max_handshake_settings, 'c'),
                     std::string(max_handshake_settings, 'd'));
  CHECK(r.client_status == handshake_status::done);
  CHECK(r.message1.size() == 2 + message1_max_body);
  CHECK(r.message2.size() == 2 + message2_max_body);
}

TEST_CASE("a responder needs a user name in the peer's preamble, an initiator refuses one") {
  using bokbok::wire::preamble;
  const preamble named{1, bokbok::wire::mode::key, "alice"};
  const preamble anonymous{1, bokbok::wire::mode::key, ""};
  CHECK(key_preamble_error(noise_role::responder, named).empty());
  CHECK(key_preamble_error(noise_role::responder, anonymous) ==
        "key-mode preamble without a user name");
  CHECK(key_preamble_error(noise_role::initiator, anonymous).empty());
  CHECK(key_preamble_error(noise_role::initiator, named) ==
        "the peer's key-mode preamble names a user: both sides are clients");
}

TEST_CASE("a timestamp at the far end of the u64 range is refused as in the future") {
  const key k = key::random();
  std::array<unsigned char, 32> priv, pub;
  randombytes_buf(priv.data(), priv.size());
  REQUIRE(crypto_scalarmult_base(pub.data(), priv.data()) == 0);
  for (std::int64_t ts : {std::int64_t{-1}, INT64_MAX, std::int64_t{0}}) {
    INFO("timestamp " << ts);
    replay_cache cache;
    const std::string m1 = forged_message1(k, pub, ts, "s");
    key_responder server(k.clone(), client_preamble(), server_preamble(), "s", cache,
                         {120s, fixed(t0), ""});
    std::string_view in = m1;
    std::string out;
    CHECK(server.feed(in, out) == handshake_status::error);
    CHECK(server.error().starts_with(ts == 0 ? "stale timestamp" : "timestamp in the future"));
  }
}

TEST_CASE("an ephemeral key pair made ahead is the one message 1 sends, and the handshake completes") {
  replay_cache cache;
  const key k = key::random();
  ephemeral_keypair pair = ephemeral_keypair::generate();
  const auto pub = pair.public_key;
  key_initiator client(k, client_preamble(), server_preamble(), "client settings", fixed(t0));
  client.use_ephemeral(std::move(pair));
  // Writing message 1 makes no key pair of its own.
  const auto made = ephemeral_keypair::made_on_this_thread();
  std::string m1;
  REQUIRE(client.start(m1) == handshake_status::need_more);
  CHECK(ephemeral_keypair::made_on_this_thread() == made);
  REQUIRE(m1.size() > 2 + dh_len);
  CHECK(std::string_view(m1).substr(2, dh_len) ==
        std::string_view(reinterpret_cast<const char*>(pub.data()), dh_len));
  key_responder server(k.clone(), client_preamble(), server_preamble(), "server settings", cache,
                       {120s, fixed(t0), ""});
  std::string_view in = m1;
  std::string m2;
  REQUIRE(server.feed(in, m2) == handshake_status::done);
  std::string_view back = m2;
  REQUIRE(client.feed(back) == handshake_status::done);
  CHECK(client.handshake_hash() == server.handshake_hash());
  CHECK(client.peer_settings() == "server settings");
  // Without one made ahead, writing message 1 makes one.
  key_initiator other(k, client_preamble(), server_preamble(), "", fixed(t0));
  const auto before_other = ephemeral_keypair::made_on_this_thread();
  std::string m1b;
  REQUIRE(other.start(m1b) == handshake_status::need_more);
  CHECK(ephemeral_keypair::made_on_this_thread() == before_other + 1);
}
