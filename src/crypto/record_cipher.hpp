// The transport-phase record layer of key mode (PROTOCOL.md §9.6): one direction of an
// encrypted bokbok stream.
//
// Each record body is one frame encrypted with ChaChaPoly under the direction's key from
// Noise Split(), nonce = the number of records sent before it in that direction (0, 1,
// 2, ...), empty associated data. The body is the ciphertext with its 16-byte tag, so a
// frame of at most 65519 bytes (PROTOCOL.md §3) gives a body of at most 65535 bytes: the
// record shape `u16 length || body` is unchanged.
//
// Rekeying: after every `limits.records` records (2^20 by default), or as soon as the
// plaintext bytes since the last rekey reach `limits.bytes` (1 GiB by default), whichever
// comes first, the direction's key is replaced by Noise Rekey(). The sender counts what it
// seals and the receiver what it opens, with the same rule, so both switch keys at the
// same record with no signal on the wire. Nonces keep counting across rekeys.
//
// Any failure (a tag that does not verify, which also covers replayed, reordered,
// truncated or dropped records, or an exhausted nonce) leaves the cipher dead: every later
// call fails, and the caller closes the stream. Not thread-safe; no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "crypto/noise_symmetric.hpp"

namespace bokbok::crypto {

// The largest plaintext (frame) in one record, and the largest record body.
inline constexpr std::size_t max_record_body_size = 65535;
inline constexpr std::size_t max_record_plaintext = max_record_body_size - tag_len;
static_assert(max_record_plaintext == 65519);

// What a receiver reports when open() fails (PROTOCOL.md §9.7); the stream is then closed.
inline constexpr std::string_view record_authentication_failed =
    "record failed authentication (the stream was altered, replayed, reordered or truncated)";

// The size of the whole record (u16 length || ciphertext || tag) sealed from a frame of
// `frame_size` bytes.
inline constexpr std::size_t sealed_record_size(std::size_t frame_size) {
  return 2 + frame_size + tag_len;
}

struct rekey_limits {
  std::uint64_t records = std::uint64_t{1} << 20;  // rekey after this many records...
  std::uint64_t bytes = std::uint64_t{1} << 30;    // ...or this many plaintext bytes
};

class record_cipher {
 public:
  // Takes one direction's CipherState from Split() (it must have a key).
  explicit record_cipher(cipher_state state, rekey_limits limits = {});

  record_cipher(record_cipher&&) noexcept = default;
  record_cipher& operator=(record_cipher&&) noexcept = default;

  // Encrypts one frame and appends the whole record (u16 length || ciphertext || tag) to
  // `out`. `plaintext` is 1..max_record_plaintext bytes. Returns false (nothing appended,
  // cipher dead) on misuse or once the nonce space is exhausted.
  bool seal(std::string_view plaintext, std::string& out);

  // The same record as seal() of the frame `head` followed by `rest` (either part may be
  // empty; the frame is their concatenation, 1..max_record_plaintext bytes), written to
  // `out`, which has room for sealed_record_size(head.size() + rest.size()) bytes and
  // does not overlap the parts: encrypted straight from the parts (a frame header and
  // its payload), with no buffer in between.
  // Returns false (cipher dead; what `out` holds is undefined) as seal() does.
  bool seal_into(std::string_view head, std::string_view rest, char* out);

  // Decrypts one record body (what wire::record_reader returns) and appends the frame to
  // `out`. Returns false (cipher dead) if the body is not 17..65535 bytes, fails
  // authentication, or the nonce space is exhausted.
  bool open(std::string_view body, std::string& out);
  // The same into `out`, which has room for body.size() - tag_len bytes (the frame, its
  // size), written without being zeroed first. False as open() (cipher dead).
  bool open_into(std::string_view body, char* out);

  bool failed() const noexcept { return failed_; }
  std::uint64_t records() const noexcept { return state_.nonce(); }  // sealed or opened
  std::uint64_t rekeys() const noexcept { return rekeys_; }

  // Test hook: jump the nonce counter (to test exhaustion without 2^64 records).
  void set_nonce_for_test(std::uint64_t n) noexcept { state_.set_nonce(n); }

 private:
  void count(std::size_t plaintext_size);

  cipher_state state_;
  rekey_limits limits_;
  std::uint64_t records_since_rekey_ = 0;
  std::uint64_t bytes_since_rekey_ = 0;
  std::uint64_t rekeys_ = 0;
  bool failed_ = false;
};

// The two directions of one side of a key-mode stream.
struct record_cipher_pair {
  record_cipher send;
  record_cipher receive;
};

}  // namespace bokbok::crypto
