// The transports `bokbok bench` runs over. Each gives a raw descriptor link (for the
// baseline) and a bokbok connection pair over the same kind of link.
//
//   socketpair  one AF_UNIX socketpair
//   pipe        two pipes, one per direction
//   unix        a UNIX stream socket connected through a listener in the abstract
//               namespace (autobind: the kernel picks a unique name)
//   tcp         a TCP connection over 127.0.0.1 (port 0: the kernel picks), TCP_NODELAY
//               on both ends
// The listeners are made here with plain POSIX calls and closed once the one connection
// is accepted; bokbok gets the two connected fds through connect_fds, as it would from
// any other source.
//
//   child       a spawned child process over its stdin/stdout (bench_child.cpp)
// To add a transport, add a row to `table`.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <future>
#include <string>
#include <system_error>

#include "bench.hpp"

namespace bokbok::tools::bench {
namespace {

[[noreturn]] void fail_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// socketpair: one AF_UNIX stream socket at each end, used for both directions.
fd_link socketpair_fds() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    fail_errno("socketpair");
  fd_link link;
  link.caller = endpoint(sv[0], sv[0]);
  link.peer = endpoint(sv[1], sv[1]);
  return link;
}

bokbok_pair socketpair_bokbok(const options& caller, const options& peer) {
  auto [a, b] = connect_socketpair(caller, peer);
  return {a, b};
}

// pipe pair: one pipe for each direction.
fd_link pipe_fds() {
  int to_peer[2], to_caller[2];
  if (::pipe2(to_peer, O_CLOEXEC) != 0) fail_errno("pipe2");
  if (::pipe2(to_caller, O_CLOEXEC) != 0) {
    int saved = errno;
    ::close(to_peer[0]);
    ::close(to_peer[1]);
    errno = saved;
    fail_errno("pipe2");
  }
  fd_link link;
  link.caller = endpoint(to_caller[0], to_peer[1]);
  link.peer = endpoint(to_peer[0], to_caller[1]);
  return link;
}

// A bokbok pair over a link. Both ends handshake at once, so the peer's connect_fds
// runs on another thread.
bokbok_pair bokbok_over(fd_link link, const options& caller, const options& peer,
                        const std::string& name) {
  // Not a structured binding: C++20 as clang takes it cannot capture one in a lambda.
  auto peer_fds = link.peer.release_fds();
  auto peer_conn = std::async(std::launch::async, [&] {
    pin_this_thread_to_server();  // the peer end opens from the server side
    return connect_fds(peer_fds.first, peer_fds.second, peer, name + ":peer");
  });
  auto [caller_in, caller_out] = link.caller.release_fds();
  // If the caller side throws, its fds are closed, so the peer side fails too and the
  // future's destructor joins it.
  connection caller_conn = connect_fds(caller_in, caller_out, caller, name + ":caller");
  try {
    return {caller_conn, peer_conn.get()};
  } catch (...) {
    caller_conn.close();  // now: the last handle going would only close it later
    throw;
  }
}

bokbok_pair pipe_bokbok(const options& caller, const options& peer) {
  return bokbok_over(pipe_fds(), caller, peer, "pipe");
}

// A connected pair of stream sockets through a fresh listener on `addr` (whose port or
// name may be left for the kernel to pick): connect, then accept. Loopback connects
// complete in the kernel's backlog, so one thread can do both in turn.
fd_link socket_link(int family, const sockaddr* addr, socklen_t addr_len) {
  // The listener is only needed here; a byte_channel over it closes it however this ends.
  const int listen_fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd < 0) fail_errno("socket");
  const endpoint listener(listen_fd, listen_fd);
  if (::bind(listener.read_fd(), addr, addr_len) != 0) fail_errno("bind");
  if (::listen(listener.read_fd(), 1) != 0) fail_errno("listen");
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof bound;
  if (::getsockname(listener.read_fd(), reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0)
    fail_errno("getsockname");

  fd_link link;
  const int caller_fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (caller_fd < 0) fail_errno("socket");
  link.caller = endpoint(caller_fd, caller_fd);
  if (::connect(caller_fd, reinterpret_cast<sockaddr*>(&bound), bound_len) != 0)
    fail_errno("connect");
  const int peer_fd = ::accept4(listener.read_fd(), nullptr, nullptr, SOCK_CLOEXEC);
  if (peer_fd < 0) fail_errno("accept4");
  link.peer = endpoint(peer_fd, peer_fd);
  if (family == AF_INET) {
    int one = 1;
    for (int fd : {caller_fd, peer_fd})
      if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        fail_errno("setsockopt TCP_NODELAY");
  }
  return link;
}

// unix: binding only the address family autobinds to a unique abstract name (Linux).
fd_link unix_fds() {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  return socket_link(AF_UNIX, reinterpret_cast<const sockaddr*>(&addr),
                     sizeof addr.sun_family);
}

bokbok_pair unix_bokbok(const options& caller, const options& peer) {
  return bokbok_over(unix_fds(), caller, peer, "unix");
}

// tcp: 127.0.0.1, port 0.
fd_link tcp_fds() {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return socket_link(AF_INET, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
}

bokbok_pair tcp_bokbok(const options& caller, const options& peer) {
  return bokbok_over(tcp_fds(), caller, peer, "tcp");
}

// Not constexpr: child_transport lives in bench_child.cpp (constant-initialized there).
const transport table[] = {
    {"socketpair", socketpair_fds, socketpair_bokbok},
    {"pipe", pipe_fds, pipe_bokbok},
    {"unix", unix_fds, unix_bokbok},
    {"tcp", tcp_fds, tcp_bokbok},
    child_transport,
};

}  // namespace

std::span<const transport> all_transports() { return table; }

const transport* find_transport(std::string_view name) {
  for (const transport& t : table)
    if (t.name == name) return &t;
  return nullptr;
}

}  // namespace bokbok::tools::bench
