// log_limiter: rate limiting of log events per cause, so that what a peer can cause at will
// (refusals, protocol violations) cannot flood the log (include/bokbok/log.hpp).
//
// Per cause, time runs in windows of `window`. In a window the first `burst` events are
// logged one by one and the rest only counted; when the window ends with events left
// unlogged, one count line says how many ("295 more in the last 10 s (300 in all): ...").
// A cause whose window ended that way is "hot": while events keep coming (the next one
// within a window of the end), its windows log none one by one, only their count line,
// so a flood costs one line per cause per window. It cools after a quiet window.
// At most max_causes causes are tracked; events of further causes share one ("other").
//
// Threads: none of its own; not thread-safe (base/log.cpp guards it). Time is given, so
// it can be tested without waiting.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bokbok/log.hpp"

namespace bokbok::base {

class log_limiter {
 public:
  using clock = std::chrono::steady_clock;
  struct line {
    log_level level;
    std::string component;
    std::string message;
  };

  explicit log_limiter(std::chrono::seconds window = std::chrono::seconds(10), unsigned burst = 5)
      : window_(window), burst_(burst) {}

  static constexpr std::size_t max_causes = 64;

  // One event of `cause` (from `component`) at `now`: true when it is to be logged on its
  // own, false when it is only counted. Count lines of windows that have ended are
  // appended to `due` first.
  bool admit(log_level level, std::string_view component, std::string_view cause,
             clock::time_point now, std::vector<line>& due);
  // Appends the count lines of windows ended by `now` (with `all`: of every window, ended
  // or not, as when the program stops) to `due`.
  void flush(clock::time_point now, bool all, std::vector<line>& due);
  // When the next count line is due; nullopt when none is pending.
  std::optional<clock::time_point> next_due() const;
  void clear() { causes_.clear(); }

 private:
  struct cause_state {
    log_level level = log_level::info;
    std::string component;
    clock::time_point start;           // of the current window
    unsigned long long count = 0;      // events in it
    unsigned long long shown = 0;      // of which logged one by one
    bool hot = false;
  };
  // Ends `s`'s window at `end` (its count line, if any, into `due`); `now`: the time of
  // the event or flush that ends it.
  void end_window(const std::string& cause, cause_state& s, clock::time_point now,
                  std::vector<line>& due);

  std::chrono::seconds window_;
  unsigned burst_;
  std::map<std::string, cause_state, std::less<>> causes_;
};

// 1234567 -> "1,234,567".
std::string with_thousands(unsigned long long n);

}  // namespace bokbok::base
