#include "rpc/admission_counts.hpp"

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

admission_counts::entry* admission_counts::find_or_add(const std::string& key,
                                                       clock::time_point now) {
  auto it = keys_.find(key);
  if (it != keys_.end()) return &it->second;
  if (keys_.size() >= max_keys) forget_idle(now);
  if (keys_.size() >= max_keys) return nullptr;  // see the header
  return &keys_.emplace(key, entry{}).first->second;
}

std::string admission_counts::check_locked(entry& e, std::string_view who,
                                           clock::time_point now) {
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
  return "";
}

std::string admission_counts::admit(const std::string& key, std::string_view who,
                                    clock::time_point now) {
  if (!limits()) return "";
  std::lock_guard lock(mutex_);
  entry* e = find_or_add(key, now);
  if (!e) return "";
  std::string why = check_locked(*e, who, now);
  if (why.empty()) ++e->open;
  return why;
}

std::string admission_counts::check(const std::string& key, std::string_view who,
                                    clock::time_point now) {
  if (!limits()) return "";
  std::lock_guard lock(mutex_);
  entry* e = find_or_add(key, now);
  return e ? check_locked(*e, who, now) : "";
}

void admission_counts::started(const std::string& key) {
  if (!limits()) return;
  std::lock_guard lock(mutex_);
  if (entry* e = find_or_add(key, clock::now())) ++e->open;
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
