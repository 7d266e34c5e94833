// The symmetric half of the Noise Protocol Framework (revision 34, §4-§5) for the suite
// 25519_ChaChaPoly_SHA256: HMAC-SHA256 and HKDF, CipherState and SymmetricState.
//
// Built on libsodium only: crypto_auth_hmacsha256 (HMAC), crypto_hash_sha256 (HASH) and
// crypto_aead_chacha20poly1305_ietf (ENCRYPT/DECRYPT). ChaChaPoly's 96-bit nonce is 32
// zero bits followed by the 64-bit counter n in little-endian order (Noise §12.3).
//
// Failure is a value (false), never an exception, so the handshake and record code can
// turn it into its own error text. Nothing here is thread-safe; nothing here does I/O.
#pragma once

#include <sodium.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "crypto/secret.hpp"

namespace bokbok::crypto {

inline constexpr std::size_t hash_len = 32;    // HASHLEN (SHA-256)
inline constexpr std::size_t block_len = 64;   // BLOCKLEN (SHA-256)
inline constexpr std::size_t cipher_key_len = 32;
inline constexpr std::size_t tag_len = 16;     // the Poly1305 tag appended to ciphertext
inline constexpr std::size_t nonce_len = 12;   // the ChaChaPoly IETF nonce
static_assert(hash_len == crypto_hash_sha256_BYTES);
static_assert(hash_len == crypto_auth_hmacsha256_BYTES);
static_assert(cipher_key_len == crypto_aead_chacha20poly1305_ietf_KEYBYTES);
static_assert(tag_len == crypto_aead_chacha20poly1305_ietf_ABYTES);
static_assert(nonce_len == crypto_aead_chacha20poly1305_ietf_NPUBBYTES);

// The largest nonce value usable for encryption: 2^64-1 is reserved (Noise §5.1).
inline constexpr std::uint64_t max_nonce = UINT64_MAX - 1;

using hash_value = std::array<unsigned char, hash_len>;

// HMAC-SHA256(key, data) into `out`. The key may be any length (Noise uses HASHLEN).
void hmac_sha256(std::span<const unsigned char> key, std::span<const unsigned char> data,
                 std::span<unsigned char, hash_len> out);

// HKDF(chaining_key, input_key_material) of Noise §4.3 with 2 and 3 outputs.
void hkdf2(std::span<const unsigned char, hash_len> chaining_key,
           std::span<const unsigned char> ikm, std::span<unsigned char, hash_len> out1,
           std::span<unsigned char, hash_len> out2);
void hkdf3(std::span<const unsigned char, hash_len> chaining_key,
           std::span<const unsigned char> ikm, std::span<unsigned char, hash_len> out1,
           std::span<unsigned char, hash_len> out2, std::span<unsigned char, hash_len> out3);

// The ChaChaPoly nonce for counter n: 4 zero bytes, then n little-endian.
std::array<unsigned char, nonce_len> chachapoly_nonce(std::uint64_t n) noexcept;

// CipherState (Noise §5.1): a key k (or none) and a nonce counter n. Move-only (k is a
// secret). Without a key, encryption and decryption pass the bytes through unchanged.
class cipher_state {
 public:
  cipher_state() = default;  // no key, n = 0

  // InitializeKey(k): sets k and resets n to 0.
  void initialize_key(std::span<const unsigned char, cipher_key_len> k);
  bool has_key() const noexcept { return has_key_; }
  void set_nonce(std::uint64_t n) noexcept { n_ = n; }
  std::uint64_t nonce() const noexcept { return n_; }

  // EncryptWithAd(ad, plaintext): appends the ciphertext (plaintext + 16-byte tag when a
  // key is set) to `out` and increments n. Returns false, appending nothing, if n has
  // reached 2^64-1 (the nonce space is exhausted).
  bool encrypt_with_ad(std::string_view ad, std::string_view plaintext, std::string& out);

  // EncryptWithAd(empty ad, plaintext) in place: the `len` bytes at `text` become the
  // ciphertext and the 16-byte tag is written right after them (text + len), so `text`
  // must have room for len + tag_len bytes. Requires a key. Returns false, changing
  // nothing, if n has reached 2^64-1.
  bool encrypt_in_place(unsigned char* text, std::size_t len);

  // EncryptWithAd(empty ad, head || rest) without joining the parts first: the
  // ciphertext of their concatenation is written to `out` (room for the sum of their
  // sizes + tag_len; it must not overlap them), the tag after it. Same bytes as
  // encrypt_with_ad. `head` is at most 64 bytes unless `rest` is empty. Requires a key.
  // Returns false, changing nothing, if n has reached 2^64-1 or `head` is too long.
  bool encrypt_parts(std::string_view head, std::string_view rest, unsigned char* out);

  // DecryptWithAd(ad, ciphertext): appends the plaintext to `out` and increments n.
  // Returns false, appending nothing and leaving n unchanged, if authentication fails,
  // the ciphertext is shorter than the tag, or the nonce space is exhausted.
  bool decrypt_with_ad(std::string_view ad, std::string_view ciphertext, std::string& out);

  // DecryptWithAd(empty ad, ciphertext) into `out`, which has room for
  // ciphertext.size() - tag_len bytes (written, nothing else; none zeroed first) and does
  // not overlap it. Requires a key. Fails as decrypt_with_ad does (n unchanged; what
  // `out` holds then is undefined).
  bool decrypt_into(std::string_view ciphertext, unsigned char* out);

  // Rekey(): k = the first 32 bytes of ENCRYPT(k, 2^64-1, empty, 32 zero bytes)
  // (Noise §4.2 and §11.3). n is unchanged. Requires a key.
  void rekey();

 private:
  key k_;
  bool has_key_ = false;
  std::uint64_t n_ = 0;
};

// SymmetricState (Noise §5.2): chaining key ck, handshake hash h and a CipherState.
class symmetric_state {
 public:
  // InitializeSymmetric(protocol_name): h = name padded with zeros to 32 bytes if it
  // fits, else HASH(name); ck = h; no cipher key.
  explicit symmetric_state(std::string_view protocol_name);

  void mix_key(std::span<const unsigned char> input_key_material);
  void mix_hash(std::span<const unsigned char> data);
  void mix_hash(std::string_view data);
  // MixKeyAndHash(ikm), used for pre-shared keys.
  void mix_key_and_hash(std::span<const unsigned char> input_key_material);

  // EncryptAndHash / DecryptAndHash: encrypt or decrypt with h as associated data, then
  // mix the ciphertext into h. Return false on failure (nothing appended, h unchanged).
  bool encrypt_and_hash(std::string_view plaintext, std::string& out);
  bool decrypt_and_hash(std::string_view ciphertext, std::string& out);

  bool has_key() const noexcept { return cipher_.has_key(); }
  const hash_value& handshake_hash() const noexcept { return h_; }  // GetHandshakeHash()

  // Split(): two CipherStates keyed from ck; the first is for initiator -> responder
  // traffic, the second for responder -> initiator.
  struct split_result {
    cipher_state initiator_to_responder;
    cipher_state responder_to_initiator;
  };
  split_result split() const;

 private:
  secret_bytes ck_{hash_len};
  hash_value h_{};
  cipher_state cipher_;
};

}  // namespace bokbok::crypto
