// peer_process: what a connection needs to know about a peer that is its own child
// process (exec:, ssh:). The connection does not spawn or reap; the transport layer
// implements this interface (transport/child_process) and hands it over in
// connection_impl::config.
//
// Threads: every member may be called from any thread, including the connection's
// event-loop thread, where end_note() waits at most `wait` and nothing else blocks.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "bokbok/connection.hpp"

namespace bokbok::rpc {

class peer_process {
 public:
  virtual ~peer_process() = default;

  // How the child ended, put before the reason a connection failed (it is usually the
  // cause), e.g. "child 41 exited with status 3", "ssh failed, exit status 255: ssh:
  // connect to host ::1 port 9: Connection refused" or "child 41 is still running".
  // Waits up to `wait` for the child to end: when its pipes end it is usually dying.
  virtual std::string end_note(std::chrono::milliseconds wait) = 0;

  // The connection's descriptors are closed: the child has its grace period to exit,
  // then gets SIGTERM, then SIGKILL. Idempotent; never blocks.
  virtual void release() = 0;

  // Blocks until the child has been reaped (after release()).
  virtual void wait_reaped() = 0;

  // How the child ended, once it has been reaped.
  virtual std::optional<child_exit> exit_status() = 0;
};

}  // namespace bokbok::rpc
