#include "crypto/passphrase.hpp"

#include <algorithm>
#include <string>

#include "bokbok/key.hpp"

namespace bokbok::crypto {

std::array<unsigned char, passphrase_salt_len> passphrase_salt(std::string_view realm,
                                                               std::string_view user) {
  ensure_sodium();
  const unsigned char zero = 0;
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init(&st);
  crypto_hash_sha256_update(&st, reinterpret_cast<const unsigned char*>(passphrase_label.data()),
                            passphrase_label.size());
  crypto_hash_sha256_update(&st, &zero, 1);
  crypto_hash_sha256_update(&st, reinterpret_cast<const unsigned char*>(realm.data()),
                            realm.size());
  crypto_hash_sha256_update(&st, &zero, 1);
  crypto_hash_sha256_update(&st, reinterpret_cast<const unsigned char*>(user.data()),
                            user.size());
  std::array<unsigned char, crypto_hash_sha256_BYTES> digest;
  crypto_hash_sha256_final(&st, digest.data());
  std::array<unsigned char, passphrase_salt_len> salt;
  std::copy_n(digest.begin(), salt.size(), salt.begin());
  return salt;
}

key derive_passphrase_key(std::string_view passphrase, std::string_view realm,
                          std::string_view user, pwhash_cost cost) {
  ensure_sodium();
  if (passphrase.empty()) throw key_error("the passphrase is empty");
  if (cost.opslimit < crypto_pwhash_OPSLIMIT_MIN || cost.opslimit > crypto_pwhash_OPSLIMIT_MAX ||
      cost.memlimit < crypto_pwhash_MEMLIMIT_MIN || cost.memlimit > crypto_pwhash_MEMLIMIT_MAX)
    throw key_error("passphrase cost outside what Argon2id allows");
  const auto salt = passphrase_salt(realm, user);
  key k;
  if (crypto_pwhash(k.data(), key::size, passphrase.data(), passphrase.size(), salt.data(),
                    cost.opslimit, cost.memlimit, crypto_pwhash_ALG_ARGON2ID13) != 0)
    throw key_error("deriving the key from the passphrase failed (out of memory? Argon2id "
                    "needs " + std::to_string(cost.memlimit >> 20) + " MiB)");
  return k;
}

}  // namespace bokbok::crypto
