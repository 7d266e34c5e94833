// The library's side of its log (include/bokbok/log.hpp): the process-wide sink, and the
// calls the layers make. In base, so every layer may log.
//
// Threads: every function is thread-safe; the sink runs under one mutex (calls are
// serialized), so callers may hold their own locks but the sink must not call back in.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "bokbok/log.hpp"

namespace bokbok::base {

// Whether an event at `level` would reach a sink (cheap: for messages costly to build).
bool log_on(log_level level);

// One event, logged as it comes (things that happen rarely, or once per episode).
void log(log_level level, std::string_view component, std::string_view message);

// One event a peer can cause at will, rate limited per `cause` (base/log_limiter.hpp):
// `cause` names what happened without any peer's address or text ("clients refused:
// wrong key"), `message` says it in full.
void log_limited(log_level level, std::string_view component, std::string_view cause,
                 std::string_view message);

// Writes the count lines of windows that have ended (with `all`: of every window, as a
// server does when it stops). Returns when the next one is due; nullopt: none pending.
std::optional<std::chrono::steady_clock::time_point> log_flush(bool all = false);

}  // namespace bokbok::base
