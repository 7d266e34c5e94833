// The Noise conformance vectors for NN and NNpsk0 with 25519_ChaChaPoly_SHA256 (the
// cacophony vectors, see tests/vectors/README.md) reproduce exactly: both handshake
// messages, the handshake hash and every transport message. Read from
// $BOKBOK_SOURCE_ROOT/tests/vectors/noise-nn-nnpsk0.json with a minimal JSON reader.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "crypto/noise_handshake.hpp"
#include "crypto/secret.hpp"

using namespace bokbok::crypto;

namespace {

// ---- just enough JSON: objects, arrays, strings without escapes -------------------------

struct json {
  std::string text;                          // when a string
  std::vector<json> items;                   // when an array
  std::map<std::string, json> fields;        // when an object
  const json& at(const std::string& k) const {
    auto it = fields.find(k);
    if (it == fields.end()) throw std::runtime_error("missing JSON field " + k);
    return it->second;
  }
  bool has(const std::string& k) const { return fields.count(k) != 0; }
};

struct json_reader {
  const std::string& s;
  std::size_t pos = 0;

  void skip() {
    while (pos < s.size() && (s[pos] == ' ' || s[pos] == '\n' || s[pos] == '\r' || s[pos] == '\t'))
      ++pos;
  }
  void expect(char c) {
    skip();
    if (pos >= s.size() || s[pos] != c)
      throw std::runtime_error(std::string("JSON: expected '") + c + "' at " + std::to_string(pos));
    ++pos;
  }
  std::string string() {
    expect('"');
    const std::size_t end = s.find('"', pos);
    if (end == std::string::npos) throw std::runtime_error("JSON: unterminated string");
    std::string out = s.substr(pos, end - pos);
    if (out.find('\\') != std::string::npos) throw std::runtime_error("JSON: escapes unsupported");
    pos = end + 1;
    return out;
  }
  json value() {
    skip();
    json v;
    if (s.at(pos) == '"') {
      v.text = string();
    } else if (s[pos] == '[') {
      ++pos;
      skip();
      if (s.at(pos) == ']') { ++pos; return v; }
      for (;;) {
        v.items.push_back(value());
        skip();
        if (s.at(pos++) == ']') break;
        if (s[pos - 1] != ',') throw std::runtime_error("JSON: expected , or ]");
      }
    } else if (s[pos] == '{') {
      ++pos;
      skip();
      if (s.at(pos) == '}') { ++pos; return v; }
      for (;;) {
        std::string k = string();
        expect(':');
        v.fields[k] = value();
        skip();
        if (s.at(pos++) == '}') break;
        if (s[pos - 1] != ',') throw std::runtime_error("JSON: expected , or }");
      }
    } else {
      throw std::runtime_error("JSON: unsupported value at " + std::to_string(pos));
    }
    return v;
  }
};

json load_vectors() {
  const char* root = std::getenv("BOKBOK_SOURCE_ROOT");
  REQUIRE_MESSAGE(root != nullptr, "BOKBOK_SOURCE_ROOT must name the source tree");
  const std::string path = std::string(root) + "/tests/vectors/noise-nn-nnpsk0.json";
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  json_reader r{text};
  return r.value();
}

std::string unhex(const std::string& h) {
  std::string out(h.size() / 2, '\0');
  REQUIRE(from_hex(h, std::span<unsigned char>(reinterpret_cast<unsigned char*>(out.data()),
                                               out.size())));
  return out;
}

std::string hex(std::string_view s) {
  return to_hex({reinterpret_cast<const unsigned char*>(s.data()), s.size()});
}

std::array<unsigned char, 32> bytes32(const std::string& h) {
  std::array<unsigned char, 32> a{};
  REQUIRE(from_hex(h, a));
  return a;
}

// Runs one vector: the handshake, then transport messages alternating i->r and r->i.
void check_vector(const json& v, noise_pattern pattern) {
  std::unique_ptr<key> psk;
  if (pattern == noise_pattern::nnpsk0) {
    REQUIRE(v.at("init_psks").items.size() == 1);
    REQUIRE(v.at("init_psks").items[0].text == v.at("resp_psks").items[0].text);
    psk = std::make_unique<key>(key::from_bytes(bytes32(v.at("init_psks").items[0].text)));
  }
  handshake_state ini(pattern, noise_role::initiator, unhex(v.at("init_prologue").text), psk.get());
  handshake_state res(pattern, noise_role::responder, unhex(v.at("resp_prologue").text), psk.get());
  const auto ie = bytes32(v.at("init_ephemeral").text);
  const auto re = bytes32(v.at("resp_ephemeral").text);
  ini.use_ephemeral_for_test(ie);
  res.use_ephemeral_for_test(re);

  const auto& msgs = v.at("messages").items;
  REQUIRE(msgs.size() >= 2);
  for (std::size_t i = 0; i < 2; ++i) {
    INFO("handshake message " << i);
    handshake_state& writer = i == 0 ? ini : res;
    handshake_state& reader = i == 0 ? res : ini;
    const std::string payload = unhex(msgs[i].at("payload").text);
    std::string wire;
    REQUIRE_MESSAGE(writer.write_message(payload, wire), writer.error());
    CHECK(hex(wire) == msgs[i].at("ciphertext").text);
    std::string got;
    REQUIRE_MESSAGE(reader.read_message(wire, got), reader.error());
    CHECK(got == payload);
  }
  REQUIRE(ini.finished());
  REQUIRE(res.finished());
  CHECK(to_hex(ini.handshake_hash()) == v.at("handshake_hash").text);
  CHECK(to_hex(res.handshake_hash()) == v.at("handshake_hash").text);

  auto isplit = ini.split();
  auto rsplit = res.split();
  for (std::size_t i = 2; i < msgs.size(); ++i) {
    INFO("transport message " << i);
    const bool from_initiator = i % 2 == 0;
    cipher_state& enc = from_initiator ? isplit.initiator_to_responder : rsplit.responder_to_initiator;
    cipher_state& dec = from_initiator ? rsplit.initiator_to_responder : isplit.responder_to_initiator;
    const std::string payload = unhex(msgs[i].at("payload").text);
    std::string wire, got;
    REQUIRE(enc.encrypt_with_ad({}, payload, wire));
    CHECK(hex(wire) == msgs[i].at("ciphertext").text);
    REQUIRE(dec.decrypt_with_ad({}, wire, got));
    CHECK(got == payload);
  }
}

const json& find_vector(const json& all, const std::string& name) {
  for (const auto& v : all.at("vectors").items)
    if (v.at("protocol_name").text == name) return v;
  throw std::runtime_error("no vector " + name);
}

}  // namespace

TEST_CASE("the vector file names its source and holds NN and NNpsk0") {
  const json all = load_vectors();
  CHECK(all.at("source").text.find("cacophony") != std::string::npos);
  CHECK(all.at("vectors").items.size() == 2);
}

TEST_CASE("the Noise NN vector reproduces exactly") {
  const json all = load_vectors();
  const json& v = find_vector(all, "Noise_NN_25519_ChaChaPoly_SHA256");
  CHECK(v.at("messages").items.size() == 6);
  check_vector(v, noise_pattern::nn);
}

TEST_CASE("the Noise NNpsk0 vector reproduces exactly") {
  const json all = load_vectors();
  const json& v = find_vector(all, "Noise_NNpsk0_25519_ChaChaPoly_SHA256");
  CHECK(v.at("messages").items.size() == 6);
  check_vector(v, noise_pattern::nnpsk0);
}

TEST_CASE("the protocol names are the Noise names of the two patterns") {
  CHECK(protocol_name(noise_pattern::nn) == "Noise_NN_25519_ChaChaPoly_SHA256");
  CHECK(protocol_name(noise_pattern::nnpsk0) == "Noise_NNpsk0_25519_ChaChaPoly_SHA256");
}
