// connection_impl: the state of one RPC connection (what bokbok::connection points to).
//
// Threads. The connection's stream, decoders and reassembler belong to its loop thread
// (all on_* and handle_* members run there). Calls, responses and close() may come from
// any thread: they touch only what `mu_` guards (phase, pending calls, outbox, write
// state) and wake the loop with one post() when the send side is idle.
//
// Lifetime. The connection holds a reference to itself (kept by its lifecycle part,
// rpc/lifecycle.hpp) from open() until it has closed and its close handler has returned,
// so it stays open with no user handle left. Handler tasks and loop callbacks hold
// shared references too.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <stop_token>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <any>
#include <functional>
#include <optional>
#include <vector>

#include "bokbok/connection.hpp"
#include "bokbok/error.hpp"
#include "io/duplex_stream.hpp"
#include "io/loop.hpp"
#include "rpc/call_table.hpp"
#include "rpc/closing.hpp"
#include "rpc/fd_queue.hpp"
#include "rpc/frame_source.hpp"
#include "rpc/frame_trace_sink.hpp"
#include "rpc/handler_pool.hpp"
#include "rpc/inbound_calls.hpp"
#include "rpc/key_session.hpp"
#include "rpc/lifecycle.hpp"
#include "rpc/liveness.hpp"
#include "rpc/outbox.hpp"
#include "rpc/send_path.hpp"
#include "rpc/stream_state.hpp"
#include "rpc/receive_budget.hpp"
#include "transport/peer_process.hpp"
#include "wire/frame.hpp"
#include "wire/preamble.hpp"
#include "wire/reassembly.hpp"
#include "wire/settings.hpp"

namespace bokbok::detail {

// Where connection_impl::encode_framed's message begins: room in front of it for a
// record header, a frame header, a deadline prefix and an fd count
// (connection_sender.cpp). The prefixes go right before the message, the headers right
// before them.
inline constexpr std::size_t framed_headroom = wire::record_header_size +
                                               wire::frame_header_size +
                                               wire::deadline_prefix_size +
                                               wire::fds_prefix_size;

class connection_impl;

// The request handler running on this thread (bokbok::this_call, notify's "inside a
// handler", what nested calls inherit): on the handler's stack, found through a
// thread-local pointer set by handler_scope while it runs (rpc/call_context.cpp).
struct running_handler {
  connection_impl* conn = nullptr;
  std::uint32_t id = 0;
  std::optional<io::clock::time_point> deadline;
  std::shared_ptr<call_context> ctx;  // null until stop_token() or a cancel made it
  std::shared_ptr<stream_state> stream;  // a stream call's (this_call::stream), else null
  // The handler's stop token; makes its context first if none was made (takes the
  // connection's mutex: never call with it held).
  std::stop_token stop_token();
};

// The handler running on the calling thread, or null (rpc/call_context.cpp).
running_handler* current_handler() noexcept;

// A call's deadline: the earliest of its own deadline, its timeout from now, and the
// deadline of the handler it is made from (which nested calls inherit).
std::optional<io::clock::time_point> effective_deadline(const call_options& opts);
class handler_scope {
 public:
  explicit handler_scope(running_handler* h) noexcept;
  ~handler_scope();
  handler_scope(const handler_scope&) = delete;
  handler_scope& operator=(const handler_scope&) = delete;

 private:
  running_handler* saved_;
};

// Throws usage_error for options no connection can be opened with (a too-small
// max_message_size, contradictory or incomplete keys); callers check before dialing.
void check_options(const options& o);

// A call that failed because its connection closed before any byte of its request was
// written: the peer cannot have run it, so a reconnecting connection sends it again on
// the next inner connection (connection::request). To the application it is a
// transport_error like any other.
class not_sent_error final : public transport_error {
 public:
  using transport_error::transport_error;
};

// A call the peer's goaway refused without running it (PROTOCOL.md §8.4): made after the
// goaway arrived, or sent with an id past the goaway's last id. A reconnecting connection
// sends it again on the next inner connection (connection::request); to the application
// it is call_error(shutting_down) like any other.
class unrun_refusal_error final : public call_error {
 public:
  using call_error::call_error;
};

class connection_impl final : public io::stream_events,
                              public std::enable_shared_from_this<connection_impl> {
 public:
  struct config {
    options opts;
    std::string peer;                      // shown by peer_address()
    std::shared_ptr<io::loop> loop;        // required
    std::shared_ptr<rpc::handler_pool> pool;  // null: one of max_threads is made
    wire::preamble local;                  // what this side announces
    std::optional<connection::credentials> peer_credentials;  // SO_PEERCRED, if known
    // Requests that arrive are held, not handled, until release_requests() (a server
    // runs its open handler first).
    bool hold_requests = false;
    // The peer is this process's child (exec:, ssh:): its exit status is added to the
    // reason a connection fails (a lost transport waits for the reap, up to
    // child_end_wait, on a timer: see wait_for_child), it is released when the stream
    // closes, and wait_closed() waits until it has been reaped.
    std::shared_ptr<transport::peer_process> process;
    // Key mode (PROTOCOL.md §9), from options::keys; null: plain mode. A responder's
    // replay cache is shared by the connections of one server.
    std::shared_ptr<const rpc::key_config> keys;
    // The server-wide receive budget its connections share (receive_budget.hpp); null:
    // this connection's own budget only.
    std::shared_ptr<rpc::receive_pool> receive_pool;
    // Set by open: the transport can carry fds (rpc::can_carry_fds), so the hello offers
    // feature_fds (PROTOCOL.md §13).
    bool carries_fds = false;
    // Its owner's bookkeeping at the close handler (a server's: the client's place, its
    // count), run where options::on_close runs, just before it and just after it
    // returns, and only when it runs (a connection that opened). Quick and never
    // blocking: with no options::on_close they run on the loop thread, and no handler
    // thread is woken for the close at all.
    std::function<void()> before_close_handler = {}, after_close_handler = {};
    // What `in` is, when `out` is empty and the layer that made the socket says so
    // (base/is_socket.hpp): the fd-passing check and the stream then ask nothing of
    // the kernel. Empty: they ask.
    std::optional<base::fd_kind> in_kind = {};
  };

  // Called once on the loop thread when the handshake is done (error null) or has failed
  // (connection null, error the reason).
  using open_callback =
      std::function<void(std::shared_ptr<connection_impl>, std::exception_ptr error)>;

  // Starts the connection over (in, out) — `out` empty means `in` is a socket used both
  // ways — and blocks until the handshake is done. Throws transport_error or
  // protocol_error (the connection is then closed and its fds released).
  static std::shared_ptr<connection_impl> open(config cfg, base::unique_fd in,
                                               base::unique_fd out);

  // The same without blocking: `done` reports the outcome.
  static void open_async(config cfg, base::unique_fd in, base::unique_fd out, open_callback done);

  ~connection_impl();

  // Any thread: handles the requests held back by config::hold_requests.
  void release_requests();
  // Any thread: graceful close (PROTOCOL.md §8.4): tells the peer goaway, answers the
  // requests already received, starts nothing new, and closes once nothing is
  // outstanding either way.
  void go_away(std::string text);

  // Public API (any thread).
  // `blocking`: the caller may wait for room in the send queue (else: busy). Returns
  // the call's sequence number for cancel_call (0 when it failed before starting).
  // `waiter`: a blocking caller's wait (call_sync), filled directly by an answer.
  // `stream`: a stream call (connection_streams.cpp): flagged STREAM, followed by the
  // initial credit, and its slot holds the stream.
  std::uint64_t call(message request, response_callback done, const call_options& opts = {},
                     bool blocking = false, rpc::sync_wait* waiter = nullptr,
                     std::vector<base::unique_fd> fds = {},
                     std::shared_ptr<stream_state> stream = nullptr);
  // In a response callback run by deliver_answers: takes the fds that came with the
  // answer (once; empty elsewhere, and for an error). request_async_with_fds uses it.
  static fd_list take_answer_fds();
  // `fds` go with the request; `received` (if given) gets those of the response.
  message call_sync(message request, const call_options& opts = {},
                    std::vector<base::unique_fd> fds = {}, fd_list* received = nullptr);
  // Streams (connection_streams.cpp), any thread but the loop's for the blocking ones.
  // Opens a stream call; throws like request() when it cannot be sent.
  // `on_message`/`done`: the callback form (connection::open_stream).
  std::shared_ptr<stream_state> open_stream(message request, const call_options& opts,
                                            stream_callback on_message = nullptr,
                                            response_callback done = nullptr);
  // Sends one message of `s`'s stream, having taken its credit (stream.cpp); waits for
  // room in the send queue until the call's deadline when `blocking`. Throws.
  // `fds` (checked by check_fds) go with the message. A message given up (`&&`) keeps
  // its large fields in place, as a call's does (encode_framed).
  void stream_send(stream_state& s, const message& m, bool blocking,
                   std::vector<base::unique_fd> fds = {}) {
    stream_send_framed(s, encode_framed(m), blocking, std::move(fds));
  }
  void stream_send(stream_state& s, message&& m, bool blocking,
                   std::vector<base::unique_fd> fds = {}) {
    stream_send_framed(s, encode_framed(std::move(m)), blocking, std::move(fds));
  }
  void stream_send_framed(stream_state& s, wire::gathered_message framed, bool blocking,
                          std::vector<base::unique_fd> fds);
  // Control frames of a stream: stream_end, credit or reply_credit (by s's role).
  void stream_end_write(stream_state& s);
  void stream_grant(stream_state& s, std::uint32_t messages, std::uint32_t bytes);
  // Responder: answers the call error(cancelled) now (stream::cancel).
  void stream_cancel_answer(stream_state& s);
  std::size_t stream_send_limit() const {
    std::lock_guard lock(mu_);
    return send_limit_;
  }
  // Any thread, mu_ not held: the running request `id`'s context, made if it had none
  // (running_handler::stop_token).
  std::shared_ptr<call_context> handler_context(std::uint32_t id);
  void notify(message m, std::vector<base::unique_fd> fds = {});
  // File descriptors (connection_fds.cpp). Any thread: throws usage_error unless `n`
  // fds (0 < n) may go to the peer now: the transport carries them, the peer offered
  // feature_fds, and n is at most 253. `what` names the caller for the message.
  void check_fds(std::size_t n, const char* what) const;
  // Any thread: the owned fds of the API as the io layer's.
  static std::vector<base::unique_fd> to_io_fds(fd_list fds);
  // Ends our call `seq` now with call_error(code), and tells the peer (cancel).
  void cancel_call(std::uint64_t seq, error_code code);
  // Graceful: goaway, then abrupt close after `grace` if still open.
  void close_gracefully(std::chrono::milliseconds grace);
  void close();  // abrupt
  bool closed() const;
  // The peer's goaway has arrived: this connection starts no new call (a reconnecting
  // connection waits for the next one instead).
  bool peer_going_away() const {
    std::lock_guard lock(mu_);
    return life_.goaway_received();
  }
  void wait_closed() const;
  std::string close_reason() const;
  // Null while open and after a clean end (end_kind clean or drained); else the error
  // the connection's calls failed with (connection::close_error).
  std::exception_ptr failure() const;
  const std::string& peer_address() const { return cfg_.peer; }
  const std::string& user() const { return user_; }
  std::any& user_data() { return user_data_; }
  const std::optional<connection::credentials>& peer_credentials() const {
    return cfg_.peer_credentials;
  }
  std::shared_ptr<transport::peer_process> process() const { return cfg_.process; }
  const std::shared_ptr<io::loop>& loop() const { return cfg_.loop; }

  // io::stream_events (loop thread).
  void on_data(std::string_view bytes) override;  // read_frames, then deliver_answers
  void on_read_end(int err) override;
  void on_write_done(int err) override;
  void on_fds(std::vector<base::unique_fd> fds) override;  // connection_fds.cpp

  explicit connection_impl(config cfg);  // use open()

 private:
  using phase = rpc::lifecycle::phase;

  // open_async, returning the connection (open() waits on it when opening fails).
  static std::shared_ptr<connection_impl> start_async(config cfg, base::unique_fd in,
                                                      base::unique_fd out, open_callback done);
  // How a connection ended (rpc/lifecycle.hpp).
  using end_kind = rpc::lifecycle::end_kind;

  using pending_call = rpc::outgoing_call;
  // A peer request waiting for a slot (rpc/inbound_calls.hpp).
  using queued_call = rpc::inbound_request;

  // Loop thread.
  void start(base::unique_fd in, base::unique_fd out);
  void read_frames(std::string_view bytes);
  void handle_frame(const wire::frame_view& f);
  void handle_hello(const wire::frame_view& f);
  void handle_settings(std::string_view payload);
  // Key mode (connection_keys.cpp), loop thread. key_step() runs the handshake over
  // `bytes` after the preambles; false: stop here (more to come, or it failed).
  bool key_step(std::string_view& bytes);
  bool key_stepped(rpc::key_session::step st, std::string& out);  // the rest of a step
  bool answer_elsewhere(std::string out);  // a login's message 2 on a handler thread
  void key_answered(rpc::key_session::step st, std::string& out);
  bool key_record_opened();  // a responder's login at the first record (§9.6)
  void key_failed();
  std::string settings_payload() const;
  std::string handshake_awaited() const;  // loop thread: for the handshake timeout (connection_keys.cpp)
  static std::uint32_t new_hello_nonce();  // random, nonzero (§6.1)
  void handle_message_frame(const wire::frame_view& f);
  // Receive budget (connection_reader.cpp), loop thread. Brings the pool's count of our
  // partial messages up to date; refuses (busy) the partial message `f` belongs to when
  // partial messages pass the budget, true then; pauses reading while requests waiting
  // for handlers pass it (mu_ held), and resumes once they have room.
  void sync_partial_charge();
  bool refuse_partial_over_budget(const wire::frame_view& f);
  bool pause_for_budget_locked();
  void resume_after_budget();
  void handle_error_frame(const wire::frame_view& f);
  // Streams (connection_streams.cpp), loop thread: stream_end and credit frames, and a
  // whole stream or reply_stream message.
  void handle_stream_control(const wire::frame_view& f);
  std::shared_ptr<stream_state> stream_of(wire::frame_type type, std::uint32_t id,
                                          bool& not_stream);
  void stream_message_arrived(wire::frame_type type, std::uint32_t id, message m,
                              std::size_t bytes, rpc::received_fds fds = {});
  // The peer's stream request `id` was accepted: its state, registered.
  std::shared_ptr<stream_state> register_inbound_stream(std::uint32_t id,
                                                        std::optional<io::clock::time_point> deadline);
  // mu_ held: the inbound stream call `id` is answered: it ends (cancelled for its handler).
  void end_inbound_stream_locked(std::uint32_t id);
  // The connection closed: inbound streams fail with the connection's error.
  void fail_inbound_streams();
  void dispatch_request(std::uint32_t id, std::string_view bytes, std::optional<std::uint32_t> deadline_ms,
                        rpc::received_fds fds = {});
  void dispatch_message(rpc::inbound_request r);
  void start_handler(rpc::inbound_request r);
  void submit_handler(rpc::inbound_request r);
  void dispatch_notify(std::string_view bytes, rpc::received_fds fds = {});
  void notify_decoded(message m, rpc::received_fds fds = {});
  void accept_request(std::uint32_t id, message m, std::size_t cost,
                      std::optional<std::uint32_t> deadline_ms, rpc::received_fds fds = {},
                      bool stream = false);
  // File descriptors of a message frame (connection_fds.cpp), loop thread: takes those a
  // first fragment declares (false: the connection failed), keeps them with a partial
  // message, and gives them back with its last fragment; refuses a message whose fds
  // would pass options::max_received_fds (true: refused, `f`'s message is dropped).
  bool take_frame_fds(const wire::frame_view& f, fd_list& got);
  bool fds_over_budget(const wire::frame_view& f, const fd_list& got);
  void refuse_fds_over_budget(const wire::frame_view& f);
  void drop_partial_fds(wire::frame_type type, std::uint32_t id);
  rpc::received_fds hold_fds(fd_list fds);
  static std::uint64_t partial_key(wire::frame_type type, std::uint32_t id) {
    return (std::uint64_t(type) << 32) | id;
  }
  void handle_cancel(std::uint32_t id);
  void end_call_locally(std::uint64_t seq, error_code code, std::string why = {});
  // Deadlines of our calls share one timer, set for the earliest (deadline_armed_): a
  // call with a later deadline than the one armed costs the loop no wake-up.
  void arm_deadline_timer();
  void sweep_deadlines();
  void arm_tick();
  void arm_tick_at(io::clock::time_point when);
  void tick();
  // options::record_timeout (connection_reader.cpp): a record begun must arrive whole
  // in time. One timer at most, re-armed lazily when it fires early.
  void note_partial_record();
  void check_record_deadline();
  // Waits (mu_ held) until the send queue has room; false when it gave up, with `why`.
  bool wait_for_room_locked(std::unique_lock<std::mutex>& lock, bool blocking,
                            const std::optional<io::clock::time_point>& deadline,
                            const std::stop_token& stop, std::exception_ptr& why);
  // `mu_` held, loop thread: the outbox shrank; `start` receives the queued requests
  // that may start now (counted as running), for the caller to start unlocked.
  void after_dequeue_locked(std::vector<queued_call>& start);
  // Loop thread: an answer to our call `id`, queued until deliver_answers() (connection_calls.cpp).
  void complete_call(std::uint32_t id, std::exception_ptr error, message response,
                     fd_list fds = {});
  void deliver_answers();
  // Any thread, `mu_` not held: a blocking caller's call ended other than by an answer.
  void end_sync_wait(rpc::sync_wait& w, std::exception_ptr error, message response);
  // Runs one of our calls' callbacks; what it throws goes to options::on_callback_error.
  void run_response_callback(response_callback& done, std::exception_ptr error,
                             message response) noexcept;
  void flush();
  // Closing and ending (connection_close.cpp), loop thread unless said otherwise.
  // `farewell`: records to send before the close frame (a goaway saying why).
  void finish(end_kind kind, std::string reason, std::string_view farewell = {});
  // A connection to a child failed: finish once the child has been reaped (its exit
  // status then goes into the reason) or after a short wait, without blocking the loop.
  void wait_for_child(end_kind kind, std::string reason, std::string_view farewell);
  void finish_after_child();
  // `mu_` held: the error for a call refused or failed with nothing of it written.
  std::exception_ptr not_sent_error_locked() const;
  // `mu_` held: the error for a call or notification refused by the goaway either way
  // (unrun_refusal_error when the peer's goaway refused it shutting_down).
  std::exception_ptr refused_error_locked() const {
    if (life_.goaway_received() && life_.refusal_code() == error_code::shutting_down)
      return std::make_exception_ptr(
          unrun_refusal_error(error_code::shutting_down, life_.goaway_reason()));
    return std::make_exception_ptr(call_error(life_.refusal_code(), life_.goaway_reason()));
  }
  void protocol_failure(const std::string& what);
  // A refused preamble, or a reflected hello: the peer may not speak bokbok, so this
  // fails without sending any further frame (PROTOCOL.md §2.3, §6.1).
  void silent_failure(const std::string& what);
  // After our close (§8.5): what the peer still sends, discarded; our output's end.
  void linger_on_data(std::string_view bytes);
  void end_output();

  // Any thread (connection_sender.cpp).
  // A copy of every field, or (moved from) large fields kept in place.
  static wire::gathered_message encode_framed(const message& m);
  static wire::gathered_message encode_framed(message&& m);
  // `mu_` held.
  std::optional<std::string> too_large_locked(const char* what,
                                              const wire::gathered_message& framed) const;
  // `deadline_ms`: sent as the DEADLINE prefix (requests only).
  // `extra_flags`: more first-fragment flags (flag_stream).
  void queue_message_locked(std::unique_lock<std::mutex>& lock, wire::frame_type type,
                            std::uint32_t id, wire::gathered_message framed,
                            std::optional<std::uint32_t> deadline_ms = std::nullopt,
                            std::vector<base::unique_fd> fds = {},
                            std::uint8_t extra_flags = 0);
  // These three may release `mu_` for a while (a direct write, a post: flush_soon).
  void queue_record_locked(std::unique_lock<std::mutex>& lock, std::string_view record);
  bool send_now_locked(std::unique_lock<std::mutex>& lock, std::string_view record);
  // Has the loop write when nothing is being written or about to be. Off the loop thread
  // the post wakes the loop, whose flush() takes `mu_` first of all: posted under the
  // lock, the woken loop would only sleep again until it is released (a futex wait, and
  // one more wake-up). So:
  // - flush_soon: `mu_` held through `lock`; off the loop thread it is released for the
  //   post and taken again (callers of the queue_* functions above allow that);
  // - flush_wanted_locked, then post_flush once `mu_` is released (true: post);
  // - schedule_flush_locked: loop thread only, where a post wakes no one.
  void flush_soon(std::unique_lock<std::mutex>& lock);
  [[nodiscard]] bool flush_wanted_locked() { return send_.want_flush(); }
  void post_flush();
  void schedule_flush_locked();
  // Any thread: queues the answer to the peer's call `id` unless the connection closed.
  void send_response(std::uint32_t id, message response, fd_list fds = {});
  void send_error(std::uint32_t id, error_code code, std::string_view text);
  void run_handler(rpc::inbound_request r);
  // Any thread, at a handler's start: true when the outbox is over max_send_queue and
  // the request went back to the queue (inbound_, moved from), to start once it has room.
  bool defer_while_send_full(rpc::inbound_request& r);
  void handle_goaway(const wire::frame_view& f);
  // Loop thread: sends our goaway (once) and closes when drained.
  void start_goaway(const std::string& text);
  void close_if_drained();
  // A handler ended (`id` 0: a notification's): starts the next queued request.
  void handler_done(std::uint32_t id);
  // A pool thread took one of our requests: the next queued one may go to the pool.
  void handler_started();
  // `mu_` held: the next queued request, counted as started, if one may start now
  // (limits: rpc/inbound_calls.hpp).
  std::optional<queued_call> take_startable_locked();
  void run_close_handler();
  void drop_stream();
  template <typename Step>
  void notify_closed(Step step);
  std::string closed_text_locked() const;  // why calls fail now, naming the peer once
  std::exception_ptr closed_error_locked() const;

  config cfg_;
  // The frame trace (rpc/frame_trace_sink.hpp): empty when off. Set once, at construction.
  const rpc::trace_sink trace_;
  std::shared_ptr<rpc::handler_pool> pool_;
  std::string user_;
  std::any user_data_;

  // Loop thread only.
  std::shared_ptr<io::duplex_stream> stream_;
  wire::preamble_reader preamble_reader_;
  bool preamble_done_ = false;
  rpc::frame_source frames_;  // records, frames, reassembly (rpc/frame_source.hpp)
  bool hello_seen_ = false;    // the phase has left handshaking
  io::timer_id handshake_timer_ = 0;
  // Loop thread: the close's drain wait and the graceful close's grace period, cancelled
  // when no longer needed (a pending timer holds the connection's memory, weakly).
  io::timer_id drain_timer_ = 0;
  io::timer_id grace_timer_ = 0;
  std::unique_ptr<rpc::key_session> key_;  // key mode only
  bool key_begun_ = false;
  // A handler thread is making message 2 (answer_elsewhere): key_ is that thread's
  // (ready() excepted) and reading is stopped until key_answered().
  bool key_busy_ = false;
  bool expect_refusal_ = false;  // key mode met a plain peer: only a refusal is news
  open_callback opened_;
  bool holding_ = false;
  // Inside on_data, from the read's second frame on: records this thread queues (an
  // inline handler's answers, the pong to a ping, a callback's call) go out together in
  // one write once the read is handled, not one direct write each (send_now_locked).
  // Read by other threads never: they check in_loop_thread() first.
  bool in_read_ = false;
  std::uint32_t last_peer_request_ = 0;  // id of the latest request the peer started
  // Answers read in this batch, ended together under one lock by deliver_answers().
  struct answer {
    std::uint32_t id = 0;
    std::exception_ptr error;
    message response;
    rpc::outgoing_call call;  // taken from calls_ (destroyed unlocked)
    fd_list fds;              // those of the response (closed unless a caller takes them)
  };
  std::vector<answer> answers_;
  std::vector<std::shared_ptr<rpc::thread_waker>> to_wake_;  // deliver_answers' blocking callers
  // Heartbeat and idle state.
  rpc::liveness live_{cfg_.opts.heartbeat_interval, cfg_.opts.idle_timeout};  // loop thread
  io::timer_id tick_timer_ = 0;
  // When the record now partly read began to arrive (none: no partial record).
  std::optional<io::clock::time_point> record_since_;
  io::timer_id record_timer_ = 0;
  io::timer_id deadline_timer_ = 0;
  bool reading_paused_ = false;  // backpressure: stopped reading, outbox over its bound
  std::size_t receive_limit_ = 0;   // options::max_receive_bytes, resolved
  std::size_t partial_charged_ = 0;  // reassembler bytes counted in cfg_.receive_pool
  // Closing (PROTOCOL.md §2.3, §8.5), the child wait, and finish() having run
  // (rpc/closing.hpp).
  rpc::closing closing_;
  std::uint32_t hello_nonce_ = 0;  // plain mode: our hello's nonce (§6.1), never reflected
  // File descriptors received (PROTOCOL.md §13): not yet claimed by a frame, and those
  // of partial messages (by partial_key). Closed when the stream is dropped.
  rpc::fd_queue fd_queue_;
  std::unordered_map<std::uint64_t, fd_list> partial_fds_;
  std::size_t partial_fd_count_ = 0;
  // Fds of complete messages no handler has taken yet (rpc::received_fds), any thread.
  std::shared_ptr<std::atomic<std::size_t>> fds_waiting_ =
      std::make_shared<std::atomic<std::size_t>>(0);
  // Streams: ids of stream requests being reassembled (their first fragment had the
  // flag); credit for ids past the latest request (it overtook a fragmented request).
  std::unordered_set<std::uint32_t> partial_stream_requests_;
  std::unordered_map<std::uint32_t, wire::credit_grant> early_credit_;

  // Guarded by mu_.
  mutable std::mutex mu_;
  mutable std::condition_variable closed_cv_;  // the end's steps: wait_closed() and open()
  // A direct write ended: finish() waits on it. Apart from closed_cv_, so that each
  // direct write does not wake a wait_closed() to no purpose (glibc's notify with no
  // waiter makes no system call).
  std::condition_variable direct_write_cv_;
  // The phase, goaway either way, closing, how it ended, and the reference to itself.
  rpc::lifecycle life_;
  rpc::call_table calls_;  // our calls waiting for answers
  // When the deadline timer fires (or will, once a posted arm_deadline_timer runs); no
  // pending call has an earlier deadline.
  std::optional<io::clock::time_point> deadline_armed_;
  std::uint32_t next_notify_id_ = 1;
  // Peer requests held, waiting for a slot and running (rpc/inbound_calls.hpp).
  rpc::inbound_calls inbound_;
  // Backpressure: threads waiting for room in the outbox.
  std::condition_variable_any room_cv_;
  unsigned room_waiters_ = 0;
  bool features_fds_ = false;  // both hellos offered feature_fds
  bool features_notify_ = false, features_deadline_ = false, features_stream_ = false;
  // The peer's stream calls, from acceptance until answered (connection_streams.cpp).
  std::unordered_map<std::uint32_t, std::shared_ptr<stream_state>> inbound_streams_;
  // Requests waiting for a handler (receive_budget.hpp); set at construction. While
  // budget_paused_, reading has stopped until it has room.
  std::shared_ptr<rpc::receive_account> account_;
  bool budget_paused_ = false;
  // The send side: outbox, writer role, sink, direct stream (rpc/send_path.hpp), under
  // mu_ but for its own exceptions.
  rpc::send_path send_;
  bool peer_reset_ = false;  // loop thread: reading ended with ECONNRESET
  std::uint32_t send_limit_ = 0;  // negotiated max message size
};

}  // namespace bokbok::detail
