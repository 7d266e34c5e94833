// start_event_loop: io::loop::start for the public API, whose errors are bokbok errors.
#pragma once

#include <memory>

#include "io/loop.hpp"

namespace bokbok::detail {

// Starts a loop as io::loop::start() does. Throws usage_error for a bad BOKBOK_BACKEND
// and resource_error when the system refuses the loop its ring, descriptors or thread.
std::shared_ptr<io::loop> start_event_loop();

// The loop shared by everything the public API opens without a loop of its own
// (connect*, open_byte_channel's children), started on first use. It lives until static
// destruction at exit, which stops and joins it on the exiting thread: were the last
// reference dropped on the loop thread itself (by its last connection), it would have to
// detach, and could still be running when exit() tears the process down. Throws as
// start_event_loop() does.
std::shared_ptr<io::loop> default_event_loop();

}  // namespace bokbok::detail
