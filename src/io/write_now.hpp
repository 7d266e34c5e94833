// write_now: one non-blocking write from whatever thread calls it, that never raises
// SIGPIPE. duplex_stream::try_write_now writes with it (the stream owns the fd and the
// rules of when it may be written); so do the few writes to a raw fd that has no stream
// (a server's refusal to a client it will not serve, the bridge tool's relay).
#pragma once

#include <sys/types.h>

#include <string_view>

namespace bokbok::io {

// Writes what it can of `bytes` to `fd` (which must be non-blocking; `is_socket` is what
// base::is_socket(fd) says, asked once by the caller): send() with MSG_NOSIGNAL on a
// socket, write() otherwise. On a non-socket, `sigpipe_blocked` says the calling thread
// blocks SIGPIPE already (a loop thread): the write is plain and a SIGPIPE it raised is
// consumed; else SIGPIPE is blocked around the write and a SIGPIPE it raised is consumed
// before the mask is restored. Returns the bytes written, or -errno (-EAGAIN when the
// kernel buffer is full).
ssize_t write_now(int fd, bool is_socket, std::string_view bytes,
                  bool sigpipe_blocked = false) noexcept;

}  // namespace bokbok::io
