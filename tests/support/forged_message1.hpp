// Test support: a key-mode message 1 (PROTOCOL.md §9.4) written by hand from the Noise
// operations, around any 32 bytes as the initiator's ephemeral public key. An honest
// initiator derives its key from a private one and so cannot send, say, a low-order
// point; these tests and fuzzers need to.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "crypto/noise_handshake.hpp"
#include "crypto/noise_symmetric.hpp"

namespace bokbok_test {

// The message 1 record (u16 length || body) for `prologue` (both preambles), the
// pre-shared key `psk`, ephemeral `e`, timestamp `ts_ms` and `settings`; empty when the
// encryption fails.
inline std::optional<std::string> forged_message1(std::span<const unsigned char, 32> psk,
                                                  std::string_view prologue,
                                                  std::span<const unsigned char, 32> e,
                                                  std::int64_t ts_ms, std::string_view settings) {
  using namespace bokbok::crypto;
  symmetric_state ss(protocol_name(noise_pattern::nnpsk0));
  ss.mix_hash(prologue);
  ss.mix_key_and_hash(psk);
  ss.mix_hash(std::span<const unsigned char>(e));
  ss.mix_key(std::span<const unsigned char>(e));
  std::string payload;
  for (int i = 7; i >= 0; --i)
    payload.push_back(static_cast<char>(static_cast<std::uint64_t>(ts_ms) >> (8 * i)));
  payload += settings;
  std::string body(reinterpret_cast<const char*>(e.data()), e.size());
  if (!ss.encrypt_and_hash(payload, body)) return std::nullopt;
  std::string rec;
  rec.push_back(static_cast<char>(body.size() >> 8));
  rec.push_back(static_cast<char>(body.size() & 0xff));
  return rec + body;
}

}  // namespace bokbok_test
