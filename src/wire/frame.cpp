// Records and frames (PROTOCOL.md §3-§4).
#include "wire/frame.hpp"

#include "base/endian.hpp"

#include <algorithm>
#include <stdexcept>

namespace bokbok::wire {
namespace {

bool known_type(std::uint8_t t) {
  return t >= static_cast<std::uint8_t>(frame_type::hello) &&
         t <= static_cast<std::uint8_t>(frame_type::reply_credit);
}

bool id_must_be_zero(frame_type t) {
  return t == frame_type::hello || t == frame_type::ping || t == frame_type::pong ||
         t == frame_type::close;
}

std::string hex_byte(std::uint8_t b) {
  static constexpr char hex[] = "0123456789abcdef";
  return {'0', 'x', hex[b >> 4], hex[b & 15]};
}

// "a request", "an error".
std::string a_type(frame_type t) {
  return (t == frame_type::error ? "an " : "a ") + std::string(to_string(t));
}

std::string bytes_text(std::size_t n) {
  return std::to_string(n) + (n == 1 ? " byte" : " bytes");
}

// The text of an error or goaway payload, cut to fit one frame after its 2-byte code.
// Backs up over continuation bytes (10xxxxxx) so that no UTF-8 character is split.
std::string_view fit_code_text(std::string_view text) {
  constexpr std::size_t max_text = max_frame_payload - 2;
  if (text.size() <= max_text) return text;
  std::size_t cut = max_text;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80) --cut;
  return text.substr(0, cut);
}

// The rules on payload size by type; empty when they hold.
std::string check_payload(frame_type t, std::size_t n) {
  const std::string name = to_string(t);
  if (n > max_frame_payload)
    return name + " frame payload of " + bytes_text(n) + " exceeds the frame limit of " +
           std::to_string(max_frame_payload);
  switch (t) {
    case frame_type::ping:
    case frame_type::pong:
      if (n > max_ping_payload)
        return name + " payload of " + bytes_text(n) + " (at most 8)";
      break;
    case frame_type::error:
    case frame_type::goaway:
      if (n < 2)
        return name + " frame payload of " + bytes_text(n) +
               " is shorter than its 2-byte code";
      break;
    case frame_type::cancel:
    case frame_type::close:
    case frame_type::stream_end:
      if (n != 0)
        return name + " frame with a " + std::to_string(n) + "-byte payload (must be empty)";
      break;
    case frame_type::credit:
    case frame_type::reply_credit:
      if (n != credit_payload_size)
        return name + " frame payload of " + bytes_text(n) + " (must be 8)";
      break;
    default:
      break;
  }
  return {};
}

}  // namespace

bool carries_message(frame_type t) noexcept {
  return t == frame_type::request || t == frame_type::response || t == frame_type::notify ||
         t == frame_type::stream || t == frame_type::reply_stream;
}

first_prefix parse_first_prefix(std::uint8_t flags, std::string_view payload) {
  first_prefix p;
  if (flags & flag_continued) return p;
  if (flags & flag_deadline) {
    p.deadline_ms = base::load_be32(payload);
    p.size = deadline_prefix_size;
  }
  if (flags & flag_fds) {
    p.fd_count = static_cast<std::uint8_t>(payload[p.size]);
    p.size += fds_prefix_size;
  }
  return p;
}

std::string encode_credit_payload(credit_grant g) {
  std::string out;
  out.reserve(credit_payload_size);
  base::append_be32(out, g.messages);
  base::append_be32(out, g.bytes);
  return out;
}

credit_grant parse_credit_payload(std::string_view payload) {
  return {base::load_be32(payload), base::load_be32(payload.substr(4))};
}

frame_header_bytes encode_frame_header(frame_type type, std::uint8_t flags,
                                       std::uint32_t call_id, std::size_t payload_size) {
  if (payload_size > max_frame_payload)
    throw std::length_error("bokbok frame payload larger than max_frame_payload");
  frame_header_bytes h;
  base::store_be16(h.bytes, static_cast<std::uint16_t>(frame_header_size + payload_size));
  h.bytes[2] = static_cast<unsigned char>(type);
  h.bytes[3] = flags;
  base::store_be32(h.bytes + 4, call_id);
  return h;
}

void append_frame(std::string& out, frame_type type, std::uint8_t flags,
                  std::uint32_t call_id, std::string_view payload) {
  const frame_header_bytes h = encode_frame_header(type, flags, call_id, payload.size());
  out.append(reinterpret_cast<const char*>(h.bytes), sizeof h.bytes);
  out.append(payload);
}

std::uint8_t fragment_flags(std::size_t offset, std::size_t total) {
  std::uint8_t flags = 0;
  if (offset != 0) flags |= flag_continued;
  if (total - offset > max_frame_payload) flags |= flag_more;
  return flags;
}

fragment message_fragment(frame_type type, std::uint32_t call_id, std::size_t offset,
                          std::size_t total, std::uint8_t first_flags) {
  const std::size_t n = std::min(total - offset, max_frame_payload);
  std::uint8_t flags = fragment_flags(offset, total);
  if (offset == 0) flags |= first_flags;
  return {encode_frame_header(type, flags, call_id, n), n};
}

void append_message_frames(std::string& out, frame_type type, std::uint32_t call_id,
                           std::string_view message_bytes, std::uint8_t first_flags) {
  const std::size_t total = message_bytes.size();
  std::size_t offset = 0;
  do {
    const fragment f = message_fragment(type, call_id, offset, total, first_flags);
    out.append(reinterpret_cast<const char*>(f.header.bytes), sizeof f.header.bytes);
    out.append(message_bytes.substr(offset, f.size));
    offset += f.size;
  } while (offset < total);
}

std::uint32_t get_deadline_prefix(std::string_view payload) { return base::load_be32(payload); }

void put_deadline_prefix(std::string& out, std::uint32_t ms) {
  base::append_be32(out, ms);
}

std::string encode_code_payload(std::uint16_t code, std::string_view text) {
  text = fit_code_text(text);
  std::string out;
  out.reserve(2 + text.size());
  base::append_be16(out, code);
  out.append(text);
  return out;
}

void append_code_frame(std::string& out, frame_type type, std::uint32_t call_id,
                       std::uint16_t code, std::string_view text) {
  text = fit_code_text(text);
  const frame_header_bytes h = encode_frame_header(type, 0, call_id, 2 + text.size());
  out.reserve(out.size() + sizeof h.bytes + 2 + text.size());
  out.append(reinterpret_cast<const char*>(h.bytes), sizeof h.bytes);
  base::append_be16(out, code);
  out.append(text);
}

code_payload parse_code_payload(std::string_view payload) {
  if (payload.size() < 2)
    throw std::invalid_argument("bokbok code payload shorter than 2 bytes");
  return {base::load_be16(payload), payload.substr(2)};
}

bool parse_frame(std::string_view body, frame_view& out, std::string& error) {
  if (body.size() < frame_header_size) {
    error = "frame of " + bytes_text(body.size()) + " is shorter than its 6-byte header";
    return false;
  }
  const auto raw_type = static_cast<std::uint8_t>(body[0]);
  if (!known_type(raw_type)) {
    error = "unknown frame type " + std::to_string(raw_type);
    return false;
  }
  const auto type = static_cast<frame_type>(raw_type);
  const auto flags = static_cast<std::uint8_t>(body[1]);
  const std::uint32_t id = base::load_be32(body.substr(2));
  const std::string_view payload = body.substr(frame_header_size);
  if (flags & ~known_flags) {
    error = "unknown flags " + hex_byte(flags) + " on " + a_type(type) + " frame";
    return false;
  }
  const bool first = (flags & flag_continued) == 0;
  if ((flags & flag_deadline) && (type != frame_type::request || !first)) {
    error = "flag 0x04 (deadline) not allowed on " +
            (type == frame_type::request ? std::string("a continued request fragment")
                                         : a_type(type) + " frame");
    return false;
  }
  if ((flags & flag_stream) && (type != frame_type::request || !first)) {
    error = "flag 0x08 (stream) not allowed on " +
            (type == frame_type::request ? std::string("a continued request fragment")
                                         : a_type(type) + " frame");
    return false;
  }
  if ((flags & flag_fds) && (!carries_message(type) || !first)) {
    error = "flag 0x10 (fds) not allowed on " +
            (carries_message(type) ? "a continued " + std::string(to_string(type)) + " fragment"
                                   : a_type(type) + " frame");
    return false;
  }
  if ((flags & flag_deadline) && payload.size() < deadline_prefix_size) {
    error = "request with a deadline has a payload of " + bytes_text(payload.size()) +
            ", shorter than its 4-byte deadline";
    return false;
  }
  if (flags & flag_fds) {
    const std::size_t at = (flags & flag_deadline) ? deadline_prefix_size : 0;
    if (payload.size() < at + fds_prefix_size) {
      error = std::string(to_string(type)) + " with fds has a payload of " +
              bytes_text(payload.size()) + ", shorter than its " +
              (at ? "deadline and " : "") + "fd count";
      return false;
    }
    const auto n = static_cast<std::uint8_t>(payload[at]);
    if (n == 0 || n > max_fds_per_message) {
      error = std::string(to_string(type)) + " declares " + std::to_string(n) +
              " file descriptors (1 to 253)";
      return false;
    }
  }
  if (flags != 0 && !carries_message(type)) {
    error = "flags " + hex_byte(flags) + " not allowed on " + a_type(type) + " frame";
    return false;
  }
  if (id_must_be_zero(type) && id != 0) {
    error = std::string(to_string(type)) + " frame with call id " + std::to_string(id) +
            " (must be 0)";
    return false;
  }
  if (!id_must_be_zero(type) && type != frame_type::goaway && id == 0) {
    error = std::string(to_string(type)) + " frame with call id 0 (must be nonzero)";
    return false;
  }
  if (std::string e = check_payload(type, payload.size()); !e.empty()) {
    error = std::move(e);
    return false;
  }
  out = {type, flags, id, payload};
  return true;
}

void record_reader::feed(std::string_view bytes) {
  if (!error_.empty() || bytes.empty()) return;
  if (pos_ != 0) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(bytes);
}

record_reader::status record_reader::next(std::string_view& input, std::string_view& body) {
  if (!error_.empty()) return status::error;
  if (pos_ == buf_.size() && pos_ != 0) {  // the last record returned from buf_ is done
    buf_.clear();
    pos_ = 0;
    // Give back the room a burst of kept input left behind; one record's worth stays
    // for the next record cut by a read's end.
    if (buf_.capacity() > 4 * (record_header_size + max_record_body)) buf_.shrink_to_fit();
  }
  if (buf_.size() == pos_) {  // nothing held: straight from the caller's bytes
    if (input.size() >= record_header_size) {
      const std::uint16_t len = base::load_be16(input);
      if (len == 0) {
        error_ = "record length 0 (a record holds 1 to 65535 bytes)";
        return status::error;
      }
      if (input.size() >= record_header_size + len) {
        body = input.substr(record_header_size, len);
        input.remove_prefix(record_header_size + len);
        return status::record;
      }
    }
    buf_.assign(input);  // a record's beginning: at most one record
    pos_ = 0;
    input = {};
    return status::need_more;
  }
  // Bytes held: complete the record they begin with what `input` brings.
  std::size_t held = buf_.size() - pos_;
  if (held < record_header_size) {
    std::size_t take = std::min(record_header_size - held, input.size());
    buf_.append(input.substr(0, take));
    input.remove_prefix(take);
    held += take;
    if (held < record_header_size) return status::need_more;
  }
  const std::uint16_t len = base::load_be16(std::string_view(buf_).substr(pos_));
  if (len == 0) {
    error_ = "record length 0 (a record holds 1 to 65535 bytes)";
    return status::error;
  }
  const std::size_t whole = record_header_size + len;
  if (held < whole) {
    std::size_t take = std::min(whole - held, input.size());
    buf_.append(input.substr(0, take));
    input.remove_prefix(take);
    held += take;
    if (held < whole) return status::need_more;
  }
  body = std::string_view(buf_).substr(pos_ + record_header_size, len);
  pos_ += whole;
  return status::record;
}

const char* to_string(frame_type t) noexcept {
  switch (t) {
    case frame_type::hello: return "hello";
    case frame_type::request: return "request";
    case frame_type::response: return "response";
    case frame_type::error: return "error";
    case frame_type::cancel: return "cancel";
    case frame_type::ping: return "ping";
    case frame_type::pong: return "pong";
    case frame_type::goaway: return "goaway";
    case frame_type::close: return "close";
    case frame_type::notify: return "notify";
    case frame_type::stream: return "stream";
    case frame_type::reply_stream: return "reply_stream";
    case frame_type::stream_end: return "stream_end";
    case frame_type::credit: return "credit";
    case frame_type::reply_credit: return "reply_credit";
  }
  return "unknown";
}

}  // namespace bokbok::wire
