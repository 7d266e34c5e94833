// write_now: one non-blocking write from whatever thread calls it, that never raises
// SIGPIPE. Used by the RPC layer to send a small record straight from a caller's thread
// when the connection's send side is idle, saving a wake-up of the loop thread.
#pragma once

#include <sys/types.h>

#include <string_view>

namespace bokbok::io {

// Writes what it can of `bytes` to `fd` (which must be non-blocking; `is_socket` is what
// base::is_socket(fd) says, asked once by the caller): send() with MSG_NOSIGNAL on a
// socket, write() with SIGPIPE blocked in this thread otherwise (a SIGPIPE the write
// raised is consumed before the mask is restored). Returns the bytes written, or -errno
// (-EAGAIN when the kernel buffer is full).
ssize_t write_now(int fd, bool is_socket, std::string_view bytes) noexcept;

}  // namespace bokbok::io
