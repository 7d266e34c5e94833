// HandshakeState of the Noise Protocol Framework (revision 34, §5.3) for the two patterns
// bokbok needs, with the suite 25519_ChaChaPoly_SHA256:
//
//   NN:             -> e                 NNpsk0:   -> psk, e
//                   <- e, ee                       <- e, ee
//
// NN exists for conformance tests only; key mode (PROTOCOL.md §9) uses NNpsk0. In a psk
// pattern the `e` token also calls MixKey(e.public_key) (Noise §9.2), so in NNpsk0 the
// payload of the first message is already encrypted and authenticated under a key derived
// from the psk and the initiator's ephemeral key. A responder therefore checks the first
// message's tag with no Diffie-Hellman at all: the only DH (`ee`) happens when it writes
// the second message. `dh_count()` counts DH operations so tests can check that.
//
// DH is X25519 (crypto_scalarmult). A peer public key of small order, or any DH whose
// result is all zero, fails the handshake ("low-order public key").
//
// After an error the object is dead: every later call fails. Not thread-safe; no I/O.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "crypto/noise_symmetric.hpp"
#include "crypto/secret.hpp"

namespace bokbok::crypto {

inline constexpr std::size_t dh_len = 32;  // DHLEN for 25519
static_assert(dh_len == crypto_scalarmult_BYTES && dh_len == crypto_scalarmult_SCALARBYTES);

enum class noise_pattern { nn, nnpsk0 };
enum class noise_role { initiator, responder };

// "Noise_NN_25519_ChaChaPoly_SHA256" or "Noise_NNpsk0_25519_ChaChaPoly_SHA256".
std::string_view protocol_name(noise_pattern p) noexcept;

// An ephemeral X25519 key pair made ahead of its handshake: the fixed-base scalar
// multiplication (about 45 µs) then runs on the thread that makes it (a client's
// calling thread, in connect()) rather than on the event loop that later writes the
// message carrying it. Used by exactly one handshake (use_ephemeral()); the private key
// is in locked memory and wiped with it.
struct ephemeral_keypair {
  secret_bytes private_key;                          // dh_len bytes
  std::array<unsigned char, dh_len> public_key{};

  // A fresh random pair. Throws std::bad_alloc when no locked memory is left.
  static ephemeral_keypair generate();
  // How many key pairs generate(), or a handshake writing `e` without one, has made on
  // the calling thread (a test hook, like dh_count(): it checks which thread pays).
  static std::uint64_t made_on_this_thread() noexcept;
};

class handshake_state {
 public:
  // Initialize(): `prologue` is mixed into h; `psk` is required for nnpsk0 and ignored
  // for nn (a copy is kept in locked memory).
  handshake_state(noise_pattern pattern, noise_role role, std::string_view prologue,
                  const key* psk = nullptr);

  handshake_state(handshake_state&&) noexcept = default;
  handshake_state& operator=(handshake_state&&) noexcept = default;

  // Test hook: the ephemeral private key this side will use, instead of a random one, to
  // reproduce test vectors. Call before the message that sends `e`.
  void use_ephemeral_for_test(std::span<const unsigned char, dh_len> private_key);

  // The key pair this side's `e` token will send, made ahead (ephemeral_keypair), in
  // place of one made when the message is written. Call before that message.
  void use_ephemeral(ephemeral_keypair&& pair);

  // WriteMessage(payload): appends the handshake message to `out`. Returns false, with
  // error() set and nothing appended, if it is not this side's turn or a DH fails.
  bool write_message(std::string_view payload, std::string& out);

  // ReadMessage(message): appends the decrypted payload to `payload`. Returns false, with
  // error() set, if the message is too short, its tag does not verify, or a DH fails.
  bool read_message(std::string_view message, std::string& payload);

  // True once both messages have been written or read, successfully.
  bool finished() const noexcept { return next_message_ == 2 && error_.empty(); }
  const std::string& error() const noexcept { return error_; }

  // The ephemeral public keys (all zero until known); public values.
  std::span<const unsigned char, dh_len> local_ephemeral_public() const noexcept { return e_pub_; }
  std::span<const unsigned char, dh_len> remote_ephemeral_public() const noexcept { return re_; }

  // GetHandshakeHash(): valid after finished().
  const hash_value& handshake_hash() const noexcept { return symmetric_.handshake_hash(); }

  // Split(): valid after finished(). The first cipher is for initiator -> responder.
  symmetric_state::split_result split() const { return symmetric_.split(); }

  // How many X25519 DH operations (crypto_scalarmult with a peer key) handshakes in this
  // process have computed so far. Test hook; relaxed atomic, thread-safe.
  static std::uint64_t dh_count() noexcept;
  // The same, made on the calling thread (which thread pays for a login's DH).
  static std::uint64_t dh_count_on_this_thread() noexcept;

 private:
  bool fail(std::string why);
  bool my_turn() const noexcept;
  void write_e(std::string& out);
  bool dh_ee();

  noise_pattern pattern_;
  noise_role role_;
  symmetric_state symmetric_;
  key psk_;
  secret_bytes e_priv_{dh_len};
  bool e_fixed_ = false;       // e_priv_ is given (the test hook): its public key is not
  bool e_pub_ready_ = false;   // e_pub_ is given too (use_ephemeral)
  std::array<unsigned char, dh_len> e_pub_{};
  std::array<unsigned char, dh_len> re_{};
  int next_message_ = 0;  // 0: initiator -> responder, 1: responder -> initiator, 2: done
  std::string error_;
};

}  // namespace bokbok::crypto
