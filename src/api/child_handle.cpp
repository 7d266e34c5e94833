// bokbok::child_handle (include/bokbok/byte_channel.hpp), over transport::child_process.
// Every member forwards to it; child_process is thread-safe, so these are too.
#include <utility>

#include "api/child_state.hpp"

namespace bokbok {

child_handle::child_handle(std::shared_ptr<state> st) noexcept : st_(std::move(st)) {}

int child_handle::pid() const noexcept { return st_->child->pid(); }

std::optional<child_exit> child_handle::exit_status() const { return st_->child->exit_status(); }

void child_handle::release() noexcept { st_->child->release(); }

child_exit child_handle::wait() const {
  st_->child->wait_reaped();
  // Reaped: the status is known, unless something else in this process reaped the
  // child first (a SIGCHLD handler, SIGCHLD ignored): then it is reported as unknown.
  if (auto st = st_->child->exit_status()) return *st;
  child_exit unknown;
  unknown.pid = pid();
  return unknown;
}

std::string child_handle::describe() const { return st_->child->end_note(); }

}  // namespace bokbok
