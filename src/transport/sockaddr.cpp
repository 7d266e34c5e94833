#include "transport/sockaddr.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cstddef>
#include <cstring>

#include "bokbok/error.hpp"

namespace bokbok::transport {

namespace {

std::string ipv4_text(const in_addr& a) {
  char buf[INET_ADDRSTRLEN];
  return inet_ntop(AF_INET, &a, buf, sizeof buf) ? buf : "?";
}

std::string ipv6_text(const sockaddr_in6& s) {
  char buf[INET6_ADDRSTRLEN];
  std::string t = inet_ntop(AF_INET6, &s.sin6_addr, buf, sizeof buf) ? buf : "?";
  char ifname[IF_NAMESIZE];
  if (s.sin6_scope_id != 0)
    t += "%" + std::string(if_indextoname(s.sin6_scope_id, ifname)
                               ? ifname
                               : std::to_string(s.sin6_scope_id).c_str());
  return t;
}

}  // namespace

std::string endpoint_text(const sockaddr* sa, socklen_t len) {
  if (sa->sa_family == AF_INET && len >= sizeof(sockaddr_in)) {
    auto* s = reinterpret_cast<const sockaddr_in*>(sa);
    return ipv4_text(s->sin_addr) + ":" + std::to_string(ntohs(s->sin_port));
  }
  if (sa->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    auto* s = reinterpret_cast<const sockaddr_in6*>(sa);
    std::string port = std::to_string(ntohs(s->sin6_port));
    if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr)) {
      in_addr v4;
      std::memcpy(&v4, s->sin6_addr.s6_addr + 12, sizeof v4);
      return ipv4_text(v4) + ":" + port;
    }
    return "[" + ipv6_text(*s) + "]:" + port;
  }
  return {};
}

std::string sockaddr_name(const sockaddr* sa, socklen_t len) {
  if (len < sizeof(sa_family_t)) return {};
  if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
    std::string e = endpoint_text(sa, len);
    return e.empty() ? std::string() : "tcp:" + e;
  }
  if (sa->sa_family != AF_UNIX) return {};
  constexpr socklen_t off = offsetof(sockaddr_un, sun_path);
  auto* s = reinterpret_cast<const sockaddr_un*>(sa);
  if (len <= off) return "unix";
  std::size_t n = std::min<std::size_t>(len - off, sizeof s->sun_path);
  if (s->sun_path[0] == '\0') return "unix:@" + std::string(s->sun_path + 1, n - 1);
  return "unix:" + std::string(s->sun_path, strnlen(s->sun_path, n));
}

std::pair<sockaddr_un, socklen_t> unix_sockaddr(const unix_address& u) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::size_t n = std::min(u.path.size(), sizeof sa.sun_path - 1);
  std::memcpy(sa.sun_path + (u.abstract ? 1 : 0), u.path.data(), n);
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n + 1);
  return {sa, len};
}

addrinfo_list resolve(const tcp_address& t, bool passive, int family, const std::string& context) {
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = passive ? AI_PASSIVE : 0;  // deliberately no AI_ADDRCONFIG
  bool numeric_port =
      !t.port.empty() && t.port.find_first_not_of("0123456789") == std::string::npos;
  if (numeric_port) hints.ai_flags |= AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const char* node = t.host.empty() ? nullptr : t.host.c_str();
  int rc = getaddrinfo(node, t.port.c_str(), &hints, &res);
  if (rc == 0 && res) return addrinfo_list(res, freeaddrinfo);
  std::string why = rc == EAI_SYSTEM    ? std::strerror(errno)
                    : rc == EAI_SERVICE ? "no such TCP service (see /etc/services)"
                                        : gai_strerror(rc);
  std::string what = "\"" + (t.host.empty() ? std::string("*") : t.host) + "\"";
  if (!numeric_port) what += " port \"" + t.port + "\"";
  throw transport_error(context + ": cannot resolve " + what + ": " + why);
}

resolved_endpoints resolve_for_connect(const tcp_address& t, const std::string& context) {
  resolved_endpoints out;
  auto add = [&](const addrinfo_list& list) {
    for (const addrinfo* ai = list.get(); ai; ai = ai->ai_next) {
      dial_endpoint e;
      std::memcpy(&e.sa, ai->ai_addr, ai->ai_addrlen);
      e.len = ai->ai_addrlen;
      bool seen = false;
      for (const auto& o : out.endpoints)
        seen = seen || (o.len == e.len && std::memcmp(&o.sa, &e.sa, e.len) == 0);
      if (seen) continue;
      e.name = sockaddr_name(ai->ai_addr, ai->ai_addrlen);
      out.endpoints.push_back(std::move(e));
    }
  };
  if (t.more.empty()) {
    add(resolve(t, false, AF_UNSPEC, context));
    return out;
  }
  auto entry = [](const std::string& host, const std::string& port) {
    tcp_address one{host, port, {}};
    return std::pair{one, to_string(address(one)).substr(4)};  // without "tcp:"
  };
  std::vector<std::pair<tcp_address, std::string>> entries{entry(t.host, t.port)};
  for (const auto& m : t.more) entries.push_back(entry(m.host, m.port));
  for (const auto& [one, text] : entries) {
    try {
      add(resolve(one, false, AF_UNSPEC, text));
    } catch (const transport_error& e) {
      out.failures.push_back(e.what());
    }
  }
  return out;
}

bool set_blocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  return flags >= 0 && ((flags & O_NONBLOCK) == 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0);
}

bool set_nonblocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  return flags >= 0 && ((flags & O_NONBLOCK) != 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0);
}

bool set_nodelay(int fd) {
  int on = 1;
  return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == 0;
}

bool set_send_timeout(int fd, std::chrono::microseconds t) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(t.count() / 1'000'000);
  tv.tv_usec = static_cast<suseconds_t>(t.count() % 1'000'000);
  return setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0;
}

}  // namespace bokbok::transport
