#include "crypto/replay_cache.hpp"

#include <algorithm>
#include <stdexcept>

namespace bokbok::crypto {

replay_cache::replay_cache(std::size_t capacity) : capacity_(capacity) {
  if (capacity_ == 0) throw std::invalid_argument("replay_cache capacity must be nonzero");
}

void replay_cache::purge(std::int64_t now_ms) {
  while (!by_expiry_.empty() && by_expiry_.begin()->first < now_ms) {
    expiry_of_.erase(by_expiry_.begin()->second);
    by_expiry_.erase(by_expiry_.begin());
  }
}

replay_cache::verdict replay_cache::check_and_insert(
    std::span<const unsigned char, id_len> ephemeral, std::int64_t expires_ms,
    std::int64_t now_ms) {
  id key;
  std::copy(ephemeral.begin(), ephemeral.end(), key.begin());
  std::lock_guard lock(mutex_);
  purge(now_ms);
  if (expiry_of_.count(key)) return verdict::replayed;
  if (expiry_of_.size() >= capacity_) return verdict::full;
  expiry_of_.emplace(key, expires_ms);
  by_expiry_.emplace(expires_ms, key);
  return verdict::fresh;
}

std::size_t replay_cache::size() const {
  std::lock_guard lock(mutex_);
  return expiry_of_.size();
}

}  // namespace bokbok::crypto
