// Test support: a raw peer's reads and writes on a socket, bounded in time, for tests
// that send exact bytes and check the exact bytes that come back.
#pragma once

#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "base/unique_fd.hpp"

namespace bokbok_test {

// A stream socket connected to the UNIX socket at `path` (REQUIREs success).
inline bokbok::base::unique_fd connect_unix(const std::string& path) {
  bokbok::base::unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  REQUIRE(path.size() < sizeof a.sun_path);
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  return fd;
}

// Writes all of `bytes`; false if the peer is gone (no SIGPIPE).
inline bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(std::size_t(n));
  }
  return true;
}

// Reads until `want` bytes have come (or the stream ends, or `limit` passes); on a
// socket or a pipe.
inline std::string read_some(int fd, std::size_t want, std::chrono::milliseconds limit) {
  std::string out;
  auto end = std::chrono::steady_clock::now() + limit;
  while (out.size() < want) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, int(left.count())) <= 0) break;
    char buf[4096];
    ssize_t n = ::read(fd, buf, std::min(sizeof buf, want - out.size()));  // sockets and pipes
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, std::size_t(n));
  }
  return out;
}

// Reads one record (u16 length || body, PROTOCOL.md §3) whole, header included, each
// part within `limit`; what came of it if the stream ended or time ran out first.
inline std::string read_record(int fd, std::chrono::milliseconds limit = std::chrono::seconds(3)) {
  std::string r = read_some(fd, 2, limit);
  if (r.size() < 2) return r;
  std::size_t len = (std::size_t(std::uint8_t(r[0])) << 8) | std::uint8_t(r[1]);
  return r + read_some(fd, len, limit);
}

}  // namespace bokbok_test
