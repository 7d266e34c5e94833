// Taking over stdin/stdout for a connection.
#pragma once

#include <utility>

#include "base/unique_fd.hpp"

namespace bokbok::transport {

// Moves the process's stdin/stdout out of the way and returns private descriptors for
// them: the returned pair are duplicates of fds 0 and 1 (close-on-exec), after which
// fd 0 reads /dev/null and fd 1 writes to stderr (fd 2). So a stray printf or a log line
// on stdout can never corrupt the protocol stream, and closing the connection really
// closes the peer's pipe. Throws transport_error when a descriptor is missing.
std::pair<base::unique_fd, base::unique_fd> take_stdio();

}  // namespace bokbok::transport
