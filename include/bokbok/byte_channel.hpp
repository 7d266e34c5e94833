// Byte channels: the transports under bokbok connections, opened without the protocol.
//
//   auto ch = bokbok::open_byte_channel("exec:sort");
//   ::write(ch.write_fd(), "b\na\n", 4);
//   ch.close_write();                 // sort reads end of file
//   ... read "a\nb\n" from ch.read_fd() ...
//   bokbok::child_exit how = ch.child()->wait();
//
// For a program that relays or inspects bytes (`bokbok bridge` is one): it gets the
// descriptors an address names, opened the way connect() opens them, and for exec: and
// ssh: a handle on the child. Nothing is read or written by the library.
#pragma once

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "bokbok needs C++20: compile with -std=c++20 (or later); g++ 12 defaults to C++17"
#endif

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "bokbok/address.hpp"
#include "bokbok/connection.hpp"
#include "bokbok/error.hpp"

namespace bokbok {

// The child process at the far end of an exec: or ssh: channel. Copies share the child.
// Thread-safety: every member may be called from any thread; only wait() blocks.
class child_handle final {
 public:
  int pid() const noexcept;

  // How the child ended, once it has been reaped; empty while it runs. Never waits.
  std::optional<child_exit> exit_status() const;

  // Lets the child go, as closing a connection does: it has the channel's grace period
  // (channel_options::child.grace) to exit on its own, then gets SIGTERM, then the grace
  // again, then SIGKILL. Idempotent; never blocks. Close the channel's descriptors first
  // (a child usually exits when its stdin ends).
  void release() noexcept;

  // Blocks until the child has been reaped and returns how it ended. Without release()
  // first it waits for the child to exit on its own, however long that takes.
  child_exit wait() const;

  // How the child ended, as connection errors put it: "child 41 exited with status 3",
  // for ssh: "ssh failed, exit status 255: <ssh's last stderr lines>"; "child 41 is
  // still running" before then. Never waits.
  std::string describe() const;

  struct state;  // the library's side (src/api/byte_channel.cpp)
  explicit child_handle(std::shared_ptr<state> st) noexcept;

 private:
  std::shared_ptr<state> st_;
};

struct channel_options {
  // tcp:, unix:: how long each connection attempt may take (zero or less: no limit).
  std::chrono::milliseconds connect_timeout{10'000};
  // exec:, ssh:: the child's grace period, where its stderr goes (on_stderr runs on an
  // internal thread), extra ssh options; as for connections.
  options::child_options child;
};

class byte_channel;
byte_channel open_byte_channel(const address& where, const channel_options& opts);

// Two descriptors (or one socket used both ways) owned together, and the child behind
// them, if any. Move-only. Destroying or close()-ing it closes the descriptors and
// releases the child (child_handle::release()); it never blocks, and a child_handle
// taken from it stays valid.
//
// Thread-safety: none on the object itself; its descriptors may be read and written from
// different threads (one reader, one writer), as any descriptor can.
class byte_channel final {
 public:
  byte_channel() noexcept = default;  // empty: no descriptors
  // Takes ownership of `in_fd` (read) and `out_fd` (write); pass the same descriptor
  // twice for a socket used both ways. `name` is what name() returns.
  byte_channel(int in_fd, int out_fd, std::string name = {}) noexcept;
  byte_channel(byte_channel&& other) noexcept;
  byte_channel& operator=(byte_channel&& other) noexcept;
  byte_channel(const byte_channel&) = delete;
  byte_channel& operator=(const byte_channel&) = delete;
  ~byte_channel();

  // The descriptor to read from, and the one to write to (the same for a socket); -1
  // once closed. Opened ones are blocking and close-on-exec; fd: and stdio keep the
  // file status of the descriptors they name.
  int read_fd() const noexcept { return in_fd_; }
  int write_fd() const noexcept { return out_fd_; }
  bool is_open() const noexcept { return in_fd_ >= 0 || out_fd_ >= 0; }

  // What the channel is connected to: the canonical address text, with the child's pid
  // for exec: and ssh: ("exec:sort (pid 41)"); the constructor's `name` otherwise.
  const std::string& name() const noexcept { return name_; }

  // Ends the write direction, so the far end reads end of file while this side can
  // still read: shutdown(SHUT_WR) on a socket used both ways, else closing the write
  // descriptor (a non-socket used both ways, fd:N,N on a file, cannot end one half:
  // nothing happens). Idempotent.
  void close_write() noexcept;

  // Closes both descriptors and releases the child. Idempotent.
  void close() noexcept;

  // Gives up the descriptors without closing them, to hand them on (to connect_fds(),
  // say): returns {read_fd, write_fd}, equal for a socket used both ways, and leaves the
  // channel without them (the child, if any, stays with it).
  std::pair<int, int> release_fds() noexcept;

  // exec:, ssh:: the child; empty for every other kind.
  const std::optional<child_handle>& child() const noexcept { return child_; }

  friend byte_channel open_byte_channel(const address& where, const channel_options& opts);

 private:
  int in_fd_ = -1;
  int out_fd_ = -1;  // == in_fd_ for a socket used both ways
  std::string name_;
  std::optional<child_handle> child_;
};

// Opens the channel `where` names:
//   tcp:HOST:PORT, unix:PATH, unix:@NAME   connected (every resolved address tried in
//                       turn, each within connect_timeout); one socket, TCP_NODELAY on
//   exec:COMMAND, ssh:HOST COMMAND         started: the channel reads the child's stdout
//                       and writes its stdin; its stderr is inherited unless
//                       child.on_stderr takes it
//   fd:R,W              the channel takes ownership of R and W (both must be open,
//                       else it takes neither: transport_error)
//   stdio               this process's stdin and stdout, moved aside first (fd 0 then
//                       reads /dev/null, fd 1 writes to stderr), so stray output cannot
//                       mix into the channel
// inetd, systemd and tcp:*:PORT are for listening: address_error. Throws address_error
// for a malformed address, and transport_error when it cannot be opened (the message
// names the address and the system's error): refused, timed out, a program not found,
// an fd: descriptor that is not open.
byte_channel open_byte_channel(const address& where, const channel_options& opts = {});
byte_channel open_byte_channel(std::string_view where, const channel_options& opts = {});

}  // namespace bokbok
