// peer_process: what a connection needs to know about a peer that is its own child
// process (exec:, ssh:). Transport defines it and implements it (child_process); the
// connection (rpc, a layer above) holds one in connection_impl::config and never spawns
// or reaps.
//
// Threads: every member may be called from any thread, including the connection's
// event-loop thread; only wait_reaped() blocks.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "bokbok/connection.hpp"

namespace bokbok::transport {

class peer_process {
 public:
  virtual ~peer_process() = default;

  // How the child ended, put before the reason a connection failed (it is usually the
  // cause), e.g. "child 41 exited with status 3", "ssh failed, exit status 255: ssh:
  // connect to host ::1 port 9: Connection refused"; "child 41 is still running"
  // before it has ended. Never waits.
  virtual std::string end_note() = 0;

  // Runs `ended` once the child has been reaped: at once on this thread when it has
  // been, else later on the thread that reaps it (so `ended` must be quick and must not
  // block: post to a loop). Lets a failing connection wait for the exit status without
  // blocking its loop.
  virtual void when_ended(std::function<void()> ended) = 0;

  // The connection's descriptors are closed: the child has its grace period to exit,
  // then gets SIGTERM, then SIGKILL. Idempotent; never blocks.
  virtual void release() = 0;

  // Blocks until the child has been reaped (after release()).
  virtual void wait_reaped() = 0;

  // How the child ended, once it has been reaped.
  virtual std::optional<child_exit> exit_status() = 0;
};

}  // namespace bokbok::transport
