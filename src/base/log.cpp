// The process-wide log sink (include/bokbok/log.hpp, base/log.hpp).
#include "base/log.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>

#include "base/log_limiter.hpp"

namespace bokbok {

namespace {

constexpr int log_off = 100;  // above every level

struct log_state {
  std::mutex mu;  // guards the rest; held while the sink runs
  log_sink sink;
  base::log_limiter limiter;
  std::atomic<int> min_level{log_off};  // read without mu: the cheap check
};

// Never destroyed: threads may still log while the program exits.
log_state& state() {
  static log_state* s = new log_state;
  return *s;
}

// `mu` held: hands one line to the sink, made printable and cut.
void emit_locked(log_state& s, log_level level, std::string_view component,
                 std::string_view message) {
  if (!s.sink) return;
  std::string text = log_safe(message, max_log_message);
  try {
    s.sink(level, component, text);
  } catch (...) {
    // A sink that throws loses its line; the library goes on.
  }
}

void emit_all_locked(log_state& s, const std::vector<base::log_limiter::line>& lines) {
  for (const auto& l : lines) emit_locked(s, l.level, l.component, l.message);
}

}  // namespace

const char* to_string(log_level level) noexcept {
  switch (level) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warning: return "warning";
    case log_level::error: return "error";
  }
  return "unknown";
}

std::optional<log_level> parse_log_level(std::string_view name) noexcept {
  if (name == "debug") return log_level::debug;
  if (name == "info") return log_level::info;
  if (name == "warning" || name == "warn") return log_level::warning;
  if (name == "error") return log_level::error;
  return std::nullopt;
}

void set_log_sink(log_sink sink, log_level min_level) {
  auto& s = state();
  log_sink old;
  {
    std::lock_guard lock(s.mu);  // waits for a call of the old sink to finish
    old = std::move(s.sink);
    s.sink = std::move(sink);
    s.limiter.clear();
    s.min_level.store(s.sink ? int(min_level) : log_off, std::memory_order_relaxed);
  }
  // `old` is destroyed here, outside the lock.
}

log_sink log_to_stderr(std::string prefix) {
  return [prefix = std::move(prefix)](log_level level, std::string_view component,
                                      std::string_view message) {
    std::string line;
    line.reserve(prefix.size() + component.size() + message.size() + 16);
    if (!prefix.empty()) line.append(prefix).append(": ");
    line.append(to_string(level)).append(": ");
    line.append(component).append(": ").append(message).push_back('\n');
    // One write: lines from several threads and processes do not interleave.
    (void)!::write(STDERR_FILENO, line.data(), line.size());
  };
}

std::string log_safe(std::string_view text, std::size_t limit) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  const std::size_t n = std::min(text.size(), limit);
  out.reserve(n + 8);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0xf]);
    }
  }
  if (text.size() > limit) out += "...";
  return out;
}

void log_event(log_level level, std::string_view component, std::string_view cause,
               std::string_view message) {
  base::log_limited(level, component, cause, message);
}

namespace base {

bool log_on(log_level level) {
  return int(level) >= state().min_level.load(std::memory_order_relaxed);
}

void log(log_level level, std::string_view component, std::string_view message) {
  if (!log_on(level)) return;
  auto& s = state();
  std::lock_guard lock(s.mu);
  if (int(level) < s.min_level.load(std::memory_order_relaxed)) return;
  emit_locked(s, level, component, message);
}

void log_limited(log_level level, std::string_view component, std::string_view cause,
                 std::string_view message) {
  if (!log_on(level)) return;
  auto& s = state();
  std::lock_guard lock(s.mu);
  if (int(level) < s.min_level.load(std::memory_order_relaxed)) return;
  std::vector<log_limiter::line> due;
  bool alone = s.limiter.admit(level, component, cause, log_limiter::clock::now(), due);
  emit_all_locked(s, due);
  if (alone) emit_locked(s, level, component, message);
}

std::optional<std::chrono::steady_clock::time_point> log_flush(bool all) {
  auto& s = state();
  if (s.min_level.load(std::memory_order_relaxed) == log_off) return std::nullopt;  // no sink
  std::lock_guard lock(s.mu);
  std::vector<log_limiter::line> due;
  s.limiter.flush(log_limiter::clock::now(), all, due);
  emit_all_locked(s, due);
  return s.limiter.next_due();
}

}  // namespace base
}  // namespace bokbok
