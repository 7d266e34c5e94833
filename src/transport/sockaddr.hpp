// Internal helpers shared by the socket files of the transport layer: socket address
// text, resolution, and the few socket options set everywhere. Not installed.
#pragma once

#include <netdb.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "transport/address.hpp"

namespace bokbok::transport {

// The address text of a socket address: "tcp:127.0.0.1:80", "tcp:[::1]:80" (an
// IPv4-mapped IPv6 address is shown as IPv4), "unix:/path", "unix:@name", "unix" when
// unnamed; "" for other families.
std::string sockaddr_name(const sockaddr* sa, socklen_t len);

// The host and port alone, for error messages: "127.0.0.1:80", "[::1]:80".
std::string endpoint_text(const sockaddr* sa, socklen_t len);

// The sockaddr_un for a unix: address (abstract: a leading NUL, no trailing one). The
// parser has already bounded the length.
std::pair<sockaddr_un, socklen_t> unix_sockaddr(const unix_address& u);

using addrinfo_list = std::unique_ptr<addrinfo, void (*)(addrinfo*)>;

// getaddrinfo for SOCK_STREAM over IPv4 and IPv6, without AI_ADDRCONFIG (so ::1 resolves
// on a host whose only IPv6 address is loopback); `passive` for binding. Never empty.
// Throws transport_error "<context>: cannot resolve ...".
addrinfo_list resolve(const tcp_address& t, bool passive, int family, const std::string& context);

// One resolved TCP address to connect to; `name` its text ("tcp:127.0.0.1:7000").
struct dial_endpoint {
  std::string name;
  sockaddr_storage sa{};
  socklen_t len = 0;
};

// Every address of a tcp: address to connect to, each entry of a list resolved again
// now (no cache: a name's new addresses are seen at the next dial), in order, without
// duplicates. An entry that does not resolve adds "HOST:PORT: cannot resolve ..." to
// `failures`; a single address that does not resolve throws as resolve() does.
struct resolved_endpoints {
  std::vector<dial_endpoint> endpoints;
  std::vector<std::string> failures;
};
resolved_endpoints resolve_for_connect(const tcp_address& t, const std::string& context);

// Each returns false with errno set on failure.
bool set_blocking(int fd);
bool set_nonblocking(int fd);
bool set_nodelay(int fd);                                    // TCP_NODELAY
bool set_send_timeout(int fd, std::chrono::microseconds t);  // SO_SNDTIMEO; 0: none

}  // namespace bokbok::transport
