// Connecting, peer names and credentials. Listening lives in listen.cpp; the sockaddr
// helpers both use are in sockaddr.hpp.
#include "transport/sockets.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "bokbok/error.hpp"
#include "transport/sockaddr.hpp"

namespace bokbok::transport {

namespace {

using clock = std::chrono::steady_clock;

std::string timed_out(std::chrono::milliseconds timeout) {
  return "timed out after " + std::to_string(timeout.count()) + " ms";
}

// Waits for a non-blocking connect to finish by `deadline` (none: no limit); returns
// 0 or the errno it failed with (ETIMEDOUT when the deadline passed).
int finish_connect(int fd, std::optional<clock::time_point> deadline) {
  for (;;) {
    int wait_ms = -1;
    if (deadline) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - clock::now());
      if (left.count() <= 0) return ETIMEDOUT;
      wait_ms = static_cast<int>(std::min<long long>(left.count(), 1 << 30));
    }
    pollfd p{fd, POLLOUT, 0};
    int r = ::poll(&p, 1, wait_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    if (r == 0) continue;  // the deadline check above reports it
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return errno;
    return err;
  }
}

// One attempt at one resolved address: a connected socket (blocking per `mode`), or
// the reason.
std::pair<base::unique_fd, std::string> connect_one(const addrinfo& ai,
                                                  std::chrono::milliseconds timeout,
                                                  fd_mode mode) {
  base::unique_fd fd(
      ::socket(ai.ai_family, ai.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai.ai_protocol));
  if (!fd) return {base::unique_fd(), std::string("socket: ") + std::strerror(errno)};
  int err = 0;
  if (::connect(fd.get(), ai.ai_addr, ai.ai_addrlen) < 0) {
    err = errno;
    if (err == EINPROGRESS || err == EINTR) {
      std::optional<clock::time_point> deadline;
      if (timeout.count() > 0) deadline = clock::now() + timeout;
      err = finish_connect(fd.get(), deadline);
    }
  }
  if (err == ETIMEDOUT && timeout.count() > 0) return {base::unique_fd(), timed_out(timeout)};
  if (err != 0) return {base::unique_fd(), std::strerror(err)};
  if ((mode == fd_mode::blocking && !set_blocking(fd.get())) || !set_nodelay(fd.get()))
    return {base::unique_fd(), std::string("fcntl/setsockopt: ") + std::strerror(errno)};
  return {std::move(fd), std::string()};
}

connected_socket connect_tcp(const tcp_address& t, const std::string& name,
                             std::chrono::milliseconds timeout, fd_mode mode) {
  if (t.host.empty())  // usage, not a network failure: address_error
    throw address_error("bokbok: cannot connect to " + name +
                          ": * means every address, for listening; name a host to connect to");
  auto found = resolve_for_connect(t, "bokbok: cannot connect to " + name);
  std::string failures;
  int tried = 0;
  for (const auto& f : found.failures) failures += (tried++ ? "; " : "") + f;
  for (const auto& e : found.endpoints) {
    auto [fd, why] = connect_endpoint(e, timeout, mode);
    if (fd)
      return {std::move(fd), e.name,
              base::fd_kind::stream_socket(e.sa.ss_family, mode == fd_mode::nonblocking)};
    if (tried++) failures += "; ";
    failures += endpoint_text(reinterpret_cast<const sockaddr*>(&e.sa), e.len) + ": " + why;
  }
  // One address: its reason alone ("... tcp:127.0.0.1:9: Connection refused").
  if (tried == 1) failures = failures.substr(failures.find(": ") + 2);
  throw transport_error("bokbok: cannot connect to " + name + ": " + failures);
}

// A UNIX connect is first tried non-blocking: it succeeds at once when the listener's
// queue has room, in two system calls. When the queue is full (EAGAIN) it waits, for up
// to SO_SNDTIMEO, as a blocking connect (a non-blocking one cannot be waited for), so
// the timeout is set there and cleared after.
connected_socket connect_unix(const unix_address& u, const std::string& name,
                              std::chrono::milliseconds timeout, fd_mode mode) {
  auto fail = [&](const std::string& why) -> connected_socket {
    throw transport_error("bokbok: cannot connect to " + name + ": " + why);
  };
  base::unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return fail(std::string("socket: ") + std::strerror(errno));
  const auto target = unix_sockaddr(u);  // (a structured binding: clang 14 cannot capture it)
  auto connect_once = [&] {
    int r;
    do r = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&target.first), target.second);
    while (r != 0 && errno == EINTR);
    return r == 0 ? 0 : errno;
  };
  int err = connect_once();
  bool blocking = false;
  if (err == EAGAIN) {  // the listener's queue is full: wait for room, blocking
    if (!set_blocking(fd.get())) return fail(std::string("fcntl: ") + std::strerror(errno));
    blocking = true;
    auto deadline = clock::now() + timeout;
    for (;;) {
      if (timeout.count() > 0) {
        auto left = std::chrono::ceil<std::chrono::microseconds>(deadline - clock::now());
        if (left.count() <= 0) return fail(timed_out(timeout) + " (the listener's queue is full)");
        if (!set_send_timeout(fd.get(), left)) return fail(std::strerror(errno));
      }
      err = connect_once();
      if (err != EAGAIN || timeout.count() <= 0) break;
    }
    if (err == EAGAIN) return fail(timed_out(timeout) + " (the listener's queue is full)");
    if (err == 0 && timeout.count() > 0 && !set_send_timeout(fd.get(), std::chrono::microseconds(0)))
      return fail(std::strerror(errno));
  }
  if (err != 0) return fail(std::strerror(err));
  const bool want_blocking = mode == fd_mode::blocking;
  if (want_blocking != blocking &&
      !(want_blocking ? set_blocking(fd.get()) : set_nonblocking(fd.get())))
    return fail(std::string("fcntl: ") + std::strerror(errno));
  return {std::move(fd), to_string(address(u)), base::fd_kind::stream_socket(AF_UNIX, !want_blocking)};
}

}  // namespace

std::pair<base::unique_fd, std::string> connect_endpoint(const dial_endpoint& e,
                                                       std::chrono::milliseconds timeout,
                                                       fd_mode mode) {
  addrinfo ai{};
  ai.ai_family = e.sa.ss_family;
  ai.ai_socktype = SOCK_STREAM;
  ai.ai_protocol = IPPROTO_TCP;
  ai.ai_addr = const_cast<sockaddr*>(reinterpret_cast<const sockaddr*>(&e.sa));
  ai.ai_addrlen = e.len;
  return connect_one(ai, timeout, mode);
}

connected_socket connect_socket(const address& a, std::chrono::milliseconds timeout,
                                fd_mode mode) {
  std::string name = to_string(a);
  if (auto* t = std::get_if<tcp_address>(&a)) return connect_tcp(*t, name, timeout, mode);
  if (auto* u = std::get_if<unix_address>(&a)) return connect_unix(*u, name, timeout, mode);
  throw transport_error("bokbok: cannot connect to " + name +
                        ": only tcp: and unix: addresses are sockets to connect to");
}

std::optional<connected_socket> accept_from(const listener& l, fd_mode mode) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  const int flags = SOCK_CLOEXEC | (mode == fd_mode::nonblocking ? SOCK_NONBLOCK : 0);
  base::unique_fd fd(::accept4(l.fd.get(), reinterpret_cast<sockaddr*>(&ss), &len, flags));
  if (!fd) {
    switch (errno) {
      case EAGAIN:
#if EWOULDBLOCK != EAGAIN
      case EWOULDBLOCK:
#endif
      case EINTR:
      case ECONNABORTED:
      case EPROTO:
      case EPERM:
      case ENETDOWN:
      case ENOPROTOOPT:
      case EHOSTDOWN:
      case ENONET:
      case EHOSTUNREACH:
      case EOPNOTSUPP:
      case ENETUNREACH:
        return std::nullopt;
      default:
        throw transport_error("bokbok: cannot accept on " + l.name + ": " + std::strerror(errno));
    }
  }
  if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) set_nodelay(fd.get());
  std::string peer = sockaddr_name(reinterpret_cast<const sockaddr*>(&ss), len);
  // Every listener is a stream socket (listen_on makes them so; the superserver
  // checks inherited ones), and so is what it accepts.
  return connected_socket{std::move(fd), std::move(peer),
                          base::fd_kind::stream_socket(ss.ss_family, mode == fd_mode::nonblocking),
                          ss, len};
}

std::string peer_name(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return {};
  return sockaddr_name(reinterpret_cast<const sockaddr*>(&ss), len);
}

namespace {
std::optional<connection::credentials> so_peercred(int fd) {
  ucred c{};
  socklen_t len = sizeof c;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len) < 0) return std::nullopt;
  return connection::credentials{c.uid, c.gid, c.pid};
}
}  // namespace

std::optional<connection::credentials> peer_credentials_of(int fd) {
  int domain = 0;
  socklen_t len = sizeof domain;
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 || domain != AF_UNIX)
    return std::nullopt;
  return so_peercred(fd);
}

std::optional<connection::credentials> peer_credentials_of(const connected_socket& sock) {
  if (!sock.kind.socket) return peer_credentials_of(sock.fd.get());  // not known: ask
  if (sock.kind.family != AF_UNIX) return std::nullopt;
  return so_peercred(sock.fd.get());
}

bool is_listening_socket(int fd) {
  int on = 0;
  socklen_t len = sizeof on;
  return ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on != 0;
}

}  // namespace bokbok::transport
