// The public ways to open a connection (include/bokbok/bokbok.hpp): from an address, an
// fd pair, a socketpair, or stdio. This is the convenience layer: it alone reaches for
// the shared default event loop; the layers below are given theirs.
#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <unistd.h>
#include <future>
#include <mutex>
#include <optional>
#include <system_error>

#include "bokbok/bokbok.hpp"
#include "rpc/connection_impl.hpp"
#include "rpc/callback_error.hpp"
#include "api/address_picker.hpp"
#include "api/event_loop.hpp"
#include "api/reconnector.hpp"
#include "api/user_handle.hpp"
#include "transport/address.hpp"
#include "transport/child_process.hpp"
#include "transport/sockets.hpp"
#include "transport/stdio.hpp"

namespace bokbok {

namespace {

// One loop thread shared by the connections this convenience API opens (and the
// children it watches), started on first use (rpc/event_loop.hpp).
std::shared_ptr<io::loop> default_loop() { return detail::default_event_loop(); }

// The replay cache of key-mode connections that accept users through this API
// (a child serving stdio, say); a server keeps its own.
std::shared_ptr<crypto::replay_cache> default_replay_cache() {
  static const auto cache = std::make_shared<crypto::replay_cache>();
  return cache;
}

std::shared_ptr<detail::connection_impl> open_impl(
    base::unique_fd in, base::unique_fd out, const options& opts, std::string peer,
    std::optional<connection::credentials> creds = std::nullopt,
    std::shared_ptr<transport::peer_process> process = nullptr,
    std::optional<base::fd_kind> in_kind = std::nullopt) {
  auto keys = rpc::make_key_config(
      opts.keys, opts.keys.key_for_user ? default_replay_cache() : nullptr, opts.on_callback_error);
  detail::connection_impl::config cfg{opts, std::move(peer), default_loop(), nullptr, {},
                                      creds, false, std::move(process), std::move(keys), nullptr};
  cfg.in_kind = in_kind;
  return detail::connection_impl::open(std::move(cfg), std::move(in), std::move(out));
}

connection open_over(base::unique_fd in, base::unique_fd out, const options& opts,
                     std::string peer,
                     std::optional<connection::credentials> creds = std::nullopt) {
  return detail::user_handle(open_impl(std::move(in), std::move(out), opts, std::move(peer), creds));
}

// Dials a tcp: or unix: address and opens a connection over the socket.
std::shared_ptr<detail::connection_impl> dial_socket(const transport::address& addr,
                                                     const options& opts) {
  auto sock = transport::connect_socket(addr, opts.connect_timeout, transport::fd_mode::nonblocking);
  auto creds = transport::peer_credentials_of(sock);
  return open_impl(std::move(sock.fd), {}, opts, std::move(sock.peer), creds, nullptr, sock.kind);
}

// Dials a tcp: address per opts.address_choice through `picker` (api/address_picker.hpp).
std::shared_ptr<detail::connection_impl> dial_picked(detail::address_picker& picker,
                                                     const options& opts) {
  return picker.dial(opts.connect_timeout, [&opts](transport::connected_socket s) {
    return open_impl(std::move(s.fd), {}, opts, std::move(s.peer), std::nullopt, nullptr, s.kind);
  });
}

// exec: and ssh: — the peer is a child process speaking on its stdin and stdout.
std::shared_ptr<detail::connection_impl> open_child(const transport::address& addr,
                                                    const options& opts) {
  auto child = opts.child;
  if (child.on_stderr)  // what it throws is reported, and the child is still watched
    child.on_stderr = [f = child.on_stderr, hook = opts.on_callback_error](std::string_view b) {
      detail::guard_callback(hook, "child.on_stderr", [&] { f(b); });
    };
  auto s = transport::child_process::spawn(transport::spawn_request_for(addr, child),
                                                default_loop());
  std::string peer = transport::to_string(addr) + " (pid " + std::to_string(s.child->pid()) + ")";
  return open_impl(std::move(s.from_child), std::move(s.to_child), opts, std::move(peer),
                   std::nullopt, std::move(s.child));
}

}  // namespace

connection connect(std::string_view address, const options& opts, const reconnect_policy& policy) {
  detail::check_options(opts);
  auto addr = transport::parse_address(address);
  bool child = std::holds_alternative<transport::exec_address>(addr) ||
               std::holds_alternative<transport::ssh_address>(addr);
  if (!child && !std::holds_alternative<transport::tcp_address>(addr) &&
      !std::holds_alternative<transport::unix_address>(addr))
    throw address_error("bokbok: cannot reconnect to \"" + std::string(address) +
                        "\": only tcp:, unix:, exec: and ssh: addresses can be opened again");
  // A child (exec:, ssh:) is started again. A tcp: address is resolved again at each
  // dial, its addresses chosen per opts.address_choice, failed ones backing off per policy.
  std::shared_ptr<detail::address_picker> picker;
  if (auto* t = std::get_if<transport::tcp_address>(&addr))
    picker = std::make_shared<detail::address_picker>(*t, opts.address_choice,
                                                      policy.initial_delay, policy.max_delay);
  auto dial = [addr, child, picker](const options& o) {
    if (picker) return dial_picked(*picker, o);
    return child ? open_child(addr, o) : dial_socket(addr, o);
  };
  auto rc = std::make_shared<detail::reconnector>(dial, opts, policy, default_loop());
  rc->start();
  return detail::user_handle(rc->latest(), rc);
}

connection connect_fds(int in_fd, int out_fd, const options& opts, std::string peer) {
  // Check before anything opens descriptors of its own (the loop's first start), which
  // could take these very numbers if they are free.
  for (int fd : {in_fd, out_fd}) {
    if (fcntl(fd, F_GETFD) >= 0) continue;
    int err = errno;
    for (int other : {in_fd, out_fd})  // ownership was taken: close what is open
      if (other != fd && fcntl(other, F_GETFD) >= 0) ::close(other);
    throw transport_error("bokbok: cannot use fd " + std::to_string(fd) + " for " + peer +
                          ": " + std::strerror(err));
  }
  base::unique_fd in(in_fd);
  base::unique_fd out(out_fd == in_fd ? -1 : out_fd);
  return open_over(std::move(in), std::move(out), opts, std::move(peer));
}

connection connect(std::string_view text, const options& opts) {
  detail::check_options(opts);  // before dialing, spawning, or moving stdio aside
  auto addr = transport::parse_address(text);
  if (std::holds_alternative<transport::stdio_address>(addr)) {
    auto [in, out] = transport::take_stdio();
    return open_over(std::move(in), std::move(out), opts, "stdio");
  }
  if (auto* fds = std::get_if<transport::fd_pair_address>(&addr))
    return connect_fds(fds->in_fd, fds->out_fd, opts, transport::to_string(addr));
  // A list, or round robin: the addresses chosen as a reconnecting client's are, and
  // one that connects but fails to open (not bokbok, closed) is skipped too.
  if (auto* t = std::get_if<transport::tcp_address>(&addr);
      t && (!t->more.empty() || opts.address_choice == address_choice::round_robin)) {
    detail::address_picker picker(*t, opts.address_choice, {}, {});
    return detail::user_handle(dial_picked(picker, opts));
  }
  if (std::holds_alternative<transport::tcp_address>(addr) ||
      std::holds_alternative<transport::unix_address>(addr))
    return detail::user_handle(dial_socket(addr, opts));
  if (std::holds_alternative<transport::exec_address>(addr) ||
      std::holds_alternative<transport::ssh_address>(addr))
    return detail::user_handle(open_child(addr, opts));
  throw address_error("bokbok: cannot connect to \"" + std::string(text) +
                      "\": it names sockets a superserver passes to a server; use it to "
                      "listen (server_options::listen)");
}

std::pair<connection, connection> connect_socketpair(const options& a, const options& b) {
  detail::check_options(a);  // before either end opens: the other would only see it fail
  detail::check_options(b);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
    throw transport_error(std::string("bokbok: socketpair failed: ") + std::strerror(errno));
  base::unique_fd fa(sv[0]), fb(sv[1]);
  // Both ends must handshake at once, so the second opens on its own thread.
  std::future<connection> second;
  try {
    second = std::async(std::launch::async, [&] {
      return open_over(std::move(fb), {}, b, "socketpair");
    });
  } catch (const std::system_error& e) {
    throw resource_error(std::string("bokbok: cannot start a thread to open a socketpair: ") +
                         e.what());
  }
  std::exception_ptr first_error;
  std::optional<connection> first;
  try {
    first.emplace(open_over(std::move(fa), {}, a, "socketpair"));
  } catch (...) {
    first_error = std::current_exception();
  }
  connection other = second.get();
  if (first_error) std::rethrow_exception(first_error);
  return {*first, other};
}

void serve_stdio(const options& opts) {
  connection c = connect("stdio", opts);
  c.wait_closed();
  if (std::exception_ptr lost = c.close_error()) std::rethrow_exception(lost);
}

}  // namespace bokbok
