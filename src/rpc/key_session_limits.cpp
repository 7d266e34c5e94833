#include "rpc/key_session_limits.hpp"

#include <algorithm>

namespace bokbok::rpc {

void admission_counts::refill(entry& e, clock::time_point now) const {
  const double rate = per_second_;
  if (e.refilled == clock::time_point{}) {
    e.tokens = rate;
  } else {
    std::chrono::duration<double> dt = now - e.refilled;
    e.tokens = std::min(rate, e.tokens + dt.count() * rate);
  }
  e.refilled = now;
}

void admission_counts::forget_idle(clock::time_point now) {
  for (auto it = keys_.begin(); it != keys_.end();) {
    refill(it->second, now);
    if (it->second.open == 0 && it->second.tokens >= per_second_)
      it = keys_.erase(it);
    else
      ++it;
  }
}

std::string admission_counts::admit(const std::string& key, std::string_view who,
                                    clock::time_point now) {
  if (!limits()) return "";
  std::lock_guard lock(mutex_);
  auto it = keys_.find(key);
  if (it == keys_.end()) {
    if (keys_.size() >= max_keys) forget_idle(now);
    if (keys_.size() >= max_keys) return "";  // see the header
    it = keys_.emplace(key, entry{}).first;
  }
  entry& e = it->second;
  if (at_once_ && e.open >= at_once_)
    return "too many connections " + std::string(who) + ": " + std::to_string(e.open) +
           " at once (at most " + std::to_string(at_once_) + ")";
  if (per_second_) {
    refill(e, now);
    if (e.tokens < 1)
      return "too many new connections " + std::string(who) + " (at most " +
             std::to_string(per_second_) + " a second)";
    e.tokens -= 1;
  }
  ++e.open;
  return "";
}

void admission_counts::ended(const std::string& key) {
  if (!limits()) return;
  std::lock_guard lock(mutex_);
  auto it = keys_.find(key);
  if (it == keys_.end() || it->second.open == 0) return;
  --it->second.open;
}

std::size_t admission_counts::tracked() const {
  std::lock_guard lock(mutex_);
  return keys_.size();
}

}  // namespace bokbok::rpc
