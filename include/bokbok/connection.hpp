// bokbok::connection: one symmetric RPC connection.
//
// Either side may call request() at any time; many threads may call at once and the
// answers come back in any order. Incoming requests run the request handler on a
// bounded pool of handler threads; a handler may itself call the other side over the
// same connection (nested callbacks never deadlock, because the connection's own event
// loop thread never runs handlers and never blocks).
//
// Thread-safety: every member function of connection may be called from any thread.
// Lifetime: a connection is a shared handle; copies refer to the same connection. It
// closes when close() or abort() is called on any handle, the peer closes, the peer stops
// answering heartbeats, or the transport fails; and a client connection also when its
// last user handle goes. User handles are those the connect functions return
// (bokbok::connect, connect_fds, connect_socketpair) and their copies, wherever they are
// kept, a response callback's capture included (it goes once the callback has run).
// Dropping the last one closes the connection gracefully, like close() with its default
// grace, without waiting: a child process (exec:, ssh:) then gets end of file and is
// reaped in the background. The handle a request, notification or close handler receives
// is borrowed: copies of it keep the object valid but not the connection open. A server's
// connections stay open as long as the server keeps them, whatever handles exist. A user
// handle stored in the connection's own user_data() keeps it open until it closes
// otherwise. After it closes, calls fail with transport_error and the close handler has
// run exactly once. A connection opened with a reconnect_policy (bokbok::connect)
// instead dials again when the transport drops, and is closed for good only by close(),
// abort(), dropping its last user handle, or when its policy gives up.
//
// Robust calls (README "Robust calls"): a call may carry a deadline and a stop token
// (call_options); the deadline travels to the handler, which reads it, and its stop
// token, through this_call. Heartbeats, limits, backpressure, graceful close and
// notifications are configured in `options`.
#pragma once

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "bokbok needs C++20: compile with -std=c++20 (or later); g++ 12 defaults to C++17"
#endif

#include <any>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "bokbok/export.hpp"
#include "bokbok/fd.hpp"
#include "bokbok/key.hpp"
#include "bokbok/message.hpp"
#include "bokbok/stream.hpp"

namespace bokbok {

class connection;

namespace detail {
class connection_impl;
class reconnector;
struct user_hold;
}

// Answers one request. Returning a message sends it as the response; throwing sends an
// error: a bokbok::call_error (remote_error) keeps its code and its whole message(), NUL
// bytes included; any other std::exception becomes error_code::handler_failed with
// what() as the message (which ends at its first NUL). Runs on a handler thread.
using request_handler = std::function<message(connection&, message request)>;

// Runs once, on a handler thread, after the connection has closed for any reason.
using close_handler = std::function<void(connection&)>;

// Receives one notification (a one-way message, connection::notify on the other side).
// Runs on a handler thread (or the loop thread with inline_handlers); what it throws goes
// to on_callback_error: a notification has nobody to answer.
using notify_handler = std::function<void(connection&, message notification)>;

// Told of an exception thrown by application code that has nobody to answer to: a
// response callback, on_notify, on_close, keys.key_for_user, child.on_stderr (and, for a
// server, on_connection_error, on_open, on_stop, authorize, on_handler_error). `where`
// names the callback ("response callback", "on_close", ...). The exception is then
// dropped and the connection and process go on (a throwing key lookup refuses that
// user; a throwing on_open closes that connection). Runs on the thread that ran the
// callback, often the event-loop thread: keep it short. Unset, or if it throws itself:
// one line on stderr, "bokbok: <where> threw: <what()>".
using callback_error_handler =
    std::function<void(std::exception_ptr error, std::string_view where)>;

using steady_clock = std::chrono::steady_clock;

// Per-call options. The earlier of `timeout` (from when the call is made) and `deadline`
// is the call's deadline; a call made by a handler also inherits its own call's deadline
// (this_call::deadline()) when that is earlier, and its stop token when `stop` has none.
struct call_options {
  std::optional<std::chrono::milliseconds> timeout;
  std::optional<steady_clock::time_point> deadline;
  // request_stop() on its source cancels the call: the caller gets call_error
  // (cancelled) at once, the peer is sent a cancel and its handler's stop token fires.
  std::stop_token stop;
};

// The handle of one asynchronous call, for cancelling it. Copyable; cancel() may be
// called from any thread, any number of times; after the call has completed it does
// nothing. The callback then runs once with call_error(cancelled).
class BOKBOK_API call_handle {
 public:
  call_handle() = default;
  void cancel() const;

 private:
  friend class connection;
  std::weak_ptr<detail::connection_impl> conn_;
  std::uint64_t seq_ = 0;
};

// What a request handler knows about the call it is running. Valid on the thread that
// runs a request handler (a handler thread, or the loop thread with inline_handlers),
// for the duration of the handler; elsewhere: no deadline and a stop token that never
// fires.
namespace this_call {
// When the caller gives up; none when it sent no deadline.
BOKBOK_API std::optional<steady_clock::time_point> deadline();
// Time left before the deadline (zero or negative once passed); milliseconds::max()
// when there is none.
BOKBOK_API std::chrono::milliseconds remaining();
// Fires when the caller cancels the call (or its deadline passes on its side).
BOKBOK_API std::stop_token stop_token();
// The file descriptors that came with the request or notification being handled (README
// "File descriptors"); empty elsewhere, and after the first take. Those not taken are
// closed when the handler returns.
BOKBOK_API fd_list take_fds();
// Sends `fds` with this request handler's response (added to any attached before).
// Throws usage_error outside a request handler, in a stream call's handler (its final
// response brings the caller no fds: send them with stream::write), when the connection
// cannot carry fds (see connection::request_with_fds), or past 253 in all; the fds are
// then closed.
BOKBOK_API void attach_fds(fd_list fds);
// The stream of the stream call being handled (README "Streams"); an empty handle in an
// ordinary call and outside a handler. A stream handler holds its handler slot while it
// runs: it counts as a running call (max_concurrent_calls, max_threads).
BOKBOK_API bokbok::stream stream();
}  // namespace this_call

// Completion of request_async(): exactly one of `error` (non-null) or `response` is set.
// Runs on the connection's event-loop thread (or on the caller's, when the call fails
// before it is sent): keep it short and never block in it. What it throws on the loop
// thread goes to options::on_callback_error.
using response_callback = std::function<void(std::exception_ptr error, message response)>;

// Receives one message of the peer's stream (connection::open_stream, callback form).
using stream_callback = std::function<void(message)>;

// How a child process at the other end of a connection (exec:, ssh:) ended.
struct BOKBOK_API child_exit {
  int pid = 0;
  int code = -1;   // its exit status when it exited, else -1
  int signal = 0;  // the signal that killed it, else 0
  // "child 41 exited with status 3", "child 41 was killed by signal 9 (Killed)"
  std::string describe() const;
};

// How a client chooses among several addresses: a tcp: list ("tcp:H1:P1,H2:P2") or a
// host name resolving to several (README "Addresses", "Behind a load balancer").
enum class address_choice {
  // Every address in order, the first that answers (the default). With a
  // reconnect_policy, an address that failed is tried last until its backoff ends.
  first_healthy,
  // Each new connection (each connect() in this process, each redial) starts at the
  // next address, then goes on in order as first_healthy does.
  round_robin,
};

struct options {
  // No handler: every incoming request is answered with error_code::no_such_method.
  request_handler on_request;
  close_handler on_close;
  // No handler: notifications from the peer are dropped.
  notify_handler on_notify;
  // Exceptions from callbacks that have nobody to answer to (see callback_error_handler).
  callback_error_handler on_callback_error;
  // Handler threads for this connection, started on demand and at most this many.
  unsigned max_threads = 16;
  // Handler threads that may wait in nested calls (a handler calling request() back to
  // the peer) at once; 0: 8 x max_threads. A waiting handler gives its thread's slot
  // back so that chains of callbacks deeper than max_threads make progress; beyond this
  // bound a nested request() fails at once with call_error(busy) instead of growing the
  // process by one more thread.
  unsigned max_waiting_handlers = 0;
  // Peer requests run at once on this connection (0: up to max_threads, or the
  // server's pool); more wait in a queue of max_queued_calls, beyond which they are
  // answered with error_code::busy. Announced to the peer in the hello.
  unsigned max_concurrent_calls = 0;
  std::size_t max_queued_calls = 1024;
  // Heartbeat: when nothing arrived for this long, ping; when still nothing arrived
  // one more interval after the ping, the peer is declared unresponsive: pending calls
  // fail with peer_unresponsive_error and the connection closes. 0: no heartbeat
  // (pings from the peer are still answered). Announced in the hello. On by default:
  // a peer that answers nothing is dropped in 60-90 s, a quiet live one never (every
  // bokbok peer answers pings on its event loop).
  std::chrono::milliseconds heartbeat_interval{30'000};
  // Closes the connection gracefully (goaway) once no call has run in either
  // direction for this long. 0: never.
  std::chrono::milliseconds idle_timeout{0};
  // A record (PROTOCOL.md §3) the peer has begun must arrive whole within this long,
  // else the connection fails with transport_error: a peer that drips a byte now and
  // then cannot hold a connection, which its heartbeats alone would not show (any byte
  // is a sign of life). A record is at most 64 KiB, so 30 s allows links down to about
  // 2 KB/s. 0: no bound.
  std::chrono::milliseconds record_timeout{30'000};
  // Backpressure: bytes queued to send on this connection before callers wait.
  // request() and notify() block until the queue is below it (or their deadline
  // passes, or they are cancelled); request_async() does not block: it fails with
  // call_error(busy). A handler's answer never waits (a peer that does not read holds
  // no handler thread): it is queued at once, and while the queue is over the bound no
  // further handler of this connection starts and reading from the peer pauses, so the
  // queue passes the bound by at most the answers of the handlers already running. On
  // the loop thread nothing blocks; reading resumes once the queue has drained below
  // half the bound. At least 1: 0 (nothing could ever be sent) throws usage_error.
  std::size_t max_send_queue = 8u << 20;
  // Run on_request on the connection's event-loop thread instead of a handler thread.
  // Saves a thread hand-off per call (about half the latency of a tiny call), for
  // handlers that are quick and never block: while one runs, this connection and every
  // other on the same loop wait. Such a handler must not call request(), which throws
  // usage_error there; request_async() is fine.
  bool inline_handlers = false;
  // How long a blocking call (request()) looks for its answer before its thread sleeps,
  // when another CPU may be making it: a tiny call's answer from a peer on another CPU
  // comes back in tens of microseconds, sooner than a sleeping thread is woken across
  // CPUs (about 20 µs on a small VM), so the round trip is shorter. Costs CPU while it
  // lasts, so it is bounded: never on a machine with one CPU online, only by a caller
  // that is the process's one blocked caller (with others waiting, all sleep at once),
  // and a thread whose answer was slower skips spinning for its next 1, 2, 4 ... 1024
  // calls.
  // Zero: never spin. Negative: usage_error.
  std::chrono::microseconds caller_spin{50};
  // The largest message this side accepts; the peer's own limit is honoured for sends
  // (the smaller of the two wins). At least 64 KiB, else opening throws usage_error.
  std::size_t max_message_size = 64u << 20;
  // Receive budget (README "Limits and memory"): the bytes this side holds of what the
  // peer sent and no handler has taken yet. Requests waiting for a handler count at
  // their decoded size (their bytes plus about 48 bytes per field); past this bound the
  // connection stops reading until handlers have taken half of it, so the peer is slowed
  // by the transport instead of growing this process. Partial (fragmented) messages
  // count too: one that would pass the bound is refused with error_code::busy (a
  // notification is dropped) and the rest of it skipped. A request that alone costs more
  // than the bound is answered error_code::too_large without being decoded.
  // 0: twice max_message_size.
  std::size_t max_receive_bytes = 0;
  // File descriptors received (README "File descriptors") that the application has not
  // taken yet: queued, with partial messages, with requests and notifications waiting
  // for a handler. A message whose fds would pass it is refused busy (a request), fails
  // its call busy (a response) or is dropped (a notification), its fds closed at once.
  std::size_t max_received_fds = 1024;
  // Streams (README "Streams"): the window of credit this side grants the peer for each
  // stream call it reads: at most this many messages and bytes (encoded size) sent and
  // not yet read by the application, plus one message (a message larger than the window
  // is taken alone). Credit is granted back once half of the window has been read. At
  // least 1 each, else opening throws usage_error.
  std::uint32_t stream_window_messages = 64;
  std::uint32_t stream_window_bytes = 1u << 20;
  // How long opening waits for the peer's preamble and hello.
  std::chrono::milliseconds connect_timeout{10'000};
  // Which of several addresses a client dials first (address_choice above).
  bokbok::address_choice address_choice = bokbok::address_choice::first_healthy;
  // Frame trace (README "Frame trace"): called with one line per frame this side sends
  // or receives, decoded for a human (no newline), e.g.
  //   > request id=1 flags=- [2] "echo" "hi"
  //   < response id=1 flags=- [1] "hi"
  // '>' sent, '<' received; type, call id, flags, then what the frame carries (fields
  // escaped and cut at 32 bytes). In key mode it shows the frames before encryption and
  // after decryption; the preamble and handshake are not frames and are not shown.
  // Runs on the connection's event-loop thread, for frames sent with the connection's
  // lock held: keep it short, never call the connection from it. Unset: when the
  // environment has BOKBOK_TRACE set (to anything but "" or "0") as the connection
  // opens, the lines go to stderr as "bokbok trace PEER: LINE". Either way, tracing
  // sends every frame through the event loop (a caller's thread no longer writes its own
  // small request), which costs some latency: for debugging, not production.
  std::function<void(std::string_view line)> trace;

  // For connections to a child process (exec: and ssh: addresses).
  struct child_options {
    // Once the connection has closed, the child (which then reads end of file) has this
    // long to exit on its own; then it gets SIGTERM, and this long again; then SIGKILL.
    std::chrono::milliseconds grace{3'000};
    // Receives the child's stderr as it comes, in chunks, on the connection's
    // event-loop thread (which also watches and reaps the child): keep it short and
    // never block in it. Unset: the bytes go to this process's stderr.
    std::function<void(std::string_view)> on_stderr;
    // More ssh options, placed before the host (ssh: only), e.g. {"-o", "Port=2222"}.
    std::vector<std::string> ssh_options;
    // exec: only. The child's stdin and stdout are one end of a UNIX socketpair (the
    // same socket on fd 0 and fd 1) instead of two pipes, so that file descriptors can
    // be passed to it. The child must cope with a socket there (bokbok's stdio serving
    // does). Default: pipes.
    bool socketpair = false;
  } child;

  // Key mode (src/wire/PROTOCOL.md §9): the connection is authenticated with a
  // pre-shared key and encrypted (Noise_NNpsk0_25519_ChaChaPoly_SHA256, forward secret).
  // The side that connects (a client) sets `user` and `key`; the side that accepts (a
  // server, a child serving stdio) sets `key_for_user`. Plain mode is never chosen
  // silently: a side with keys refuses a plain peer, and a plain side a key-mode peer;
  // `user` without `key` (or options that mix the roles) throws usage_error.
  struct key_options {
    using lookup = std::function<std::optional<bokbok::key>(std::string_view user)>;
    std::string user;                        // at most 255 bytes
    std::shared_ptr<const bokbok::key> key;  // this user's key
    // Returns the key for a user name, or nullopt: an unknown user is refused exactly
    // like a wrong key (same answer, same timing class, no key exchange done). Called
    // on the event-loop thread; must be thread-safe and quick (see load_users()).
    lookup key_for_user;
    // How far a client's clock may differ from ours (message 1 carries a timestamp).
    std::chrono::seconds clock_window{120};
    bool enabled() const { return key || key_for_user; }
  } keys;
};

class BOKBOK_API connection {
 public:
  // Blocking call: sends `request`, waits for the response. Throws remote_error when the
  // peer answered with an error, call_error when refused here before sending (too_large,
  // shutting_down after a goaway), transport_error when the connection failed or closed
  // first. Throws usage_error on the connection's event-loop thread (an inline
  // handler or a response callback), where waiting would deadlock. With a
  // reconnect_policy it waits for the new connection while reconnecting or after the
  // peer's goaway, and sends again a request the dropped connection never wrote or the
  // goaway refused unrun (README "Reconnect").
  message request(message request);
  // The same with a deadline and/or a stop token: throws call_error with
  // deadline_exceeded or cancelled when they end the call first (the peer is sent a
  // cancel; a late answer is dropped).
  message request(message request, const call_options& opts);

  // Non-blocking forms of request(). The callback runs on the event-loop thread, or on
  // the calling thread when the call fails before it is sent. Answers read together run
  // their callbacks newest call first, so a thread waiting for the oldest of several
  // futures wakes once, to find the others of that read ready too.
  std::future<message> request_async(message request);
  void request_async(message request, response_callback done);
  std::future<message> request_async(message request, const call_options& opts);
  call_handle request_async(message request, const call_options& opts,
                            response_callback done);

  // Sends a one-way message to the peer's on_notify; no answer, no error from the peer.
  // Throws like request() when it cannot be sent (closed, shutting_down, too_large; and
  // call_error(no_such_method) when the peer does not take notifications). Blocks, like
  // request(), while the send queue is full; but inside a handler (a thread shared by
  // every connection, or the event loop) it does not wait: it throws call_error(busy).
  void notify(message notification);

  // File descriptors with messages (README "File descriptors"): only over a UNIX
  // socket, a socketpair, or an exec: child with child.socketpair, and when the peer
  // offered them. request_with_fds sends `fds` with the request and returns the
  // response with those that came with it; notify_with_fds sends them with a
  // notification. The fds are the connection's from the call on: closed once sent (the
  // peer gets its own copies) or when the call fails. Both throw usage_error before
  // anything is sent when the connection cannot carry fds (naming its address and what
  // can) or for more than 253 fds; otherwise they throw like request() and notify().
  parcel request_with_fds(message request, fd_list fds, const call_options& opts = {});
  void notify_with_fds(message notification, fd_list fds);
  // request_with_fds without blocking: the response and its fds come in the future, as
  // do the errors request_async would report. Throws usage_error before anything is
  // sent, as request_with_fds does (the fds are then closed).
  std::future<parcel> request_async_with_fds(message request, fd_list fds,
                                             const call_options& opts = {});
  // Opens a stream call (README "Streams", PROTOCOL.md §12): sends `request` flagged
  // STREAM (the opening message: method and arguments) and returns at once the stream to
  // write to and read from; finish() waits for the final response. The deadline and stop
  // token of `opts` cover the whole call. Throws like request() when the call cannot be
  // sent, and call_error(no_such_method) before sending anything when the peer does not
  // take stream calls; usage_error on the event-loop thread.
  bokbok::stream open_stream(message request, const call_options& opts = {});
  // The callback form: each message of the peer's stream goes to `on_message`, in order,
  // on the connection's event-loop thread (keep it short, never block: credit is granted
  // back as it returns; what it throws goes to on_callback_error), and the answer to
  // `done` once, like request_async. The stream returned is for writing (write from any
  // other thread, try_write anywhere, close_write, cancel); its read() finds nothing
  // (nullopt once the call has ended). Errors before sending go to `done`, like
  // request_async (the stream returned is then empty).
  bokbok::stream open_stream(message request, const call_options& opts,
                             stream_callback on_message, response_callback done);

  // Closes gracefully (PROTOCOL.md §8.4): tells the peer goaway, so neither side starts
  // new calls (new ones fail with call_error(shutting_down)); calls already running
  // either way finish, for up to `grace`; then the connection closes, failing whatever
  // is still pending with transport_error. Returns at once; idempotent; may be called
  // from a handler (whose own answer still goes out).
  void close(std::chrono::milliseconds grace = std::chrono::seconds(5));

  // Closes at once: pending calls fail with transport_error, the peer is told (close
  // frame), handlers still running finish but their answers are dropped. Idempotent;
  // may be called from a handler.
  void abort();

  // True once the connection has closed for any reason.
  bool closed() const;

  // Blocks until the connection has closed, its close handler has returned, its last
  // frames are written and the peer has answered our close with its own or ended its
  // stream (PROTOCOL.md §8.5; or the link failed; at most about 2 s after closing), so a
  // process may exit right after. For a child process (exec:, ssh:) it also waits until
  // the child has been reaped (see options::child_options::grace). Must not be called
  // from this connection's own handler.
  void wait_closed() const;

  // Why the connection closed ("" while open, "closed by peer", or the failure).
  std::string close_reason() const;

  // How the connection ended, as an error to rethrow: null while it is open and after a
  // clean end (a close by either side, or a goaway drained); otherwise the error calls
  // failed with: transport_error for a lost link (the peer's stream ended without a
  // close frame, possibly in the middle of a record), peer_unresponsive_error,
  // protocol_error or authentication_error. serve_stdio() throws it, so a server under
  // inetd or spawned by its client exits non-zero when its client vanished.
  std::exception_ptr close_error() const;

  // The other end, as text: "fd:4,5", "stdio", "tcp:1.2.3.4:99", "exec:app --stdio (pid 41)".
  // Returned by value: after a reconnect the connection it described may be gone.
  std::string peer_address() const;

  // The authenticated user name; empty in plain mode. By value, like peer_address().
  std::string user() const;

  // The peer's credentials on a UNIX socket (SO_PEERCRED); none on other transports,
  // nor behind a PROXY protocol header that named a client (server_options::
  // proxy_listen: they would be the balancer's).
  struct credentials {
    unsigned uid;
    unsigned gid;
    int pid;
  };
  std::optional<credentials> peer_credentials() const;

  // For a connection to a child process (exec:, ssh:): how the child ended, once it has
  // been reaped (always so after wait_closed()). Empty while it runs, and for other
  // transports.
  std::optional<child_exit> child_status() const;

  // A slot for the application's own data, shared by all handles of this connection.
  // Not synchronised: the application guards it if several threads use it.
  std::any& user_data() const;

  // Internal: connections are made by the connect functions below or by a server.
  explicit connection(std::shared_ptr<detail::connection_impl> impl);
  connection(std::shared_ptr<detail::connection_impl> impl,
             std::shared_ptr<detail::reconnector> reconnect,
             std::shared_ptr<detail::user_hold> hold = nullptr);

 private:
  friend class detail::reconnector;
  std::shared_ptr<detail::connection_impl> impl_for_reconnect() const { return impl_; }
  // The connection the accessors describe: impl_, or the reconnector's latest one.
  std::shared_ptr<detail::connection_impl> latest() const;

  std::shared_ptr<detail::connection_impl> impl_;
  std::shared_ptr<detail::reconnector> reconnect_;  // set by connect(address, policy)
  // Shared by the user handles (src/api/user_handle.hpp); its end closes the connection.
  // Declared last, so it goes first, while impl_ and reconnect_ still hold.
  std::shared_ptr<detail::user_hold> hold_;
};

}  // namespace bokbok
