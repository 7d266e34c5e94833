// The frame trace (options::trace, BOKBOK_TRACE, `bokbok call --trace`): one frame as one
// line of text for a human. Pure code over bytes, no I/O.
//
// A line reads  DIR TYPE id=ID flags=FLAGS DETAILS  with DIR '>' for a frame sent and '<'
// for one received, FLAGS "-" or the set ones joined by '|' (more, continued, deadline),
// and DETAILS by type:
//   hello                       max_message_size=N heartbeat_ms=N max_concurrent_calls=N
//                               features=0xN (the nonce is left out)
//   request, response, notify   [deadline=Nms] [COUNT] FIELD...  for a first (or only)
//                               fragment; a continued one: "N bytes". At most
//                               trace_max_fields fields are shown, then "...(N more)";
//                               a fragment that ends inside the message ends with "..."
//   error, goaway               code=NAME(N) TEXT
//   ping, pong                  PAYLOAD (as a field)
//   cancel, close               nothing
// A FIELD (or TEXT, PAYLOAD) is quoted: printable ASCII as is, '"' and '\' escaped, \n \t \r
// as such, any other byte as \xHH. Only its first trace_field_bytes bytes
// (trace_text_bytes for TEXT) are shown; a longer one is followed by "...(N bytes)".
// Example:  > request id=1 flags=deadline deadline=2000ms [2] "echo" "hi"
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "wire/frame.hpp"

namespace bokbok::wire {

enum class trace_direction { sent, received };

inline constexpr std::size_t trace_field_bytes = 32;
inline constexpr std::size_t trace_text_bytes = 160;
inline constexpr std::size_t trace_max_fields = 8;

// The line for frame `f` (no newline). `f` must be a frame parse_frame() accepted.
std::string trace_line(trace_direction dir, const frame_view& f);

// `bytes` quoted and abbreviated as a FIELD is (see above), at most `limit` bytes shown.
std::string trace_quote(std::string_view bytes, std::size_t limit = trace_field_bytes);

}  // namespace bokbok::wire
