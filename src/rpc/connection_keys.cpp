// Key mode on a connection (PROTOCOL.md §9): running the handshake after the preambles,
// and sealing what the loop writes. The handshake and ciphers themselves are in
// rpc/key_session and src/crypto; opening received records is in connection_reader.cpp.
//
// Threads: the loop thread, but for a server's answer to a checked message 1
// (answer_elsewhere), made on a handler thread while the loop leaves key_ alone
// (key_busy_) and reads nothing on this connection.
//
// What changes against plain mode: the hello's settings travel inside handshake
// messages 1 and 2, so no hello frame is sent; the preamble and the handshake messages go
// out unencrypted as the send path's raw bytes, ahead of the outbox; after the handshake every
// record is sealed, in wire order, by the thread that writes it (rpc/send_path.hpp).
#include <algorithm>
#include <random>

#include "base/endian.hpp"
#include "rpc/connection_impl.hpp"

namespace bokbok::detail {

std::string connection_impl::settings_payload() const {
  wire::settings mine;
  mine.max_message_size = static_cast<std::uint32_t>(cfg_.opts.max_message_size);
  mine.heartbeat_ms = static_cast<std::uint32_t>(
      std::clamp<long long>(cfg_.opts.heartbeat_interval.count(), 0, 0xffffffffLL));
  mine.max_concurrent_calls = cfg_.opts.max_concurrent_calls;
  mine.features = wire::features_supported;
  if (cfg_.carries_fds) mine.features |= wire::feature_fds;  // PROTOCOL.md §13
  mine.hello_nonce = hello_nonce_;  // plain mode only (key mode fails on reflection anyway)
  return wire::encode_settings(mine);
}

// The nonce only has to differ from the peer's (§6.1), not to be secret: a generator
// per thread, seeded once from the system, costs nothing per connection (a
// std::random_device per connection was a quarter of the time of opening one).
std::uint32_t connection_impl::new_hello_nonce() {
  thread_local std::mt19937 random{std::random_device{}()};
  std::uint32_t n = 0;
  while (n == 0) n = static_cast<std::uint32_t>(random());
  return n;
}

// Loop thread: what the opening still waits for, for the handshake timeout's message.
// Plain mode waits for the preamble and hello; key mode for the preamble, then the
// handshake's messages, then (a responder) the client's first record, its login proof.
std::string connection_impl::handshake_awaited() const {
  if (!key_) return "the peer's bokbok preamble and hello";
  if (!preamble_done_) return "the peer's bokbok preamble (key mode)";
  if (key_busy_ || !key_->ready()) return "the key-mode handshake with the peer";
  if (key_->awaiting_confirmation())
    return "the client's login proof (its first record after the key-mode handshake)";
  return "the key-mode handshake with the peer";
}

// Loop thread, after the peer's preamble: feeds the handshake. True once it is done and
// the connection open, with `bytes` left holding what follows the handshake.
bool connection_impl::key_step(std::string_view& bytes) {
  if (key_busy_) return false;  // (reading is stopped meanwhile)
  if (key_->ready()) return true;
  std::string out;
  auto st = rpc::key_session::step::need_more;
  if (!key_begun_) {
    key_begun_ = true;
    st = key_->begin(preamble_reader_.value(), preamble_reader_.received(), out);
  }
  if (st != rpc::key_session::step::failed) st = key_->feed(bytes, out);
  if (st == rpc::key_session::step::answer) {
    // A client sends nothing after message 1 until message 2 has come; one that did
    // (bytes left) is answered here, its bytes handled in order.
    if (bytes.empty() && answer_elsewhere(std::move(out))) return false;
    st = key_->answer(out);
  }
  return key_stepped(st, out);
}

// Loop thread: a responder's message 1 passed its checks (no Diffie-Hellman so far: a
// wrong key or a replay never gets here). Its answer, an ephemeral key and the one DH
// (about 100 µs), runs on a handler thread of the server: its logins then use every
// CPU, and its loop goes on serving the other connections meanwhile. Reading stops
// until the answer is back (key_answered). False when no handler thread can start it at
// once (every running slot taken, or requests waiting: a login must not wait behind slow
// handlers, as it never did), or for a connection of its own (stdio, connect_fds: no
// server's pool, and nothing to share the loop with): the caller answers on this thread.
bool connection_impl::answer_elsewhere(std::string out) {
  if (!cfg_.pool || !stream_) return false;
  key_busy_ = true;
  stream_->stop_reading();
  auto self = shared_from_this();
  const bool taken = pool_->submit_if_free([self, out = std::move(out)]() mutable {
    auto st = self->key_->answer(out);
    self->cfg_.loop->post([self, st, out = std::move(out)]() mutable { self->key_answered(st, out); });
  });
  if (!taken) {
    key_busy_ = false;
    stream_->start_reading();
  }
  return taken;
}

// Loop thread: message 2 is made (or the DH failed: a decoy). Unless the connection ended
// meanwhile (its handshake timeout, say), it goes out and reading resumes.
void connection_impl::key_answered(rpc::key_session::step st, std::string& out) {
  key_busy_ = false;
  if (closing_.finished || !stream_) return;
  stream_->start_reading();  // a read held meanwhile comes on a later turn (a post)
  key_stepped(st, out);
}

// Loop thread: what a handshake step produced goes out; then its outcome.
bool connection_impl::key_stepped(rpc::key_session::step st, std::string& out) {
  if (!out.empty()) {
    std::lock_guard lock(mu_);
    send_.push_raw(out);
    schedule_flush_locked();
  }
  if (st == rpc::key_session::step::failed) {
    key_failed();
    return false;
  }
  if (st == rpc::key_session::step::need_more) return false;
  if (key_->awaiting_confirmation()) {
    // Responder: message 2 is out, but a replayed message 1 gets this far too. No login
    // (user, settings, open, on_open) until key_record_opened() sees a first record.
    std::lock_guard lock(mu_);
    if (send_.has_raw()) schedule_flush_locked();
    return life_.state() != phase::closed && stream_;
  }
  {
    // Initiator: its first record proves to the responder that it holds the keys
    // (§9.6, "Login"): a ping, ahead of anything the caller sends.
    std::string ping;
    wire::append_frame(ping, wire::frame_type::ping, 0, 0, {});
    std::lock_guard lock(mu_);
    send_.queue().push_record_bytes(ping);
  }
  handle_settings(key_->peer_settings());
  std::lock_guard lock(mu_);
  if (send_.has_unsent()) schedule_flush_locked();
  return life_.state() == phase::open && stream_;
}

// Loop thread, after a record from the peer opened and verified: on a responder, the
// first one logs the client in (§9.6, "Login"). False when the connection failed.
bool connection_impl::key_record_opened() {
  if (!key_->awaiting_confirmation()) return true;
  if (key_->confirm() == rpc::key_session::step::failed) {
    key_failed();
    return false;
  }
  if (std::string why = key_->admit_user(); !why.empty()) {
    // The user is proven but past its limits: refused busy, authenticated, no login.
    std::string farewell;
    wire::append_frame(farewell, wire::frame_type::goaway, 0, 0,
                       wire::encode_code_payload(std::uint16_t(error_code::busy), why));
    finish(end_kind::auth, "key mode: refused: busy: " + why, farewell);
    return false;
  }
  user_ = key_->peer_user();  // before anyone sees us open
  handle_settings(key_->peer_settings());
  return static_cast<bool>(stream_);
}

void connection_impl::key_failed() {
  std::string why = key_->error();
  // The server's log may say which of the two it was; the client was told the same
  // for both (a decoy).
  if (!cfg_.keys->initiator() && why == crypto::authentication_failed)
    why = key_->known_user() ? "authentication failed: wrong key (or an altered message 1)"
                             : "authentication failed: unknown user";
  if (!cfg_.keys->initiator() && !key_->peer_user().empty())
    why = "user \"" + wire::escape_bytes(key_->peer_user()) + "\": " + why;
  finish(key_->refused() ? end_kind::auth : end_kind::protocol, "key mode: " + why);
}

}  // namespace bokbok::detail
