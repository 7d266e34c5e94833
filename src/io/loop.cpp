// loop::start: chooses the backend and runs the reactor over it on a thread of its own.
//
// Lifetime of the thread: the shared_ptr returned by start() owns the reactor through a
// deleter. When the last reference goes on another thread, the deleter stops the loop
// and joins the thread, then destroys the reactor (and its backend). When it goes ON the
// loop thread (a posted function or a completion held the last reference), joining would
// deadlock, so the deleter detaches the thread and the thread destroys the reactor itself
// once the current callback has returned and run() has unwound.
#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "io/loop_backend.hpp"
#include "io/reactor.hpp"

namespace bokbok::io {
namespace {

struct running_loop {
  std::unique_ptr<reactor> impl;
  std::thread thread;
  bool delete_on_exit = false;  // loop thread only
};

void thread_main(running_loop* r) {
  // Before any I/O: a write to a broken pipe must return EPIPE, never kill the process.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  pthread_setname_np(pthread_self(), "bokbok-loop");
  r->impl->run();
  if (r->delete_on_exit) delete r;
}

void release(running_loop* r) noexcept {
  r->impl->request_stop();
  if (r->impl->in_loop_thread()) {
    r->thread.detach();
    r->delete_on_exit = true;
    return;
  }
  r->thread.join();
  delete r;
}

std::shared_ptr<loop> launch(std::unique_ptr<loop_backend> backend) {
  auto* r = new running_loop{std::make_unique<reactor>(std::move(backend)), {}, false};
  loop* l = r->impl.get();
  try {
    r->thread = std::thread(thread_main, r);
  } catch (...) {
    delete r;
    throw;
  }
  return std::shared_ptr<loop>(l, [r](loop*) { release(r); });
}

}  // namespace

void discard_pending_sigpipe() noexcept {
  sigset_t pending;
  if (sigpending(&pending) != 0 || sigismember(&pending, SIGPIPE) != 1) return;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  timespec zero{0, 0};
  while (sigtimedwait(&set, nullptr, &zero) < 0 && errno == EINTR) {
  }
}

backend_kind backend_from_env() {
  const char* v = std::getenv("BOKBOK_BACKEND");
  if (v == nullptr || *v == '\0') return backend_kind::automatic;
  if (std::strcmp(v, "uring") == 0) return backend_kind::uring;
  if (std::strcmp(v, "epoll") == 0) return backend_kind::epoll;
  throw std::invalid_argument(std::string("BOKBOK_BACKEND must be \"uring\" or \"epoll\" "
                                          "(or unset for automatic), not \"") +
                              v + "\"");
}

std::shared_ptr<loop> start_loop(backend_kind kind, const loop_options& opts) {
  switch (kind) {
    case backend_kind::uring:
      return launch(make_uring_backend(opts));
    case backend_kind::epoll:
      return launch(make_epoll_backend(opts));
    case backend_kind::automatic:
      break;
  }
  std::unique_ptr<loop_backend> backend;
  try {
    backend = make_uring_backend(opts);
  } catch (const std::system_error&) {
    backend = make_epoll_backend(opts);  // seccomp, io_uring_disabled, old kernel
  }
  return launch(std::move(backend));
}

std::shared_ptr<loop> loop::start(backend_kind kind) {
  if (kind == backend_kind::automatic) kind = backend_from_env();
  return start_loop(kind, loop_options{});
}

}  // namespace bokbok::io
