// start_event_loop: io::loop::start for the public API, whose errors are bokbok errors.
#pragma once

#include <memory>

#include "io/loop.hpp"

namespace bokbok::detail {

// Starts a loop as io::loop::start() does. Throws usage_error for a bad BOKBOK_BACKEND
// and resource_error when the system refuses the loop its ring, descriptors or thread.
std::shared_ptr<io::loop> start_event_loop();

}  // namespace bokbok::detail
