// The users file of a key-mode server (PROTOCOL.md §9.2): who may connect, with which key.
//
//   # comment
//   alice 3f9c...(64 hex digits)
//   bob   0a1b...
//
// One `USER KEYHEX` per line, separated by spaces or tabs; KEYHEX is the user's 32-byte
// key as 64 hex digits (what `bokbok keygen --users-line USER` prints). Blank lines and
// lines whose first non-blank character is `#` are ignored. A user name is 1..255 bytes
// with no whitespace. A user listed twice, or any malformed line, fails the whole file
// with the line number; the file, like a key file, must not be accessible by group or
// others. No message ever contains key material.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "crypto/secret.hpp"

namespace bokbok::crypto {

// How a server finds a user's key: nullopt for an unknown user. It may be called from
// any thread of the server, so it must be thread-safe.
using key_lookup = std::function<std::optional<key>(std::string_view user)>;

inline constexpr std::size_t max_users_file_size = 16 * 1024 * 1024;

class users_table {
 public:
  // A copy of the user's key, or nullopt.
  std::optional<key> find(std::string_view user) const;
  std::size_t size() const noexcept { return index_.size(); }

  // Room for `capacity` keys, all in one block of locked memory (one sodium_malloc per
  // key would cost an mmap and guard pages each: too many for a large file).
  explicit users_table(std::size_t capacity = 0);

  // Adds a user; false if already present or the table is full.
  bool add(std::string user, std::span<const unsigned char, key::size> k);

 private:
  secret_bytes keys_;                                     // capacity * 32 bytes
  std::map<std::string, std::size_t, std::less<>> index_;  // user -> slot
};

// Parses a users file's text; `path` names it in messages ("PATH:3: ..."). Throws
// bokbok::key_error.
users_table parse_users_file(std::string_view text, const std::string& path);

// Reads and parses the file after checking its permissions. Throws bokbok::key_error.
users_table load_users_file(const std::string& path);

// A key_lookup over a shared table (the table is read-only, hence thread-safe).
key_lookup lookup_in(std::shared_ptr<const users_table> table);

}  // namespace bokbok::crypto
