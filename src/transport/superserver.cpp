#include "transport/superserver.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "base/is_socket.hpp"
#include "bokbok/error.hpp"
#include "transport/sockaddr.hpp"

namespace bokbok::transport {

namespace {

constexpr int first_systemd_fd = 3;  // SD_LISTEN_FDS_START

template <class T>
std::optional<T> parse_number(const char* s) {
  if (!s || !*s) return std::nullopt;
  T v{};
  const char* end = s + std::strlen(s);
  auto [p, ec] = std::from_chars(s, end, v);
  if (ec != std::errc() || p != end) return std::nullopt;
  return v;
}

bool names_this_process(const char* pid_text) {
  auto pid = parse_number<long long>(pid_text);
  return pid && *pid == static_cast<long long>(::getpid());
}

int socket_type(int fd) {
  int type = 0;
  socklen_t len = sizeof type;
  return ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 ? type : -1;
}

bool is_inet(int fd) {
  int domain = 0;
  socklen_t len = sizeof domain;
  return ::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 &&
         (domain == AF_INET || domain == AF_INET6);
}

// LISTEN_FDNAMES split at ':'; "unknown" (as systemd says) for fds it does not name.
std::vector<std::string> systemd_names(int count) {
  std::vector<std::string> names;
  if (const char* v = std::getenv("LISTEN_FDNAMES")) {
    std::string_view s(v);
    for (std::size_t start = 0;;) {
      auto colon = s.find(':', start);
      names.emplace_back(s.substr(start, colon - start));
      if (colon == std::string_view::npos) break;
      start = colon + 1;
    }
  }
  names.resize(static_cast<std::size_t>(count));
  for (auto& n : names)
    if (n.empty()) n = "unknown";
  return names;
}

void unset_systemd_variables() {
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
}

// Points `fd` at /dev/null (read-only for 0, write-only otherwise).
void to_dev_null(int fd) {
  base::unique_fd null(::open("/dev/null", (fd == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC));
  if (!null || ::dup2(null.get(), fd) < 0)
    throw transport_error(std::string("bokbok: cannot point fd ") + std::to_string(fd) +
                          " at /dev/null: " + std::strerror(errno));
}

// Takes a stream socket handed over at `fd` into `out`, as a listener (non-blocking) or
// a connection; `name` names the listener, or a connection whose peer has no name.
void take_inherited(base::unique_fd fd, const std::string& name, inherited_sockets& out) {
  if (is_listening_socket(fd.get())) {
    if (!set_nonblocking(fd.get()))
      throw transport_error("bokbok: cannot take " + name + ": fcntl: " + std::strerror(errno));
    listener l;
    l.fd = std::move(fd);
    l.name = name;
    out.listeners.push_back(std::move(l));
    return;
  }
  if (is_inet(fd.get())) set_nodelay(fd.get());
  std::string peer = peer_name(fd.get());
  if (peer.empty() || peer == "unix") peer = name;
  // Its kind is not known (left empty): the layers above ask.
  out.connections.push_back(connected_socket{std::move(fd), std::move(peer), {}});
}

}  // namespace

inherited_sockets take_systemd_sockets() {
  const char* pid = std::getenv("LISTEN_PID");
  const char* fds = std::getenv("LISTEN_FDS");
  if (!pid || !fds)
    throw transport_error(
        "bokbok: no sockets from systemd: LISTEN_PID and LISTEN_FDS are not set (is this "
        "service started by a .socket unit?)");
  std::string pid_text = pid, fds_text = fds;
  bool ours = names_this_process(pid);
  auto count = parse_number<int>(fds);
  auto names = systemd_names(count && *count > 0 ? *count : 0);
  unset_systemd_variables();  // they were meant for this process only, right or wrong
  if (!ours)
    throw transport_error("bokbok: LISTEN_PID=" + pid_text + " names another process (this is " +
                          std::to_string(::getpid()) + "); its sockets are not for us");
  if (!count || *count < 0)
    throw transport_error("bokbok: LISTEN_FDS=\"" + fds_text + "\" is not a number of sockets");
  for (int i = 0; i < *count; ++i) {
    int fd = first_systemd_fd + i;
    if (socket_type(fd) != SOCK_STREAM)
      throw transport_error("bokbok: fd " + std::to_string(fd) + " from systemd (\"" + names[i] +
                            "\") is not a stream socket; bokbok serves stream sockets only");
  }
  inherited_sockets out;
  for (int i = 0; i < *count; ++i) {
    int fd = first_systemd_fd + i;
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    take_inherited(base::unique_fd(fd), "systemd:" + names[i], out);
  }
  return out;
}

inherited_sockets take_inetd_socket() {
  if (!base::is_socket(0))
    throw transport_error(
        "bokbok: fd 0 is not a socket, so this process was not started by "
        "inetd (or systemd with StandardInput=socket)");
  if (socket_type(0) != SOCK_STREAM)
    throw transport_error(
        "bokbok: fd 0 is not a stream socket; the inetd entry must be "
        "\"stream tcp\" (or unix)");
  if (base::is_socket(2)) to_dev_null(2);  // before anything can log into the stream
  base::unique_fd fd(::fcntl(0, F_DUPFD_CLOEXEC, 3));
  if (!fd) throw transport_error(std::string("bokbok: cannot take fd 0: ") + std::strerror(errno));
  to_dev_null(0);
  to_dev_null(1);
  // systemd with Accept=yes and StandardInput=socket passes the connection as fd 3 too
  // (LISTEN_FDS): close those duplicates, or the connection would outlive our close of it.
  if (names_this_process(std::getenv("LISTEN_PID"))) {
    const char* fds = std::getenv("LISTEN_FDS");
    long n = fds ? std::strtol(fds, nullptr, 10) : 0;
    for (long i = 0; i < n && i < 1024; ++i)
      if (base::is_socket(3 + static_cast<int>(i))) ::close(3 + static_cast<int>(i));
    unset_systemd_variables();
  }
  inherited_sockets out;
  take_inherited(std::move(fd), "inetd", out);
  return out;
}

superserver detect_superserver() {
  if (names_this_process(std::getenv("LISTEN_PID"))) return superserver::systemd;
  if (base::is_socket(0)) return superserver::inetd;
  return superserver::none;
}

bool sd_notify(std::string_view state) {
  const char* where = std::getenv("NOTIFY_SOCKET");
  if (!where || !*where) return true;
  std::string_view w(where);
  if (w.front() != '/' && w.front() != '@') return false;  // vsock: and others unsupported
  unix_address to{std::string(w.front() == '@' ? w.substr(1) : w), w.front() == '@'};
  if (to.path.empty() || to.path.size() >= sizeof(sockaddr_un{}.sun_path)) return false;
  base::unique_fd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  auto [sa, len] = unix_sockaddr(to);
  // MSG_DONTWAIT: a datagram to a receiver whose queue is full (net.unix.max_dgram_qlen,
  // 10 by default, unread) would wait until it reads; the watchdog pings come from the
  // server's event loop, which then stopped serving every connection. Not sent: false.
  ssize_t n;
  do {
    n = ::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL | MSG_DONTWAIT,
                 reinterpret_cast<const sockaddr*>(&sa), len);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(state.size());
}

unsigned long long watchdog_usec() {
  const char* pid = std::getenv("WATCHDOG_PID");
  if (pid && !names_this_process(pid)) return 0;
  return parse_number<unsigned long long>(std::getenv("WATCHDOG_USEC")).value_or(0);
}

}  // namespace bokbok::transport
