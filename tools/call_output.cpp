// `bokbok call`: printing a response (see call_output.hpp for the formats).
#include "call_output.hpp"

#include <cstdint>

namespace bokbok::tools::call {
namespace {

bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Decodes the UTF-8 sequence at s[i], advancing i past it. Returns false for a malformed,
// overlong, surrogate or out-of-range sequence.
bool decode_one(std::string_view s, std::size_t& i, std::uint32_t& cp) {
  auto c = static_cast<unsigned char>(s[i]);
  std::size_t extra;
  std::uint32_t min;
  if (c < 0x80) {
    cp = c;
    ++i;
    return true;
  } else if ((c & 0xE0) == 0xC0) {
    extra = 1, min = 0x80, cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    extra = 2, min = 0x800, cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    extra = 3, min = 0x10000, cp = c & 0x07;
  } else {
    return false;  // a stray continuation byte, or 0xF8..0xFF
  }
  if (s.size() - i <= extra) return false;
  for (std::size_t k = 1; k <= extra; ++k) {
    auto d = static_cast<unsigned char>(s[i + k]);
    if (!is_continuation(d)) return false;
    cp = (cp << 6) | (d & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
  i += extra + 1;
  return true;
}

bool is_control(std::uint32_t cp) { return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F); }

}  // namespace

bool is_json_text(std::string_view field) {
  std::size_t i = 0;
  while (i < field.size()) {
    std::uint32_t cp;
    if (!decode_one(field, i, cp)) return false;
    if (is_control(cp) && cp != '\n' && cp != '\t' && cp != '\r') return false;
  }
  return true;
}

std::string base64(std::string_view bytes) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    std::uint32_t v = std::uint32_t(static_cast<unsigned char>(bytes[i])) << 16 |
                      std::uint32_t(static_cast<unsigned char>(bytes[i + 1])) << 8 |
                      static_cast<unsigned char>(bytes[i + 2]);
    out += alphabet[v >> 18];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  if (std::size_t rest = bytes.size() - i; rest > 0) {
    std::uint32_t v = std::uint32_t(static_cast<unsigned char>(bytes[i])) << 16;
    if (rest == 2) v |= std::uint32_t(static_cast<unsigned char>(bytes[i + 1])) << 8;
    out += alphabet[v >> 18];
    out += alphabet[(v >> 12) & 63];
    out += rest == 2 ? alphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string json_string(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default: out += c;
    }
  }
  out += '"';
  return out;
}

std::string format_lines(const message& response) {
  std::string out;
  for (const std::string& field : response) {
    out += field;
    out += '\n';
  }
  return out;
}

namespace {

// A field as a JSON value: a string when it is text, else {"base64": "..."}.
std::string json_field(std::string_view field) {
  if (is_json_text(field)) return json_string(field);
  return "{\"base64\": \"" + base64(field) + "\"}";
}

std::string json_array(const message& fields) {
  std::string out = "[";
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) out += ", ";
    out += json_field(fields[i]);
  }
  return out + "]";
}

}  // namespace

std::string format_json(const message& response) { return json_array(response) + "\n"; }

std::string escape_text(std::string_view bytes) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    if (c == '\\')
      out += "\\\\";
    else if (c < 0x20 || c == 0x7f)
      out += {'\\', 'x', hex[c >> 4], hex[c & 15]};
    else
      out += static_cast<char>(c);
  }
  return out;
}

std::string format_notification_line(const message& notification) {
  std::string out;
  for (std::size_t i = 0; i < notification.size(); ++i) {
    if (i > 0) out += ' ';
    out += escape_text(notification[i]);
  }
  return out + "\n";
}

std::string format_json_notification(const message& notification) {
  return "{\"notification\": " + json_array(notification) + "}\n";
}

std::string format_json_local_error(std::string_view name, std::string_view text) {
  return "{\"error\": {\"code\": null, \"name\": " + json_field(name) +
         ", \"message\": " + json_field(text) + "}}\n";
}

std::string format_json_error(unsigned code, std::string_view name, std::string_view text) {
  return "{\"error\": {\"code\": " + std::to_string(code) + ", \"name\": " +
         json_field(name) + ", \"message\": " + json_field(text) + "}}\n";
}

}  // namespace bokbok::tools::call
