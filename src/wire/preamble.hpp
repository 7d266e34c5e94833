// The preamble each side sends first (PROTOCOL.md §2): magic, version, mode, user name.
// Pure code over bytes, no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace bokbok::wire {

inline constexpr std::string_view preamble_magic = "BOKBOK";  // 6 bytes
inline constexpr std::uint8_t protocol_version = 1;
inline constexpr std::size_t max_user_name = 255;

enum class mode : std::uint8_t { plain = 0, key = 1 };

struct preamble {
  std::uint8_t version = protocol_version;
  wire::mode mode = mode::plain;
  std::string user;  // empty in plain mode; at most max_user_name bytes
  bool operator==(const preamble&) const = default;
};

// The encoded preamble bytes.
std::string encode_preamble(const preamble& p);

// Incremental decoder: feed bytes until it reports done or an error. It consumes only
// the preamble's own bytes, so what follows stays in the caller's buffer.
class preamble_reader {
 public:
  enum class status { need_more, done, error };

  // Consumes bytes from the front of `in` (advancing it) up to the end of the preamble.
  // After `error` or `done`, further calls return the same status and consume nothing.
  status feed(std::string_view& in);

  const preamble& value() const { return value_; }  // valid after done
  // After error: a one-line explanation that quotes the offending bytes, escaped, e.g.
  // "expected the bokbok preamble but got \"Welcome to\\n\"" or "unsupported protocol
  // version 7 (this side speaks 1)".
  const std::string& error() const { return error_; }

  // The bytes taken so far: for a message when the stream ends or times out before
  // done ("peer closed after sending \"BOK\"").
  const std::string& received() const { return seen_; }

 private:
  status state_ = status::need_more;
  std::string seen_;  // bytes consumed so far (at most 9 + max_user_name, or 64 on error)
  preamble value_;
  std::string error_;
};

// Compares the peer's mode with this side's (PROTOCOL.md §9): empty when they match, else
// the one-line explanation §9 gives: "the peer requires key mode (authentication and
// encryption), this side is in plain mode: configure a key to talk to it", or "the peer
// offers plain mode, this side requires key mode". The RPC layer reports exactly this text.
std::string mode_mismatch(mode ours, const preamble& peer);

// Renders bytes for an error message: printable ASCII as is, \n \r \t \\ \" escaped,
// other bytes as \xHH; at most `limit` input bytes, with "..." when cut.
std::string escape_bytes(std::string_view bytes, std::size_t limit = 64);

}  // namespace bokbok::wire
