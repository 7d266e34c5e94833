#include "crypto/noise_symmetric.hpp"

#include "base/endian.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace bokbok::crypto {

namespace {

const unsigned char* bytes_of(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// HMAC(key, data) from `keyed`, an HMAC state already keyed with key, which is left as it
// was. Keying hashes the padded key's inner and outer blocks: two of the four SHA-256
// compressions of a short HMAC. HKDF's outputs share one key (temp_key), so hkdf() keys
// once and each output starts from a copy.
void hmac_from(const crypto_auth_hmacsha256_state& keyed, std::span<const unsigned char> data,
               unsigned char* out) {
  crypto_auth_hmacsha256_state st = keyed;
  crypto_auth_hmacsha256_update(&st, data.data(), data.size());
  crypto_auth_hmacsha256_final(&st, out);
  sodium_memzero(&st, sizeof st);
}

}  // namespace

void hmac_sha256(std::span<const unsigned char> key, std::span<const unsigned char> data,
                 std::span<unsigned char, hash_len> out) {
  crypto_auth_hmacsha256_state keyed;
  crypto_auth_hmacsha256_init(&keyed, key.data(), key.size());
  hmac_from(keyed, data, out.data());
  sodium_memzero(&keyed, sizeof keyed);
}

namespace {

// HKDF of Noise §4.3: temp_key = HMAC(ck, ikm); out1 = HMAC(temp_key, 0x01);
// out2 = HMAC(temp_key, out1 || 0x02); out3 = HMAC(temp_key, out2 || 0x03) when wanted.
void hkdf(std::span<const unsigned char, hash_len> chaining_key,
          std::span<const unsigned char> ikm, unsigned char* out1, unsigned char* out2,
          unsigned char* out3) {
  crypto_auth_hmacsha256_state keyed;
  {
    wiped<hash_len> temp_key;
    hmac_sha256(chaining_key, ikm, temp_key.span());
    crypto_auth_hmacsha256_init(&keyed, temp_key.data(), hash_len);
  }
  wiped<hash_len + 1> in;
  in.data()[0] = 0x01;
  hmac_from(keyed, std::span<const unsigned char>(in.data(), 1), out1);
  std::copy(out1, out1 + hash_len, in.data());
  in.data()[hash_len] = 0x02;
  hmac_from(keyed, in.span(), out2);
  if (out3 != nullptr) {
    std::copy(out2, out2 + hash_len, in.data());
    in.data()[hash_len] = 0x03;
    hmac_from(keyed, in.span(), out3);
  }
  sodium_memzero(&keyed, sizeof keyed);  // it is the key of every output
}

}  // namespace

void hkdf3(std::span<const unsigned char, hash_len> chaining_key,
           std::span<const unsigned char> ikm, std::span<unsigned char, hash_len> out1,
           std::span<unsigned char, hash_len> out2, std::span<unsigned char, hash_len> out3) {
  hkdf(chaining_key, ikm, out1.data(), out2.data(), out3.data());
}

void hkdf2(std::span<const unsigned char, hash_len> chaining_key,
           std::span<const unsigned char> ikm, std::span<unsigned char, hash_len> out1,
           std::span<unsigned char, hash_len> out2) {
  hkdf(chaining_key, ikm, out1.data(), out2.data(), nullptr);
}

std::array<unsigned char, nonce_len> chachapoly_nonce(std::uint64_t n) noexcept {
  std::array<unsigned char, nonce_len> nonce{};
  base::store_le64(nonce.data() + 4, n);
  return nonce;
}

// ---- cipher_state ---------------------------------------------------------------------

void cipher_state::initialize_key(std::span<const unsigned char, cipher_key_len> k) {
  if (k_.empty()) k_ = key();
  std::copy(k.begin(), k.end(), k_.data());
  has_key_ = true;
  n_ = 0;
}

bool cipher_state::encrypt_with_ad(std::string_view ad, std::string_view plaintext,
                                   std::string& out) {
  if (!has_key_) {
    out.append(plaintext);
    return true;
  }
  if (n_ > max_nonce) return false;
  const auto nonce = chachapoly_nonce(n_);
  const std::size_t at = out.size();
  out.resize(at + plaintext.size() + tag_len);
  unsigned long long clen = 0;
  crypto_aead_chacha20poly1305_ietf_encrypt(
      reinterpret_cast<unsigned char*>(out.data() + at), &clen, bytes_of(plaintext),
      plaintext.size(), bytes_of(ad), ad.size(), nullptr, nonce.data(), k_.data());
  ++n_;
  return true;
}

bool cipher_state::encrypt_in_place(unsigned char* text, std::size_t len) {
  if (!has_key_ || n_ > max_nonce) return false;
  const auto nonce = chachapoly_nonce(n_);
  unsigned long long taglen = 0;
  // libsodium allows the ciphertext to overwrite the message it is made from.
  crypto_aead_chacha20poly1305_ietf_encrypt_detached(text, text + len, &taglen, text, len,
                                                     nullptr, 0, nullptr, nonce.data(),
                                                     k_.data());
  ++n_;
  return true;
}

// ChaChaPoly of RFC 8439 §2.8 built from its parts, so the plaintext can come in two
// pieces: the Poly1305 key from ChaCha20 block 0, the ciphertext from block 1 on, the
// tag over ciphertext || pad || le64(ad length = 0) || le64(ciphertext length).
bool cipher_state::encrypt_parts(std::string_view head, std::string_view rest,
                                 unsigned char* out) {
  constexpr std::size_t block = 64;
  if (rest.empty()) std::swap(head, rest);
  if (!has_key_ || n_ > max_nonce || head.size() > block) return false;
  const auto nonce = chachapoly_nonce(n_);
  const std::size_t len = head.size() + rest.size();
  wiped<block> first;  // block 0's keystream, then the plaintext of block 1
  crypto_stream_chacha20_ietf(first.data(), block, nonce.data(), k_.data());
  crypto_onetimeauth_poly1305_state mac;
  crypto_onetimeauth_poly1305_init(&mac, first.data());
  // Block 1 joins the parts in a small buffer; the rest of `rest` goes straight across.
  const std::size_t joined = std::min(len, block);
  const std::size_t from_head = std::min(head.size(), joined);
  // (An empty part may have a null data(): memcpy must not be given it, even for 0 bytes.)
  if (from_head) std::memcpy(first.data(), head.data(), from_head);
  if (joined > from_head) std::memcpy(first.data() + from_head, rest.data(), joined - from_head);
  crypto_stream_chacha20_ietf_xor_ic(out, first.data(), joined, nonce.data(), 1, k_.data());
  if (len > joined) {
    const std::size_t rest_at = joined - from_head;
    crypto_stream_chacha20_ietf_xor_ic(out + joined, bytes_of(rest) + rest_at, len - joined,
                                       nonce.data(), 2, k_.data());
  }
  crypto_onetimeauth_poly1305_update(&mac, out, len);
  const unsigned char zeros[16] = {};
  if (len % 16) crypto_onetimeauth_poly1305_update(&mac, zeros, 16 - len % 16);
  unsigned char lengths[16] = {};
  for (int i = 0; i < 8; ++i) lengths[8 + i] = static_cast<unsigned char>(std::uint64_t(len) >> (8 * i));
  crypto_onetimeauth_poly1305_update(&mac, lengths, sizeof lengths);
  crypto_onetimeauth_poly1305_final(&mac, out + len);
  sodium_memzero(&mac, sizeof mac);
  ++n_;
  return true;
}

bool cipher_state::decrypt_with_ad(std::string_view ad, std::string_view ciphertext,
                                   std::string& out) {
  if (!has_key_) {
    out.append(ciphertext);
    return true;
  }
  if (n_ > max_nonce || ciphertext.size() < tag_len) return false;
  const auto nonce = chachapoly_nonce(n_);
  const std::size_t at = out.size();
  out.resize(at + ciphertext.size() - tag_len);
  unsigned long long mlen = 0;
  if (crypto_aead_chacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(out.data() + at), &mlen, nullptr,
          bytes_of(ciphertext), ciphertext.size(), bytes_of(ad), ad.size(), nonce.data(),
          k_.data()) != 0) {
    out.resize(at);
    return false;
  }
  ++n_;
  return true;
}

bool cipher_state::decrypt_into(std::string_view ciphertext, unsigned char* out) {
  if (!has_key_) throw std::logic_error("cipher_state::decrypt_into without a key");
  if (n_ > max_nonce || ciphertext.size() < tag_len) return false;
  const auto nonce = chachapoly_nonce(n_);
  unsigned long long mlen = 0;
  if (crypto_aead_chacha20poly1305_ietf_decrypt(out, &mlen, nullptr, bytes_of(ciphertext),
                                                ciphertext.size(), nullptr, 0, nonce.data(),
                                                k_.data()) != 0)
    return false;
  ++n_;
  return true;
}

void cipher_state::rekey() {
  if (!has_key_) throw std::logic_error("cipher_state::rekey without a key");
  const auto nonce = chachapoly_nonce(UINT64_MAX);
  const unsigned char zeros[cipher_key_len] = {};
  wiped<cipher_key_len + tag_len> out;
  unsigned long long clen = 0;
  crypto_aead_chacha20poly1305_ietf_encrypt(out.data(), &clen, zeros, sizeof zeros, nullptr,
                                            0, nullptr, nonce.data(), k_.data());
  std::copy(out.data(), out.data() + cipher_key_len, k_.data());
}

// ---- symmetric_state ------------------------------------------------------------------

symmetric_state::symmetric_state(std::string_view protocol_name) {
  if (protocol_name.size() <= hash_len) {
    std::copy(protocol_name.begin(), protocol_name.end(), h_.begin());
  } else {
    crypto_hash_sha256(h_.data(), bytes_of(protocol_name), protocol_name.size());
  }
  std::copy(h_.begin(), h_.end(), ck_.data());
}

void symmetric_state::mix_key(std::span<const unsigned char> ikm) {
  wiped<hash_len> temp_k;
  hkdf2(std::span<const unsigned char, hash_len>(ck_.data(), hash_len), ikm,
        std::span<unsigned char, hash_len>(ck_.data(), hash_len), temp_k.span());
  cipher_.initialize_key(temp_k.span());
}

void symmetric_state::mix_hash(std::span<const unsigned char> data) {
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init(&st);
  crypto_hash_sha256_update(&st, h_.data(), h_.size());
  crypto_hash_sha256_update(&st, data.data(), data.size());
  crypto_hash_sha256_final(&st, h_.data());
}

void symmetric_state::mix_hash(std::string_view data) {
  mix_hash(std::span<const unsigned char>(bytes_of(data), data.size()));
}

void symmetric_state::mix_key_and_hash(std::span<const unsigned char> ikm) {
  wiped<hash_len> temp_h, temp_k;
  hkdf3(std::span<const unsigned char, hash_len>(ck_.data(), hash_len), ikm,
        std::span<unsigned char, hash_len>(ck_.data(), hash_len), temp_h.span(),
        temp_k.span());
  mix_hash(temp_h.span());
  cipher_.initialize_key(temp_k.span());
}

bool symmetric_state::encrypt_and_hash(std::string_view plaintext, std::string& out) {
  const std::size_t at = out.size();
  const std::string_view ad(reinterpret_cast<const char*>(h_.data()), h_.size());
  if (!cipher_.encrypt_with_ad(ad, plaintext, out)) return false;
  mix_hash(std::string_view(out).substr(at));
  return true;
}

bool symmetric_state::decrypt_and_hash(std::string_view ciphertext, std::string& out) {
  const std::string_view ad(reinterpret_cast<const char*>(h_.data()), h_.size());
  if (!cipher_.decrypt_with_ad(ad, ciphertext, out)) return false;
  mix_hash(ciphertext);
  return true;
}

symmetric_state::split_result symmetric_state::split() const {
  wiped<hash_len> k1, k2;
  hkdf2(std::span<const unsigned char, hash_len>(ck_.data(), hash_len), {}, k1.span(),
        k2.span());
  split_result r;
  r.initiator_to_responder.initialize_key(k1.span());
  r.responder_to_initiator.initialize_key(k2.span());
  return r;
}

}  // namespace bokbok::crypto
