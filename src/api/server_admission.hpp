// admission: the server's handling of clients that are not (yet) connections: those
// waiting for a slot under the connection limit, and refused ones being let go
// ("lingering": we wrote our refusal, shut our side, and read until the client hangs
// up, so the kernel does not answer its unread bytes with a reset that would swallow the
// refusal). Also the systemd watchdog ping. All of it runs as operations on the server's
// event loop: polls of the lingering sockets, and timers.
//
// Threads: the server's loop thread only, every member (constructing it included).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/unique_fd.hpp"
#include "io/loop.hpp"
#include "rpc/loop_watch.hpp"
#include "transport/sockets.hpp"

namespace bokbok::rpc {

class admission {
 public:
  using clock = std::chrono::steady_clock;
  // `expired` is given each waiting client whose wait ran out (to be refused).
  admission(std::shared_ptr<io::loop> loop, std::chrono::milliseconds wait,
            std::function<void(transport::connected_socket)> expired);
  // stop() must have run (on the loop thread) before the admission is destroyed.
  ~admission() = default;
  admission(const admission&) = delete;
  admission& operator=(const admission&) = delete;

  // Clients waiting for a slot, oldest first; at most max_waiting.
  static constexpr std::size_t max_waiting = 256;
  bool can_wait() const { return waiting_.size() < max_waiting; }
  bool has_waiting() const { return !waiting_.empty(); }
  void wait_for_slot(transport::connected_socket s);
  transport::connected_socket pop_waiting();
  std::vector<transport::connected_socket> take_all_waiting();

  // Tells the client why it is refused, in the protocol (a plain preamble, then a goaway
  // carrying `code` and `text` where a hello would be, then close: PROTOCOL.md §8.1),
  // ends our side, and lingers until the client hangs up (at most 2 s).
  void refuse(transport::connected_socket s, error_code code, const std::string& text);
  // What a refusal says, for logging ("refused: busy: ...").
  static std::string describe(error_code code, const std::string& text);

  // Sends WATCHDOG=1 now and then every half of `watchdog_usec` (0: never).
  void start_watchdog(unsigned long long watchdog_usec);

  // Lets the lingering clients go, forgets the waiting ones (closing them) and stops
  // every timer. Idempotent.
  void stop();

 private:
  struct waiting {
    transport::connected_socket sock;
    clock::time_point deadline;
  };
  using linger_watch = loop_watch<base::unique_fd>;
  struct lingering {
    linger_watch* watch;
    io::timer_id timer;
  };
  void on_expiry_timer();
  void arm_expiry_timer();
  void end_lingering(std::uint64_t id);
  void ping_watchdog();

  std::shared_ptr<io::loop> loop_;
  std::chrono::milliseconds wait_{1000};
  std::function<void(transport::connected_socket)> expired_;
  std::deque<waiting> waiting_;
  std::optional<io::timer_id> expiry_timer_;
  std::map<std::uint64_t, lingering> lingering_;
  std::uint64_t next_linger_ = 1;
  std::chrono::microseconds watchdog_every_{0};
  std::optional<io::timer_id> watchdog_timer_;
};

}  // namespace bokbok::rpc
