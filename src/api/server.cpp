// bokbok::server (include/bokbok/server.hpp).
//
// Threads. The acceptor thread owns the listeners and everything not yet a connection:
// clients waiting for a slot, and refused clients being let go ("lingering": we wrote our
// refusal, shut our side, and read until the client hangs up, so the kernel does not
// answer its unread bytes with a reset that would swallow the refusal). Connections run
// on the server's own event loop and share one handler pool. stop() hands the rest of
// the shutdown to a stopper thread, so it may be called from a handler.
#include "bokbok/server.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <mutex>
#include <string_view>
#include <thread>
#include <utility>

#include "bokbok/error.hpp"
#include "io/write_now.hpp"
#include "rpc/callback_error.hpp"
#include "rpc/connection_impl.hpp"
#include "api/event_loop.hpp"
#include "rpc/handler_pool.hpp"
#include "api/server_admission.hpp"
#include "transport/address.hpp"
#include "transport/sockets.hpp"
#include "transport/superserver.hpp"

namespace bokbok {

using clock = std::chrono::steady_clock;

class server::impl : public std::enable_shared_from_this<impl> {
 public:
  explicit impl(server_options o) : opts_(std::move(o)) {
    if (opts_.max_connections == 0) opts_.max_connections = 1;
    options each;  // what every connection will be opened with: refused now, not then
    each.max_message_size = opts_.max_message_size;
    detail::check_options(each);
    if (opts_.keys.key)
      throw usage_error(
          "bokbok: server_options::keys takes key_for_user (the users' keys), not a key");
    keys_ = rpc::make_key_config(opts_.keys, std::make_shared<crypto::replay_cache>(),
                                 opts_.on_callback_error);
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
  void take_listeners(std::vector<transport::connected_socket>& adopted);
  void watch_stop_signals();
  void take_stop_signal();
  void accept_loop();
  void start_connection(transport::connected_socket sock);
  void opened(std::uint64_t id, const std::string& peer,
              std::shared_ptr<detail::connection_impl> c, std::exception_ptr e);
  void connection_closed(std::uint64_t id);
  std::optional<std::pair<std::string, std::string>> refuse_with_spare(
      const transport::listener& l, const std::string& why);
  static std::string_view without_bokbok(std::string_view s) {
    return s.starts_with("bokbok: ") ? s.substr(8) : s;
  }
  void finish_stop(std::chrono::milliseconds grace);
  void wake() {
    std::uint64_t one = 1;
    (void)!::write(wake_fd_.get(), &one, sizeof one);
  }
  bool has_room_locked() const { return conns_.size() + opening_ < opts_.max_connections; }
  // Why server_options::authorize refuses this client ("" when it does not).
  std::string unauthorized(const transport::connected_socket& sock) {
    if (!opts_.authorize) return "";
    auto creds = transport::peer_credentials_of(sock.fd.get());
    bool ok = false;  // a failing check refuses (and is reported)
    detail::guard_callback(opts_.on_callback_error, "server_options::authorize",
                           [&] { ok = opts_.authorize(creds); });
    if (ok) return "";
    return creds ? "uid " + std::to_string(creds->uid) + " (gid " + std::to_string(creds->gid) +
                       ") may not use this server"
                 : "this server accepts only authorized local clients";
  }
  void report(const std::string& peer, const std::string& why) {
    if (opts_.on_connection_error)
      detail::guard_callback(opts_.on_callback_error, "server_options::on_connection_error",
                             [&] { opts_.on_connection_error(peer, why); });
  }
  // Refuses a client and reports it with its address, taken before the socket (and
  // the address with it) moves into the refusal.
  void refuse(transport::connected_socket sock, error_code code, const std::string& text) {
    std::string peer = sock.peer;
    report(peer, admission_.refuse(std::move(sock), code, text));
  }

  server_options opts_;
  std::shared_ptr<const rpc::key_config> keys_;  // null: plain mode
  std::shared_ptr<io::loop> loop_;
  std::shared_ptr<rpc::handler_pool> pool_;
  // The receive budget all connections share (server_options::max_receive_bytes).
  std::shared_ptr<rpc::receive_pool> receive_pool_ =
      std::make_shared<rpc::receive_pool>(opts_.max_receive_bytes);
  base::unique_fd wake_fd_;
  base::unique_fd signal_fd_;  // server_options::stop_signals; polled by the acceptor
  std::thread acceptor_, stopper_;

  // Acceptor thread only (after start()).
  std::vector<transport::listener> listeners_;
  // Held open so that, out of descriptors, one can be freed to accept a client and tell
  // it why it is refused (instead of leaving it to time out).
  base::unique_fd spare_fd_;
  rpc::admission admission_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::uint64_t, std::shared_ptr<detail::connection_impl>> conns_;
  std::uint64_t next_id_ = 1;
  unsigned opening_ = 0;
  bool started_ = false, stopping_ = false, stopped_ = false;
  bool listening_ = false;  // false: serving handed-over connections only
  std::vector<std::string> addresses_;
  std::chrono::milliseconds stop_grace_{0};
};

// Binds every listener first, so a failure leaves nothing half started.
void server::impl::take_listeners(std::vector<transport::connected_socket>& adopted) {
  transport::listen_options lo{opts_.backlog, opts_.unix_mode};
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

// Acceptor thread: a stop signal is pending (or was taken by another reader): stop.
void server::impl::take_stop_signal() {
  signalfd_siginfo info;
  if (::read(signal_fd_.get(), &info, sizeof info) != ssize_t(sizeof info)) return;
  stop(opts_.stop_signal_grace);
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
  try {
    take_listeners(adopted);
    wake_fd_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_fd_)
      throw resource_error(std::string("bokbok: the server cannot start: eventfd: ") +
                           std::strerror(errno));
    loop_ = detail::start_event_loop();
  } catch (...) {
    listeners_.clear();  // nothing left bound
    signal_fd_.reset();
    pthread_sigmask(SIG_SETMASK, &mask_before, nullptr);
    throw;
  }
  pool_ = std::make_shared<rpc::handler_pool>(
      rpc::handler_pool::limits{opts_.max_threads,
                                std::max<std::size_t>(opts_.max_queued_calls, 1),
                                std::chrono::seconds(5)});
  {
    std::lock_guard lock(mu_);
    for (auto& l : listeners_) addresses_.push_back(l.name);
    listening_ = !listeners_.empty();
  }
  admission_ = rpc::admission(opts_.connection_wait, transport::watchdog_usec());
  if (opts_.on_start) opts_.on_start();
  for (auto& c : adopted) start_connection(std::move(c));
  transport::sd_notify("READY=1");  // first: the acceptor's watchdog pings come after it
  try {
    acceptor_ = std::thread([self = shared_from_this()] { self->accept_loop(); });
  } catch (const std::system_error& e) {
    listeners_.clear();
    stop(std::chrono::milliseconds(0));  // what was adopted closes; on_stop runs
    throw resource_error(std::string("bokbok: the server cannot start its accepting thread: ") +
                         e.what());
  }
}

// Acceptor thread, after accepting failed with `why`: gives up the spare descriptor
// to accept one client and refuse it (busy, saying why). The peer and what it was told,
// or none when even that failed.
std::optional<std::pair<std::string, std::string>> server::impl::refuse_with_spare(
    const transport::listener& l, const std::string& why) {
  if (!spare_fd_) return std::nullopt;
  spare_fd_.reset();
  std::optional<transport::connected_socket> sock;
  try {
    sock = transport::accept_from(l);
  } catch (const std::exception&) {
  }
  if (!sock) return std::nullopt;
  std::string peer = sock->peer;
  return std::pair{peer, admission_.refuse(std::move(*sock), error_code::busy,
                                           "the server is out of resources: " +
                                               std::string(without_bokbok(why)))};
}

void server::impl::accept_loop() {
  pthread_setname_np(pthread_self(), "bokbok-accept");
  clock::time_point accept_paused_until{};
  for (;;) {
    // The spare descriptor, (re)taken while descriptors are to be had.
    if (!spare_fd_) spare_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    bool room;
    {
      std::lock_guard lock(mu_);
      if (stopping_) break;
      room = has_room_locked();
    }
    // Admit clients that waited for a slot, then refuse those that waited too long.
    while (room && admission_.has_waiting()) {
      start_connection(admission_.pop_waiting());
      std::lock_guard lock(mu_);
      room = has_room_locked();
    }
    for (auto& late : admission_.take_expired())
      refuse(std::move(late), error_code::busy,
             "the server is at its connection limit of " + std::to_string(opts_.max_connections));

    std::vector<pollfd> fds{{wake_fd_.get(), POLLIN, 0}};
    if (signal_fd_) fds.push_back({signal_fd_.get(), POLLIN, 0});
    const std::size_t first_listener = fds.size();
    bool paused = clock::now() < accept_paused_until;
    bool take_new = (room || admission_.can_wait()) && !paused;
    if (take_new)
      for (auto& l : listeners_) fds.push_back({l.fd.get(), POLLIN, 0});
    std::size_t first_lingering = fds.size();
    admission_.add_lingering_fds(fds);
    int timeout = admission_.poll_timeout_ms();
    if (paused) {
      int left = int(std::chrono::ceil<std::chrono::milliseconds>(accept_paused_until -
                                                                 clock::now()).count());
      timeout = timeout < 0 ? left : std::min(timeout, left);
    }
    int rc = ::poll(fds.data(), fds.size(), timeout);
    if (rc < 0 && errno != EINTR) break;
    std::uint64_t drained;
    while (::read(wake_fd_.get(), &drained, sizeof drained) > 0) {
    }
    admission_.service_lingering(fds, first_lingering);
    admission_.maybe_ping_watchdog();
    if (signal_fd_ && (fds[1].revents & POLLIN)) {
      take_stop_signal();
      continue;  // stopping: accept nobody new
    }
    if (!take_new) continue;
    for (std::size_t i = 0; i < listeners_.size(); ++i) {
      if (!(fds[first_listener + i].revents & POLLIN)) continue;
      for (int n = 0; n < 64; ++n) {  // bounded, so one busy listener cannot starve others
        std::optional<transport::connected_socket> sock;
        try {
          sock = transport::accept_from(listeners_[i]);
        } catch (const std::exception& e) {
          // Out of descriptors or memory. The spare descriptor makes room to take one
          // client and tell it so; the others stay queued in the kernel. Stop accepting
          // for a moment instead of spinning on a readable listener.
          if (auto told = refuse_with_spare(listeners_[i], e.what()))
            report(told->first, told->second);
          else
            report(listeners_[i].name, e.what());
          accept_paused_until = clock::now() + std::chrono::milliseconds(100);
          break;
        }
        if (!sock) break;
        if (auto why = unauthorized(*sock); !why.empty()) {
          refuse(std::move(*sock), error_code::not_authorized, why);
          continue;
        }
        bool now;
        {
          std::lock_guard lock(mu_);
          now = has_room_locked() && !admission_.has_waiting();
        }
        if (now)
          start_connection(std::move(*sock));
        else if (admission_.can_wait())
          admission_.wait_for_slot(std::move(*sock));
        else
          refuse(std::move(*sock), error_code::busy, "too many clients waiting");
      }
    }
  }
  // Stopping: no new clients; the listeners go (their socket files with them).
  listeners_.clear();
  for (auto& w : admission_.take_all_waiting())
    refuse(std::move(w), error_code::shutting_down, "the server is stopping");
  admission_.close_lingering();
}

void server::impl::start_connection(transport::connected_socket sock) {
  std::uint64_t id;
  {
    std::lock_guard lock(mu_);
    id = next_id_++;
    ++opening_;
  }
  auto weak = weak_from_this();
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
  o.on_close = [weak, id, user = opts_.on_close, hook = opts_.on_callback_error](connection& c) {
    if (user) detail::guard_callback(hook, "on_close", [&] { user(c); });
    if (auto self = weak.lock()) self->connection_closed(id);
  };
  o.on_callback_error = opts_.on_callback_error;
  o.max_threads = opts_.max_threads;
  o.on_notify = opts_.on_notify;
  o.max_concurrent_calls = opts_.max_concurrent_calls;
  o.max_queued_calls = opts_.max_queued_calls_per_connection;
  o.heartbeat_interval = opts_.heartbeat_interval;
  o.idle_timeout = opts_.idle_timeout;
  o.max_send_queue = opts_.max_send_queue;
  o.inline_handlers = opts_.inline_handlers;
  o.max_message_size = opts_.max_message_size;
  o.max_receive_bytes = opts_.max_receive_bytes_per_connection;
  o.connect_timeout = opts_.handshake_timeout;
  // Key mode comes from keys_ (config::keys), whose replay cache all connections share.
  auto creds = transport::peer_credentials_of(sock.fd.get());
  detail::connection_impl::config cfg{o,     sock.peer, loop_, pool_, {},
                                      creds, /*hold_requests=*/static_cast<bool>(opts_.on_open), nullptr,
                                      keys_, receive_pool_};
  std::string peer = sock.peer;
  detail::connection_impl::open_async(
      std::move(cfg), std::move(sock.fd), {},
      [weak, id, peer](std::shared_ptr<detail::connection_impl> c, std::exception_ptr e) {
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
  if (stopping) return c->close();
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

// Any thread: a connection ended (id 0: one that never opened).
void server::impl::connection_closed(std::uint64_t id) {
  bool done_serving;
  {
    std::lock_guard lock(mu_);
    if (id) conns_.erase(id);
    done_serving = !listening_ && conns_.empty() && opening_ == 0 && !stopping_;
    cv_.notify_all();
  }
  if (wake_fd_) wake();
  // A server given only handed-over connections (inetd nowait, systemd Accept=yes)
  // stops when the last one closes.
  if (done_serving) stop(std::chrono::milliseconds(0));
}

void server::impl::stop(std::chrono::milliseconds grace) {
  bool stopper_failed = false;
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
    stop_grace_ = grace;
    // Under the lock: the stopper marks the server stopped under it too, so whoever sees
    // stopped() (and then joins stopper_ in shutdown_and_join) sees this assignment.
    try {
      stopper_ = std::thread([self = shared_from_this(), grace] { self->finish_stop(grace); });
    } catch (const std::system_error&) {
      stopper_failed = true;  // no thread to spare: this one stops the server (bounded)
    }
  }
  wake();
  if (stopper_failed) finish_stop(grace);
}

void server::impl::finish_stop(std::chrono::milliseconds grace) {
  pthread_setname_np(pthread_self(), "bokbok-stop");
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::shared_ptr<detail::connection_impl>> open;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, c] : conns_) open.push_back(c);
  }
  for (auto& c : open) c->go_away("the server is stopping");
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, grace, [&] { return conns_.empty() && opening_ == 0; });
  open.clear();
  for (auto& [id, c] : conns_) open.push_back(c);
  lock.unlock();
  for (auto& c : open) c->close();
  open.clear();
  lock.lock();
  // Close handlers run on the pool; give them a bounded time to finish.
  cv_.wait_for(lock, std::chrono::seconds(10), [&] { return conns_.empty() && opening_ == 0; });
  lock.unlock();
  if (opts_.on_stop)
    detail::guard_callback(opts_.on_callback_error, "server_options::on_stop", [&] { opts_.on_stop(); });
  transport::sd_notify("STOPPING=1");
  lock.lock();
  stopped_ = true;
  cv_.notify_all();
}

void server::impl::shutdown_and_join() {
  stop(std::chrono::milliseconds(0));
  wait();
  auto me = std::this_thread::get_id();
  if (stopper_.joinable() && stopper_.get_id() != me) stopper_.join();
  if (acceptor_.joinable() && acceptor_.get_id() != me) acceptor_.join();
  // Connections keep the loop until their streams have stopped, which may be a moment
  // after their close handlers ran. Wait (bounded) to hold the last reference here, so
  // the loop is joined on this thread rather than left to finish on its own.
  auto until = clock::now() + std::chrono::seconds(2);
  while (loop_ && loop_.use_count() > 1 && clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  loop_.reset();
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
