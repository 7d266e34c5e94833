// Passphrase-derived keys (src/crypto/passphrase.hpp): Argon2id, salted by realm and
// user. Tests use libsodium's MIN cost to stay fast, except one at the real cost.
#include <doctest/doctest.h>

#include "bokbok/key.hpp"
#include "crypto/passphrase.hpp"

using namespace bokbok::crypto;

TEST_CASE("the salt is the first 16 bytes of SHA-256 of the label, realm and user") {
  // python3: hashlib.sha256(b"bokbok passphrase v1\0example.org\0alice").hexdigest()[:32]
  CHECK(to_hex(passphrase_salt("example.org", "alice")) == "8f0c2633caebffce21ded2532562389a");
  // The separators matter: ("ab", "c") and ("a", "bc") differ.
  CHECK(passphrase_salt("ab", "c") != passphrase_salt("a", "bc"));
}

TEST_CASE("a passphrase gives the same key for the same realm and user") {
  const auto a = derive_passphrase_key("correct horse", "example.org", "alice", pwhash_cost::min());
  const auto b = derive_passphrase_key("correct horse", "example.org", "alice", pwhash_cost::min());
  CHECK(a.equals(b));
}

TEST_CASE("a different passphrase, user, realm or cost gives a different key") {
  const auto base = derive_passphrase_key("correct horse", "example.org", "alice", pwhash_cost::min());
  CHECK_FALSE(base.equals(derive_passphrase_key("correct horsf", "example.org", "alice", pwhash_cost::min())));
  CHECK_FALSE(base.equals(derive_passphrase_key("correct horse", "example.org", "bob", pwhash_cost::min())));
  CHECK_FALSE(base.equals(derive_passphrase_key("correct horse", "example.net", "alice", pwhash_cost::min())));
  CHECK_FALSE(base.equals(derive_passphrase_key("correct horse", "example.org", "alice",
                                                pwhash_cost::interactive())));
}

TEST_CASE("an empty passphrase and an impossible cost are refused") {
  CHECK_THROWS_WITH_AS(derive_passphrase_key("", "r", "u", pwhash_cost::min()),
                       "the passphrase is empty", bokbok::key_error);
  CHECK_THROWS_AS(derive_passphrase_key("p", "r", "u", {0, crypto_pwhash_MEMLIMIT_MIN}),
                  bokbok::key_error);
}

TEST_CASE("the public from_passphrase uses the moderate cost") {
  const auto pub = bokbok::key::from_passphrase("correct horse", "example.org", "alice");
  const auto internal = derive_passphrase_key("correct horse", "example.org", "alice");
  CHECK(sodium_memcmp(pub.bytes().data(), internal.data(), 32) == 0);
  CHECK(pwhash_cost::moderate().memlimit == 256u << 20);
  CHECK(pwhash_cost::moderate().opslimit == 3);
}
