// The server's side of the PROXY protocol (server_options::proxy_listen,
// proxy_trusted_sources): who may send a header, and reading it off a connection just
// accepted, before the bokbok handshake begins.
//
// Threads: proxy_sources is immutable after construction (any thread); proxy_reads
// belongs to the server's loop thread, every member.
#pragma once

#include <sys/socket.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "bokbok/connection.hpp"
#include "io/loop.hpp"
#include "transport/sockets.hpp"

namespace bokbok::detail {

// The credentials server_options::authorize and connection::peer_credentials() get for
// an accepted socket: its SO_PEERCRED on a UNIX socket, none on TCP, and none once a
// PROXY header named a client (on a unix: proxy_listen address SO_PEERCRED is the
// balancer's, not the client's: never presented as the client's). A LOCAL header (a
// health check) keeps them: that connection is the balancer's own. Any thread.
std::optional<connection::credentials> client_credentials(const transport::connected_socket& sock);

// IP addresses and CIDR blocks; an IPv4-mapped IPv6 peer (a dual-stack listener)
// matches the IPv4 entries.
class proxy_sources {
 public:
  // Throws usage_error naming an entry that is no address or prefix length.
  explicit proxy_sources(const std::vector<std::string>& entries);
  // True when no entry was given, or `sa` lies in one.
  bool allows(const sockaddr* sa) const;

 private:
  struct block {
    std::array<std::uint8_t, 16> addr{};  // IPv4 as ::ffff:a.b.c.d
    unsigned bits = 0;                    // of the 128
  };
  std::vector<block> blocks_;
};

// The headers being read, each with a deadline. A connection is handed to `done` with
// its peer rewritten (proxy_listen in server.hpp) and the header taken off the socket,
// nothing after it; or to `failed` with why, its socket closed.
class proxy_reads {
 public:
  using done_fn = std::function<void(transport::connected_socket)>;
  using failed_fn = std::function<void(const std::string& peer, const std::string& why)>;

  proxy_reads(std::shared_ptr<io::loop> loop, std::chrono::milliseconds timeout, done_fn done,
              failed_fn failed);
  ~proxy_reads();  // close_all()

  void start(transport::connected_socket sock);
  // Drops every read still going (their sockets closed, nobody told): the server stops.
  void close_all();
  std::size_t size() const { return reads_.size(); }

  struct pending;  // proxy_reads.cpp

 private:
  void ready(pending& p, int events);
  void finish(pending& p);

  std::shared_ptr<io::loop> loop_;
  std::chrono::milliseconds timeout_;
  done_fn done_;
  failed_fn failed_;
  std::set<pending*> reads_;
};

}  // namespace bokbok::detail
