// Settings carried by the hello frame (PROTOCOL.md §6), and how two sides' settings
// combine. Pure code over bytes, no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace bokbok::wire {

// Wire ids of the settings (u16). Unknown ids are ignored by receivers.
enum class setting_id : std::uint16_t {
  max_message_size = 1,    // bytes; the largest message this side accepts
  heartbeat_ms = 2,        // 0 = this side sends no pings
  max_concurrent_calls = 3,  // calls this side will run at once for the peer; 0 = no limit
  features = 4,            // bit set of feature_* below
  hello_nonce = 5,         // random, nonzero; sent only when set: tells a reflected hello
};

// Feature bits (PROTOCOL.md §6.2): in use only when both sides set them.
inline constexpr std::uint32_t feature_deadline = 0x1;  // requests may carry flag_deadline
inline constexpr std::uint32_t feature_notify = 0x2;    // notify frames may be sent
// Stream calls (flag_stream, stream/reply_stream/stream_end/credit/reply_credit frames,
// PROTOCOL.md §12).
inline constexpr std::uint32_t feature_stream = 0x4;
// File descriptors beside messages (flag_fds, PROTOCOL.md §13); set only by a side whose
// transport can carry them (a UNIX socket).
inline constexpr std::uint32_t feature_fds = 0x8;
inline constexpr std::uint32_t features_supported = feature_deadline | feature_notify | feature_stream;

inline constexpr std::uint32_t min_max_message_size = 65536;

struct settings {
  std::uint32_t max_message_size = 64u << 20;
  std::uint32_t heartbeat_ms = 0;
  std::uint32_t max_concurrent_calls = 0;
  std::uint32_t features = 0;
  std::uint32_t hello_nonce = 0;  // 0: absent (not sent)
  bool operator==(const settings&) const = default;
};

// Encodes as a list of `u16 id || u32 value` entries, the first four ids in order, then
// hello_nonce when it is nonzero.
std::string encode_settings(const settings& s);

// Decodes a hello payload: a whole number of 6-byte entries, unknown ids skipped, a
// repeated id is an error, a max_message_size below min_max_message_size is an error.
// Missing ids keep the defaults above.
bool decode_settings(std::string_view payload, settings& out, std::string& error);

// The maximum message size both sides use once both hellos are known: the smaller wins.
std::uint32_t negotiate_max_message_size(const settings& mine, const settings& peer);

}  // namespace bokbok::wire
