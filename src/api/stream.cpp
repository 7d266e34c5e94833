// bokbok::stream: the public handle of a stream call; the work is in
// src/rpc/stream_state.* and the connection's stream files.
#include "bokbok/stream.hpp"

#include "bokbok/error.hpp"

namespace bokbok {

namespace {
[[noreturn]] void not_yet() { throw usage_error("bokbok::stream: not yet implemented"); }
}  // namespace

void stream::write(message) { not_yet(); }
bool stream::try_write(message&) { not_yet(); }
void stream::close_write() { not_yet(); }
std::optional<message> stream::read() { not_yet(); }
std::optional<message> stream::read(std::chrono::steady_clock::time_point) { not_yet(); }
void stream::cancel() { not_yet(); }
message stream::finish() { not_yet(); }

}  // namespace bokbok
