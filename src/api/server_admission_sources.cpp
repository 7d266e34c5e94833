#include "api/server_admission_sources.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>


#include "transport/sockets.hpp"

namespace bokbok::rpc {

namespace {

bool loopback6(const in6_addr& a) {
  if (IN6_IS_ADDR_LOOPBACK(&a)) return true;
  // ::ffff:127.x.y.z
  return IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127;
}

}  // namespace

std::string source_limits::source_of(const transport::connected_socket& sock) const {
  if (sock.proxied_source_len != 0) return source_of_address(sock.proxied_source, sock.fd.get());
  if (sock.peer_address_len != 0) return source_of_address(sock.peer_address, sock.fd.get());
  return source_of(sock.fd.get());
}

std::string source_limits::source_of(int fd) const {
  if (limits_.at_once == 0 && limits_.per_second == 0) return "";  // never limited: no question
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  return source_of_address(ss, fd);
}

std::string source_limits::source_of_address(const sockaddr_storage& ss, int fd) const {
  if (limits_.at_once == 0 && limits_.per_second == 0) return "";
  char text[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(ss).sin_addr;
    if (!limits_.limit_local && (ntohl(a.s_addr) >> 24) == 127) return "";
    ::inet_ntop(AF_INET, &a, text, sizeof text);
    return text;
  }
  if (ss.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr;
    if (!limits_.limit_local && loopback6(a)) return "";
    ::inet_ntop(AF_INET6, &a, text, sizeof text);
    return text;
  }
  if (ss.ss_family == AF_UNIX) {
    if (!limits_.limit_local) return "";
    auto creds = transport::peer_credentials_of(fd);
    return creds ? "uid " + std::to_string(creds->uid) : "a local peer";
  }
  return "";
}

}  // namespace bokbok::rpc
