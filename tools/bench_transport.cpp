// The transports `bokbok bench` runs over. Each gives a raw descriptor link (for the
// baseline) and a bokbok connection pair over the same kind of link.
//
// To add a transport (UNIX, TCP, a spawned child, encrypted...), add a row to `table`.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <future>
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
  link.caller.in.reset(sv[0]);
  link.peer.in.reset(sv[1]);
  return link;
}

bokbok_pair socketpair_bokbok(const options& caller, const options& peer) {
  return connect_socketpair(caller, peer);
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
  link.caller.in.reset(to_caller[0]);
  link.caller.out.reset(to_peer[1]);
  link.peer.in.reset(to_peer[0]);
  link.peer.out.reset(to_caller[1]);
  return link;
}

// Both ends handshake at once, so the peer's connect_fds runs on another thread.
bokbok_pair pipe_bokbok(const options& caller, const options& peer) {
  fd_link link = pipe_fds();
  int peer_in = link.peer.in.release(), peer_out = link.peer.out.release();
  auto peer_conn = std::async(std::launch::async, [&] {
    return connect_fds(peer_in, peer_out, peer, "pipe:peer");
  });
  int caller_in = link.caller.in.release(), caller_out = link.caller.out.release();
  // If the caller side throws, its fds are closed, so the peer side fails too and the
  // future's destructor joins it.
  connection caller_conn = connect_fds(caller_in, caller_out, caller, "pipe:caller");
  try {
    return {caller_conn, peer_conn.get()};
  } catch (...) {
    caller_conn.close();  // dropping a handle does not close a connection
    throw;
  }
}

constexpr transport table[] = {
    {"socketpair", socketpair_fds, socketpair_bokbok},
    {"pipe", pipe_fds, pipe_bokbok},
};

}  // namespace

std::span<const transport> all_transports() { return table; }

const transport* find_transport(std::string_view name) {
  for (const transport& t : table)
    if (t.name == name) return &t;
  return nullptr;
}

}  // namespace bokbok::tools::bench
