// is_socket and fd_kind: what kind of file a descriptor is, asked the one way every
// layer shares.
//
// A connection's set-up passes one descriptor down through several layers (connect or
// accept, credentials, the fd-passing check, the stream), and each needs to know
// whether it is a socket, of which family, and whether it is non-blocking. Asking the
// kernel at every layer cost about ten system calls per connection; so the layer that
// made the descriptor (connect, accept) states what it knows in an fd_kind, and the
// layers under it use that. A descriptor that came from elsewhere (stdin, a pipe, a
// caller's fd) is asked once, with fd_kind::of.
#pragma once

#include <sys/socket.h>

namespace bokbok::base {

// True when `fd` is an open descriptor of a socket (any family or type). False for any
// other file (pipe, tty, regular file, /dev/null) and for a descriptor that fstat cannot
// inspect, such as a closed one: callers that must tell "not open" apart check that
// themselves (duplex_stream's fcntl does, before it asks). Never throws; any thread.
bool is_socket(int fd) noexcept;

// What is known of a descriptor. A value type; any thread.
struct fd_kind {
  bool socket = false;
  int family = AF_UNSPEC;    // a socket's: AF_UNIX, AF_INET, AF_INET6 (AF_UNSPEC: not one)
  bool stream = false;       // a SOCK_STREAM socket
  bool nonblocking = false;  // O_NONBLOCK is known to be set (false: not known)

  // Asks the kernel (fstat; for a socket, SO_DOMAIN and SO_TYPE). Not whether it is
  // non-blocking: set_nonblocking asks that when it must. Never throws.
  static fd_kind of(int fd) noexcept;
  // A connected stream socket of `family` that its maker set up: no question asked.
  static fd_kind stream_socket(int family, bool nonblocking) noexcept {
    return {true, family, true, nonblocking};
  }

  bool unix_stream() const noexcept { return socket && family == AF_UNIX && stream; }
};

}  // namespace bokbok::base
