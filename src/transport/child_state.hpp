// The state a child_process shares with its monitoring thread (child_process.cpp).
// Internal to the transport layer.
#pragma once

#include <condition_variable>
#include <mutex>
#include <optional>
#include <vector>

#include "transport/child_process.hpp"

namespace bokbok::transport {

struct child_process::state {
  int pid = -1;
  base::unique_fd pidfd;        // invalid when pidfd_open is unavailable
  base::unique_fd control;      // eventfd: release() was called; closed (under mu) when done
  base::unique_fd stderr_pipe;  // read end, when stderr is captured; monitor thread only
  std::chrono::milliseconds grace{};
  std::function<void(std::string_view)> on_stderr;
  bool keep_tail = false;
  bool is_ssh = false;

  std::mutex mu;
  std::condition_variable cv;
  bool released = false;          // guarded by mu
  bool done = false;              // reaped and stderr drained; guarded by mu
  std::optional<child_exit> exit;  // guarded by mu
  std::string stderr_tail;         // guarded by mu
  // when_ended() callbacks waiting for the reap; guarded by mu, run (unlocked) by the
  // monitor thread once `exit` is set.
  std::vector<std::function<void()>> on_ended;

  // Monitor thread.
  void read_stderr();
  void drain_stderr();
  void pass_on(std::string_view bytes);
  bool try_reap(bool exited);
  void mark_done();
};

// Runs the monitor loop until the child is reaped (child_process.cpp).
void child_state_monitor(std::shared_ptr<child_process::state> st);

}  // namespace bokbok::transport
