// What a server logs (include/bokbok/log.hpp): clients that failed to open or were
// refused, rate limited per cause; and running out of descriptors (or memory) on accept,
// once per episode.
//
// Threads: log_client_failure and failure_cause are thread-safe; accept_episode belongs
// to one server's loop thread.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace bokbok::detail {

// What went wrong, without the client: `why` (an error's text) with the "bokbok: "
// prefix, every mention of `peer` and every quoted string (user names, stray bytes)
// taken out, and cut, so that clients failing the same way share one cause.
std::string failure_cause(std::string_view why, std::string_view peer);

// A client that failed to open or was refused, at warning, rate limited per cause.
void log_client_failure(const std::string& peer, std::string_view why);

// Accepting failed for want of a resource (descriptors, memory), while the server keeps
// retrying: one error line when an episode begins, naming the cause and the listener (not
// a client), one info line when accepting works again, with the count of clients refused
// for it meanwhile; nothing in between.
class accept_episode {
 public:
  using clock = std::chrono::steady_clock;
  // accept failed on `listener` with `why` (the error's text).
  void failed(std::string_view listener, std::string_view why);
  // A client was taken and refused for want of the resource: counted for the line that
  // ends the episode, not logged on its own.
  void client_refused() { ++told_; }
  // A client was accepted: ends the episode, if one is going on.
  void accepted(std::string_view listener);
  bool going_on() const { return going_on_; }

 private:
  bool going_on_ = false;
  clock::time_point since_;
  unsigned long long failures_ = 0;
  unsigned long long told_ = 0;
};

}  // namespace bokbok::detail
