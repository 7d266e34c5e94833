// admission: the server's handling of clients that are not (yet) connections: those
// waiting for a slot under the connection limit, and refused ones being let go. Also the
// systemd watchdog ping, since it shares the acceptor's poll timeout.
//
// Threads: the acceptor thread only.
#pragma once

#include <poll.h>

#include <chrono>
#include <deque>
#include <string>
#include <vector>

#include "base/unique_fd.hpp"
#include "transport/sockets.hpp"

namespace bokbok::rpc {

class admission {
 public:
  using clock = std::chrono::steady_clock;
  admission() = default;
  admission(std::chrono::milliseconds wait, unsigned long long watchdog_usec);

  // Clients waiting for a slot, oldest first; at most max_waiting.
  static constexpr std::size_t max_waiting = 256;
  bool can_wait() const { return waiting_.size() < max_waiting; }
  bool has_waiting() const { return !waiting_.empty(); }
  void wait_for_slot(transport::connected_socket s);
  transport::connected_socket pop_waiting();
  std::vector<transport::connected_socket> take_expired();
  std::vector<transport::connected_socket> take_all_waiting();

  // Tells the client why it is refused, in the protocol (a plain preamble, then a goaway
  // carrying `code` and `text` where a hello would be, then close: PROTOCOL.md §8.1),
  // ends our side, and lingers until the client hangs up (at most 2 s). Returns the text
  // for logging ("refused: busy: ...").
  std::string refuse(transport::connected_socket s, error_code code, const std::string& text);

  // Poll set handling for lingering clients: appends their fds, then services them
  // from the poll results starting at `first`.
  void add_lingering_fds(std::vector<pollfd>& fds) const;
  void service_lingering(const std::vector<pollfd>& fds, std::size_t first);
  void close_lingering() { lingering_.clear(); }

  // How long the acceptor may sleep: until the next waiting client or lingering one
  // expires, or the next watchdog ping; -1 for no limit.
  int poll_timeout_ms() const;
  // Sends WATCHDOG=1 when it is due.
  void maybe_ping_watchdog();

 private:
  struct waiting {
    transport::connected_socket sock;
    clock::time_point deadline;
  };
  struct lingering {
    base::unique_fd fd;
    clock::time_point deadline;
  };
  std::chrono::milliseconds wait_{1000};
  std::chrono::microseconds watchdog_every_{0};
  clock::time_point next_watchdog_{};
  std::deque<waiting> waiting_;
  std::vector<lingering> lingering_;
};

}  // namespace bokbok::rpc
