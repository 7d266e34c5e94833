// The key-mode handshake of bokbok (PROTOCOL.md §9.3-§9.5) as two I/O-free state
// machines: `key_initiator` for the client and `key_responder` for the server. They are
// fed the bytes that follow the preambles and say "need more", "done" or "error"; they
// produce the bytes to send. Underneath is Noise_NNpsk0_25519_ChaChaPoly_SHA256 with
// prologue = initiator's preamble || responder's preamble (the exact bytes sent).
//
// Driving them, on a connection whose preambles are already exchanged (the initiator
// needs the responder's preamble before it can start, since it is in the prologue):
//
//   client                                         server
//   ------                                         ------
//   key_initiator ini(psk, my_pre, peer_pre, s)    (reads the client's preamble, looks the
//   ini.start(out); send(out)       -- msg 1 -->    user's key up: nullopt if unknown)
//                                                   key_responder res(psk_or_nullopt, ...)
//                                                   st = res.feed(in, out) until not
//                                                   need_more; send(out) in both cases:
//                                   <-- msg 2 --    done: message 2; error: a decoy of the
//   st = ini.feed(in) until not                     same size, then close
//   need_more
//   done: ini.take_ciphers()                        done: res.take_ciphers()
//
// Each message is one record (`u16 length || body`). feed() consumes exactly the
// handshake record from the front of `in`; what follows it stays in `in` for the record
// layer. At end of stream call end_of_stream(). After `error`, error() says why; the
// object is dead. Neither class is thread-safe.
//
// Login (PROTOCOL.md §9.6): message 2 is not a login. The responder's handshake is done
// when it has sent message 2, but the client has not yet shown it holds the session keys
// (a replayed message 1 gets this far); the connection calls confirm() once it has opened
// the client's first record, and only then logs the client in.
//
// DoS properties (tested): a client with a wrong key or an unknown user costs the server
// no Diffie-Hellman (handshake_state::dh_count() does not move); only confirmed first
// messages enter the replay cache.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "crypto/noise_handshake.hpp"
#include "crypto/record_cipher.hpp"
#include "crypto/replay_cache.hpp"
#include "crypto/secret.hpp"
#include "wire/preamble.hpp"

namespace bokbok::crypto {

inline constexpr std::size_t handshake_timestamp_len = 8;     // u64 BE unix ms
inline constexpr std::size_t max_handshake_settings = 1024;   // settings bytes, each side
inline constexpr std::size_t message1_min_body = dh_len + handshake_timestamp_len + tag_len;
inline constexpr std::size_t message2_min_body = dh_len + tag_len;
inline constexpr std::size_t message1_max_body = message1_min_body + max_handshake_settings;
inline constexpr std::size_t message2_max_body = message2_min_body + max_handshake_settings;
static_assert(message1_min_body == 56 && message2_min_body == 48);
static_assert(message1_max_body <= 65535);

// The client's error for a wrong key and for an unknown user alike (and the server's).
inline constexpr std::string_view authentication_failed =
    "authentication failed: unknown user or wrong key";

enum class handshake_status { need_more, done, error };

// PROTOCOL.md §9.3: checks the peer's key-mode preamble (mode already checked to be key)
// for this side's role: a responder needs a user name, an initiator needs none. Empty when
// fine, else the error text (a preamble failure, §2.3).
std::string key_preamble_error(noise_role self, const wire::preamble& peer);

// Unix time in milliseconds; injectable for tests.
using clock_ms = std::function<std::int64_t()>;
std::int64_t system_clock_ms();

class key_initiator {
 public:
  // `settings`: the bytes for message 1's payload (at most max_handshake_settings).
  key_initiator(const key& psk, std::string_view initiator_preamble,
                std::string_view responder_preamble, std::string_view settings,
                clock_ms clock = system_clock_ms);

  void use_ephemeral_for_test(std::span<const unsigned char, dh_len> private_key) {
    noise_.use_ephemeral_for_test(private_key);
  }
  // The key pair message 1 sends, made ahead (handshake_state::use_ephemeral).
  void use_ephemeral(ephemeral_keypair&& pair) { noise_.use_ephemeral(std::move(pair)); }

  // Appends the message 1 record to `out`. Call once. need_more, or error.
  handshake_status start(std::string& out);
  // Consumes message 2 from the front of `in`.
  handshake_status feed(std::string_view& in);
  handshake_status end_of_stream();

  const std::string& error() const noexcept { return error_; }
  // After done: the responder's settings bytes, the ciphers (send, receive), the hash.
  const std::string& peer_settings() const noexcept { return peer_settings_; }
  record_cipher_pair take_ciphers(rekey_limits limits = {});
  const hash_value& handshake_hash() const noexcept { return noise_.handshake_hash(); }

 private:
  handshake_status fail(std::string why);

  handshake_state noise_;
  std::string settings_;
  clock_ms clock_;
  std::string buf_;  // message 2 record received so far
  std::string peer_settings_;
  std::string error_;
  enum class phase { created, waiting, done, failed } phase_ = phase::created;
};

struct responder_options {
  std::chrono::milliseconds window = std::chrono::seconds(120);  // allowed clock skew
  clock_ms clock = system_clock_ms;
  std::string user;  // the preamble's user name: whose quota in the replay cache
};

class key_responder {
 public:
  // `psk`: the user's key, or nullopt for an unknown user (a random dummy key is used,
  // so it fails exactly like a wrong key). `settings`: message 2's payload. `cache` is
  // shared by the server's connections and must outlive this object.
  key_responder(std::optional<key> psk, std::string_view initiator_preamble,
                std::string_view responder_preamble, std::string_view settings,
                replay_cache& cache, responder_options options = {});

  void use_ephemeral_for_test(std::span<const unsigned char, dh_len> private_key) {
    noise_.use_ephemeral_for_test(private_key);
  }

  // Consumes message 1 from the front of `in`. On done, `out` receives message 2. On
  // error after a well-formed message 1 record (authentication, timestamp, replay,
  // low-order key), `out` receives a decoy: random bytes shaped like message 2,
  // so that the client and an observer see the same thing for every refusal; send it,
  // then close. A malformed record gives an error with no output.
  handshake_status feed(std::string_view& in, std::string& out);

  // feed() in two steps, so that the costly one may run on another thread: check()
  // consumes message 1 and does everything but the Diffie-Hellman (the tag, the
  // timestamp, the replay cache; a refusal's decoy goes to `out` as in feed()); when
  // message 1 passed it returns need_more with checked() true, and answer() then makes
  // the ephemeral key, the one DH and message 2 (into `out`): done, or error with a
  // decoy. No DH for a message 1 that fails its checks, as with feed().
  handshake_status check(std::string_view& in, std::string& out);
  bool checked() const noexcept { return phase_ == phase::checked; }
  handshake_status answer(std::string& out);

  handshake_status end_of_stream();

  // After done, once a first record from the client has been opened with the session
  // keys: records message 1 in the replay cache (§9.4). done, or error when the same
  // message 1 was confirmed on another connection meanwhile (not logged in).
  handshake_status confirm();

  const std::string& error() const noexcept { return error_; }
  const std::string& peer_settings() const noexcept { return peer_settings_; }
  std::int64_t peer_timestamp_ms() const noexcept { return timestamp_ms_; }
  record_cipher_pair take_ciphers(rekey_limits limits = {});
  const hash_value& handshake_hash() const noexcept { return noise_.handshake_hash(); }

 private:
  handshake_status fail(std::string why);
  handshake_status refuse(std::string why, std::string& out);  // fail + decoy
  handshake_status accept(std::string_view body, std::string& out);

  handshake_state noise_;
  std::string settings_;
  replay_cache* cache_;
  responder_options options_;
  std::string buf_;  // message 1 record received so far
  std::string peer_settings_;
  std::int64_t timestamp_ms_ = 0;
  replay_cache::id ephemeral_{};  // the client's e, recorded by confirm()
  std::string error_;
  enum class phase { waiting, checked, done, failed } phase_ = phase::waiting;
  bool confirmed_ = false;
};

}  // namespace bokbok::crypto
