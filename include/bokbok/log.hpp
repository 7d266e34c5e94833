// The library's log: what bokbok knows and the application cannot see (clients a server
// refused and why, protocol violations, answers that came too late and were dropped,
// reconnects, running out of file descriptors) goes to one sink the application sets.
// Quiet by default: with no sink set, nothing is written anywhere.
//
//   bokbok::set_log_sink(bokbok::log_to_stderr("myapp"), bokbok::log_level::info);
//   // myapp: warning: server: client tcp:[::1]:51000 failed: refused: busy: ...
//
// One sink for the whole process, not one per server or connection: the events come
// from servers, connections and reconnecting clients alike, several of them with no
// options object at hand (a late answer on a client connection), and a process has one
// stderr; set it once at start-up, as one sets the stop signals.
//
// What reaches the sink cannot be turned against the program logging it:
//   - every message is printable ASCII on one line: control bytes and bytes beyond
//     ASCII from peers (user names, error texts) are escaped (\n, \x1b, \xe2, ...) and
//     each message is cut to max_log_message bytes ("..." marks the cut), so a peer can
//     neither forge log lines nor send terminal escapes;
//   - events a peer can cause at will (refusals, protocol violations, late answers,
//     failed redials) are rate limited per cause: per 10 s window, the first few are
//     logged one by one and the rest counted, then one line says how many there were
//     ("295 more in the last 10 s (300 in all): clients failed: ... wrong key"); while
//     a flood goes on, that is one line per cause per window;
//   - running out of file descriptors on accept is one line when it starts (naming the
//     cause, not a client) and one when accepting works again.
// A window's count line is written when it is due by a server's loop (a server also
// writes all pending ones when it stops); in a process with no server, by the next event.
//
// Threads: the sink is called on the library's threads (event loops, handler threads),
// one call at a time (calls are serialized), sometimes with the library's locks held: it
// must be quick and must not call into bokbok (set_log_sink included). What it throws is
// ignored. The library never writes a log line to stdout: under serve_stdio, stdout is
// the protocol (a sink writing to fd 1 there lands on stderr: see serve_stdio).
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "bokbok/export.hpp"

namespace bokbok {

enum class log_level { debug, info, warning, error };

// "debug", "info", "warning", "error".
BOKBOK_API const char* to_string(log_level level) noexcept;
// The level a name gives ("debug", "info", "warning" or "warn", "error"); nullopt else.
BOKBOK_API std::optional<log_level> parse_log_level(std::string_view name) noexcept;

// component: where it happened ("server", "connection", "reconnect"); message: one
// printable line without its newline.
using log_sink = std::function<void(log_level level, std::string_view component,
                                    std::string_view message)>;

// Sends the library's events at `min_level` and above to `sink`; an empty sink turns the
// log off (the default). When it returns, the previous sink is no longer being called
// and will not be again; counts still pending for it (see above) are dropped.
BOKBOK_API void set_log_sink(log_sink sink, log_level min_level = log_level::info);

// A sink writing "PREFIX: LEVEL: COMPONENT: MESSAGE\n" to stderr (fd 2), one write(2)
// per line so lines from several processes sharing stderr do not interleave.
BOKBOK_API log_sink log_to_stderr(std::string prefix);

// An application's own event through the same sink and the same rate limiting per
// cause as the library's peer-caused events (above): the first few of a `cause` per 10 s
// window are logged one by one, the rest counted in one line ("... more in the last
// 10 s ..."), written by a running server's loop or when it stops. For what peers cause
// at will, such as a server's per-connection lines. `cause` names the kind of event
// with no peer's text in it ("connections opened"); `message` says it in full (made
// printable and cut like the library's). Any thread; nothing happens with no sink set.
BOKBOK_API void log_event(log_level level, std::string_view component, std::string_view cause,
                          std::string_view message);

// The longest message a sink is given, in bytes (after escaping).
inline constexpr std::size_t max_log_message = 1024;

// `text` made printable as the library's messages are: bytes outside printable ASCII
// escaped (\n, \r, \t, else \xNN), cut to `limit` bytes of input ("..." appended when
// cut). For an application logging what peers send (close_reason(), user(), fields).
BOKBOK_API std::string log_safe(std::string_view text, std::size_t limit = 256);

}  // namespace bokbok
