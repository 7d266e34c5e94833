// The bounded replay cache of a key-mode server (PROTOCOL.md §9.4): the ephemeral public
// keys of the first handshake messages whose senders proved they hold the session keys
// (a first record from the client opened and verified: §9.6, "Login").
//
// What it is for. A login needs that proof, so a replayed message 1 can never log in,
// here or on another server. What the cache saves is work: a message 1 already in it is
// refused before any Diffie-Hellman (a decoy, then close), instead of costing a
// Diffie-Hellman, message 2 and a slot until the handshake timeout.
//
// Why it cannot lock anyone out. Nothing enters it before the proof, so nobody without a
// valid key can add an entry, and it never refuses a client for being full: it evicts.
//   - Per-user quota: a user holding `per_user` entries loses its own oldest (soonest to
//     expire) to make room, so one valid user who floods only churns its own entries.
//   - Capacity: past `capacity` entries in all, the oldest of all goes.
// An evicted message 1 can be replayed again within its window at the cost above (one
// Diffie-Hellman and one responder message per replay, a slot held at most the handshake
// timeout), which per-source admission limits bound further; it still cannot log in.
//
// An entry lives until its expiry (the message's timestamp plus the timestamp window):
// after that a replay is refused as stale anyway.
//
// Thread-safe: one cache is shared by all the connections of a server (a mutex inside).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

namespace bokbok::crypto {

inline constexpr std::size_t default_replay_capacity = 4096;
inline constexpr std::size_t default_replay_per_user = default_replay_capacity / 4;

class replay_cache {
 public:
  static constexpr std::size_t id_len = 32;  // an X25519 public key
  using id = std::array<unsigned char, id_len>;

  // Throws std::invalid_argument for a zero capacity or quota.
  explicit replay_cache(std::size_t capacity = default_replay_capacity,
                        std::size_t per_user = default_replay_per_user);

  // Drops the entries whose expiry is before `now_ms`; then whether `ephemeral` is
  // recorded. Times are unix milliseconds.
  bool seen(std::span<const unsigned char, id_len> ephemeral, std::int64_t now_ms);

  enum class verdict {
    fresh,     // not seen before: now recorded until `expires_ms`
    replayed,  // already recorded and not yet expired: not recorded again
  };
  // Drops expired entries, then records `ephemeral` for `user` unless it is there,
  // evicting first the user's oldest entry (at its quota), then the oldest of all (at
  // capacity). Never refuses for lack of room.
  verdict record(std::span<const unsigned char, id_len> ephemeral, std::string_view user,
                 std::int64_t expires_ms, std::int64_t now_ms);

  std::size_t size() const;
  std::size_t size_of(std::string_view user) const;
  std::size_t capacity() const noexcept { return capacity_; }
  std::size_t per_user() const noexcept { return per_user_; }

 private:
  struct entry {
    std::int64_t expires;
    std::string user;
  };
  using by_expiry = std::multimap<std::int64_t, id>;
  // With mutex_ held.
  void purge(std::int64_t now_ms);
  void erase(by_expiry::iterator oldest, by_expiry& index);

  const std::size_t capacity_;
  const std::size_t per_user_;
  mutable std::mutex mutex_;
  std::map<id, entry> entries_;
  by_expiry all_;                                          // every entry, by expiry
  std::map<std::string, by_expiry, std::less<>> of_user_;  // each user's, by expiry
};

}  // namespace bokbok::crypto
