#include "base/log_limiter.hpp"

#include <algorithm>

namespace bokbok::base {

namespace {
constexpr std::string_view other_cause = "other events";
}

std::string with_thousands(unsigned long long n) {
  std::string digits = std::to_string(n), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

void log_limiter::end_window(const std::string& cause, cause_state& s, clock::time_point now,
                             std::vector<line>& due) {
  bool suppressed = s.count > s.shown;
  if (suppressed) {
    // The window's own length, or less when it is cut short (flush with `all`).
    auto span = std::min<clock::duration>(now - s.start, window_);
    auto secs = std::max<long long>(1, std::chrono::ceil<std::chrono::seconds>(span).count());
    due.push_back({s.level, s.component,
                   with_thousands(s.count - s.shown) + " more in the last " +
                       std::to_string(secs) + " s (" + with_thousands(s.count) +
                       " in all): " + cause});
  }
  s.hot = suppressed;
  s.count = s.shown = 0;
  s.start += window_;  // a quiet window from here on cools the cause (flush forgets it)
}

bool log_limiter::admit(log_level level, std::string_view component, std::string_view cause,
                        clock::time_point now, std::vector<line>& due) {
  flush(now, false, due);
  auto it = causes_.find(cause);
  if (it == causes_.end()) {
    if (causes_.size() >= max_causes) cause = other_cause;
    it = causes_.find(cause);
    if (it == causes_.end()) {
      cause_state fresh;
      fresh.level = level;
      fresh.component = std::string(component);
      fresh.start = now;
      it = causes_.emplace(std::string(cause), std::move(fresh)).first;
    }
  }
  cause_state& s = it->second;
  if (s.count == 0) {  // the first event of a window: it starts now
    s.start = now;
    s.level = level;
  }
  ++s.count;
  if (s.hot || s.shown >= burst_) return false;
  ++s.shown;
  return true;
}

void log_limiter::flush(clock::time_point now, bool all, std::vector<line>& due) {
  for (auto it = causes_.begin(); it != causes_.end();) {
    cause_state& s = it->second;
    if (s.count > 0 && (all || now >= s.start + window_)) end_window(it->first, s, now, due);
    if (s.count == 0 && (all || now >= s.start + window_))
      it = causes_.erase(it);  // a quiet window: forgotten, cool again
    else
      ++it;
  }
}

std::optional<log_limiter::clock::time_point> log_limiter::next_due() const {
  std::optional<clock::time_point> next;
  for (const auto& [cause, s] : causes_)
    if (s.count > s.shown && (!next || s.start + window_ < *next)) next = s.start + window_;
  return next;
}

}  // namespace bokbok::base
