// The key-mode test vectors of PROTOCOL.md §9.9 (blocks with the info string
// `key-vector`, in the syntax of §10) reproduce exactly: the whole handshake with fixed
// ephemerals and clock, the split keys and the first records, the refusal of a wrong
// key, Rekey() and the passphrase derivation. They were computed independently by
// tests/vectors/make_key_mode_vectors.py.
#include <doctest/doctest.h>

#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "crypto/key_handshake.hpp"
#include "crypto/passphrase.hpp"
#include "protocol_vectors.hpp"

using namespace bokbok::crypto;
using protocol_vectors::parse_hex;
using protocol_vectors::parse_quoted;
using protocol_vectors::trim;

namespace {

struct key_vector {
  int line = 0;
  std::map<std::string, std::string> fields;
  bool has(const std::string& k) const { return fields.count(k) != 0; }
  const std::string& at(const std::string& k) const {
    auto it = fields.find(k);
    if (it == fields.end()) throw std::runtime_error("vector lacks `" + k + "`");
    return it->second;
  }
  std::string bytes(const std::string& k) const { return parse_hex(at(k)); }
};

std::vector<key_vector> spec_key_vectors() {
  std::vector<key_vector> out;
  protocol_vectors::for_each_block(
      protocol_vectors::read_spec(), "key-vector", [&](int line) { out.push_back({line, {}}); },
      [&](const std::string& key, std::string value, int line) {
        protocol_vectors::set_once(out.back().fields, key, std::move(value), line);
      });
  return out;
}

key key_of(const std::string& bytes) {
  REQUIRE(bytes.size() == key::size);
  return key::from_bytes(std::span<const unsigned char, key::size>(
      reinterpret_cast<const unsigned char*>(bytes.data()), key::size));
}

std::array<unsigned char, 32> array_of(const std::string& bytes) {
  REQUIRE(bytes.size() == 32);
  std::array<unsigned char, 32> a;
  std::copy(bytes.begin(), bytes.end(), a.begin());
  return a;
}

std::string hex(std::string_view s) {
  return to_hex({reinterpret_cast<const unsigned char*>(s.data()), s.size()});
}

// The split keys are not exposed by record_cipher; a record sealed with a cipher_state
// keyed from the vector's key must equal the one the handshake's cipher produced.
void check_records(const key_vector& v, const std::string& dir, record_cipher& sender,
                   record_cipher& receiver, const std::string& key_name) {
  cipher_state reference;
  reference.initialize_key(array_of(v.bytes(key_name)));
  for (int n = 0; v.has(dir + "-frame-" + std::to_string(n)); ++n) {
    const std::string frame = v.bytes(dir + "-frame-" + std::to_string(n));
    const std::string record = v.bytes(dir + "-record-" + std::to_string(n));
    INFO(dir << " record " << n);
    std::string sealed;
    REQUIRE(sender.seal(frame, sealed));
    CHECK(hex(sealed) == hex(record));
    std::string ref;
    REQUIRE(reference.encrypt_with_ad({}, frame, ref));
    CHECK(hex(ref) == hex(record.substr(2)));
    std::string opened;
    REQUIRE(receiver.open(std::string_view(record).substr(2), opened));
    CHECK(opened == frame);
  }
}

void check_handshake(const key_vector& v) {
  const key psk = key_of(v.bytes("psk"));
  const std::string ipre = v.bytes("initiator-preamble");
  const std::string rpre = v.bytes("responder-preamble");
  const std::int64_t ts = std::stoll(v.at("timestamp"));
  const clock_ms clock = [ts] { return ts; };
  replay_cache cache;
  std::optional<key> server_key;
  if (!v.has("responder-psk")) server_key = psk.clone();
  else if (v.at("responder-psk") != "none") server_key = key_of(v.bytes("responder-psk"));
  key_responder server(std::move(server_key), ipre, rpre,
                       v.has("responder-settings") ? v.bytes("responder-settings") : "", cache,
                       {std::chrono::seconds(120), clock, ""});
  if (v.has("responder-ephemeral"))
    server.use_ephemeral_for_test(array_of(v.bytes("responder-ephemeral")));
  const std::string m1 = v.bytes("message-1");
  std::string_view in = m1;
  std::string m2;
  const auto st = server.feed(in, m2);
  if (v.has("error")) {
    CHECK(st == handshake_status::error);
    CHECK(server.error() == v.at("error"));
    return;
  }
  // The initiator with the same inputs writes exactly message 1.
  key_initiator client(psk, ipre, rpre, v.bytes("initiator-settings"), clock);
  client.use_ephemeral_for_test(array_of(v.bytes("initiator-ephemeral")));
  std::string ours;
  REQUIRE(client.start(ours) == handshake_status::need_more);
  CHECK(hex(ours) == hex(m1));
  REQUIRE_MESSAGE(st == handshake_status::done, server.error());
  CHECK(server.peer_settings() == v.bytes("initiator-settings"));
  CHECK(server.peer_timestamp_ms() == ts);
  CHECK(hex(m2) == hex(v.bytes("message-2")));
  const std::string expected_m2 = v.bytes("message-2");
  std::string_view back = expected_m2;
  REQUIRE_MESSAGE(client.feed(back) == handshake_status::done, client.error());
  CHECK(client.peer_settings() == v.bytes("responder-settings"));
  CHECK(to_hex(client.handshake_hash()) == hex(v.bytes("handshake-hash")));
  CHECK(to_hex(server.handshake_hash()) == hex(v.bytes("handshake-hash")));
  auto cc = client.take_ciphers();
  auto sc = server.take_ciphers();
  check_records(v, "i2r", cc.send, sc.receive, "initiator-to-responder-key");
  check_records(v, "r2i", sc.send, cc.receive, "responder-to-initiator-key");
}

void check_rekey(const key_vector& v) {
  cipher_state a, b;
  a.initialize_key(array_of(v.bytes("key")));
  b.initialize_key(array_of(v.bytes("rekeyed")));
  a.rekey();
  std::string x, y;
  REQUIRE(a.encrypt_with_ad({}, "probe", x));
  REQUIRE(b.encrypt_with_ad({}, "probe", y));
  CHECK(x == y);
}

void check_passphrase(const key_vector& v) {
  const std::string realm = parse_quoted(v.at("realm"));
  const std::string user = parse_quoted(v.at("user"));
  CHECK(hex(v.bytes("salt")) == to_hex(passphrase_salt(realm, user)));
  const key k = derive_passphrase_key(parse_quoted(v.at("passphrase")), realm, user);
  CHECK(to_hex(k.bytes()) == hex(v.bytes("key")));
}

}  // namespace

TEST_CASE("PROTOCOL.md holds the key-mode vectors, each well formed") {
  const auto vs = spec_key_vectors();
  std::set<std::string> names;
  for (const auto& v : vs) names.insert(v.at("name"));
  CHECK(names.size() == vs.size());
  for (const char* required : {"key-handshake", "key-handshake-wrong-key", "key-rekey", "key-passphrase"})
    CHECK_MESSAGE(names.count(required), "PROTOCOL.md lacks key vector " << required);
}

TEST_CASE("every key-mode vector in PROTOCOL.md reproduces exactly") {
  int checked = 0;
  for (const auto& v : spec_key_vectors()) {
    INFO("key vector " << v.at("name") << " (PROTOCOL.md line " << v.line << ")");
    try {
      const std::string& what = v.at("what");
      if (what == "key-handshake") check_handshake(v);
      else if (what == "rekey") check_rekey(v);
      else if (what == "passphrase") check_passphrase(v);
      else FAIL("unknown `what: " << what << "`");
      ++checked;
    } catch (const std::exception& e) {
      FAIL_CHECK("malformed vector: " << e.what());
    }
  }
  CHECK(checked >= 4);
}
