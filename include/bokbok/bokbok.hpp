// The bokbok public API: include this one header.
//
//   bokbok::options opts;
//   opts.on_request = [](bokbok::connection&, bokbok::message m) { return m; };
//   auto conn = bokbok::connect("fd:3,4", opts);
//   bokbok::message answer = conn.request({"ping", "hello"});
#pragma once

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "bokbok needs C++20: compile with -std=c++20 (or later); g++ 12 defaults to C++17"
#endif

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "bokbok/address.hpp"
#include "bokbok/byte_channel.hpp"
#include "bokbok/connection.hpp"
#include "bokbok/fd.hpp"
#include "bokbok/error.hpp"
#include "bokbok/export.hpp"
#include "bokbok/log.hpp"
#include "bokbok/message.hpp"
#include "bokbok/router.hpp"
#include "bokbok/secret_text.hpp"
#include "bokbok/server.hpp"

namespace bokbok {

// Opens a connection to `address` and completes the bokbok handshake before returning.
// Addresses (README "Addresses"):
//   tcp:HOST:PORT   a TCP connection (HOST a name, an IPv4 literal or [IPv6])
//   unix:PATH       a UNIX socket (unix:@NAME: the abstract namespace)
//   fd:R,W          read from fd R, write to fd W (the connection takes both; R may equal W)
//   stdio           read stdin, write stdout (moved aside: fd 0 then reads /dev/null,
//                   fd 1 writes to stderr)
//   exec:COMMAND    a child process, spawned; the connection runs over its stdin/stdout
//   ssh:[USER@]HOST[:PORT] COMMAND   the same, with COMMAND run on HOST by ssh
// `inetd` and `systemd` name sockets a superserver passes: they are for listening
// (server_options::listen), and an address_error here.
// Throws address_error for a malformed address and transport_error / protocol_error
// when the peer cannot be reached or does not speak bokbok.
BOKBOK_API connection connect(std::string_view address, const options& opts = {});

// Opt-in reconnection for a connection opened from an address (tcp:, unix:, exec:,
// ssh:; any other is an address_error). When the transport drops (or the peer closes),
// the connection dials the address again (a child is started again), after
// initial_delay, doubling up to max_delay between attempts. Calls in flight at the drop
// fail with transport_error (they may have run). request() and notify() made while
// reconnecting wait for the new connection up to their deadline (call_options, or the
// handler's), else until it is up; request_async() fails at once with transport_error.
// on_drop (with the reason) and on_reconnect run on handler threads (bokbok-handler),
// once per drop and per reconnection (on_reconnect runs once the new connection is in
// use: calls waiting for it may finish first); the wait between attempts is a timer on
// the event loop, not a thread. After max_attempts failed attempts in a row (0: no
// limit), or close() / abort(), the connection is closed for good and options::on_close
// runs once.
// peer_address() and user() then refer to the latest underlying connection.
// A tcp: address is resolved again at each attempt; of several addresses (a list, or a
// name resolving to several) one that failed is tried last until its own backoff ends
// (initial_delay, doubling per failure up to max_delay, reset when it opens), and
// options::address_choice says where each attempt starts.
struct reconnect_policy {
  std::chrono::milliseconds initial_delay{100};
  std::chrono::milliseconds max_delay{5'000};
  unsigned max_attempts = 0;
  std::function<void(const std::string& why)> on_drop;
  std::function<void()> on_reconnect;
};

// connect(), and reconnect per `policy` when the transport drops. The first connection
// is made before returning (it throws like connect()).
BOKBOK_API connection connect(std::string_view address, const options& opts, const reconnect_policy& policy);

// Opens a connection over an already open pair of file descriptors, which it takes
// ownership of (in_fd may equal out_fd, e.g. a socket): they are closed with the
// connection, or when opening fails. `peer` names the other end. A descriptor that is
// not open is a transport_error.
BOKBOK_API connection connect_fds(int in_fd, int out_fd, const options& opts, std::string peer);

// Two connected ends over a socketpair, handshake done: mostly for tests and in-process
// use. The first uses `a`, the second `b`.
BOKBOK_API std::pair<connection, connection> connect_socketpair(const options& a, const options& b);

// Serves exactly one connection on stdin/stdout (a child spawned by its client, inetd's
// nowait mode): blocks until the peer closes or close() is called from a handler, then
// returns. Throws like connect() when the handshake fails, and throws the connection's
// close_error() when it ended otherwise than cleanly: the client's stream ended
// without a close frame (it died, or the stream was cut, perhaps mid-record), it
// stopped answering heartbeats (options::heartbeat_interval, on by default), or a
// record it started did not finish in time (options::record_timeout). A server under
// inetd or spawned by its client should exit non-zero then.
BOKBOK_API void serve_stdio(const options& opts);

}  // namespace bokbok
