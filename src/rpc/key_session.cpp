#include "rpc/key_session.hpp"

#include "base/endian.hpp"
#include "bokbok/error.hpp"
#include "rpc/callback_error.hpp"

#include <algorithm>
#include <new>

namespace bokbok::rpc {

namespace {

crypto::key to_crypto(const bokbok::key& k) { return crypto::key::from_bytes(k.bytes()); }

}  // namespace

std::shared_ptr<const key_config> make_key_config(const options::key_options& keys,
                                                  std::shared_ptr<crypto::replay_cache> replay,
                                                  callback_error_handler on_error,
                                                  std::shared_ptr<admission_counts> per_user) {
  if (!keys.key && !keys.user.empty())
    throw usage_error("bokbok: options::keys.user is set but keys.key is not: set the "
                      "user's key to connect in key mode, or no user for plain mode");
  if (!keys.enabled()) return nullptr;
  if (keys.key && keys.key_for_user)
    throw usage_error(
        "bokbok: options::keys sets both a key (to connect as a user) and key_for_user "
        "(to accept users): a connection is one or the other");
  if (keys.key && keys.user.empty())
    throw usage_error("bokbok: options::keys.key needs keys.user, the user name");
  if (keys.user.size() > wire::max_user_name)
    throw usage_error("bokbok: options::keys.user is longer than 255 bytes");
  auto c = std::make_shared<key_config>();
  c->user = keys.user;
  c->key = keys.key;
  if (keys.key_for_user)
    c->key_for_user = [lookup = keys.key_for_user, on_error = std::move(on_error)](
                          std::string_view user) -> std::optional<bokbok::key> {
      std::optional<bokbok::key> found;
      detail::guard_callback(on_error, "options::keys.key_for_user",
                             [&] { found = lookup(user); });
      return found;  // a failing lookup refuses the user, like an unknown one
    };
  c->window = keys.clock_window;
  c->replay = std::move(replay);
  if (per_user && per_user->limits()) c->per_user = std::move(per_user);
  return c;
}

key_session::key_session(std::shared_ptr<const key_config> cfg, std::string local_preamble,
                         std::string settings)
    : cfg_(std::move(cfg)),
      local_preamble_(std::move(local_preamble)),
      settings_(std::move(settings)) {
  // An initiator's ephemeral key pair is made now, on the thread opening the connection
  // (connect()'s caller), not by begin() on the event loop that all of a process's
  // connect() connections share: there it was a quarter of the loop's time per key-mode
  // connection. No locked memory left: begin() makes it, and fails as it always did.
  if (cfg_->initiator()) {
    try {
      prepared_ = crypto::ephemeral_keypair::generate();
    } catch (const std::bad_alloc&) {
    }
  }
}

key_session::step key_session::fail(std::string why, bool refused) {
  error_ = std::move(why);
  refused_ = refused;
  return step::failed;
}

key_session::step key_session::begin(const wire::preamble& peer, std::string_view peer_bytes,
                                     std::string& out) {
  auto role = cfg_->initiator() ? crypto::noise_role::initiator : crypto::noise_role::responder;
  if (cfg_->initiator() && peer_bytes == local_preamble_)
    return fail("the peer sent back this side's own preamble: the connection is reflected "
                "by something that echoes its input, e.g. `cat`, not a bokbok server",
                false);
  if (auto why = crypto::key_preamble_error(role, peer); !why.empty()) return fail(why, false);
  if (cfg_->initiator()) {
    try {
      initiator_ = std::make_unique<crypto::key_initiator>(to_crypto(*cfg_->key), local_preamble_,
                                                           peer_bytes, settings_);
    } catch (const std::bad_alloc&) {
      return out_of_memory();
    }
    if (prepared_) {
      initiator_->use_ephemeral(std::move(*prepared_));
      prepared_.reset();
    }
    auto st = initiator_->start(out);
    if (st == crypto::handshake_status::error) return fail(initiator_->error(), false);
    return step::need_more;
  }
  // A responder allocates nothing secret yet: the key lookup and the handshake state wait
  // for a whole message 1 (feed), so a client that sends only its preamble costs none.
  peer_user_ = peer.user;
  peer_preamble_ = peer_bytes;
  return step::need_more;
}

// Responder, once message 1 has come whole: looks the user's key up and starts the
// handshake state. Throws std::bad_alloc when no memory is left for the secrets.
void key_session::start_responder() {
  std::optional<crypto::key> psk;
  if (cfg_->key_for_user) {
    try {
      if (auto k = cfg_->key_for_user(peer_user_)) psk = to_crypto(*k);
    } catch (...) {
      // A failing lookup refuses the user, indistinguishably from an unknown one.
    }
  }
  known_user_ = psk.has_value();
  crypto::responder_options ro;
  ro.window = cfg_->window;
  ro.user = peer_user_;
  responder_ = std::make_unique<crypto::key_responder>(std::move(psk), peer_preamble_,
                                                       local_preamble_, settings_, *cfg_->replay, ro);
}

// Responder: moves bytes of message 1 from `in` to `message1_` until the record is whole
// (or its length is out of range, which the responder then reports). True when it is.
bool key_session::gather_message1(std::string_view& in) {
  while (message1_.size() < 2 && !in.empty()) {
    message1_.push_back(in.front());
    in.remove_prefix(1);
  }
  if (message1_.size() < 2) return false;
  const std::size_t len = base::load_be16(message1_);
  if (len < crypto::message1_min_body || len > crypto::message1_max_body) return true;
  const std::size_t n = std::min(2 + len - message1_.size(), in.size());
  message1_.append(in.substr(0, n));
  in.remove_prefix(n);
  return message1_.size() == 2 + len;
}

key_session::step key_session::finish_handshake() {
  if (initiator_) {
    peer_settings_ = initiator_->peer_settings();
    ciphers_.emplace(initiator_->take_ciphers());
  } else {
    peer_settings_ = responder_->peer_settings();
    ciphers_.emplace(responder_->take_ciphers());
  }
  ready_.store(true, std::memory_order_release);
  // The handshake's secrets (ephemeral key, chaining key, psk) are not needed any more:
  // wiped now, so an open connection holds only its two record keys. A responder keeps
  // its state until the client's first record confirms the login (confirm(), §9.6),
  // which records message 1 in the replay cache; confirm() wipes it then.
  if (initiator_) {
    initiator_.reset();
    drop_handshake_inputs();
  }
  return step::done;
}

// Once no handshake state is left: the preambles and settings it was made from are not
// needed any more (an open connection should hold only what it uses).
void key_session::drop_handshake_inputs() {
  std::string().swap(local_preamble_);
  std::string().swap(settings_);
  std::string().swap(peer_preamble_);
}

// No memory for a connection's secrets refuses that connection only (logged as its end).
key_session::step key_session::out_of_memory() {
  initiator_.reset();
  responder_.reset();
  return fail("no memory left for the key-mode handshake's secrets: connection refused", false);
}

key_session::step key_session::confirm() {
  if (!awaiting_confirmation()) return step::done;
  if (responder_->confirm() == crypto::handshake_status::error)
    return fail(responder_->error(), true);
  confirmed_ = true;
  responder_.reset();  // its secrets were kept only to confirm the login
  drop_handshake_inputs();
  return step::done;
}

std::string key_session::admit_user() {
  if (!cfg_->per_user || counted_) return "";
  std::string why = cfg_->per_user->admit(peer_user_, "of user \"" + wire::escape_bytes(peer_user_) + "\"");
  counted_ = why.empty();
  return why;
}

void key_session::logout() {
  if (!counted_) return;
  counted_ = false;
  cfg_->per_user->ended(peer_user_);
}

key_session::step key_session::feed(std::string_view& in, std::string& out) {
  if (!error_.empty()) return step::failed;
  if (ciphers_) return step::done;  // the handshake state is gone once it is done
  try {
    return feed_handshake(in, out);
  } catch (const std::bad_alloc&) {
    return out_of_memory();
  }
}

key_session::step key_session::answer(std::string& out) {
  if (!error_.empty()) return step::failed;
  if (!responder_ || !responder_->checked()) return fail("key_session::answer out of turn", false);
  try {
    if (responder_->answer(out) == crypto::handshake_status::error)
      return fail(responder_->error(), true);
    return finish_handshake();
  } catch (const std::bad_alloc&) {
    return out_of_memory();
  }
}

key_session::step key_session::feed_handshake(std::string_view& in, std::string& out) {
  if (!initiator_ && !responder_) {
    if (!gather_message1(in)) return step::need_more;
    start_responder();
    std::string_view whole = message1_;
    auto st = responder_->check(whole, out);
    std::string().swap(message1_);
    if (st == crypto::handshake_status::error) return fail(responder_->error(), true);
    return step::answer;  // a whole message 1 that is not an error passed every check
  }
  if (initiator_) {
    auto st = initiator_->feed(in);
    if (st == crypto::handshake_status::need_more) return step::need_more;
    if (st == crypto::handshake_status::error)
      return fail(initiator_->error(), initiator_->error() == crypto::authentication_failed);
    return finish_handshake();
  }
  auto st = responder_->feed(in, out);
  if (st == crypto::handshake_status::need_more) return step::need_more;
  if (st == crypto::handshake_status::error) return fail(responder_->error(), true);
  return finish_handshake();
}

}  // namespace bokbok::rpc
