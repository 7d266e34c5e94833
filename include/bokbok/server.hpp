// bokbok::server: accepts connections on any number of listeners and serves them, with
// the operational features of Sagittarius' (net server): a bounded handler pool shared
// by every connection, a connection limit that waits briefly for a slot and then refuses
// that client with a clear error, open / request / close handlers, start and stop hooks,
// an exception handler, graceful stop, wait() and stopped().
//
//   bokbok::server_options o;
//   o.listen = {"tcp:*:7000", "unix:/run/app.sock"};
//   o.on_request = [](bokbok::connection&, bokbok::message m) { return m; };
//   o.stop_signals = {SIGTERM, SIGINT};  // drain and stop on these (see below)
//   bokbok::server s(o);
//   s.start();   // binds (throws if it cannot), then serves in the background
//   s.wait();    // until stop() — from a handler, or a stop signal
//
// Threads: every member is thread-safe. The server runs on two kinds of threads: its event
// loop's ("bokbok-loop": accepting, timers, stop signals, stopping) and its handler pool's
// ("bokbok-handler"). stop() may be called from any thread, a handler's or the loop's
// own (an inline handler, on_open, on_connection_error) included; wait() and the
// destructor may not be called from the server's own threads.
#pragma once

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "bokbok needs C++20: compile with -std=c++20 (or later); g++ 12 defaults to C++17"
#endif

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bokbok/connection.hpp"
#include "bokbok/export.hpp"

namespace bokbok {

struct server_options {
  // Addresses to listen on (README "Addresses"): tcp:, unix:, and `inetd` / `systemd`
  // to take the sockets a superserver passed (listeners are accepted on; a connection
  // handed over is served, and a server with no listener stops when it closes).
  std::vector<std::string> listen;
  int backlog = 128;
  // Permission bits for unix:PATH socket files, e.g. 0660; none: as the umask leaves them.
  std::optional<unsigned> unix_mode;

  // Behind a load balancer (README "Behind a load balancer"). Addresses listened on as
  // `listen` (tcp: or unix:), whose every connection must begin with a PROXY protocol
  // header, v1 or v2, as HAProxy's send-proxy / send-proxy-v2 sends: the connection's
  // peer_address() (logs, per-source limits) is then the client the header names,
  // followed by " via " and the balancer's own address ("tcp:203.0.113.7:5644 via
  // tcp:10.0.0.2:40112"); a LOCAL or UNKNOWN header (a health check) keeps the
  // balancer's. A connection whose header is missing, malformed, over 1 KiB or not
  // whole within handshake_timeout is closed and logged. `listen` addresses never
  // accept a header: there one is refused as a bad preamble. On a unix: address, a
  // header naming a client leaves the connection without credentials (authorize gets
  // nullopt, peer_credentials() is empty): SO_PEERCRED there is the balancer's.
  std::vector<std::string> proxy_listen;
  // Who may send that header: IP addresses or CIDR blocks ("10.0.0.0/8", "::1",
  // "fd00::/8"); a connection to a proxy_listen address from elsewhere is closed
  // before anything is read. Empty: any source (fine when only the balancer can reach
  // the port). Peers on a unix: proxy_listen address are not restricted by it (they are
  // local). The server's constructor throws usage_error for an entry that does not
  // parse.
  std::vector<std::string> proxy_trusted_sources;
  // SO_REUSEPORT on TCP listeners: several processes (say N instances of a systemd
  // template unit) listen on one port and the kernel spreads new connections among
  // them. Each must set it (and run as the same user).
  bool reuse_port = false;

  // Handler threads shared by all connections: the server-wide cap on running handlers.
  // Requests beyond it wait in a queue of max_queued_calls (all connections together),
  // beyond which they are answered with error_code::busy.
  unsigned max_threads = 32;
  // Handler threads that may wait in nested calls at once, all connections together
  // (see options::max_waiting_handlers); 0: 8 x max_threads.
  unsigned max_waiting_handlers = 0;
  // A connection has at most max_threads requests in that queue at once (its fair
  // share); the rest wait in its own queue of max_queued_calls_per_connection, beyond
  // which they are refused busy: one connection cannot fill the queue for all.
  std::size_t max_queued_calls = 4096;
  // Per connection: handlers running at once (0: no per-connection cap) and requests
  // waiting beyond that (then busy); see options::max_concurrent_calls.
  unsigned max_concurrent_calls = 0;
  std::size_t max_queued_calls_per_connection = 1024;
  // Per connection, as in options: heartbeat (on by default: a client that answers
  // nothing is dropped in 60-90 s), idle timeout (a connection with no call in either
  // direction for this long is closed gracefully), the time a record may take to
  // arrive once begun, send-queue bound (at least 1, else usage_error).
  std::chrono::milliseconds heartbeat_interval{30'000};
  std::chrono::milliseconds idle_timeout{0};
  std::chrono::milliseconds record_timeout{30'000};
  std::size_t max_send_queue = 8u << 20;
  // Connections served at once. One more waits up to connection_wait for a slot, then
  // is refused: its client's connect fails with "refused by the server: busy ...".
  unsigned max_connections = 1024;
  std::chrono::milliseconds connection_wait{1000};
  // Per source (a TCP peer's IP address; a UNIX peer's uid): connections served at once,
  // and new connections accepted per second (a burst of one second's worth); past
  // either, that source's new clients are refused busy at once, saying which, while
  // other sources are served. 0: no limit. Loopback and UNIX peers are not limited
  // unless limit_local_sources is set (README "Limits and memory").
  unsigned max_connections_per_source = 64;
  unsigned max_new_connections_per_source = 32;
  bool limit_local_sources = false;

  request_handler on_request;
  notify_handler on_notify;
  // Frame trace of every connection (see options::trace; unset: BOKBOK_TRACE).
  std::function<void(std::string_view line)> trace;
  // Runs on a handler thread when a connection has opened (handshake done; in key mode,
  // logged in: the client's first record proved it holds the session keys, so a replayed
  // handshake never gets here), before any of its requests is handled (on the loop thread when no handler thread can be started).
  std::function<void(connection&)> on_open;
  close_handler on_close;
  // Signals that stop the server gracefully, e.g. {SIGTERM, SIGINT}: the first one
  // received does stop(stop_signal_grace) (no new connections, socket files removed,
  // calls running finish), so wait() returns and the program can exit normally. The
  // server reads them from a signalfd on its loop thread; no signal handler runs.
  // start() blocks them in the calling thread, and so in every thread started from it
  // afterwards (the server's own included); they stay blocked after the server stops.
  // Call start() before the program starts other threads, or block these signals in
  // those threads yourself (pthread_sigmask): a thread that does not block them may be
  // the one the kernel gives the signal to, whose default action ends the process.
  // A second signal while the server drains is ignored (the drain is bounded by the
  // grace). start() throws bokbok::usage_error for a number that is no signal (or SIGKILL,
  // SIGSTOP), before binding anything. Empty: signals are left alone.
  std::vector<int> stop_signals;
  std::chrono::milliseconds stop_signal_grace{5000};

  // Run once by start() (on its caller's thread) after binding, and once when the server
  // has stopped (on the server's loop thread, just before wait() returns).
  std::function<void()> on_start;
  std::function<void()> on_stop;
  // Told of each exception a request handler throws (the caller gets a remote_error
  // either way); for logging. Runs on the handler thread.
  std::function<void(connection&, std::exception_ptr)> on_handler_error;
  // Told of each connection that failed before or while opening (bad preamble, timeout,
  // refused for the limit, refused for want of file descriptors): for logging. Runs on
  // the server's loop thread. Every call, unlike the library's log (bokbok/log.hpp),
  // which has the same events rate limited; accept failures with no client (out of
  // descriptors) are only in the log, once per episode. A refused client is reported
  // before it is told, so it is reported by the time the client's connect() throws.
  std::function<void(const std::string& peer, const std::string& why)> on_connection_error;
  // Exceptions from the callbacks above that have nobody to answer to (and from response
  // callbacks of calls made on the server's connections): see callback_error_handler.
  // The server goes on serving.
  callback_error_handler on_callback_error;

  bool inline_handlers = false;
  // For blocking request()s a handler makes to its client: options::caller_spin.
  std::chrono::microseconds caller_spin{50};
  std::size_t max_message_size = 64u << 20;
  // Receive budgets (README "Limits and memory"): per connection, as
  // options::max_receive_bytes (0: twice max_message_size); and for the whole server,
  // the bytes all connections together hold of what their peers sent and no handler has
  // taken yet (partial messages, requests waiting for a handler). Past the server-wide
  // bound, a connection that holds more than 1 MiB stops reading until the server is
  // below three quarters of it, and its partial messages are refused busy; connections
  // holding less go on, so one greedy client cannot stall everyone's small calls.
  std::size_t max_receive_bytes_per_connection = 0;
  std::size_t max_receive_bytes = 512u << 20;
  std::chrono::milliseconds handshake_timeout{10'000};
  // Maximum connection age (README "Behind a load balancer"): a connection open this
  // long, less up to a tenth at random (so connections opened together do not all end
  // together), is closed gracefully: told goaway, calls running finish for up to
  // max_connection_age_grace, then it closes. A client with a reconnect_policy dials
  // again, through the balancer, so long-lived connections spread again across
  // backends. 0: no limit.
  std::chrono::milliseconds max_connection_age{0};
  std::chrono::milliseconds max_connection_age_grace{30'000};

  // Key mode (src/wire/PROTOCOL.md §9): set keys.key_for_user (e.g. from
  // bokbok::load_users("/etc/app/users")) and every client must authenticate as a
  // user with that user's key; plain clients are refused. Its connections share one
  // bounded replay cache. A refused client is reported to on_connection_error with the
  // precise reason (unknown user or wrong key, stale timestamp, replay); the client
  // itself only learns that it was refused.
  options::key_options keys;
  // Key mode, per user, checked at the login (once the client has proved its key):
  // connections at once, and logins per second (a burst of one second's worth). Past
  // either the client is refused busy, authenticated, saying which; other users are
  // served. 0: no limit, the default: one service user may rightly hold many
  // connections, and a flooding user is already bounded by the per-source limits above.
  // Set them where users are people (say 16 at once, 8 logins a second).
  unsigned max_connections_per_user = 0;
  unsigned max_logins_per_user = 0;

  // On UNIX sockets: who may connect, by the peer's credentials (SO_PEERCRED), instead
  // of or on top of keys. Returns false to refuse (the client is told "not
  // authorized"). Unset: everyone. On other transports it is called with nullopt, and
  // so it is for a connection whose PROXY header (proxy_listen) named a client: the
  // credentials would be the balancer's, not the client's.
  std::function<bool(const std::optional<connection::credentials>&)> authorize;
};

// The listen address for the superserver that started this process, judging by its
// environment and file descriptors: "systemd" when LISTEN_PID names this process,
// "inetd" when fd 0 is a socket, "" when neither.
BOKBOK_API std::string superserver_address();

class BOKBOK_API server {
 public:
  explicit server(server_options opts);
  // Stops (as stop() with no grace) and waits.
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Binds every listener (throws address_error / transport_error naming the one that
  // failed, with none left bound; resource_error when a thread or descriptor cannot be
  // had), runs on_start, then accepts in the background. A second start() throws
  // usage_error.
  void start();

  // Stops accepting (listeners closed, socket files removed), tells every connection
  // goaway, lets calls already running finish for up to `grace`, then closes what is
  // left, runs on_stop, and marks the server stopped. Returns at once; wait() blocks.
  void stop(std::chrono::milliseconds grace = std::chrono::seconds(5));

  // Blocks until the server has stopped.
  void wait();
  bool stopped() const;

  // The addresses actually bound, with real port numbers ("tcp:[::]:41234").
  std::vector<std::string> local_addresses() const;
  // Connections open now. A connection counts from the end of its handshake until its
  // on_close has returned: a count read inside on_close, or by a thread that on_close
  // woke, still includes it.
  std::size_t connection_count() const;

  class BOKBOK_HIDDEN impl;  // internal to libbokbok (src/api/server.cpp)

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace bokbok
