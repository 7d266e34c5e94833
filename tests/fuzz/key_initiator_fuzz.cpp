// libFuzzer target: the key-mode initiator reading message 2 (src/crypto/key_handshake,
// PROTOCOL.md §9.5). Arbitrary bytes must never crash it.
//
// Input: byte 0 picks the mode (mod 2) and, in its high bits, a chunk size for feeding.
//   mode 0: the rest is the stream the initiator reads after sending message 1;
//   mode 1: a real message 2 from a responder holding the right key: bytes 1-32 its
//           ephemeral private key, 33-34 the index of a byte to flip (beyond the end:
//           none), from 35 on its settings.
// The initiator's ephemeral key and clock are fixed. Properties: fed whole or in chunks,
// the same status, bytes left over and settings; done only for an unaltered real message
// 2, with the responder's settings intact and a cipher pair that talks to the responder's.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "crypto/key_handshake.hpp"
#include "fuzz_check.hpp"
#include "key_fixture.hpp"

using namespace bokbok::crypto;
using namespace key_fixture;

namespace {

std::array<unsigned char, 32> client_ephemeral() {
  std::array<unsigned char, 32> e;
  for (std::size_t i = 0; i < e.size(); ++i) e[i] = static_cast<unsigned char>(0x89 + 3 * i);
  return e;
}

key_initiator make_initiator(std::string& m1) {
  key_initiator ini(psk(), client_pre, server_pre, "client settings", [] { return now_ms; });
  ini.use_ephemeral_for_test(client_ephemeral());
  FUZZ_CHECK(ini.start(m1) == handshake_status::need_more);
  return ini;
}

struct outcome {
  handshake_status status;
  std::string error, settings;
  std::size_t left;
  std::optional<record_cipher_pair> ciphers;
};

outcome initiate(std::string_view stream, std::size_t chunk) {
  std::string m1;
  key_initiator ini = make_initiator(m1);
  outcome o{handshake_status::need_more, {}, {}, 0, std::nullopt};
  std::size_t at = 0;
  while (at < stream.size() && o.status == handshake_status::need_more) {
    std::string_view in = stream.substr(at, chunk);
    const std::size_t offered = in.size();
    o.status = ini.feed(in);
    at += offered - in.size();
    if (o.status == handshake_status::need_more) FUZZ_CHECK(in.empty());
  }
  o.left = stream.size() - at;
  if (o.status == handshake_status::need_more) {
    FUZZ_CHECK(ini.end_of_stream() == handshake_status::error);
    FUZZ_CHECK(!ini.error().empty());
  }
  o.error = ini.error();
  if (o.status == handshake_status::done) {
    o.settings = ini.peer_settings();
    o.ciphers = ini.take_ciphers();
  }
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const int mode = data[0] % 2;
  const std::size_t chunk = (data[0] >> 1) + 1;
  std::string stream;
  std::string settings;
  bool flipped = false;
  std::optional<record_cipher_pair> server_ciphers;
  if (mode == 0) {
    stream.assign(reinterpret_cast<const char*>(data + 1), size - 1);
  } else {
    if (size < 35) return 0;
    settings.assign(reinterpret_cast<const char*>(data + 35), size - 35);
    if (settings.size() > max_handshake_settings) return 0;
    std::array<unsigned char, 32> e;
    std::memcpy(e.data(), data + 1, 32);
    std::string m1;
    make_initiator(m1);
    replay_cache cache;
    key_responder res(psk().clone(), client_pre, server_pre, settings, cache,
                      {std::chrono::seconds(120), [] { return now_ms; }, "alice"});
    res.use_ephemeral_for_test(e);
    std::string_view in = m1;
    FUZZ_CHECK(res.feed(in, stream) == handshake_status::done);
    server_ciphers = res.take_ciphers();
    const std::size_t flip = (std::size_t{data[33]} << 8) | data[34];
    if (flip < stream.size()) {
      stream[flip] = static_cast<char>(stream[flip] ^ 0x01);
      flipped = true;
    }
  }
  outcome whole = initiate(stream, stream.size() + 1);
  const outcome parts = initiate(stream, chunk);
  FUZZ_CHECK(whole.status == parts.status);
  FUZZ_CHECK(whole.left == parts.left);
  FUZZ_CHECK(whole.settings == parts.settings);
  if (whole.status == handshake_status::error) FUZZ_CHECK(!whole.error.empty());
  if (mode == 1) {
    FUZZ_CHECK((whole.status == handshake_status::done) == !flipped);
    if (!flipped) {
      FUZZ_CHECK(whole.settings == settings);
      std::string rec, plain;
      FUZZ_CHECK(whole.ciphers->send.seal("ping", rec));
      FUZZ_CHECK(server_ciphers->receive.open(std::string_view(rec).substr(2), plain));
      FUZZ_CHECK(plain == "ping");
    }
  } else {
    // Without the key (which only mode 1 uses to answer) nothing can authenticate.
    FUZZ_CHECK(whole.status != handshake_status::done);
  }
  return 0;
}
