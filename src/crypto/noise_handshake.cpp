#include "crypto/noise_handshake.hpp"

#include <algorithm>
#include <atomic>

namespace bokbok::crypto {

namespace {

std::atomic<std::uint64_t> dh_operations{0};
thread_local std::uint64_t keypairs_made = 0;  // made_on_this_thread()
thread_local std::uint64_t dh_made = 0;        // dh_count_on_this_thread()

}  // namespace

std::string_view protocol_name(noise_pattern p) noexcept {
  return p == noise_pattern::nn ? "Noise_NN_25519_ChaChaPoly_SHA256"
                                : "Noise_NNpsk0_25519_ChaChaPoly_SHA256";
}

ephemeral_keypair ephemeral_keypair::generate() {
  ephemeral_keypair pair{secret_bytes(dh_len), {}};
  randombytes_buf(pair.private_key.data(), dh_len);
  crypto_scalarmult_base(pair.public_key.data(), pair.private_key.data());
  ++keypairs_made;
  return pair;
}

std::uint64_t ephemeral_keypair::made_on_this_thread() noexcept { return keypairs_made; }

std::uint64_t handshake_state::dh_count() noexcept {
  return dh_operations.load(std::memory_order_relaxed);
}

std::uint64_t handshake_state::dh_count_on_this_thread() noexcept { return dh_made; }

handshake_state::handshake_state(noise_pattern pattern, noise_role role,
                                 std::string_view prologue, const key* psk)
    : pattern_(pattern), role_(role), symmetric_(protocol_name(pattern)) {
  symmetric_.mix_hash(prologue);
  if (pattern_ == noise_pattern::nnpsk0) {
    if (psk == nullptr || psk->empty()) {
      error_ = "NNpsk0 needs a pre-shared key";
      return;
    }
    psk_ = psk->clone();
  }
}

void handshake_state::use_ephemeral_for_test(std::span<const unsigned char, dh_len> private_key) {
  std::copy(private_key.begin(), private_key.end(), e_priv_.data());
  e_fixed_ = true;
  e_pub_ready_ = false;
}

void handshake_state::use_ephemeral(ephemeral_keypair&& pair) {
  std::copy(pair.private_key.data(), pair.private_key.data() + dh_len, e_priv_.data());
  e_pub_ = pair.public_key;
  pair.private_key.wipe();
  e_fixed_ = e_pub_ready_ = true;
}

bool handshake_state::fail(std::string why) {
  if (error_.empty()) error_ = std::move(why);
  return false;
}

bool handshake_state::my_turn() const noexcept {
  return (next_message_ == 0 && role_ == noise_role::initiator) ||
         (next_message_ == 1 && role_ == noise_role::responder);
}

// Token `e` when writing: a fresh key pair (or the test one); e.public_key is sent and
// mixed into h, and with a psk also into the chaining key.
void handshake_state::write_e(std::string& out) {
  if (!e_fixed_) randombytes_buf(e_priv_.data(), dh_len);
  if (!e_pub_ready_) {
    crypto_scalarmult_base(e_pub_.data(), e_priv_.data());
    if (!e_fixed_) ++keypairs_made;
  }
  out.append(reinterpret_cast<const char*>(e_pub_.data()), dh_len);
  symmetric_.mix_hash(e_pub_);
  if (pattern_ == noise_pattern::nnpsk0) symmetric_.mix_key(e_pub_);
}

// Token `ee`: MixKey(DH(e, re)). crypto_scalarmult fails (-1) for a small-order peer key
// and whenever the shared secret would be all zero.
bool handshake_state::dh_ee() {
  wiped<dh_len> shared;
  dh_operations.fetch_add(1, std::memory_order_relaxed);
  ++dh_made;
  if (crypto_scalarmult(shared.data(), e_priv_.data(), re_.data()) != 0)
    return fail("low-order public key: the Diffie-Hellman result is all zero");
  symmetric_.mix_key(shared.span());
  return true;
}

bool handshake_state::write_message(std::string_view payload, std::string& out) {
  if (!error_.empty()) return false;
  if (!my_turn()) return fail("handshake message written out of turn");
  std::string msg;
  if (next_message_ == 0) {
    if (pattern_ == noise_pattern::nnpsk0) symmetric_.mix_key_and_hash(psk_.bytes());
    write_e(msg);
  } else {
    write_e(msg);
    if (!dh_ee()) return false;
  }
  if (!symmetric_.encrypt_and_hash(payload, msg)) return fail("handshake encryption failed");
  out += msg;
  ++next_message_;
  return true;
}

bool handshake_state::read_message(std::string_view message, std::string& payload) {
  if (!error_.empty()) return false;
  if (my_turn() || next_message_ >= 2) return fail("handshake message read out of turn");
  if (message.size() < dh_len)
    return fail("handshake message of " + std::to_string(message.size()) +
                " bytes is shorter than its 32-byte ephemeral key");
  if (next_message_ == 0 && pattern_ == noise_pattern::nnpsk0)
    symmetric_.mix_key_and_hash(psk_.bytes());
  std::copy_n(reinterpret_cast<const unsigned char*>(message.data()), dh_len, re_.begin());
  symmetric_.mix_hash(re_);
  if (pattern_ == noise_pattern::nnpsk0) symmetric_.mix_key(re_);
  if (next_message_ == 1 && !dh_ee()) return false;
  std::string plain;
  if (!symmetric_.decrypt_and_hash(message.substr(dh_len), plain))
    return fail("handshake message failed authentication");
  payload += plain;
  ++next_message_;
  return true;
}

}  // namespace bokbok::crypto
