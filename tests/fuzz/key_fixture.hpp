// What both key-mode fuzz targets share: a fixed clock, the two preambles (user
// "alice") and alice's pre-shared key.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "crypto/secret.hpp"

namespace key_fixture {

inline constexpr std::int64_t now_ms = 1'700'000'000'000;
inline const std::string client_pre("BOKBOK\x01\x01\x05" "alice", 14);
inline const std::string server_pre("BOKBOK\x01\x01\x00", 9);

inline const bokbok::crypto::key& psk() {
  static const bokbok::crypto::key k = [] {
    std::array<unsigned char, bokbok::crypto::key::size> b;
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<unsigned char>(0x20 + i);
    return bokbok::crypto::key::from_bytes(b);
  }();
  return k;
}

}  // namespace key_fixture
