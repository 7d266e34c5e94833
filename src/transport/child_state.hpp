// The state a child_process shares with the event loop that watches it
// (child_process.cpp). Internal to the transport layer.
//
// Threads: the members marked "loop thread" are touched only on the watching loop's
// thread (completions, timers, posted functions); the rest is guarded by `mu`.
// Lifetime: `keep` holds the state, and `loop` the loop, from spawn until the child is
// reaped and its descriptors are closed (done); completions and timers in flight never
// outlive it.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "io/loop.hpp"
#include "transport/child_process.hpp"

namespace bokbok::transport {

struct child_process::state : std::enable_shared_from_this<child_process::state> {
  int pid = -1;
  base::unique_fd pidfd;        // invalid when pidfd_open is unavailable; loop thread
  base::unique_fd stderr_pipe;  // read end (non-blocking), when stderr is captured; loop thread
  std::chrono::milliseconds grace{};
  std::function<void(std::string_view)> on_stderr;
  bool keep_tail = false;
  bool is_ssh = false;

  // One completion per operation, so each can be cancelled on its own (io/loop.hpp).
  struct op final : io::completion {
    state* st;
    void (state::*on_done)(int);
    op(state* s, void (state::*f)(int)) : st(s), on_done(f) {}
    void complete(int result, std::uint32_t) override;
  };

  // Loop thread.
  enum class stage { running, grace, terminated, killed } at = stage::running;
  bool reaped = false;
  bool reading_stderr = false;  // err_op is in flight
  io::timer_id signal_timer = 0;
  io::timer_id tick_timer = 0;  // the polling fallback without a pidfd
  op pid_op{this, &state::on_pid_ready};
  op err_op{this, &state::on_stderr_read};
  char err_buf[16384];

  std::mutex mu;
  std::condition_variable cv;
  std::shared_ptr<io::loop> loop;  // guarded by mu; reset once done
  std::shared_ptr<state> keep;     // guarded by mu; this, until done
  bool released = false;           // guarded by mu
  bool done = false;               // reaped and stderr drained; guarded by mu
  std::optional<child_exit> exit;  // guarded by mu
  std::string stderr_tail;         // guarded by mu
  // when_ended() callbacks waiting for the reap; guarded by mu, run (unlocked) on the
  // loop thread once `exit` is set.
  std::vector<std::function<void()>> on_ended;

  // Loop thread.
  void start_watching();
  void begin_grace();
  void on_signal_timer();
  void schedule_tick();
  void on_pid_ready(int result);
  void on_stderr_read(int result);
  void read_stderr_more();
  void pass_on(std::string_view bytes);
  bool try_reap();
  void after_reap();
  void finish_after_reap();
  void close_stderr();
  void mark_done();
};

}  // namespace bokbok::transport
