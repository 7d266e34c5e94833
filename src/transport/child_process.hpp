// child_process: a peer that is this process's child (exec: and ssh: addresses).
//
// spawn() starts the program with Boost.Process, its stdin and stdout on two fresh pipes
// whose other ends it returns (or both on one socketpair end: spawn_request::socketpair), and its stderr either inherited (the default) or on a
// third pipe read on the event loop given to spawn(). The child inherits no other
// descriptor of ours (see spawn.cpp).
//
// No thread per child: the loop watches it. Reaping without owning SIGCHLD: the loop
// polls the child's pidfd (Linux 5.3; io_uring POLL_ADD or epoll readiness) and, once it
// is readable, reaps exactly this pid with waitpid(pid, WNOHANG); it never installs a
// signal handler and never waits for "any child". (An application that itself reaps
// every child, or sets SIGCHLD to SIG_IGN, takes the status first: the child is then
// reported as ended with its status unknown.) Without pidfd_open a loop timer tries
// waitpid(pid, WNOHANG) every 20 ms instead. The grace period, SIGTERM and SIGKILL are
// loop timers; stderr is read by the loop.
//
// Lifetime: the object is shared by the connection (transport::peer_process); the watch holds
// the child's state and the loop until the child has been reaped (so the loop outlives
// every child it watches). Dropping the last handle releases the child like release()
// does; nothing here ever blocks a destructor.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/unique_fd.hpp"
#include "io/loop.hpp"
#include "transport/peer_process.hpp"
#include "transport/address.hpp"

namespace bokbok::transport {

struct spawn_request {
  std::vector<std::string> argv;  // argv[0]: a path, or a name searched on PATH
  std::chrono::milliseconds grace{3'000};
  // Receives stderr chunks on the loop thread (so it must be quick and must not block);
  // unset and !keep_stderr_tail: stderr is simply inherited.
  std::function<void(std::string_view)> on_stderr;
  // Keep the last few KiB of stderr for end_note() (ssh: its own error messages),
  // while still passing them on (to on_stderr, or to this process's stderr).
  bool keep_stderr_tail = false;
  // ssh: an exit status of 255 is ssh's own failure, reported with its stderr.
  bool is_ssh = false;
  // One end of a socketpair (AF_UNIX, SOCK_STREAM) is both the child's stdin and its
  // stdout instead of two pipes, so file descriptors can travel (SCM_RIGHTS); spawn()
  // returns the other end as from_child and leaves to_child empty (write to
  // from_child). Off: pipes, the default.
  bool socketpair = false;
};

// The request that starts the child an exec: or ssh: address names (`addr` must be one),
// with the options of bokbok::options::child_options.
spawn_request spawn_request_for(const address& addr, const options::child_options& child = {});

class child_process final : public peer_process {
 public:
  struct spawned {
    std::shared_ptr<child_process> child;
    base::unique_fd from_child;  // read end of the child's stdout (socketpair: our end)
    base::unique_fd to_child;    // write end of the child's stdin (socketpair: empty)
  };

  // Starts the child and has `loop` watch it (reap, signals, stderr) from now until it
  // has been reaped. Any thread. Throws transport_error when the program cannot be
  // found or started.
  static spawned spawn(spawn_request req, std::shared_ptr<io::loop> loop);

  int pid() const;

  std::string end_note() override;
  void when_ended(std::function<void()> ended) override;
  void release() override;
  void wait_reaped() override;
  std::optional<child_exit> exit_status() override;

  ~child_process() override;

  struct state;  // shared with the watching loop (child_state.hpp)
  explicit child_process(std::shared_ptr<state> st);

 private:
  std::shared_ptr<state> st_;
};

// Finds `name` the way execvp would (a name with a '/' is used as it is). Empty when it
// is not found or not executable.
std::string find_program(const std::string& name);

}  // namespace bokbok::transport
