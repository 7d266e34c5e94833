// Key files (PROTOCOL.md §9.2): a single line
//
//   bokbok-key-v1 <64 hex digits>\n
//
// holding the 32-byte key in hex (lower case when written; either case read; the final
// newline may be missing). The file must not be readable or writable by group or others
// (mode 0600 or stricter), as ssh requires of private keys; a looser file is refused with
// the path and its mode, and a malformed one with the path and what is wrong. Messages
// never contain key bytes.
#pragma once

#include <string>
#include <string_view>

#include "crypto/secret.hpp"

namespace bokbok::crypto {

inline constexpr std::string_view key_file_tag = "bokbok-key-v1";
inline constexpr std::size_t key_hex_len = 2 * key::size;
// Tag, one space, hex, newline.
inline constexpr std::size_t key_file_size = key_file_tag.size() + 1 + key_hex_len + 1;
static_assert(key_file_size == 79);

// The file's text for `k`, newline included. The string holds key material: wipe it
// (sodium_memzero) when done.
std::string format_key_file(const key& k);

// Parses a key file's contents; `path` only names the file in messages. Throws
// bokbok::key_error("PATH: not a bokbok key file: ...").
key parse_key_file(std::string_view text, const std::string& path);

// Reads and parses the file, after checking its permissions. Throws bokbok::key_error.
key load_key_file(const std::string& path);

// Writes the file with mode 0600 (also when replacing a looser file). Refuses to replace
// an existing file unless `overwrite`. Throws bokbok::key_error.
void save_key_file(const std::string& path, const key& k, bool overwrite);

// Reads a whole secret file (key or users file) into locked memory: refuses a file
// accessible by group or others ("PATH: permissions 0644 are too open ...") and one
// larger than `max_size` bytes. `what` names the kind of file in messages.
secret_bytes read_secret_file(const std::string& path, std::size_t max_size,
                              std::string_view what);

}  // namespace bokbok::crypto
