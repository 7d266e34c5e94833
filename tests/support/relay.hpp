// Test support: a byte-level man in the middle between a bokbok client and its server,
// for tests of what travels on the wire (recording it) and of hostile networks (changing
// it). Real sockets only: the relay owns one end of a socketpair that the client uses and
// a connected socket to the server (a socketpair end, or a TCP/UNIX connection to a
// bokbok::server).
//
// The relay cuts each direction into *units* as PROTOCOL.md §2-§3 shape them: unit 0 is
// the preamble (9 + user_len bytes), every later unit one record (u16 length || body):
// in key mode unit 1 is handshake message 1 (towards the server) or message 2 (towards
// the client), units 2.. are the encrypted records. Units are cut from the bytes as they
// were *sent*, so a filter that changes a length does not change how later units are cut.
//
// A filter sees each unit before it is forwarded and may change it in place (an empty
// unit is dropped), inject other bytes in either direction (inject()), and ask for the
// connection to be cut once this unit (as changed) is written: the relay then stops
// forwarding and hangs up both sides, so each peer sees its input end (and writes fail).
// A partial unit left when a sender ends its output is forwarded as it is, then the
// receiver's input is ended too (a half-close passes through).
//
// Threads: one per direction, each blocking on its source; filter calls are serialised
// (one at a time, under a mutex), so a filter may keep state without locking. A filter
// must not block for long: the other direction waits for it. Writes towards one side are
// whole units (or whole injections) under that side's mutex, so an injection always
// lands between two units. The destructor hangs up and joins.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace bokbok_test {

enum class direction { to_server = 0, to_client = 1 };

class relay {
 public:
  enum class verdict { forward, cut };
  // `index`: 0 for the preamble, then one per record, counted per direction.
  using filter = std::function<verdict(relay&, direction, std::size_t index, std::string& unit)>;

  // Relays between a new socketpair (take the client's end with client_fd()) and
  // `server_side`, a connected stream socket to the server, which the relay takes.
  explicit relay(int server_side, filter f = {}) : filter_(std::move(f)) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
      ::close(server_side);
      throw std::runtime_error("socketpair failed");
    }
    client_fd_ = sv[0];
    fd_[0] = sv[1];        // our end towards the client: read to_server, write to_client
    fd_[1] = server_side;  // our end towards the server: read to_client, write to_server
    threads_[0] = std::thread([this] { pump(direction::to_server); });
    threads_[1] = std::thread([this] { pump(direction::to_client); });
  }
  relay(const relay&) = delete;
  relay& operator=(const relay&) = delete;

  ~relay() {
    hang_up();
    for (auto& t : threads_) t.join();
    ::close(fd_[0]);
    ::close(fd_[1]);
    if (client_fd_ >= 0) ::close(client_fd_);
  }

  // The client's end of the socketpair; the caller takes it (e.g. for connect_fds).
  int client_fd() {
    int fd = client_fd_;
    client_fd_ = -1;
    return fd;
  }

  // Writes `bytes` to the receiver of direction `d`, between two units. From a filter or
  // from the test; nothing happens once the relay is cut.
  void inject(direction d, std::string_view bytes) { write_to(d, bytes); }

  // Stops forwarding and hangs up both sides.
  void cut() { hang_up(); }

  bool was_cut() const {
    std::lock_guard lock(mu_);
    return cut_;
  }

  // Everything the sender of `d` sent, as it was sent (before any filter).
  std::string sent(direction d) const {
    std::lock_guard lock(mu_);
    return sent_[index_of(d)];
  }
  // Everything forwarded to the receiver of `d` (after filters, with injections).
  std::string delivered(direction d) const {
    std::lock_guard lock(mu_);
    return delivered_[index_of(d)];
  }
  // The units of `d` as sent, so far.
  std::vector<std::string> units(direction d) const {
    std::lock_guard lock(mu_);
    return units_[index_of(d)];
  }
  // True once the sender of `d` has ended its output (or the relay was cut).
  bool ended(direction d) const {
    std::lock_guard lock(mu_);
    return ended_[index_of(d)];
  }

  // Waits (at most `patience`) until `d` has carried at least `n` whole units. True if so.
  bool wait_units(direction d, std::size_t n, std::chrono::milliseconds patience) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, patience, [&] { return units_[index_of(d)].size() >= n; });
  }
  // Waits (at most `patience`) until both directions have ended. True if so.
  bool wait_ended(std::chrono::milliseconds patience) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, patience, [&] { return ended_[0] && ended_[1]; });
  }

 private:
  static std::size_t index_of(direction d) { return static_cast<std::size_t>(d); }
  int source_of(direction d) const { return fd_[index_of(d)]; }
  int sink_of(direction d) const { return fd_[1 - index_of(d)]; }

  // Length of the unit at the front of `buf` (`index` is its number), or 0 if `buf`
  // does not hold it whole yet.
  static std::size_t unit_length(const std::string& buf, std::size_t index) {
    if (index == 0) {
      if (buf.size() < 9) return 0;
      std::size_t n = 9 + static_cast<unsigned char>(buf[8]);
      return buf.size() >= n ? n : 0;
    }
    if (buf.size() < 2) return 0;
    std::size_t n = 2 + ((std::size_t{static_cast<unsigned char>(buf[0])} << 8) |
                         static_cast<unsigned char>(buf[1]));
    return buf.size() >= n ? n : 0;
  }

  void pump(direction d) {
    const std::size_t i = index_of(d);
    std::string pending;
    std::size_t index = 0;
    std::array<char, 65536> buf;
    for (;;) {
      ssize_t n = ::recv(source_of(d), buf.data(), buf.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      {
        std::lock_guard lock(mu_);
        if (cut_) break;
        sent_[i].append(buf.data(), std::size_t(n));
      }
      pending.append(buf.data(), std::size_t(n));
      bool stop = false;
      while (!stop) {
        std::size_t len = unit_length(pending, index);
        if (len == 0) break;
        std::string unit = pending.substr(0, len);
        pending.erase(0, len);
        {
          std::lock_guard lock(mu_);
          units_[i].push_back(unit);
          cv_.notify_all();
        }
        verdict v = verdict::forward;
        if (filter_) {
          std::lock_guard lock(filter_mu_);
          v = filter_(*this, d, index, unit);
        }
        ++index;
        if (!unit.empty()) write_to(d, unit);
        if (v == verdict::cut) {
          hang_up();
          stop = true;
        }
      }
      if (stop) break;
    }
    // The sender ended (or we were cut): pass what is left on as it is, then end the
    // receiver's input too.
    if (!pending.empty()) write_to(d, pending);
    {
      std::lock_guard lock(mu_);
      ended_[i] = true;
      cv_.notify_all();
    }
    std::lock_guard wlock(write_mu_[i]);
    ::shutdown(sink_of(d), SHUT_WR);
  }

  void write_to(direction d, std::string_view bytes) {
    const std::size_t i = index_of(d);
    std::lock_guard wlock(write_mu_[i]);
    {
      std::lock_guard lock(mu_);
      if (cut_) return;
      delivered_[i].append(bytes);
    }
    while (!bytes.empty()) {
      ssize_t n = ::send(sink_of(d), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // the receiver is gone
      bytes.remove_prefix(std::size_t(n));
    }
  }

  void hang_up() {
    {
      std::lock_guard lock(mu_);
      if (cut_) return;
      cut_ = true;
      cv_.notify_all();
    }
    ::shutdown(fd_[0], SHUT_RDWR);
    ::shutdown(fd_[1], SHUT_RDWR);
  }

  filter filter_;
  int client_fd_ = -1;
  std::array<int, 2> fd_{-1, -1};
  std::array<std::thread, 2> threads_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::mutex filter_mu_;
  std::array<std::mutex, 2> write_mu_;
  bool cut_ = false;
  std::array<std::string, 2> sent_, delivered_;
  std::array<std::vector<std::string>, 2> units_;
  std::array<bool, 2> ended_{false, false};
};

}  // namespace bokbok_test
