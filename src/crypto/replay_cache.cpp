#include "crypto/replay_cache.hpp"

#include <algorithm>
#include <stdexcept>

namespace bokbok::crypto {

namespace {

replay_cache::id id_of(std::span<const unsigned char, replay_cache::id_len> e) {
  replay_cache::id key;
  std::copy(e.begin(), e.end(), key.begin());
  return key;
}

// Removes the entry `key` expiring at `expires` from `index`.
template <class Index>
void unindex(Index& index, std::int64_t expires, const replay_cache::id& key) {
  auto [from, to] = index.equal_range(expires);
  for (auto it = from; it != to; ++it)
    if (it->second == key) {
      index.erase(it);
      return;
    }
}

}  // namespace

replay_cache::replay_cache(std::size_t capacity, std::size_t per_user)
    : capacity_(capacity), per_user_(per_user) {
  if (capacity_ == 0) throw std::invalid_argument("replay_cache capacity must be nonzero");
  if (per_user_ == 0) throw std::invalid_argument("replay_cache per-user quota must be nonzero");
}

// Erases the entry that `oldest` (an iterator of `index`, either all_ or one user's)
// points at, from every index.
void replay_cache::erase(by_expiry::iterator oldest, by_expiry& index) {
  const id key = oldest->second;
  const std::int64_t expires = oldest->first;
  index.erase(oldest);
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  if (&index != &all_) unindex(all_, expires, key);
  auto u = of_user_.find(it->second.user);
  if (u != of_user_.end()) {
    if (&index != &u->second) unindex(u->second, expires, key);
    if (u->second.empty()) of_user_.erase(u);
  }
  entries_.erase(it);
}

void replay_cache::purge(std::int64_t now_ms) {
  while (!all_.empty() && all_.begin()->first < now_ms) erase(all_.begin(), all_);
}

bool replay_cache::seen(std::span<const unsigned char, id_len> ephemeral, std::int64_t now_ms) {
  const id key = id_of(ephemeral);
  std::lock_guard lock(mutex_);
  purge(now_ms);
  return entries_.count(key) != 0;
}

replay_cache::verdict replay_cache::record(std::span<const unsigned char, id_len> ephemeral,
                                           std::string_view user, std::int64_t expires_ms,
                                           std::int64_t now_ms) {
  const id key = id_of(ephemeral);
  std::lock_guard lock(mutex_);
  purge(now_ms);
  if (entries_.count(key)) return verdict::replayed;
  if (auto u = of_user_.find(user); u != of_user_.end() && u->second.size() >= per_user_)
    erase(u->second.begin(), u->second);
  if (entries_.size() >= capacity_) erase(all_.begin(), all_);
  entries_.emplace(key, entry{expires_ms, std::string(user)});
  all_.emplace(expires_ms, key);
  auto u = of_user_.find(user);
  if (u == of_user_.end()) u = of_user_.emplace(std::string(user), by_expiry{}).first;
  u->second.emplace(expires_ms, key);
  return verdict::fresh;
}

std::size_t replay_cache::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

std::size_t replay_cache::size_of(std::string_view user) const {
  std::lock_guard lock(mutex_);
  auto u = of_user_.find(user);
  return u == of_user_.end() ? 0 : u->second.size();
}

}  // namespace bokbok::crypto
