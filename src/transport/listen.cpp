// Listening sockets (sockets.hpp): TCP on every resolved address or one dual-stack
// socket, UNIX on a path (replacing only a stale socket file) or an abstract name.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "bokbok/error.hpp"
#include "transport/sockaddr.hpp"
#include "transport/sockets.hpp"

namespace bokbok::transport {

namespace {

// A listening TCP socket, or the step that failed and its errno.
struct tcp_attempt {
  base::unique_fd fd;
  const char* step = nullptr;
  int err = 0;
};

bool is_ipv6_any(const sockaddr* sa) {
  return sa->sa_family == AF_INET6 &&
         IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr);
}

// Binds and listens on `sa`. The IPv6 wildcard gets IPV6_V6ONLY off (one dual-stack
// socket for IPv4 and IPv6); a particular IPv6 address gets it on.
tcp_attempt tcp_listen_at(const sockaddr* sa, socklen_t len, int backlog, bool reuse_port) {
  tcp_attempt a;
  a.fd.reset(::socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
  auto fail = [&](const char* step) {
    a.step = step;
    a.err = errno;
    a.fd.reset();
    return std::move(a);
  };
  if (!a.fd) return fail("socket");
  int on = 1, v6only = is_ipv6_any(sa) ? 0 : 1;
  if (::setsockopt(a.fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0)
    return fail("setsockopt(SO_REUSEADDR)");
  if (reuse_port && ::setsockopt(a.fd.get(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0)
    return fail("setsockopt(SO_REUSEPORT)");
  if (sa->sa_family == AF_INET6 &&
      ::setsockopt(a.fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) < 0)
    return fail("setsockopt(IPV6_V6ONLY)");
  if (::bind(a.fd.get(), sa, len) < 0) return fail("bind");
  if (::listen(a.fd.get(), backlog) < 0) return fail("listen");
  return a;
}

std::pair<sockaddr_storage, socklen_t> local_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return {ss, len};
}

in_port_t local_port(int fd) {
  auto [ss, len] = local_address(fd);
  if (ss.ss_family == AF_INET) return reinterpret_cast<sockaddr_in*>(&ss)->sin_port;
  return reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port;
}

void set_port(sockaddr_storage& ss, in_port_t port) {
  if (ss.ss_family == AF_INET)
    reinterpret_cast<sockaddr_in*>(&ss)->sin_port = port;
  else
    reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = port;
}

using endpoint = std::pair<sockaddr_storage, socklen_t>;

// The resolved addresses, without duplicates. "*" is the IPv6 wildcard, or the IPv4
// one on a kernel without IPv6.
std::vector<endpoint> endpoints(const tcp_address& t, const std::string& context) {
  int family = AF_UNSPEC;
  if (t.host.empty()) {
    base::unique_fd probe(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    family = probe || errno != EAFNOSUPPORT ? AF_INET6 : AF_INET;
  }
  std::vector<endpoint> out;
  auto list = resolve(t, true, family, context);
  for (const addrinfo* ai = list.get(); ai; ai = ai->ai_next) {
    endpoint e{};
    std::memcpy(&e.first, ai->ai_addr, ai->ai_addrlen);
    e.second = ai->ai_addrlen;
    bool seen = false;
    for (auto& o : out)
      seen = seen || (o.second == e.second && std::memcmp(&o.first, &e.first, e.second) == 0);
    if (!seen) out.push_back(e);
  }
  return out;
}

listener tcp_listener(base::unique_fd fd, const tcp_address& t) {
  listener l;
  auto [ss, len] = local_address(fd.get());
  l.name = t.host.empty() ? "tcp:*:" + std::to_string(ntohs(local_port(fd.get())))
                          : sockaddr_name(reinterpret_cast<sockaddr*>(&ss), len);
  l.fd = std::move(fd);
  return l;
}

// One socket per address. With port 0 and several addresses, the first gets a port
// from the kernel and the others take the same one, so a client resolving the name
// finds the server whichever address it tries; when that port is taken on another
// address, the whole set is tried again.
std::vector<listener> listen_tcp(const tcp_address& t, const std::string& name,
                                 const listen_options& opts) {
  const std::string context = "bokbok: cannot listen on " + name;
  if (!t.more.empty())
    throw address_error(context + ": a list of addresses is for connecting; listen on each");
  auto eps = endpoints(t, context);
  bool share_port = eps.size() > 1 && t.port.find_first_not_of('0') == std::string::npos;
  for (int round = 0; round < 16; ++round) {
    std::vector<listener> out;
    bool again = false;
    for (auto& [ss, len] : eps) {
      if (share_port && !out.empty()) set_port(ss, local_port(out.front().fd.get()));
      auto a = tcp_listen_at(reinterpret_cast<sockaddr*>(&ss), len, opts.backlog, opts.reuse_port);
      if (!a.fd && share_port && !out.empty() && a.err == EADDRINUSE) {
        again = true;
        break;
      }
      if (!a.fd) {
        std::string where =
            eps.size() > 1 ? " (" + endpoint_text(reinterpret_cast<sockaddr*>(&ss), len) + ")" : "";
        throw transport_error(context + where + ": " + a.step + ": " + std::strerror(a.err));
      }
      out.push_back(tcp_listener(std::move(a.fd), t));
    }
    if (!again) return out;
    for (auto& [ss, len] : eps) set_port(ss, 0);
  }
  throw transport_error(context + ": found no port free on every address of \"" + t.host + "\"");
}

// Called when binding `path` found something there: removes it if it is a socket file
// nobody listens on; otherwise throws saying what is there.
void remove_stale_socket(const std::string& path, const std::string& context) {
  struct stat st;
  if (::lstat(path.c_str(), &st) < 0) {
    if (errno == ENOENT) return;  // gone meanwhile: just bind again
    throw transport_error(context + ": " + path + ": " + std::strerror(errno));
  }
  if (!S_ISSOCK(st.st_mode))
    throw transport_error(context + ": " + path + " exists and is not a socket; not replacing it");
  base::unique_fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!probe) throw transport_error(context + ": socket: " + std::strerror(errno));
  auto [sa, len] = unix_sockaddr(unix_address{path, false});
  int r = ::connect(probe.get(), reinterpret_cast<sockaddr*>(&sa), len);
  if (r == 0 || errno == EAGAIN || errno == EINPROGRESS)
    throw transport_error(context + ": another process is listening on " + path);
  if (errno != ECONNREFUSED)
    throw transport_error(context + ": cannot tell whether " + path +
                          " is in use (connect: " + std::strerror(errno) + "); not replacing it");
  if (::unlink(path.c_str()) < 0 && errno != ENOENT)
    throw transport_error(context + ": cannot remove the stale socket " + path + ": " +
                          std::strerror(errno));
}

listener listen_unix(const unix_address& u, const std::string& name, const listen_options& opts) {
  const std::string context = "bokbok: cannot listen on " + name;
  listener l;
  l.name = name;
  l.fd.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!l.fd) throw transport_error(context + ": socket: " + std::strerror(errno));
  auto [sa, len] = unix_sockaddr(u);
  // Plain locals for the lambda: clang 14 cannot capture structured bindings.
  const sockaddr* sa_ptr = reinterpret_cast<const sockaddr*>(&sa);
  const auto sa_len = len;
  auto bind_it = [&] { return ::bind(l.fd.get(), sa_ptr, sa_len); };
  if (bind_it() < 0) {
    if (errno != EADDRINUSE) throw transport_error(context + ": bind: " + std::strerror(errno));
    if (u.abstract) throw transport_error(context + ": the abstract name is in use");
    remove_stale_socket(u.path, context);
    if (bind_it() < 0) throw transport_error(context + ": bind: " + std::strerror(errno));
  }
  if (!u.abstract) {
    struct stat st;
    if (::stat(u.path.c_str(), &st) == 0) {
      l.unix_path = u.path;  // from here on, l's destructor removes the file on failure
      l.unix_dev = st.st_dev;
      l.unix_ino = st.st_ino;
    }
    if (opts.unix_mode && ::chmod(u.path.c_str(), *opts.unix_mode) < 0)
      throw transport_error(context + ": chmod: " + std::strerror(errno));
  }
  if (::listen(l.fd.get(), opts.backlog) < 0)
    throw transport_error(context + ": listen: " + std::strerror(errno));
  return l;
}

// Removes l's socket file if it is still the one l made.
void remove_own_file(listener& l) noexcept {
  if (l.unix_path.empty()) return;
  struct stat st;
  if (::lstat(l.unix_path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == l.unix_dev &&
      st.st_ino == l.unix_ino)
    ::unlink(l.unix_path.c_str());
  l.unix_path.clear();
}

}  // namespace

listener::listener(listener&& o) noexcept
    : fd(std::move(o.fd)),
      name(std::move(o.name)),
      unix_path(std::exchange(o.unix_path, {})),
      unix_dev(o.unix_dev),
      unix_ino(o.unix_ino),
      proxy(o.proxy) {}

listener& listener::operator=(listener&& o) noexcept {
  if (this != &o) {
    remove_own_file(*this);
    fd = std::move(o.fd);
    name = std::move(o.name);
    unix_path = std::exchange(o.unix_path, {});
    unix_dev = o.unix_dev;
    unix_ino = o.unix_ino;
    proxy = o.proxy;
  }
  return *this;
}

listener::~listener() { remove_own_file(*this); }

std::vector<listener> listen_on(const address& a, const listen_options& opts) {
  std::string name = to_string(a);
  if (auto* t = std::get_if<tcp_address>(&a)) return listen_tcp(*t, name, opts);
  std::vector<listener> out;
  if (auto* u = std::get_if<unix_address>(&a)) {
    out.push_back(listen_unix(*u, name, opts));
    return out;
  }
  throw transport_error("bokbok: cannot listen on " + name +
                        ": only tcp: and unix: addresses are listened on");
}

}  // namespace bokbok::transport
