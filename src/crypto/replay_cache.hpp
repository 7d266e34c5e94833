// The bounded replay cache of a key-mode server (PROTOCOL.md §9.4): the ephemeral public
// keys of the authenticated first handshake messages it accepted recently.
//
// An entry is kept until its expiry time, which the caller sets to the message's
// timestamp plus the timestamp window: after that, a replay of the message is refused as
// stale anyway. The cache never grows beyond its capacity: when it is full of unexpired
// entries a new client is refused (verdict `full`) instead, until entries expire. Only
// authenticated messages are recorded, so only holders of a valid key can fill it; size
// the capacity for the busiest legitimate burst: (handshakes per second) x 2 x window.
//
// Thread-safe: one cache is shared by all the connections of a server (a mutex inside).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <span>

namespace bokbok::crypto {

inline constexpr std::size_t default_replay_capacity = 4096;

class replay_cache {
 public:
  static constexpr std::size_t id_len = 32;  // an X25519 public key
  using id = std::array<unsigned char, id_len>;

  explicit replay_cache(std::size_t capacity = default_replay_capacity);

  enum class verdict {
    fresh,     // not seen before: now recorded until `expires_ms`
    replayed,  // already recorded and not yet expired
    full,      // not seen, but the cache is full of unexpired entries: not recorded
  };

  // First drops every entry whose expiry is before `now_ms`, then looks `ephemeral` up
  // and records it if it is new and there is room. Times are unix milliseconds.
  verdict check_and_insert(std::span<const unsigned char, id_len> ephemeral,
                           std::int64_t expires_ms, std::int64_t now_ms);

  std::size_t size() const;
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  void purge(std::int64_t now_ms);  // with mutex_ held

  const std::size_t capacity_;
  mutable std::mutex mutex_;
  std::map<id, std::int64_t> expiry_of_;          // ephemeral -> expiry
  std::multimap<std::int64_t, id> by_expiry_;     // expiry -> ephemeral, for purging
};

}  // namespace bokbok::crypto
