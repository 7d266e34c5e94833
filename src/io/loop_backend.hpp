// Internal to the engine: what loop.cpp needs from a backend, and how to start one with
// options that tests can vary.
#pragma once

#include <memory>

#include "io/loop.hpp"

namespace bokbok::io {

// A backend is a loop that loop.cpp can run on a thread of its own and stop.
class loop_backend : public loop {
 public:
  // Loop thread: runs until request_stop(), then returns (the backend is destroyed
  // afterwards, on whichever thread dropped the last reference or on the loop thread).
  virtual void run() = 0;
  // Any thread: makes run() return soon. post() drops its functions from then on.
  virtual void request_stop() noexcept = 0;
};

struct loop_options {
  // Submission queue entries of the io_uring ring (the completion queue gets twice as
  // many). The kernel refuses more than 32768, which the tests use to make setup fail.
  unsigned ring_entries = 256;
};

// Starts a loop thread with `kind` chosen exactly (no environment lookup); `automatic`
// tries io_uring and falls back to epoll when the ring cannot be set up. Throws
// std::system_error when the forced backend cannot start.
std::shared_ptr<loop> start_loop(backend_kind kind, const loop_options& opts);

// The backend BOKBOK_BACKEND asks for: automatic when unset or empty, uring or epoll;
// any other value throws std::invalid_argument.
backend_kind backend_from_env();

// Loop thread, after a write failed with EPIPE: consumes the SIGPIPE the kernel queued
// for this thread (blocked here), so it can never be delivered later.
void discard_pending_sigpipe() noexcept;

}  // namespace bokbok::io
