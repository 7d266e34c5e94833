// key_session: key mode (PROTOCOL.md §9) for one connection: the Noise handshake that
// follows the preambles, then the record ciphers. The connection drives it; this class
// does no I/O.
//
// Roles: a side given a user and a key initiates (a client); a side given a key lookup
// responds (a server). The settings that a plain connection sends in its hello travel
// inside handshake messages 1 and 2 instead, so a key-mode side sends no hello frame.
//
// Threads: the constructor runs on the thread that creates the connection (an
// initiator's ephemeral key pair is made there); begin(), feed(), open() and the
// handshake accessors run on the connection's loop thread; a responder's answer() may
// run on a handler thread (see there); ready() on any thread. seal() and send_cipher() are for the thread that holds the connection's
// writer role (rpc/send_path.hpp), without the connection's mutex: only the send cipher is
// touched there, which nothing on the loop thread touches meanwhile.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "bokbok/connection.hpp"
#include "crypto/key_handshake.hpp"
#include "crypto/record_cipher.hpp"
#include "crypto/replay_cache.hpp"
#include "rpc/admission_counts.hpp"
#include "wire/preamble.hpp"

namespace bokbok::rpc {

// What a connection in key mode is configured with (from options::keys).
struct key_config {
  std::string user;                               // initiator: our user name
  std::shared_ptr<const bokbok::key> key;         // initiator: our key
  options::key_options::lookup key_for_user;      // responder: the users' keys
  std::shared_ptr<crypto::replay_cache> replay;   // responder: shared by its connections
  std::chrono::seconds window{120};               // responder: allowed clock difference
  std::shared_ptr<admission_counts> per_user;     // responder: per-user limits, or null

  bool initiator() const { return static_cast<bool>(key); }
};

// The key_config for options::keys, or null when key mode is off. `replay` serves a
// responder (one per server, or per process for connect()). Throws usage_error for a
// contradictory or incomplete configuration (keys.user without keys.key: plain mode is
// never chosen silently). What key_for_user throws goes to `on_error` (that user is
// refused, like an unknown one).
std::shared_ptr<const key_config> make_key_config(const options::key_options& keys,
                                                  std::shared_ptr<crypto::replay_cache> replay,
                                                  callback_error_handler on_error = {},
                                                  std::shared_ptr<admission_counts> per_user = {});

class key_session {
 public:
  // answer: a responder's message 1 passed its checks; answer() makes message 2 (the
  // ephemeral key and the one Diffie-Hellman: the costly part of a login).
  enum class step { need_more, done, failed, answer };

  // `local_preamble`: the exact bytes this side sent; `settings`: our settings payload.
  key_session(std::shared_ptr<const key_config> cfg, std::string local_preamble,
              std::string settings);

  // After the peer's preamble (its exact bytes, and decoded): checks it for our role and
  // starts the handshake, appending what to send (message 1, for an initiator) to `out`.
  step begin(const wire::preamble& peer, std::string_view peer_bytes, std::string& out);

  // Feeds handshake bytes from the front of `in` (what is left stays for the records),
  // appending what to send to `out` (message 2, or a responder's decoy on failure).
  //
  // Memory: a responder holds no secret and looks no key up until message 1 has come
  // whole; once the handshake is done only the two record keys stay (the handshake's
  // secrets are wiped). When no memory is left for secrets (src/crypto/secret_arena.hpp),
  // begin() and feed() fail this connection (not refused(): nothing is sent) instead of
  // throwing.
  step feed(std::string_view& in, std::string& out);

  // Responder, after feed() said answer: appends message 2 to `out` (or a decoy when the
  // DH fails); done or failed. It may run on any thread, one at a time, provided the
  // loop thread leaves this session alone meanwhile (ready() excepted); what it did is
  // the loop's to see once the loop has been told (a post).
  step answer(std::string& out);

  // Why the handshake failed; whether it was an authentication refusal (what a client
  // reports as authentication_error).
  const std::string& error() const { return error_; }
  bool refused() const { return refused_; }
  // Responder: whether the peer's user name was known (for the server's log only; the
  // peer is answered the same either way).
  bool known_user() const { return known_user_; }

  // Responder, after done: the client is not logged in until it has proved it holds the
  // session keys (PROTOCOL.md §9.6, "Login"): the connection opens a first record from it,
  // then calls confirm(), and only on `done` does it take peer_user() and open.
  bool awaiting_confirmation() const { return responder_ && ciphers_ && !confirmed_; }
  step confirm();
  // After confirm(): whether the user is within its limits (key_config::per_user): ""
  // (the connection is counted until logout()), or why not (the login is refused busy).
  std::string admit_user();
  // Gives the connection's place in its user's count back (the destructor does, so a
  // connection counts until its object is gone). Idempotent.
  void logout();
  ~key_session() { logout(); }

  // After done.
  const std::string& peer_settings() const { return peer_settings_; }
  const std::string& peer_user() const { return peer_user_; }

  // After done: encrypts one frame into a whole record (u16 length || ciphertext).
  bool seal(std::string_view frame, std::string& out) { return ciphers_->send.seal(frame, out); }
  // After done: decrypts one record body into its frame.
  bool open(std::string_view body, std::string& frame) { return ciphers_->receive.open(body, frame); }
  // The same into `frame` (room for body.size() - tag_len bytes; record_cipher::open_into).
  bool open_into(std::string_view body, char* frame) { return ciphers_->receive.open_into(body, frame); }
  // Any thread (the send path looks, and answer() may be running on another thread).
  bool ready() const { return ready_.load(std::memory_order_acquire); }
  // After done: the send direction's cipher (what seal() uses).
  crypto::record_cipher& send_cipher() { return ciphers_->send; }
  // After done: the receive direction's cipher (what open() uses; loop thread).
  crypto::record_cipher& receive_cipher() { return ciphers_->receive; }

 private:
  step fail(std::string why, bool refused);
  step finish_handshake();
  step feed_handshake(std::string_view& in, std::string& out);
  void drop_handshake_inputs();
  step out_of_memory();
  bool gather_message1(std::string_view& in);
  void start_responder();

  std::shared_ptr<const key_config> cfg_;
  std::string local_preamble_;
  std::string settings_;
  // The handshake's state, on the heap while it runs: an open connection keeps only its
  // record ciphers (these are some 900 bytes, a tenth of an idle connection).
  std::unique_ptr<crypto::key_initiator> initiator_;
  std::unique_ptr<crypto::key_responder> responder_;
  // Initiator: the ephemeral key pair made by the constructor, until begin() uses it.
  std::optional<crypto::ephemeral_keypair> prepared_;
  std::optional<crypto::record_cipher_pair> ciphers_;
  std::atomic<bool> ready_{false};  // ciphers_ is set, for good
  std::string peer_settings_;
  std::string peer_user_;
  std::string peer_preamble_;  // responder: the peer's preamble bytes, for the prologue
  std::string message1_;       // responder: message 1 until it is whole
  std::string error_;
  bool refused_ = false;
  bool known_user_ = false;
  bool confirmed_ = false;
  bool counted_ = false;  // holds a place in cfg_->per_user
};

}  // namespace bokbok::rpc
