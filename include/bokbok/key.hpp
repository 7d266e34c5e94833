// Keys for key mode (encrypted, authenticated connections; src/wire/PROTOCOL.md §9).
//
// A bokbok::key is a 32-byte secret shared by a client and a server, held in locked
// memory (not swapped out where the system allows it) and wiped when destroyed. It is
// move-only: copy it only on purpose, with clone().
//
//   auto k = bokbok::key::generate();            // random
//   k.save("/etc/myapp/client.key");             // "bokbok-key-v1 <64 hex>\n", mode 0600
//   auto k2 = bokbok::key::load("/etc/myapp/client.key");
//   auto k3 = bokbok::key::from_passphrase(pass, "myapp.example.org", "alice");
//
// Thread-safety: a key may be read from several threads at once (const members).
#pragma once

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "bokbok needs C++20: compile with -std=c++20 (or later); g++ 12 defaults to C++17"
#endif

#include <cstddef>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "bokbok/error.hpp"
#include "bokbok/export.hpp"
#include "bokbok/secret_text.hpp"

namespace bokbok {

// A key could not be made, read or written; what() says why and names the file, and
// never contains key material.
class BOKBOK_API key_error : public error {
 public:
  using error::error;
};

class BOKBOK_API key final {
 public:
  static constexpr std::size_t size = 32;

  // A new random key.
  static key generate();

  // Derives a key from a passphrase with Argon2id (cost: 256 MiB of memory and about
  // 0.5-1 s), salted with the realm (which names the deployment) and the user name, so
  // the same passphrase gives different keys for different users and realms.
  static key from_passphrase(std::string_view passphrase, std::string_view realm,
                             std::string_view user);

  // Reads a key file: one line `bokbok-key-v1 <64 hex digits>`. Refuses, like ssh, a
  // file that its group or others may read or write, and any malformed file.
  static key load(const std::string& path);

  // Writes this key as a key file with mode 0600. Refuses to replace an existing file
  // unless `overwrite`.
  void save(const std::string& path, bool overwrite = false) const;

  // The raw bytes (for the library, and for applications that store keys themselves).
  static key from_bytes(std::span<const unsigned char, size> bytes);
  std::span<const unsigned char, size> bytes() const noexcept;

  key clone() const;

  // The users-file line for this key (README "Keys"): "USER <64 hex digits>\n", in
  // locked memory since it holds the key. Throws key_error when `user` is not a name a
  // users file can hold (1 to 255 bytes, no whitespace, not starting with '#').
  secret_text users_line(std::string_view user) const;

  key(key&& other) noexcept;
  key& operator=(key&& other) noexcept;
  key(const key&) = delete;
  key& operator=(const key&) = delete;
  ~key();

 private:
  key();
  unsigned char* bytes_ = nullptr;  // a slot of the locked secret arena; null when moved from
};

// Reads a users file (one `USER KEYHEX` per line, `#` comments; see README "Keys") and
// returns a thread-safe lookup for options::keys.key_for_user. Throws key_error for a
// malformed file, or one its group or others may read. The file is read once.
BOKBOK_API std::function<std::optional<key>(std::string_view user)> load_users(const std::string& path);

}  // namespace bokbok
