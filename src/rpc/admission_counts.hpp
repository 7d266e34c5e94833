// admission_counts: per-key admission limits (a key is a source address, or a user
// name): how many connections each key has at once, and how many it may start per
// second (a bucket of `per_second` tokens refilled at that rate, one taken by each start
// admitted, so a burst of one second's worth passes). Either limit 0: none.
//
// Used by key_session for the per-user limits of a key-mode server
// (server_options::max_connections_per_user, max_logins_per_user: checked at the login,
// PROTOCOL.md §9.6), and by the server's per-source limits (api/server_admission_sources).
// The table forgets a key with no connection and a full bucket, and holds at most
// max_keys entries: past that, new keys are not limited rather than the table growing.
//
// Threads: every member is thread-safe (a mutex inside).
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace bokbok::rpc {

class admission_counts {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr std::size_t max_keys = 65536;

  admission_counts(unsigned at_once, unsigned per_second) : at_once_(at_once), per_second_(per_second) {}

  bool limits() const { return at_once_ != 0 || per_second_ != 0; }

  // Whether `key` may start one more connection now. "" when it may: then a token is
  // spent and the connection counted (call ended() when it ends). Otherwise why not,
  // after `who` ("too many connections from 10.0.0.7: 64 at once (at most 64)").
  std::string admit(const std::string& key, std::string_view who,
                    clock::time_point now = clock::now());
  // The same in two steps, for a caller that counts a connection later than it admits
  // it: check() spends the token but counts nothing; started() counts the connection.
  std::string check(const std::string& key, std::string_view who,
                    clock::time_point now = clock::now());
  void started(const std::string& key);
  void ended(const std::string& key);

  std::size_t tracked() const;

 private:
  struct entry {
    unsigned open = 0;
    double tokens = 0;
    clock::time_point refilled{};
  };
  void refill(entry& e, clock::time_point now) const;
  void forget_idle(clock::time_point now);  // mutex_ held
  // mutex_ held: the entry of `key`, made if need be; null when the table is full.
  entry* find_or_add(const std::string& key, clock::time_point now);
  // mutex_ held: "" (a token spent) or why `e` may not start one more.
  std::string check_locked(entry& e, std::string_view who, clock::time_point now);

  const unsigned at_once_, per_second_;
  mutable std::mutex mutex_;
  std::map<std::string, entry, std::less<>> keys_;
};

}  // namespace bokbok::rpc
