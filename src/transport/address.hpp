// The address grammar (README "Addresses"), parsed in one place for connecting and for
// listening.
//
//   tcp:HOST:PORT     HOST a name (resolved; every address tried in order), an IPv4
//                     literal or a [v6] literal; PORT a number or a service name
//   tcp:HOST:PORT,HOST:PORT,...
//                     a list to connect to (each entry may also be written tcp:HOST:PORT;
//                     at most max_address_list entries), tried per options::address_choice
//   tcp:*:PORT        listen on every address, IPv4 and IPv6 (one dual-stack socket)
//   tcp:[::]:PORT     the same
//   unix:PATH         a UNIX socket file
//   unix:@NAME        a UNIX socket in the abstract namespace (Linux)
//   fd:R,W            read fd R, write fd W (R may equal W)
//   stdio             stdin and stdout
//   inetd             the connection on fd 0, or (inetd "wait") a listening socket on fd 0
//   systemd           the sockets systemd passed (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES)
//   exec:COMMAND ARG...
//                     a child process, spawned, talked to over its stdin and stdout
//                     (words split as in command_line.hpp)
//   ssh:[USER@]HOST[:PORT] [SSH_OPTION...] [--] COMMAND ARG...
//                     COMMAND run on HOST through ssh, talked to over ssh's stdin/stdout
#pragma once

#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace bokbok::transport {

struct fd_pair_address {
  int in_fd;
  int out_fd;
};
struct stdio_address {};
struct host_port {
  std::string host;  // without brackets
  std::string port;  // as written: digits or a service name
};
struct tcp_address {
  std::string host;  // without brackets; "" for "*" (every address)
  std::string port;  // as written: digits or a service name
  // A list (tcp:H1:P1,H2:P2,...): the entries after the first (host/port above), in
  // order; empty for one address. Lists are for connecting only (no "*").
  std::vector<host_port> more;
};

// The most entries a tcp: list may have.
inline constexpr std::size_t max_address_list = 64;
struct unix_address {
  std::string path;  // for abstract: the name without its '@'
  bool abstract = false;
};
struct inetd_address {};
struct systemd_address {};
struct exec_address {
  std::vector<std::string> argv;  // argv[0] is the program (searched on PATH if no '/')
};
struct ssh_address {
  std::string user;                      // "" = ssh's default
  std::string host;                      // a name or an address, without brackets
  std::string port;                      // "" = ssh's default
  std::vector<std::string> ssh_options;  // passed to ssh before the host, e.g. -o K=V
  std::vector<std::string> argv;         // the remote command
};

using address = std::variant<fd_pair_address, stdio_address, tcp_address, unix_address,
                             inetd_address, systemd_address, exec_address, ssh_address>;

// Parses `text`; throws bokbok::address_error quoting `text` and saying what was
// expected (e.g. `bad address "tcp:host": expected tcp:HOST:PORT ...`).
address parse_address(std::string_view text);

// The canonical text of an address ("fd:3,4", "tcp:[::1]:80", "unix:@name", ...).
std::string to_string(const address& a);

}  // namespace bokbok::transport
