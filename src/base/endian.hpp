// Byte order on the wire: the one place that writes and reads fixed-size integers as
// bytes. Every bokbok integer is big-endian (PROTOCOL.md §1), except the ChaCha20-Poly1305
// nonce counter, which that cipher defines as little-endian (§9.6).
//
// Header-only, no dependencies: every layer may include it (src/base/ is below io).
// Loads read exactly N bytes from `p`, which the caller has checked are there.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace bokbok::base {

inline void store_be16(unsigned char* p, std::uint16_t v) noexcept {
  p[0] = static_cast<unsigned char>(v >> 8);
  p[1] = static_cast<unsigned char>(v);
}

inline void store_be32(unsigned char* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * (3 - i)));
}

inline void store_be64(unsigned char* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * (7 - i)));
}

inline void store_le64(unsigned char* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

inline std::uint16_t load_be16(const unsigned char* p) noexcept {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

inline std::uint32_t load_be32(const unsigned char* p) noexcept {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

inline std::uint64_t load_be64(const unsigned char* p) noexcept {
  return (std::uint64_t{load_be32(p)} << 32) | load_be32(p + 4);
}

// The same over text buffers, as the codecs hold bytes in std::string.
inline std::uint16_t load_be16(std::string_view s) noexcept {
  return load_be16(reinterpret_cast<const unsigned char*>(s.data()));
}
inline std::uint32_t load_be32(std::string_view s) noexcept {
  return load_be32(reinterpret_cast<const unsigned char*>(s.data()));
}
inline std::uint64_t load_be64(std::string_view s) noexcept {
  return load_be64(reinterpret_cast<const unsigned char*>(s.data()));
}

inline void append_be16(std::string& out, std::uint16_t v) {
  unsigned char b[2];
  store_be16(b, v);
  out.append(reinterpret_cast<const char*>(b), sizeof b);
}
inline void append_be32(std::string& out, std::uint32_t v) {
  unsigned char b[4];
  store_be32(b, v);
  out.append(reinterpret_cast<const char*>(b), sizeof b);
}
inline void append_be64(std::string& out, std::uint64_t v) {
  unsigned char b[8];
  store_be64(b, v);
  out.append(reinterpret_cast<const char*>(b), sizeof b);
}

}  // namespace bokbok::base
