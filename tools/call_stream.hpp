// `bokbok call --stream`: moving one stream call's messages between the terminal and the
// stream (PROTOCOL.md §12). call.cpp connects, opens the stream and maps errors to exit
// statuses; this file reads standard input into the stream and prints what comes back.
//
// Input (the requester's stream), when `send_input`: standard input, one message per
// line. Plain: the line's bytes (without its "\n") are the message's one field. --json:
// each non-blank line is a JSON array as -d takes it (strings, integers, true/false,
// {"base64": ...}), its elements the fields. At end of input the stream ends (stream_end).
// Output: each message the server streams, as it arrives: plain, each field followed by
// "\n" (as the response); --json, one line {"stream": [FIELD...]}.
#pragma once

#include <chrono>
#include <optional>

#include <bokbok/stream.hpp>

#include "bokbok/message.hpp"

namespace bokbok::tools::call {

struct stream_io {
  bool json = false;
  int out_fd = 1;
  bool send_input = true;  // false: nothing is read; the stream ends at once
};

// Runs the call to its end and returns its final response. A thread reads standard input
// and writes the stream while this thread prints; it is joined before returning. Throws
// what bokbok::stream throws (remote_error, call_error, transport_error); a malformed
// --json input line cancels the call and throws usage_error; a failed write of the output
// cancels the call and throws std::system_error.
message run_stream(stream& s, const stream_io& io,
                   std::optional<std::chrono::steady_clock::time_point> deadline);

}  // namespace bokbok::tools::call
