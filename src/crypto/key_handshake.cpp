#include "crypto/key_handshake.hpp"

#include "base/endian.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace bokbok::crypto {

namespace {

std::string prologue_of(std::string_view initiator_preamble, std::string_view responder_preamble) {
  std::string p(initiator_preamble);
  p += responder_preamble;
  return p;
}

// Moves bytes from `in` into `buf` until `buf` holds one record (u16 length || body)
// whose length lies in [min_body, max_body]. The length is checked as soon as its two
// bytes are there, before the body is awaited, so a bad length costs nothing.
handshake_status take_record(std::string& buf, std::string_view& in, std::size_t min_body,
                             std::size_t max_body, std::string_view which, std::string& error) {
  while (buf.size() < 2 && !in.empty()) {
    buf.push_back(in.front());
    in.remove_prefix(1);
  }
  if (buf.size() < 2) return handshake_status::need_more;
  const std::size_t len = base::load_be16(buf);
  if (len < min_body || len > max_body) {
    error = "key-mode handshake: " + std::string(which) + " record of " + std::to_string(len) +
            " bytes (expected " + std::to_string(min_body) + " to " + std::to_string(max_body) +
            ")";
    return handshake_status::error;
  }
  const std::size_t want = 2 + len - buf.size();
  const std::size_t n = std::min(want, in.size());
  buf.append(in.substr(0, n));
  in.remove_prefix(n);
  return n == want ? handshake_status::done : handshake_status::need_more;
}

handshake_state responder_noise(std::optional<key>& psk, const std::string& prologue) {
  // An unknown user gets a fresh random key: the tag check then fails like a wrong key.
  const key k = psk ? std::move(*psk) : key::random();
  return handshake_state(noise_pattern::nnpsk0, noise_role::responder, prologue, &k);
}

}  // namespace

std::string key_preamble_error(noise_role self, const wire::preamble& peer) {
  if (self == noise_role::responder && peer.user.empty())
    return "key-mode preamble without a user name";
  if (self == noise_role::initiator && !peer.user.empty())
    return "the peer's key-mode preamble names a user: both sides are clients";
  return {};
}

std::int64_t system_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- initiator ------------------------------------------------------------------------

key_initiator::key_initiator(const key& psk, std::string_view initiator_preamble,
                             std::string_view responder_preamble, std::string_view settings,
                             clock_ms clock)
    : noise_(noise_pattern::nnpsk0, noise_role::initiator,
             prologue_of(initiator_preamble, responder_preamble), &psk),
      settings_(settings),
      clock_(std::move(clock)) {}

handshake_status key_initiator::fail(std::string why) {
  if (error_.empty()) error_ = std::move(why);
  phase_ = phase::failed;
  return handshake_status::error;
}

handshake_status key_initiator::start(std::string& out) {
  if (phase_ != phase::created) return fail("key_initiator::start called twice");
  if (settings_.size() > max_handshake_settings)
    return fail("key-mode handshake: settings of " + std::to_string(settings_.size()) +
                " bytes (at most " + std::to_string(max_handshake_settings) + ")");
  // Payload: u64 big-endian unix time in ms || settings.
  const auto now = static_cast<std::uint64_t>(clock_());
  std::string payload;
  base::append_be64(payload, now);
  payload += settings_;
  std::string body;
  if (!noise_.write_message(payload, body)) return fail(noise_.error());
  base::append_be16(out, static_cast<std::uint16_t>(body.size()));
  out += body;
  phase_ = phase::waiting;
  return handshake_status::need_more;
}

handshake_status key_initiator::feed(std::string_view& in) {
  if (phase_ == phase::done) return handshake_status::done;
  if (phase_ != phase::waiting) return fail("key_initiator::feed before start");
  const auto st = take_record(buf_, in, message2_min_body, message2_max_body, "message 2", error_);
  if (st == handshake_status::error) return fail(error_);
  if (st == handshake_status::need_more) return st;
  std::string payload;
  if (!noise_.read_message(std::string_view(buf_).substr(2), payload)) {
    // A DH failure is reported as such; a bad tag is a wrong key or an unknown user
    // (or a server that refused us and sent a decoy): one message for all.
    const bool low_order = noise_.error().starts_with("low-order");
    return fail(low_order ? noise_.error() : std::string(authentication_failed));
  }
  peer_settings_ = std::move(payload);
  buf_.clear();
  phase_ = phase::done;
  return handshake_status::done;
}

handshake_status key_initiator::end_of_stream() {
  if (phase_ == phase::done) return handshake_status::done;
  return fail("the server closed the connection during the key-mode handshake");
}

record_cipher_pair key_initiator::take_ciphers(rekey_limits limits) {
  if (phase_ != phase::done) throw std::logic_error("take_ciphers before the handshake is done");
  auto s = noise_.split();
  return {record_cipher(std::move(s.initiator_to_responder), limits),
          record_cipher(std::move(s.responder_to_initiator), limits)};
}

// ---- responder ------------------------------------------------------------------------

key_responder::key_responder(std::optional<key> psk, std::string_view initiator_preamble,
                             std::string_view responder_preamble, std::string_view settings,
                             replay_cache& cache, responder_options options)
    : noise_(responder_noise(psk, prologue_of(initiator_preamble, responder_preamble))),
      settings_(settings),
      cache_(&cache),
      options_(std::move(options)) {
  if (settings_.size() > max_handshake_settings)
    fail("key-mode handshake: settings of " + std::to_string(settings_.size()) +
         " bytes (at most " + std::to_string(max_handshake_settings) + ")");
}

handshake_status key_responder::fail(std::string why) {
  if (error_.empty()) error_ = std::move(why);
  phase_ = phase::failed;
  return handshake_status::error;
}

handshake_status key_responder::refuse(std::string why, std::string& out) {
  // The decoy: as long as a real message 2, random bytes, no DH.
  const std::size_t body = message2_min_body + settings_.size();
  base::append_be16(out, body);
  const std::size_t at = out.size();
  out.resize(at + body);
  randombytes_buf(out.data() + at, body);
  return fail(std::move(why));
}

handshake_status key_responder::feed(std::string_view& in, std::string& out) {
  auto st = check(in, out);
  if (st == handshake_status::need_more && checked()) return answer(out);
  return st;
}

handshake_status key_responder::check(std::string_view& in, std::string& out) {
  if (phase_ == phase::done) return handshake_status::done;
  if (phase_ == phase::failed) return handshake_status::error;
  if (phase_ == phase::checked) return handshake_status::need_more;
  const auto st = take_record(buf_, in, message1_min_body, message1_max_body, "message 1", error_);
  if (st == handshake_status::error) return fail(error_);
  if (st == handshake_status::need_more) return st;
  std::string body = std::move(buf_);
  buf_.clear();
  return accept(std::string_view(body).substr(2), out);
}

// Message 1 is complete. Order matters: the tag is checked first (psk and e only, no DH),
// then the timestamp, then the replay cache; the one DH happens in writing message 2
// (answer()). The cache is not written here: confirm() does, once the client has proved
// its keys.
handshake_status key_responder::accept(std::string_view body, std::string& out) {
  std::string payload;
  if (!noise_.read_message(body, payload)) return refuse(std::string(authentication_failed), out);
  static_assert(handshake_timestamp_len == 8);
  const std::uint64_t ts = base::load_be64(payload);
  // Clamped so that the arithmetic below cannot overflow; any clamped value is refused.
  timestamp_ms_ = static_cast<std::int64_t>(std::min<std::uint64_t>(ts, INT64_MAX / 4));
  const std::int64_t now = options_.clock();
  const std::int64_t window = options_.window.count();
  const std::string limit = " (allowed: " + std::to_string(window / 1000) + " s)";
  if (timestamp_ms_ > now + window)
    return refuse("timestamp in the future: the client's clock is " +
                      std::to_string((timestamp_ms_ - now) / 1000) + " s ahead of this side's" +
                      limit,
                  out);
  if (timestamp_ms_ < now - window)
    return refuse("stale timestamp: the client's clock is " +
                      std::to_string((now - timestamp_ms_) / 1000) +
                      " s behind this side's, or the message was replayed" + limit,
                  out);
  // Only confirmed messages are in the cache (confirm()); one that is was a login
  // already: refused here, before the one DH.
  if (cache_->seen(noise_.remote_ephemeral_public(), now))
    return refuse("replayed handshake: this first message was already accepted", out);
  peer_settings_.assign(payload, handshake_timestamp_len);
  phase_ = phase::checked;
  return handshake_status::need_more;
}

handshake_status key_responder::answer(std::string& out) {
  if (phase_ != phase::checked) {
    if (phase_ == phase::done) return handshake_status::done;
    return fail("key_responder::answer before message 1 was checked");
  }
  std::string message2;
  if (!noise_.write_message(settings_, message2)) return refuse(noise_.error(), out);
  const auto e = noise_.remote_ephemeral_public();
  std::copy(e.begin(), e.end(), ephemeral_.begin());
  base::append_be16(out, static_cast<std::uint16_t>(message2.size()));
  out += message2;
  phase_ = phase::done;
  return handshake_status::done;
}

handshake_status key_responder::confirm() {
  if (phase_ != phase::done) return fail("key_responder::confirm before the handshake is done");
  if (confirmed_) return handshake_status::done;
  const std::int64_t now = options_.clock();
  const auto v = cache_->record(ephemeral_, options_.user, timestamp_ms_ + options_.window.count(), now);
  if (v == replay_cache::verdict::replayed)
    return fail("replayed handshake: this first message was already accepted");
  confirmed_ = true;
  return handshake_status::done;
}

handshake_status key_responder::end_of_stream() {
  if (phase_ == phase::done) return handshake_status::done;
  return fail("the client closed the connection during the key-mode handshake");
}

record_cipher_pair key_responder::take_ciphers(rekey_limits limits) {
  if (phase_ != phase::done) throw std::logic_error("take_ciphers before the handshake is done");
  auto s = noise_.split();
  return {record_cipher(std::move(s.responder_to_initiator), limits),
          record_cipher(std::move(s.initiator_to_responder), limits)};
}

}  // namespace bokbok::crypto
