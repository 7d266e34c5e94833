// Hello settings (PROTOCOL.md §6).
#include "wire/settings.hpp"

#include "base/endian.hpp"

#include <algorithm>
#include <bitset>
#include <memory>

namespace bokbok::wire {
namespace {

constexpr std::size_t entry_size = 6;  // u16 id, u32 value

void put_entry(std::string& out, setting_id id, std::uint32_t v) {
  base::append_be16(out, static_cast<std::uint16_t>(id));
  base::append_be32(out, v);
}

const char* setting_name(std::uint16_t id) {
  switch (static_cast<setting_id>(id)) {
    case setting_id::max_message_size: return "max_message_size";
    case setting_id::heartbeat_ms: return "heartbeat_ms";
    case setting_id::max_concurrent_calls: return "max_concurrent_calls";
    case setting_id::features: return "features";
    case setting_id::hello_nonce: return "hello_nonce";
  }
  return "unknown";
}

}  // namespace

std::string encode_settings(const settings& s) {
  std::string out;
  out.reserve(5 * entry_size);
  put_entry(out, setting_id::max_message_size, s.max_message_size);
  put_entry(out, setting_id::heartbeat_ms, s.heartbeat_ms);
  put_entry(out, setting_id::max_concurrent_calls, s.max_concurrent_calls);
  put_entry(out, setting_id::features, s.features);
  if (s.hello_nonce) put_entry(out, setting_id::hello_nonce, s.hello_nonce);
  return out;
}

bool decode_settings(std::string_view payload, settings& out, std::string& error) {
  out = settings{};
  if (payload.size() % entry_size != 0) {
    error = "hello payload of " + std::to_string(payload.size()) +
            (payload.size() == 1 ? " byte" : " bytes") +
            " is not a whole number of 6-byte settings";
    return false;
  }
  auto seen = std::make_unique<std::bitset<65536>>();
  for (std::size_t at = 0; at < payload.size(); at += entry_size) {
    const auto* p = reinterpret_cast<const unsigned char*>(payload.data() + at);
    const std::uint16_t id = base::load_be16(p);
    const std::uint32_t v = base::load_be32(p + 2);
    if (seen->test(id)) {
      error = "setting " + std::to_string(id) + " (" + setting_name(id) + ") appears twice";
      return false;
    }
    seen->set(id);
    switch (static_cast<setting_id>(id)) {
      case setting_id::max_message_size: out.max_message_size = v; break;
      case setting_id::heartbeat_ms: out.heartbeat_ms = v; break;
      case setting_id::max_concurrent_calls: out.max_concurrent_calls = v; break;
      case setting_id::features: out.features = v; break;
      case setting_id::hello_nonce: out.hello_nonce = v; break;
      default: break;  // unknown ids are skipped
    }
  }
  if (out.max_message_size < min_max_message_size) {
    error = "max_message_size " + std::to_string(out.max_message_size) +
            " is below the minimum of " + std::to_string(min_max_message_size);
    return false;
  }
  return true;
}

std::uint32_t negotiate_max_message_size(const settings& mine, const settings& peer) {
  return std::min(mine.max_message_size, peer.max_message_size);
}

}  // namespace bokbok::wire
