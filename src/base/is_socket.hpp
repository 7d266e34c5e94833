// is_socket: what kind of file a descriptor is, asked the one way every layer shares.
#pragma once

namespace bokbok::base {

// True when `fd` is an open descriptor of a socket (any family or type). False for any
// other file (pipe, tty, regular file, /dev/null) and for a descriptor that fstat cannot
// inspect, such as a closed one: callers that must tell "not open" apart check that
// themselves (duplex_stream's fcntl does, before it asks). Never throws; any thread.
bool is_socket(int fd) noexcept;

}  // namespace bokbok::base
