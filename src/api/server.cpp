// bokbok::server (include/bokbok/server.hpp).
//
// Threads. Everything the server does runs on its own event loop, as loop operations:
// accepting (a poll of each listener, then non-blocking accepts until none is left),
// clients waiting for a slot and refused clients being let go ("lingering", see
// rpc/server_admission.hpp), the systemd watchdog pings, the stop signals (a signalfd
// the loop polls), and stopping with its grace timer. Connections run on the same loop
// and share one handler pool. stop() only posts the stop to the loop, so it may be
// called from any thread: a handler thread, or the loop thread itself (an inline
// handler, on_open, on_connection_error). The threads are the loop's ("bokbok-loop")
// and the pool's ("bokbok-handler").
#include "bokbok/server.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string_view>
#include <utility>

#include "bokbok/error.hpp"
#include "rpc/callback_error.hpp"
#include "rpc/connection_impl.hpp"
#include "api/event_loop.hpp"
#include "rpc/handler_pool.hpp"
#include "api/server_admission.hpp"
#include "api/server_admission_sources.hpp"
#include "api/server_proxy.hpp"
#include "api/log_server.hpp"
#include "base/log.hpp"
#include "rpc/loop_watch.hpp"
#include "transport/address.hpp"
#include "transport/sockets.hpp"
#include "transport/superserver.hpp"

namespace bokbok {

using clock = std::chrono::steady_clock;

namespace {

// Told when the last reference to the server's loop held by its users (connections,
// watches) goes, on whichever thread drops it: the server then holds the last reference
// itself and joins the loop thread on its own thread.
struct loop_users {
  std::mutex mu;
  std::condition_variable cv;
  bool gone = false;
  void mark_gone() {
    std::lock_guard lock(mu);
    gone = true;
    cv.notify_all();
  }
  bool wait_gone(std::chrono::milliseconds limit) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, limit, [&] { return gone; });
  }
};

// A reference to `real` for the loop's users: when the last copy goes, it lets go of
// its own reference to the loop first, then tells `users`.
std::shared_ptr<io::loop> loop_for_users(const std::shared_ptr<io::loop>& real,
                                         std::shared_ptr<loop_users> users) {
  return std::shared_ptr<io::loop>(real.get(), [keep = real, users](io::loop*) mutable {
    keep.reset();
    users->mark_gone();
  });
}

}  // namespace

class server::impl : public std::enable_shared_from_this<impl> {
 public:
  explicit impl(server_options o)
      : opts_(std::move(o)), proxy_sources_(opts_.proxy_trusted_sources) {
    if (opts_.max_connections == 0) opts_.max_connections = 1;
    options each;  // what every connection will be opened with: refused now, not then
    each.max_message_size = opts_.max_message_size;
    each.max_send_queue = opts_.max_send_queue;
    each.caller_spin = opts_.caller_spin;
    detail::check_options(each);
    if (opts_.keys.key)
      throw usage_error(
          "bokbok: server_options::keys takes key_for_user (the users' keys), not a key");
    keys_ = rpc::make_key_config(opts_.keys, std::make_shared<crypto::replay_cache>(),
                                 opts_.on_callback_error,
                                 std::make_shared<rpc::admission_counts>(
                                     opts_.max_connections_per_user, opts_.max_logins_per_user));
  }
  ~impl() { shutdown_and_join(); }

  void start();
  void stop(std::chrono::milliseconds grace);
  void wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return stopped_; });
  }
  bool stopped() const {
    std::lock_guard lock(mu_);
    return stopped_;
  }
  std::vector<std::string> local_addresses() const {
    std::lock_guard lock(mu_);
    return addresses_;
  }
  std::size_t connection_count() const {
    std::lock_guard lock(mu_);
    return conns_.size();
  }
  void shutdown_and_join();

 private:
  using listener_watch = rpc::loop_watch<transport::listener>;
  using signal_watch = rpc::loop_watch<base::unique_fd>;

  void take_listeners(std::vector<transport::connected_socket>& adopted);
  void watch_stop_signals();
  // Loop thread.
  void begin_serving();
  void take_stop_signal(signal_watch& w, int events);
  bool can_take_clients() const;
  void arm_listeners();
  void accept_clients(listener_watch& w, int events);
  void take_client(transport::connected_socket sock);
  void take_proxied_client(transport::connected_socket sock);
  void pause_accepting();
  void slot_freed();
  void flush_log_later();
  void begin_stop(std::chrono::milliseconds grace);
  void grace_over();
  void check_drained();
  // Any thread.
  void finish_stop();
  void start_connection(transport::connected_socket sock);
  void opened(std::uint64_t id, const std::string& peer,
              std::shared_ptr<detail::connection_impl> c, std::exception_ptr e);
  void connection_closed(std::uint64_t id);
  void limit_age(std::uint64_t id, const std::shared_ptr<detail::connection_impl>& c);
  void refuse_with_spare(const transport::listener& l, const std::string& why);
  static std::string_view without_bokbok(std::string_view s) {
    return s.starts_with("bokbok: ") ? s.substr(8) : s;
  }
  bool has_room() const {
    std::lock_guard lock(mu_);
    return conns_.size() + opening_ < opts_.max_connections;
  }
  // Why server_options::authorize refuses this client ("" when it does not).
  std::string unauthorized(const transport::connected_socket& sock) {
    if (!opts_.authorize) return "";
    auto creds = detail::client_credentials(sock);
    bool ok = false;  // a failing check refuses (and is reported)
    detail::guard_callback(opts_.on_callback_error, "server_options::authorize",
                           [&] { ok = opts_.authorize(creds); });
    if (ok) return "";
    return creds ? "uid " + std::to_string(creds->uid) + " (gid " + std::to_string(creds->gid) +
                       ") may not use this server"
                 : "this server accepts only authorized local clients";
  }
  // `log`: false for what the log has already said otherwise (accept_episode).
  void report(const std::string& peer, const std::string& why, bool log = true) {
    if (log) detail::log_client_failure(peer, why);
    flush_log_later();
    if (opts_.on_connection_error)
      detail::guard_callback(opts_.on_callback_error, "server_options::on_connection_error",
                             [&] { opts_.on_connection_error(peer, why); });
  }
  // Loop thread: refuses a client and reports it with its address. Reported first, then
  // told: whoever learns of the refusal from the client finds it already reported.
  void refuse(transport::connected_socket sock, error_code code, const std::string& text,
              bool log = true) {
    report(sock.peer, rpc::admission::describe(code, text), log);
    admission_->refuse(std::move(sock), code, text);
  }

  server_options opts_;
  const detail::proxy_sources proxy_sources_;  // server_options::proxy_trusted_sources
  std::shared_ptr<const rpc::key_config> keys_;  // null: plain mode
  // The loop, held here until shutdown_and_join joins it (mu_ guards the pointer once
  // started: connection_closed reads it on any thread).
  std::shared_ptr<io::loop> loop_;
  std::shared_ptr<loop_users> users_;          // set by start()
  std::shared_ptr<io::loop> users_loop_;       // loop_for_users(loop_): given to users
  std::shared_ptr<rpc::handler_pool> pool_;
  // The receive budget all connections share (server_options::max_receive_bytes).
  std::shared_ptr<rpc::receive_pool> receive_pool_ =
      std::make_shared<rpc::receive_pool>(opts_.max_receive_bytes);
  // Per-source admission limits (server_options::max_connections_per_source, ...).
  std::shared_ptr<rpc::source_limits> sources_ = std::make_shared<rpc::source_limits>(
      rpc::source_limits::limits{opts_.max_connections_per_source,
                                 opts_.max_new_connections_per_source, opts_.limit_local_sources});

  // start()'s until begin_serving takes them on the loop thread.
  std::vector<transport::connected_socket> adopted_;
  std::vector<transport::listener> listeners_;
  base::unique_fd signal_fd_;  // server_options::stop_signals

  // Loop thread only (after start()).
  std::vector<listener_watch*> listener_watches_;
  signal_watch* signal_watch_ = nullptr;
  // Held open so that, out of descriptors, one can be freed to accept a client and tell
  // it why it is refused (instead of leaving it to time out).
  base::unique_fd spare_fd_;
  std::unique_ptr<rpc::admission> admission_;
  std::unique_ptr<detail::proxy_reads> proxy_reads_;  // PROXY headers being read
  std::optional<io::timer_id> pause_timer_;  // accepting paused after running out
  detail::accept_episode accept_episode_;    // running out, logged once per episode
  std::optional<io::timer_id> log_timer_;    // writes the log's due count lines
  std::map<std::uint64_t, io::timer_id> age_timers_;  // server_options::max_connection_age
  std::minstd_rand age_jitter_{std::random_device{}()};
  enum class stop_phase { serving, draining, closing, done };
  stop_phase phase_ = stop_phase::serving;
  std::optional<io::timer_id> stop_timer_;  // the grace, then the wait for close handlers
  std::size_t closing_listeners_ = 0;       // stopping: listener watches not yet closed

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::uint64_t, std::shared_ptr<detail::connection_impl>> conns_;
  std::uint64_t next_id_ = 1;
  unsigned opening_ = 0;
  bool started_ = false, stopping_ = false, stopped_ = false, joined_ = false;
  bool listening_ = false;  // false: serving handed-over connections only
  std::vector<std::string> addresses_;
};

// Binds every listener first, so a failure leaves nothing half started.
void server::impl::take_listeners(std::vector<transport::connected_socket>& adopted) {
  transport::listen_options lo{opts_.backlog, opts_.unix_mode, opts_.reuse_port};
  for (const std::string& text : opts_.proxy_listen) {
    auto addr = transport::parse_address(text);
    if (!std::holds_alternative<transport::tcp_address>(addr) &&
        !std::holds_alternative<transport::unix_address>(addr))
      throw address_error("bokbok: cannot listen on \"" + text +
                          "\" for PROXY protocol clients: server_options::proxy_listen takes tcp: "
                          "and unix: addresses");
    for (auto& l : transport::listen_on(addr, lo)) {
      l.proxy = true;
      listeners_.push_back(std::move(l));
    }
  }
  for (const std::string& text : opts_.listen) {
    auto addr = transport::parse_address(text);
    transport::inherited_sockets got;
    if (std::holds_alternative<transport::inetd_address>(addr)) {
      got = transport::take_inetd_socket();
    } else if (std::holds_alternative<transport::systemd_address>(addr)) {
      got = transport::take_systemd_sockets();
    } else if (std::holds_alternative<transport::tcp_address>(addr) ||
               std::holds_alternative<transport::unix_address>(addr)) {
      got.listeners = transport::listen_on(addr, lo);
    } else {
      throw address_error("bokbok: cannot listen on \"" + text +
                          "\": a server listens on tcp:, unix:, inetd or systemd");
    }
    for (auto& l : got.listeners) listeners_.push_back(std::move(l));
    for (auto& c : got.connections) adopted.push_back(std::move(c));
  }
  if (listeners_.empty() && adopted.empty())
    throw transport_error("bokbok: the server has nothing to listen on (server_options::listen)");
}

// Caller's thread, in start() before any listener or thread of the server exists: blocks
// the stop signals here (so in every thread started from here on) and opens a signalfd
// for them.
void server::impl::watch_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : opts_.stop_signals)
    if (sig == SIGKILL || sig == SIGSTOP || sigaddset(&set, sig) != 0)
      throw usage_error("bokbok: server_options::stop_signals: " + std::to_string(sig) +
                  " is not a signal that can be waited for");
  sigset_t old;
  pthread_sigmask(SIG_BLOCK, &set, &old);
  signal_fd_.reset(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!signal_fd_) {
    int err = errno;
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    throw transport_error(std::string("bokbok: cannot watch the stop signals: signalfd: ") +
                          std::strerror(err));
  }
}

void server::impl::start() {
  {
    std::lock_guard lock(mu_);
    if (started_) throw usage_error("bokbok: server::start called twice");
    started_ = true;
  }
  std::vector<transport::connected_socket> adopted;
  // The signals first: once a socket file exists, a stop signal stops the server.
  sigset_t mask_before;
  pthread_sigmask(SIG_SETMASK, nullptr, &mask_before);
  if (!opts_.stop_signals.empty()) watch_stop_signals();
  std::shared_ptr<io::loop> loop;
  try {
    take_listeners(adopted);
    loop = detail::start_event_loop();  // its thread starts with the signals blocked
  } catch (...) {
    listeners_.clear();  // nothing left bound
    signal_fd_.reset();
    pthread_sigmask(SIG_SETMASK, &mask_before, nullptr);
    throw;
  }
  users_ = std::make_shared<loop_users>();
  users_loop_ = loop_for_users(loop, users_);
  pool_ = std::make_shared<rpc::handler_pool>(
      rpc::handler_pool::limits{opts_.max_threads,
                                std::max<std::size_t>(opts_.max_queued_calls, 1),
                                std::chrono::seconds(5), opts_.max_waiting_handlers});
  {
    std::lock_guard lock(mu_);
    loop_ = std::move(loop);
    for (auto& l : listeners_) addresses_.push_back(l.name);
    listening_ = !listeners_.empty();
  }
  adopted_ = std::move(adopted);
  if (opts_.on_start) opts_.on_start();
  transport::sd_notify("READY=1");  // first: the watchdog pings come after it
  loop_->post([self = shared_from_this()] { self->begin_serving(); });
}

// Loop thread: serves the handed-over connections, takes over the listeners and the
// signalfd, and starts accepting.
void server::impl::begin_serving() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;  // begin_stop has run or will: it lets them go
  }
  for (auto& c : adopted_) start_connection(std::move(c));
  adopted_.clear();
  admission_ = std::make_unique<rpc::admission>(
      users_loop_, opts_.connection_wait, [this](transport::connected_socket late) {
        refuse(std::move(late), error_code::busy,
               "the server is at its connection limit of " +
                   std::to_string(opts_.max_connections));
      });
  admission_->start_watchdog(transport::watchdog_usec());
  proxy_reads_ = std::make_unique<detail::proxy_reads>(
      users_loop_, opts_.handshake_timeout,
      [this](transport::connected_socket sock) {
        if (phase_ == stop_phase::serving) take_client(std::move(sock));
      },
      [this](const std::string& peer, const std::string& why) { report(peer, why); });
  spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  for (auto& l : listeners_) {
    int fd = l.fd.get();
    listener_watches_.push_back(listener_watch::make(
        users_loop_, std::move(l), fd,
        [this](listener_watch& w, int events) { accept_clients(w, events); }));
  }
  listeners_.clear();
  if (signal_fd_) {
    int fd = signal_fd_.get();
    signal_watch_ = signal_watch::make(
        users_loop_, std::move(signal_fd_), fd,
        [this](signal_watch& w, int events) { take_stop_signal(w, events); });
    signal_watch_->arm();
  }
  arm_listeners();
}

// Loop thread: a stop signal is pending (or was taken by another reader: wait again).
void server::impl::take_stop_signal(signal_watch& w, int events) {
  if (events < 0) return;  // cannot be watched: the signals stay blocked, unheard
  signalfd_siginfo info;
  if (::read(w.fd(), &info, sizeof info) != ssize_t(sizeof info)) return w.arm();
  stop(opts_.stop_signal_grace);  // begin_stop closes the watch: a second signal is ignored
}

// Loop thread: whether a new client would be served or could wait for a slot.
bool server::impl::can_take_clients() const {
  return phase_ == stop_phase::serving && !pause_timer_ && admission_ &&
         (has_room() || admission_->can_wait());
}

// Loop thread: waits for clients on every listener, when they can be taken. A listener
// not armed leaves its clients queued in the kernel (the backlog) until a slot frees.
void server::impl::arm_listeners() {
  if (!can_take_clients()) return;
  for (auto* w : listener_watches_) w->arm();
}

// Loop thread, after accepting failed with `why`: gives up the spare descriptor
// to accept one client and refuse it (busy, saying why), if it can. A client refused
// is reported (to on_connection_error) but not logged: the log counts it in the line
// that ends the accept episode.
void server::impl::refuse_with_spare(const transport::listener& l, const std::string& why) {
  if (!spare_fd_) return;
  spare_fd_.reset();
  std::optional<transport::connected_socket> sock;
  try {
    sock = transport::accept_from(l, transport::fd_mode::nonblocking);
  } catch (const std::exception&) {
  }
  if (!sock) return;
  accept_episode_.client_refused();
  refuse(std::move(*sock), error_code::busy,
         "the server is out of resources: " + std::string(without_bokbok(why)), /*log=*/false);
}

// Loop thread: out of descriptors or memory. Stops accepting for a moment instead of
// spinning on a readable listener, then goes on.
void server::impl::pause_accepting() {
  if (pause_timer_) return;
  pause_timer_ = users_loop_->add_timer(clock::now() + std::chrono::milliseconds(100), [this] {
    pause_timer_.reset();
    arm_listeners();
  });
}

// Loop thread: a listener is readable. Accepts until none is left (EAGAIN), then waits
// again; at most 64 at a time, so one busy listener cannot starve the loop's other work.
void server::impl::accept_clients(listener_watch& w, int events) {
  const transport::listener& l = w.owned();
  if (events < 0) {
    accept_episode_.failed(l.name, "cannot wait for clients on " + l.name + ": " +
                                       std::strerror(-events));
    return pause_accepting();
  }
  // The spare descriptor, retaken (when spent) while descriptors are to be had.
  if (!spare_fd_) spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  for (int n = 0; n < 64; ++n) {
    if (!can_take_clients()) return;  // left unarmed: slot_freed() arms it again
    std::optional<transport::connected_socket> sock;
    try {
      // Non-blocking from the start: everything here reads and writes it so.
      sock = transport::accept_from(l, transport::fd_mode::nonblocking);
    } catch (const std::exception& e) {
      // Out of descriptors or memory. The spare descriptor makes room to take one
      // client and tell it so; the others stay queued in the kernel.
      // Logged once per episode, naming the cause. A client is reported (to
      // on_connection_error) only when one was taken and told; the log counts it in the
      // line that ends the episode.
      accept_episode_.failed(l.name, e.what());
      refuse_with_spare(l, e.what());
      return pause_accepting();
    }
    if (!sock) break;  // none left (or a transient error): wait again
    accept_episode_.accepted(l.name);
    if (l.proxy)
      take_proxied_client(std::move(*sock));
    else
      take_client(std::move(*sock));
  }
  w.arm();
}

// Loop thread: a client accepted on a proxy_listen address: its PROXY header is read
// first (then take_client), if it comes from a trusted source and the headers being
// read are fewer than the connection limit; else it is closed and reported.
void server::impl::take_proxied_client(transport::connected_socket sock) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  bool is_ip = ::getpeername(sock.fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0 &&
               (ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
  if (is_ip && !proxy_sources_.allows(reinterpret_cast<sockaddr*>(&ss)))
    return report(sock.peer,
                  "PROXY protocol: the source is not in server_options::proxy_trusted_sources");
  if (proxy_reads_->size() >= opts_.max_connections)
    return report(sock.peer, "PROXY protocol: " + std::to_string(proxy_reads_->size()) +
                                 " headers are being read already (max_connections)");
  proxy_reads_->start(std::move(sock));
}

// Loop thread: a client accepted: served now, waits for a slot, or is refused.
void server::impl::take_client(transport::connected_socket sock) {
  if (auto why = unauthorized(sock); !why.empty())
    return refuse(std::move(sock), error_code::not_authorized, why);
  if (auto why = sources_->admit(sources_->source_of(sock)); !why.empty())
    return refuse(std::move(sock), error_code::busy, why);
  if (has_room() && !admission_->has_waiting())
    start_connection(std::move(sock));
  else if (admission_->can_wait())
    admission_->wait_for_slot(std::move(sock));
  else
    refuse(std::move(sock), error_code::busy, "too many clients waiting");
}

// Loop thread: a connection ended (or failed to open): admits the clients that waited
// for a slot, and waits for new ones again; when stopping, checks whether all are gone.
void server::impl::slot_freed() {
  if (phase_ != stop_phase::serving) return check_drained();
  if (!admission_) return;  // begin_serving has not run yet
  while (admission_->has_waiting() && has_room()) start_connection(admission_->pop_waiting());
  arm_listeners();
  flush_log_later();  // count lines of connections that ended badly
}

// Loop thread: has the log's count lines written when due, while the server serves.
void server::impl::flush_log_later() {
  if (log_timer_ || phase_ != stop_phase::serving || !users_loop_) return;
  if (auto due = base::log_flush())
    log_timer_ = users_loop_->add_timer(*due, [this] {
      log_timer_.reset();
      flush_log_later();
    });
}

void server::impl::start_connection(transport::connected_socket sock) {
  std::uint64_t id;
  {
    std::lock_guard lock(mu_);
    id = next_id_++;
    ++opening_;
  }
  auto weak = weak_from_this();
  // This connection's place in its source's count, given back once when it ends
  // (on_close), or when it fails to open.
  std::string source = sources_->source_of(sock);
  sources_->started(source);
  // Once: a flag, not std::call_once, whose completion makes a futex wake-up call
  // every time, waiter or not.
  auto give_back = [sources = sources_, source, once = std::make_shared<std::atomic<bool>>(false)] {
    if (!once->exchange(true)) sources->ended(source);
  };
  options o;
  o.on_request = opts_.on_request;
  if (opts_.on_handler_error && o.on_request)
    o.on_request = [inner = opts_.on_request, tell = opts_.on_handler_error,
                    hook = opts_.on_callback_error](connection& c, message m) -> message {
      try {
        return inner(c, std::move(m));
      } catch (...) {
        auto e = std::current_exception();
        detail::guard_callback(hook, "server_options::on_handler_error", [&] { tell(c, e); });
        throw;
      }
    };
  // The user's close handler as it is (the connection reports what it throws to
  // on_callback_error); the server's bookkeeping goes around it (config's
  // before/after_close_handler), so a server without one wakes no handler thread when a
  // connection ends.
  o.on_close = opts_.on_close;
  o.on_callback_error = opts_.on_callback_error;
  o.max_threads = opts_.max_threads;
  o.on_notify = opts_.on_notify;
  o.trace = opts_.trace;
  o.max_concurrent_calls = opts_.max_concurrent_calls;
  o.max_queued_calls = opts_.max_queued_calls_per_connection;
  o.heartbeat_interval = opts_.heartbeat_interval;
  o.idle_timeout = opts_.idle_timeout;
  o.record_timeout = opts_.record_timeout;
  o.max_send_queue = opts_.max_send_queue;
  o.inline_handlers = opts_.inline_handlers;
  o.caller_spin = opts_.caller_spin;
  o.max_message_size = opts_.max_message_size;
  o.max_receive_bytes = opts_.max_receive_bytes_per_connection;
  o.connect_timeout = opts_.handshake_timeout;
  // Key mode comes from keys_ (config::keys), whose replay cache all connections share.
  auto creds = detail::client_credentials(sock);
  detail::connection_impl::config cfg{o,     sock.peer, users_loop_, pool_, {},
                                      creds, /*hold_requests=*/static_cast<bool>(opts_.on_open), nullptr,
                                      keys_, receive_pool_};
  // Its place in its source's count is given back before the close handler runs; it
  // leaves connection_count() once the handler has returned (server.hpp).
  cfg.before_close_handler = give_back;
  if (sock.kind.socket) cfg.in_kind = sock.kind;
  cfg.after_close_handler = [weak, id] {
    if (auto self = weak.lock()) self->connection_closed(id);
  };
  std::string peer = sock.peer;
  detail::connection_impl::open_async(
      std::move(cfg), std::move(sock.fd), {},
      [weak, id, peer, give_back](std::shared_ptr<detail::connection_impl> c, std::exception_ptr e) {
        if (e) give_back();
        if (auto self = weak.lock())
          self->opened(id, peer, std::move(c), std::move(e));
        else if (c)
          c->close();
      });
}

// Loop thread: a handshake finished.
void server::impl::opened(std::uint64_t id, const std::string& peer,
                          std::shared_ptr<detail::connection_impl> c, std::exception_ptr e) {
  bool stopping;
  {
    std::lock_guard lock(mu_);
    --opening_;
    stopping = stopping_;
    if (!e && !stopping) conns_.emplace(id, c);
  }
  if (e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      report(peer, ex.what());
    }
    connection_closed(0);  // a slot is free again
    return;
  }
  if (stopping) {
    c->close();
    return slot_freed();  // stopping: perhaps the last one
  }
  limit_age(id, c);
  if (opts_.on_open) {
    auto run_open = [c, this, keep = shared_from_this()] {
      connection handle(c);
      // An open handler that throws closes its connection, and is reported.
      if (!detail::guard_callback(opts_.on_callback_error, "server_options::on_open",
                                  [&] { opts_.on_open(handle); }))
        c->close();
      c->release_requests();
    };
    // No handler thread can be started (thread limit): run it here, on the loop thread,
    // rather than hold the connection's requests forever; they are then refused one by
    // one (busy, saying why) until threads can be had again.
    if (!pool_->submit(run_open)) run_open();
  }
}

// Loop thread: ends connection `id` gracefully once it reaches its maximum age, less up
// to a tenth at random (server_options::max_connection_age).
void server::impl::limit_age(std::uint64_t id, const std::shared_ptr<detail::connection_impl>& c) {
  const auto age = opts_.max_connection_age;
  if (age.count() <= 0) return;
  auto jitter = std::uniform_int_distribution<std::int64_t>(0, age.count() / 10)(age_jitter_);
  std::weak_ptr<detail::connection_impl> weak = c;
  age_timers_[id] = users_loop_->add_timer(
      clock::now() + age - std::chrono::milliseconds(jitter),
      [this, id, weak, grace = opts_.max_connection_age_grace] {
        age_timers_.erase(id);
        if (auto conn = weak.lock()) conn->close_gracefully(grace);
      });
}

// Any thread: a connection ended (id 0: one that never opened).
void server::impl::connection_closed(std::uint64_t id) {
  bool done_serving;
  std::shared_ptr<io::loop> loop;
  {
    std::lock_guard lock(mu_);
    if (id) conns_.erase(id);
    done_serving = !listening_ && conns_.empty() && opening_ == 0 && !stopping_;
    loop = loop_;
  }
  // Posted after unlocking: the post wakes the loop thread, which on a shared CPU runs
  // at once; under `mu_` it could find the mutex held and sleep on it, and the mutex,
  // once contended, costs its next holders a wake-up call each (two futex calls per
  // connection, one of them to nobody). A post after shutdown is dropped (io/loop.hpp).
  if (loop)
    loop->post([weak = weak_from_this(), id] {
      if (auto self = weak.lock()) {
        if (auto t = self->age_timers_.find(id); t != self->age_timers_.end()) {
          if (self->users_loop_) self->users_loop_->cancel_timer(t->second);
          self->age_timers_.erase(t);
        }
        self->slot_freed();
      }
    });
  // A server given only handed-over connections (inetd nowait, systemd Accept=yes)
  // stops when the last one closes.
  if (done_serving) stop(std::chrono::milliseconds(0));
}

// Any thread: the first call posts the stop to the loop (begin_stop); later ones do
// nothing. Before start(), or when start() failed before the loop ran, the server has
// nothing to drain and stops here.
void server::impl::stop(std::chrono::milliseconds grace) {
  {
    std::lock_guard lock(mu_);
    if (!started_ || stopping_) {
      if (!started_) {
        stopping_ = stopped_ = true;
        cv_.notify_all();
      }
      return;
    }
    stopping_ = true;
    if (loop_) {
      loop_->post([self = shared_from_this(), grace] { self->begin_stop(grace); });
      return;
    }
  }
  listeners_.clear();
  finish_stop();
}

// Loop thread: no new clients (the listeners go, their socket files with them; clients
// waiting for a slot are refused), every connection is told goaway, and the grace runs.
void server::impl::begin_stop(std::chrono::milliseconds grace) {
  phase_ = stop_phase::draining;
  // The listeners close (and their socket files go) before the server is stopped; one
  // count is held here until the end of this function.
  closing_listeners_ = listener_watches_.size() + 1;
  for (auto* w : listener_watches_)
    w->close([this] {
      --closing_listeners_;
      check_drained();
    });
  listener_watches_.clear();
  listeners_.clear();  // when begin_serving did not take them
  adopted_.clear();
  if (signal_watch_) signal_watch_->close();
  signal_watch_ = nullptr;
  signal_fd_.reset();
  if (pause_timer_) users_loop_->cancel_timer(*pause_timer_);
  pause_timer_.reset();
  if (log_timer_) users_loop_->cancel_timer(*log_timer_);
  log_timer_.reset();
  for (auto& [id, t] : age_timers_) users_loop_->cancel_timer(t);
  age_timers_.clear();
  proxy_reads_.reset();  // the headers still being read: dropped (it holds the loop)
  if (admission_) {
    for (auto& w : admission_->take_all_waiting())
      refuse(std::move(w), error_code::shutting_down, "the server is stopping");
    admission_->stop();
    admission_.reset();
  }
  spare_fd_.reset();
  std::vector<std::shared_ptr<detail::connection_impl>> open;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, c] : conns_) open.push_back(c);
  }
  for (auto& c : open) c->go_away("the server is stopping");
  stop_timer_ = users_loop_->add_timer(clock::now() + grace, [this] { grace_over(); });
  --closing_listeners_;
  check_drained();
}

// Loop thread: the grace is over: what is left is closed, and its close handlers (on
// the pool) get a bounded time to finish.
void server::impl::grace_over() {
  phase_ = stop_phase::closing;
  std::vector<std::shared_ptr<detail::connection_impl>> open;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, c] : conns_) open.push_back(c);
  }
  for (auto& c : open) c->close();
  stop_timer_ = users_loop_->add_timer(clock::now() + std::chrono::seconds(10), [this] {
    stop_timer_.reset();
    finish_stop();
  });
  check_drained();
}

// Loop thread, stopping: finishes when every connection has gone.
void server::impl::check_drained() {
  if (phase_ != stop_phase::draining && phase_ != stop_phase::closing) return;
  if (closing_listeners_ > 0) return;
  {
    std::lock_guard lock(mu_);
    if (!conns_.empty() || opening_ != 0) return;
  }
  if (stop_timer_) users_loop_->cancel_timer(*stop_timer_);
  stop_timer_.reset();
  finish_stop();
}

// The loop thread (or stop()'s, when no loop ran): runs on_stop and marks the server
// stopped. The server lets go of its users' reference to the loop, so that once the
// connections have too, shutdown_and_join holds the last one.
void server::impl::finish_stop() {
  phase_ = stop_phase::done;
  base::log_flush(/*all=*/true);  // what the log still counts, written before it stops
  users_loop_.reset();
  if (opts_.on_stop)
    detail::guard_callback(opts_.on_callback_error, "server_options::on_stop",
                           [&] { opts_.on_stop(); });
  transport::sd_notify("STOPPING=1");
  std::lock_guard lock(mu_);
  stopped_ = true;
  cv_.notify_all();
}

void server::impl::shutdown_and_join() {
  stop(std::chrono::milliseconds(0));
  wait();
  std::shared_ptr<io::loop> loop;
  {
    std::lock_guard lock(mu_);
    if (joined_) return;
    joined_ = true;
    loop = std::move(loop_);
  }
  // Connections keep the loop until their streams have stopped, which may be a moment
  // after their close handlers ran. Wait (bounded) until the last of them has let go, so
  // the loop is joined on this thread rather than left to finish on its own.
  if (users_) users_->wait_gone(std::chrono::seconds(2));
  loop.reset();
}

std::string superserver_address() {
  switch (transport::detect_superserver()) {
    case transport::superserver::systemd:
      return "systemd";
    case transport::superserver::inetd:
      return "inetd";
    case transport::superserver::none:
      break;
  }
  return "";
}

server::server(server_options opts) : impl_(std::make_shared<impl>(std::move(opts))) {}
server::~server() { impl_->shutdown_and_join(); }
void server::start() { impl_->start(); }
void server::stop(std::chrono::milliseconds grace) { impl_->stop(grace); }
void server::wait() { impl_->wait(); }
bool server::stopped() const { return impl_->stopped(); }
std::vector<std::string> server::local_addresses() const { return impl_->local_addresses(); }
std::size_t server::connection_count() const { return impl_->connection_count(); }

}  // namespace bokbok
