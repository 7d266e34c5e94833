// Message bytes (PROTOCOL.md §5).
#include "wire/message_codec.hpp"

#include "base/endian.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>

namespace bokbok::wire {
namespace {

constexpr std::size_t u32_size = 4;

void put_u32(std::string& out, std::size_t v) {
  if (v > std::numeric_limits<std::uint32_t>::max())
    throw std::length_error("bokbok message: field count or length exceeds 2^32-1");
  base::append_be32(out, static_cast<std::uint32_t>(v));
}

std::string bytes_text(std::size_t n) {
  return std::to_string(n) + (n == 1 ? " byte" : " bytes");
}

std::string field_of(std::size_t i, std::size_t count) {
  return "field " + std::to_string(i + 1) + " of " + std::to_string(count);
}

}  // namespace

std::size_t encoded_size(const message& m) {
  std::size_t n = u32_size;
  for (const std::string& f : m) n += u32_size + f.size();
  return n;
}

void encode_message(const message& m, std::string& out) {
  out.reserve(out.size() + encoded_size(m));
  put_u32(out, m.size());
  for (const std::string& f : m) {
    put_u32(out, f.size());
    out.append(f);
  }
}

bool decode_message(std::string_view bytes, message& out, std::string& error) {
  out.clear();
  if (bytes.size() < u32_size) {
    error = "message of " + bytes_text(bytes.size()) +
            " is shorter than its 4-byte field count";
    return false;
  }
  const std::uint32_t count = base::load_be32(bytes);
  bytes.remove_prefix(u32_size);
  // Every field takes at least its 4-byte length, so this bounds the allocation below.
  if (count > bytes.size() / u32_size) {
    error = "field count " + std::to_string(count) + " exceeds the message size (" +
            bytes_text(bytes.size()) + " after the count)";
    return false;
  }
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    if (bytes.size() < u32_size) {
      error = "truncated length of " + field_of(i, count);
      out.clear();
      return false;
    }
    const std::uint32_t len = base::load_be32(bytes);
    bytes.remove_prefix(u32_size);
    if (len > bytes.size()) {
      error = "truncated " + field_of(i, count) + ": length " + std::to_string(len) +
              " but " + bytes_text(bytes.size()) + " left";
      out.clear();
      return false;
    }
    out.emplace_back(bytes.substr(0, len));
    bytes.remove_prefix(len);
  }
  if (!bytes.empty()) {
    error = bytes_text(bytes.size()) + " trailing after the last field";
    out.clear();
    return false;
  }
  return true;
}

std::size_t decoded_cost(std::string_view bytes) noexcept {
  if (bytes.size() < u32_size) return bytes.size();
  // A count the bytes cannot hold fails decoding; it costs no more than they can hold.
  std::size_t count =
      std::min<std::size_t>(base::load_be32(bytes), (bytes.size() - u32_size) / u32_size);
  return bytes.size() + count * decoded_field_overhead;
}

}  // namespace bokbok::wire
