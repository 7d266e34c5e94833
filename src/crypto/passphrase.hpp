// Keys derived from passphrases (PROTOCOL.md §9.2): Argon2id through crypto_pwhash.
//
//   salt = the first 16 bytes of SHA-256("bokbok passphrase v1" || 0x00 || realm || 0x00 || user)
//   key  = Argon2id(passphrase, salt, opslimit, memlimit), 32 bytes
//
// The realm names the deployment (e.g. "backup.example.org") and the user is the key
// mode user name, so the same passphrase gives unrelated keys for different users and
// realms, and a table precomputed for one realm is useless for another.
//
// Cost: the default is libsodium's MODERATE level, opslimit 3 and memlimit 256 MiB:
// about 0.5 to 1 s of one core and 256 MiB of RAM per derivation on current machines.
// Both sides of a deployment must use the same cost, since it changes the key; the
// explicit form exists for tests (INTERACTIVE or MIN keeps them fast), not for production.
#pragma once

#include <sodium.h>

#include <array>
#include <cstddef>
#include <string_view>

#include "crypto/secret.hpp"

namespace bokbok::crypto {

inline constexpr std::size_t passphrase_salt_len = 16;
static_assert(passphrase_salt_len == crypto_pwhash_SALTBYTES);
inline constexpr std::string_view passphrase_label = "bokbok passphrase v1";

struct pwhash_cost {
  unsigned long long opslimit;
  std::size_t memlimit;

  // What bokbok uses: opslimit 3, memlimit 256 MiB.
  static pwhash_cost moderate() noexcept {
    return {crypto_pwhash_OPSLIMIT_MODERATE, crypto_pwhash_MEMLIMIT_MODERATE};
  }
  // Faster levels, for tests only: INTERACTIVE (2, 64 MiB) and MIN (1, 8 KiB).
  static pwhash_cost interactive() noexcept {
    return {crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE};
  }
  static pwhash_cost min() noexcept {
    return {crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN};
  }
};
static_assert(crypto_pwhash_MEMLIMIT_MODERATE == 256u * 1024 * 1024);

// The salt for (realm, user), as above.
std::array<unsigned char, passphrase_salt_len> passphrase_salt(std::string_view realm,
                                                               std::string_view user);

// Derives the key. Throws bokbok::key_error if the passphrase is empty, the cost is
// outside libsodium's bounds, or crypto_pwhash fails (out of memory).
key derive_passphrase_key(std::string_view passphrase, std::string_view realm,
                          std::string_view user, pwhash_cost cost = pwhash_cost::moderate());

}  // namespace bokbok::crypto
