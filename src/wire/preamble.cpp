// The preamble codec (PROTOCOL.md §2).
#include "wire/preamble.hpp"

#include <algorithm>
#include <stdexcept>

namespace bokbok::wire {
namespace {

constexpr std::size_t fixed_size = 9;  // magic, version, mode, user length
constexpr std::size_t version_offset = 6;
constexpr std::size_t mode_offset = 7;
constexpr std::size_t user_len_offset = 8;
// How many bytes of stray output a magic mismatch quotes at most.
constexpr std::size_t stray_quote_limit = 64;

}  // namespace

std::string encode_preamble(const preamble& p) {
  if (p.user.size() > max_user_name)
    throw std::length_error("bokbok preamble: user name longer than 255 bytes");
  std::string out(preamble_magic);
  out.push_back(static_cast<char>(p.version));
  out.push_back(static_cast<char>(p.mode));
  out.push_back(static_cast<char>(p.user.size()));
  out += p.user;
  return out;
}

preamble_reader::status preamble_reader::feed(std::string_view& in) {
  while (state_ == status::need_more && !in.empty()) {
    const std::size_t at = seen_.size();
    const auto byte = static_cast<unsigned char>(in.front());
    if (at < preamble_magic.size()) {
      if (byte != static_cast<unsigned char>(preamble_magic[at])) {
        // Not a bokbok peer: quote everything it sent so far, this call's bytes included,
        // so a banner printed on a child's stdout is shown in full.
        const std::size_t take = std::min(in.size(), stray_quote_limit - seen_.size());
        const bool cut = in.size() > take;
        seen_.append(in.substr(0, take));
        in.remove_prefix(take);
        error_ = "expected the bokbok preamble but got \"" +
                 escape_bytes(seen_, stray_quote_limit) + (cut ? "..." : "") + "\"";
        state_ = status::error;
        break;
      }
    } else if (at == version_offset) {
      if (byte != protocol_version) {
        error_ = "unsupported protocol version " + std::to_string(byte) +
                 " (this side speaks " + std::to_string(protocol_version) + ")";
        state_ = status::error;
      }
      value_.version = byte;
    } else if (at == mode_offset) {
      if (byte > static_cast<std::uint8_t>(mode::key)) {
        error_ = "unknown preamble mode " + std::to_string(byte) +
                 " (0 is plain, 1 is key)";
        state_ = status::error;
      }
      value_.mode = static_cast<wire::mode>(byte);
    } else if (at == user_len_offset) {
      if (value_.mode == mode::plain && byte != 0) {
        error_ = "plain-mode preamble carries a user name of " + std::to_string(byte) +
                 " bytes (plain mode has none)";
        state_ = status::error;
      }
    } else {
      value_.user.push_back(static_cast<char>(byte));
    }
    seen_.push_back(static_cast<char>(byte));
    in.remove_prefix(1);
    if (state_ == status::need_more && seen_.size() >= fixed_size &&
        seen_.size() == fixed_size + static_cast<unsigned char>(seen_[user_len_offset]))
      state_ = status::done;
  }
  return state_;
}

std::string mode_mismatch(mode ours, const preamble& peer) {
  if (peer.mode == ours) return {};
  if (peer.mode == mode::key)
    return "the peer requires key mode (authentication and encryption), this side is in "
           "plain mode: configure a key to talk to it";
  return "the peer offers plain mode, this side requires key mode";
}

std::string escape_bytes(std::string_view bytes, std::size_t limit) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  const std::size_t n = std::min(bytes.size(), limit);
  out.reserve(n + 8);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      default:
        if (c >= 0x20 && c < 0x7f) {
          out.push_back(static_cast<char>(c));
        } else {
          out += "\\x";
          out.push_back(hex[c >> 4]);
          out.push_back(hex[c & 15]);
        }
    }
  }
  if (bytes.size() > n) out += "...";
  return out;
}

}  // namespace bokbok::wire
