// Running under a superserver: inetd/xinetd and systemd socket activation.
//
//   inetd nowait:   the connection is on fds 0 and 1 (and usually 2: stderr!)
//   inetd wait:     fd 0 is a listening socket
//   systemd Accept=no:  LISTEN_FDS listening sockets from fd 3 (names in LISTEN_FDNAMES)
//   systemd Accept=yes: LISTEN_FDS=1 and fd 3 is the connection; or, with
//                       StandardInput=socket, the connection on fd 0 and no LISTEN_FDS
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/unique_fd.hpp"
#include "transport/sockets.hpp"

namespace bokbok::transport {

// What a superserver handed over: listeners to accept on, connections to serve.
struct inherited_sockets {
  std::vector<listener> listeners;
  std::vector<connected_socket> connections;
};

// Takes the sockets systemd passed: checks LISTEN_PID is this process, takes fds 3 ..
// 3+LISTEN_FDS-1, tells listening from connected with SO_ACCEPTCONN, names them from
// LISTEN_FDNAMES (listener name "systemd:NAME"; "unknown" when unnamed, as systemd
// says), sets close-on-exec (and non-blocking on listeners), and unsets the three
// variables (also when they name another process). A connection's peer is its
// peer_name(), or "systemd:NAME" when the peer has no name (an unnamed UNIX socket).
// Throws transport_error when they are absent or wrong (LISTEN_PID of another process,
// LISTEN_FDS not a number) or when a passed fd is not a stream socket; on error no fd
// is taken or closed.
inherited_sockets take_systemd_sockets();

// Takes the inetd socket on fd 0 (listening: "wait" mode; connected: "nowait"). First
// moves stderr off the socket when fd 2 is the same socket (or any socket): fd 2 then
// goes to /dev/null, so no log line can ever corrupt the stream. The connection's fd is
// a duplicate; fds 0 and 1 are pointed at /dev/null. The listener is named "inetd"; a
// connection by its peer_name(), or "inetd" for an unnamed UNIX peer. Throws
// transport_error when fd 0 is not a stream socket.
inherited_sockets take_inetd_socket();

// Which superserver started this process, judging by the environment and fds: systemd
// when LISTEN_PID names this process; inetd when fd 0 is a socket; none otherwise.
enum class superserver { none, inetd, systemd };
superserver detect_superserver();

// Sends `state` ("READY=1", "WATCHDOG=1", "STOPPING=1") to $NOTIFY_SOCKET (a path or an
// abstract "@name"), without libsystemd. Does nothing and returns true when
// NOTIFY_SOCKET is unset; returns false if sending failed (or the address is not a path
// or "@name", e.g. vsock:). Never waits: a receiver that does not read (its queue full)
// gets nothing, and false is returned.
bool sd_notify(std::string_view state);

// The watchdog interval systemd asked for (WATCHDOG_USEC, when WATCHDOG_PID is absent or
// this process), in microseconds; 0 when none.
unsigned long long watchdog_usec();

}  // namespace bokbok::transport
