// The frame trace: a frame as a line (see frame_trace.hpp).
#include "wire/frame_trace.hpp"

#include <cstdint>
#include <cstdio>

#include "base/endian.hpp"
#include "bokbok/error.hpp"
#include "wire/settings.hpp"

namespace bokbok::wire {
namespace {

std::string flags_text(std::uint8_t flags) {
  if (flags == 0) return "-";
  std::string out;
  auto add = [&](std::uint8_t bit, const char* name) {
    if (!(flags & bit)) return;
    if (!out.empty()) out += '|';
    out += name;
  };
  add(flag_more, "more");
  add(flag_continued, "continued");
  add(flag_deadline, "deadline");
  add(flag_stream, "stream");
  add(flag_fds, "fds");
  return out;
}

// The fields of a message's first bytes (a whole message, or the first fragment when
// `partial`): " [COUNT] FIELD...".
std::string fields_text(std::string_view bytes, bool partial) {
  if (bytes.size() < 4) return partial ? " ..." : " (" + std::to_string(bytes.size()) +
                                                       " bytes, no message)";
  const std::uint32_t count = base::load_be32(bytes.data());
  bytes.remove_prefix(4);
  std::string out = " [" + std::to_string(count) + "]";
  for (std::uint32_t i = 0; i < count; ++i) {
    if (i == trace_max_fields) return out + " ...(" + std::to_string(count - i) + " more)";
    if (bytes.size() < 4) return out + (partial ? " ..." : " (truncated)");
    const std::uint32_t len = base::load_be32(bytes.data());
    bytes.remove_prefix(4);
    if (bytes.size() < len) {  // the field goes on past these bytes
      std::string shown = trace_quote(bytes.substr(0, std::min(bytes.size(), trace_field_bytes)));
      return out + " " + shown + "...(" + std::to_string(len) + " bytes)" +
             (partial ? "" : " (truncated)");
    }
    out += " " + trace_quote(bytes.substr(0, len));
    bytes.remove_prefix(len);
  }
  if (!bytes.empty()) out += " (+" + std::to_string(bytes.size()) + " bytes trailing)";
  return out;
}

std::string message_details(const frame_view& f) {
  if (f.flags & flag_continued) return " " + std::to_string(f.payload.size()) + " bytes";
  std::string_view bytes = f.payload;
  std::string out;
  const first_prefix prefix = parse_first_prefix(f.flags, bytes);  // checked by parse_frame
  if (f.flags & flag_deadline) out += " deadline=" + std::to_string(prefix.deadline_ms) + "ms";
  if (f.flags & flag_fds) out += " fds=" + std::to_string(prefix.fd_count);
  bytes.remove_prefix(prefix.size);
  return out + fields_text(bytes, f.flags & flag_more);
}

std::string hello_details(std::string_view payload) {
  settings s;
  std::string error;
  if (!decode_settings(payload, s, error))
    return " (" + std::to_string(payload.size()) + " bytes: " + error + ")";
  char features[16];
  std::snprintf(features, sizeof features, "0x%x", static_cast<unsigned>(s.features));
  return " max_message_size=" + std::to_string(s.max_message_size) +
         " heartbeat_ms=" + std::to_string(s.heartbeat_ms) +
         " max_concurrent_calls=" + std::to_string(s.max_concurrent_calls) +
         " features=" + features;
}

std::string code_details(std::string_view payload) {
  const code_payload c = parse_code_payload(payload);  // parse_frame checked 2 bytes
  return " code=" + std::string(to_string(static_cast<error_code>(c.code))) + "(" +
         std::to_string(c.code) + ") " + trace_quote(c.text, trace_text_bytes);
}

}  // namespace

std::string trace_quote(std::string_view bytes, std::size_t limit) {
  static constexpr char hex[] = "0123456789abcdef";
  const std::size_t shown = std::min(bytes.size(), limit);
  std::string out = "\"";
  for (std::size_t i = 0; i < shown; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c >= 0x20 && c < 0x7f)
          out += static_cast<char>(c);
        else
          out += {'\\', 'x', hex[c >> 4], hex[c & 15]};
    }
  }
  out += '"';
  if (shown < bytes.size()) out += "...(" + std::to_string(bytes.size()) + " bytes)";
  return out;
}

std::string trace_line(trace_direction dir, const frame_view& f) {
  std::string line = dir == trace_direction::sent ? "> " : "< ";
  line += to_string(f.type);
  line += " id=" + std::to_string(f.call_id) + " flags=" + flags_text(f.flags);
  switch (f.type) {
    case frame_type::hello: return line + hello_details(f.payload);
    case frame_type::request:
    case frame_type::response:
    case frame_type::notify:
    case frame_type::stream:
    case frame_type::reply_stream: return line + message_details(f);
    case frame_type::credit:
    case frame_type::reply_credit: {
      const credit_grant g = parse_credit_payload(f.payload);  // 8 bytes: parse_frame
      return line + " messages=" + std::to_string(g.messages) +
             " bytes=" + std::to_string(g.bytes);
    }
    case frame_type::stream_end:
    case frame_type::error:
    case frame_type::goaway: return line + code_details(f.payload);
    case frame_type::ping:
    case frame_type::pong: return line + " " + trace_quote(f.payload);
    case frame_type::cancel:
    case frame_type::close: return line;
  }
  return line;
}

}  // namespace bokbok::wire
