// Sockets for the transport layer: connecting, listening, accepting, peer credentials.
// Plain blocking-API wrappers with clear errors; the event loop takes the fds from here.
// Every fd returned is close-on-exec. Errors throw bokbok::transport_error whose message
// names the address and the system error ("bokbok: cannot connect to tcp:127.0.0.1:9:
// Connection refused").
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "bokbok/connection.hpp"
#include "base/is_socket.hpp"
#include "base/unique_fd.hpp"
#include "transport/address.hpp"

namespace bokbok::transport {

// A connected stream socket and the text naming its peer ("tcp:127.0.0.1:40112",
// "tcp:[::1]:40112", "unix:/run/app.sock", "unix:@name", "unix" when unnamed).
struct connected_socket {
  base::unique_fd fd;
  std::string peer;
  // What fd is, as its maker knows it (a stream socket of its family, non-blocking or
  // not: fd_mode), so the layers above need not ask the kernel (base/is_socket.hpp).
  // kind.socket false: not known (a socket inherited from a superserver); they ask.
  base::fd_kind kind;
  // The peer's address as accept() gave it; length 0: not known (ask getpeername).
  sockaddr_storage peer_address{};
  socklen_t peer_address_len = 0;
  // Behind a load balancer: the original client a PROXY protocol header named, which
  // per-source limits count instead of the socket's peer (the balancer). Length 0: none.
  sockaddr_storage proxied_source{};
  socklen_t proxied_source_len = 0;
};

// Whether a socket handed out is left blocking, for a caller that reads and writes it
// itself, or non-blocking, for the event loop, which would make it so: saying so here
// spares those system calls.
enum class fd_mode { blocking, nonblocking };

// Connects to a tcp: or unix: address, trying every resolved address (of every entry of
// a list) in order, each
// within `timeout` (zero or less: no limit); the error lists each address's failure.
// Sets TCP_NODELAY on TCP. The fd is left blocking, or non-blocking per `mode`. A unix:
// connect waits for room in a full listen queue up to `timeout` too. tcp:*:PORT is
// refused with address_error (it is for listening).
connected_socket connect_socket(const address& a, std::chrono::milliseconds timeout,
                                fd_mode mode = fd_mode::blocking);

struct dial_endpoint;  // transport/sockaddr.hpp

// Connects to one resolved TCP address within `timeout` as connect_socket does: the
// socket (TCP_NODELAY set, blocking per `mode`), or an empty fd and why ("Connection
// refused").
std::pair<base::unique_fd, std::string> connect_endpoint(const dial_endpoint& e,
                                                       std::chrono::milliseconds timeout,
                                                       fd_mode mode = fd_mode::blocking);

// A listening socket (non-blocking) and the address it is bound to, with the real port
// when port 0 was asked for ("tcp:127.0.0.1:41234"). Owns the socket file of a unix:PATH
// listener: removes it on destruction if it is still the one it made (same inode).
struct listener {
  base::unique_fd fd;
  std::string name;
  std::string unix_path;  // the file to remove, if any
  dev_t unix_dev = 0;
  ino_t unix_ino = 0;
  bool proxy = false;  // connections begin with a PROXY protocol header (server_options::proxy_listen)
  listener() = default;
  // Moving hands the file over: the moved-from listener no longer removes it, and
  // assigning over a listener first removes the file that one owned.
  listener(listener&&) noexcept;
  listener& operator=(listener&&) noexcept;
  ~listener();
};

struct listen_options {
  int backlog = 128;
  // Permission bits for a unix:PATH socket file (chmod after bind); none: leave as umask.
  std::optional<unsigned> unix_mode;
  bool reuse_port = false;  // SO_REUSEPORT on TCP sockets
};

// Binds and listens on a tcp: or unix: address. tcp:*:PORT and tcp:[::]:PORT give one
// dual-stack IPv6 socket (IPV6_V6ONLY off; plain IPv4 on a kernel without IPv6); a host
// name gives one socket per resolved address, and with port 0 they all share the port
// the first was given. SO_REUSEADDR on TCP. A unix:PATH whose file exists is replaced
// only when it is a socket nobody listens on (connect gets ECONNREFUSED); a live one, or
// a file that is not a socket, is an error saying so. That check connects to the live
// listener: its owner sees one connection that closes without sending a byte.
// unix_mode does not apply to abstract names (they have no file and no permissions).
std::vector<listener> listen_on(const address& a, const listen_options& opts);

// Accepts one connection from a non-blocking listener; nullopt when none is waiting
// (EAGAIN), or for transient errors (ECONNABORTED, EINTR, ...). The accepted fd is
// blocking (or not, per `mode`), close-on-exec, with TCP_NODELAY on TCP; the result
// holds its kind and the peer's address. Running out of descriptors or
// memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) throws transport_error: the connection stays
// queued and the listener stays readable, so a caller must back off, not spin.
std::optional<connected_socket> accept_from(const listener& l, fd_mode mode = fd_mode::blocking);

// The name of a connected socket's peer, as above; "" when it is not a socket.
std::string peer_name(int fd);

// SO_PEERCRED of a UNIX socket; nullopt for other fds.
std::optional<connection::credentials> peer_credentials_of(int fd);
// The same for a socket whose family is known (sock.kind): no question but SO_PEERCRED.
std::optional<connection::credentials> peer_credentials_of(const connected_socket& sock);

// True if `fd` is a socket in the listening state (SO_ACCEPTCONN).
bool is_listening_socket(int fd);

}  // namespace bokbok::transport
