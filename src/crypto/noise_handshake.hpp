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
  bool e_fixed_ = false;
  std::array<unsigned char, dh_len> e_pub_{};
  std::array<unsigned char, dh_len> re_{};
  int next_message_ = 0;  // 0: initiator -> responder, 1: responder -> initiator, 2: done
  std::string error_;
};

}  // namespace bokbok::crypto
