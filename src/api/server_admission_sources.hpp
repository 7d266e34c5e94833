// source_limits: the server's per-source admission limits (server_options::
// max_connections_per_source, max_new_connections_per_source; README "Limits and memory").
// A source is the peer's IP address for TCP (IPv4, or IPv6 in full) and its uid for a
// UNIX socket. Loopback and UNIX peers are left alone unless `limit_local` is set: on
// the server's own machine a user has other ways to load it, and local tools (tests,
// proxies, health checks) legitimately open many connections at once.
//
// Two limits per source, either 0 for none:
//   - connections served at once (counted from start to end of each connection);
//   - new connections per second: a bucket of `per_second` tokens refilled at that rate,
//     one taken by each client accepted, so a burst of one second's worth is allowed.
// The table forgets a source with no connection and a full bucket, and holds at most
// admission_counts::max_keys entries (past that, new sources are not limited rather than the table
// growing: an attacker with that many addresses is past what a table can stop).
//
// Threads: every member is thread-safe (a mutex inside): admit() runs on the server's
// loop thread, release() wherever a connection ends.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "rpc/admission_counts.hpp"
#include "transport/sockets.hpp"

namespace bokbok::rpc {

class source_limits {
 public:
  using clock = admission_counts::clock;
  struct limits {
    unsigned at_once = 0;     // connections served at once per source; 0: no limit
    unsigned per_second = 0;  // new connections per second per source; 0: no limit
    bool limit_local = false;
  };

  explicit source_limits(limits l) : limits_(l), counts_(l.at_once, l.per_second) {}

  // The source of a connected socket ("" for a local peer when local peers are not
  // limited, or when limits are off: never limited).
  std::string source_of(int fd) const;
  // The same for an accepted client: the original client a PROXY protocol header
  // named, when one did, else the socket's peer.
  std::string source_of(const transport::connected_socket& sock) const;

  // Whether a new client from `source` may be taken now: "" (and a token spent), or why
  // not, for the refusal ("too many connections from 10.0.0.7: 64 at once (at most 64)").
  std::string admit(const std::string& source, clock::time_point now = clock::now()) {
    return source.empty() ? "" : counts_.check(source, "from " + source, now);
  }
  // A connection from `source` started / ended.
  void started(const std::string& source) {
    if (!source.empty()) counts_.started(source);
  }
  void ended(const std::string& source) {
    if (!source.empty()) counts_.ended(source);
  }

  std::size_t tracked() const { return counts_.tracked(); }

 private:
  // `ss`: the peer's address; `fd`: its socket (for a UNIX peer's credentials).
  std::string source_of_address(const sockaddr_storage& ss, int fd) const;

  const limits limits_;
  admission_counts counts_;  // the table (at most admission_counts::max_keys sources)
};

}  // namespace bokbok::rpc
