// The frame trace of a connection (see frame_trace_sink.hpp).
#include "rpc/frame_trace_sink.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "wire/frame_trace.hpp"
#include "wire/preamble.hpp"

namespace bokbok::rpc {
namespace {

bool asked_by_environment() {
  const char* env = std::getenv("BOKBOK_TRACE");
  return env && *env && std::string_view(env) != "0";
}

void write_whole(std::string_view text) {
  while (!text.empty()) {
    ssize_t r = ::write(STDERR_FILENO, text.data(), text.size());
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return;  // stderr is gone: the trace is lost, nothing else
    text.remove_prefix(std::size_t(r));
  }
}

}  // namespace

trace_sink choose_trace_sink(const trace_sink& option, const std::string& peer) {
  if (option) return option;
  if (!asked_by_environment()) return {};
  return [prefix = "bokbok trace " + peer + ": "](std::string_view line) {
    std::string text = prefix;
    text += line;
    text += '\n';
    write_whole(text);
  };
}

void trace_received(const trace_sink& sink, const wire::frame_view& f) {
  sink(wire::trace_line(wire::trace_direction::received, f));
}

void trace_sent(const trace_sink& sink, const batch& b) {
  // The batch's bytes in one piece: only when tracing, so the copy costs nothing else.
  std::string bytes;
  bytes.reserve(b.bytes);
  for (const iovec& v : b.iov) bytes.append(static_cast<const char*>(v.iov_base), v.iov_len);
  std::string_view input = bytes, body;
  // Plain mode's first batch begins with the preamble, no frame: skipped (a record never
  // begins with the magic, which would make it of frame type 'K', unknown).
  if (input.starts_with(wire::preamble_magic)) wire::preamble_reader().feed(input);
  wire::record_reader records;
  while (records.next(input, body) == wire::record_reader::status::record) {
    wire::frame_view f{};
    std::string error;
    if (wire::parse_frame(body, f, error))
      sink(wire::trace_line(wire::trace_direction::sent, f));
    else
      sink("> (not a frame: " + error + ")");
  }
}

}  // namespace bokbok::rpc
