// The Noise HandshakeState for NN and NNpsk0 (src/crypto/noise_handshake.hpp) with random
// ephemerals; the fixed vectors are in noise_vectors_test.cpp.
#include <doctest/doctest.h>

#include <string>

#include "crypto/noise_handshake.hpp"

using namespace bokbok::crypto;

namespace {

struct pair_result {
  bool ok = false;
  std::string error;
};

// Runs both messages; returns the first error.
pair_result run(handshake_state& ini, handshake_state& res) {
  std::string m1, m2, p;
  if (!ini.write_message("one", m1)) return {false, ini.error()};
  if (!res.read_message(m1, p)) return {false, res.error()};
  if (p != "one") return {false, "payload 1 differs"};
  if (!res.write_message("two", m2)) return {false, res.error()};
  p.clear();
  if (!ini.read_message(m2, p)) return {false, ini.error()};
  if (p != "two") return {false, "payload 2 differs"};
  return {true, ""};
}

}  // namespace

TEST_CASE("NN and NNpsk0 handshakes with random ephemerals agree on hash and keys") {
  const key psk = key::random();
  for (auto pattern : {noise_pattern::nn, noise_pattern::nnpsk0}) {
    handshake_state ini(pattern, noise_role::initiator, "prologue", &psk);
    handshake_state res(pattern, noise_role::responder, "prologue", &psk);
    const auto r = run(ini, res);
    REQUIRE_MESSAGE(r.ok, r.error);
    CHECK(ini.finished());
    CHECK(res.finished());
    CHECK(ini.handshake_hash() == res.handshake_hash());
    CHECK(std::equal(ini.local_ephemeral_public().begin(), ini.local_ephemeral_public().end(),
                     res.remote_ephemeral_public().begin()));
    auto a = ini.split();
    auto b = res.split();
    std::string c, p;
    REQUIRE(a.initiator_to_responder.encrypt_with_ad({}, "data", c));
    REQUIRE(b.initiator_to_responder.decrypt_with_ad({}, c, p));
    CHECK(p == "data");
  }
}

TEST_CASE("in NNpsk0 a wrong psk fails the responder's first read, before any DH") {
  const key k1 = key::random(), k2 = key::random();
  handshake_state ini(noise_pattern::nnpsk0, noise_role::initiator, "p", &k1);
  handshake_state res(noise_pattern::nnpsk0, noise_role::responder, "p", &k2);
  std::string m1, p;
  REQUIRE(ini.write_message("payload", m1));
  CHECK(m1.size() == dh_len + 7 + tag_len);  // the payload is encrypted already
  const auto before = handshake_state::dh_count();
  CHECK_FALSE(res.read_message(m1, p));
  CHECK(res.error() == "handshake message failed authentication");
  CHECK(handshake_state::dh_count() == before);
  std::string m2;
  CHECK_FALSE(res.write_message("", m2));  // dead after an error
}

TEST_CASE("the responder's only DH is in writing the second message") {
  const key k = key::random();
  handshake_state ini(noise_pattern::nnpsk0, noise_role::initiator, "p", &k);
  handshake_state res(noise_pattern::nnpsk0, noise_role::responder, "p", &k);
  std::string m1, m2, p;
  REQUIRE(ini.write_message("", m1));
  auto before = handshake_state::dh_count();
  REQUIRE(res.read_message(m1, p));
  CHECK(handshake_state::dh_count() == before);
  REQUIRE(res.write_message("", m2));
  CHECK(handshake_state::dh_count() == before + 1);
  REQUIRE(ini.read_message(m2, p));
  CHECK(handshake_state::dh_count() == before + 2);
}

TEST_CASE("in NN the payload of the first message is sent in clear") {
  handshake_state ini(noise_pattern::nn, noise_role::initiator, "");
  std::string m1;
  REQUIRE(ini.write_message("visible", m1));
  CHECK(m1.substr(dh_len) == "visible");
}

TEST_CASE("different prologues make the handshake fail") {
  const key k = key::random();
  for (auto pattern : {noise_pattern::nn, noise_pattern::nnpsk0}) {
    handshake_state ini(pattern, noise_role::initiator, "prologue A", &k);
    handshake_state res(pattern, noise_role::responder, "prologue B", &k);
    CHECK_FALSE(run(ini, res).ok);
  }
}

TEST_CASE("an all-zero or low-order peer ephemeral fails the DH") {
  // NN: the responder accepts message 1 (no tag), then its DH in message 2 fails.
  for (const char* hex : {"0000000000000000000000000000000000000000000000000000000000000000",
                          "0100000000000000000000000000000000000000000000000000000000000000",
                          "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"}) {
    std::array<unsigned char, 32> e;
    REQUIRE(from_hex(hex, e));
    handshake_state res(noise_pattern::nn, noise_role::responder, "");
    std::string p, m2;
    REQUIRE(res.read_message(std::string(reinterpret_cast<const char*>(e.data()), 32), p));
    CHECK_FALSE(res.write_message("", m2));
    CHECK(res.error() == "low-order public key: the Diffie-Hellman result is all zero");
    CHECK(m2.empty());
  }
}

TEST_CASE("messages out of turn, too short, or a missing psk are errors") {
  handshake_state res(noise_pattern::nn, noise_role::responder, "");
  std::string out, p;
  CHECK_FALSE(res.write_message("", out));
  CHECK(res.error() == "handshake message written out of turn");
  handshake_state res2(noise_pattern::nn, noise_role::responder, "");
  CHECK_FALSE(res2.read_message("short", p));
  CHECK(res2.error() == "handshake message of 5 bytes is shorter than its 32-byte ephemeral key");
  handshake_state ini(noise_pattern::nnpsk0, noise_role::initiator, "");
  CHECK_FALSE(ini.write_message("", out));
  CHECK(ini.error() == "NNpsk0 needs a pre-shared key");
}
