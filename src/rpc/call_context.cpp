// bokbok::this_call and call_handle: a handler's view of the call it runs, and the
// cancel handle of an asynchronous call.
#include "rpc/connection_impl.hpp"

namespace bokbok {
namespace detail {
namespace {
// The context of the handler running on this thread; null elsewhere. Set by
// call_context_scope around each handler (which may nest on the loop thread).
thread_local call_context* current = nullptr;
}  // namespace

call_context* current_call_context() noexcept { return current; }

call_context_scope::call_context_scope(call_context* c) noexcept : saved_(current) {
  current = c;
}
call_context_scope::~call_context_scope() { current = saved_; }

std::optional<io::clock::time_point> effective_deadline(const call_options& opts) {
  std::optional<io::clock::time_point> deadline = opts.deadline;
  if (opts.timeout) {
    auto t = io::clock::now() + *opts.timeout;
    if (!deadline || t < *deadline) deadline = t;
  }
  if (auto* ctx = current; ctx && ctx->deadline && (!deadline || *ctx->deadline < *deadline))
    deadline = ctx->deadline;
  return deadline;
}

}  // namespace detail

namespace this_call {

std::optional<steady_clock::time_point> deadline() {
  auto* c = detail::current_call_context();
  return c ? c->deadline : std::nullopt;
}

std::chrono::milliseconds remaining() {
  auto d = deadline();
  if (!d) return std::chrono::milliseconds::max();
  return std::chrono::duration_cast<std::chrono::milliseconds>(*d - steady_clock::now());
}

std::stop_token stop_token() {
  auto* c = detail::current_call_context();
  return c ? c->stop.get_token() : std::stop_token();
}

}  // namespace this_call

void call_handle::cancel() const {
  if (auto c = conn_.lock()) c->cancel_call(seq_, error_code::cancelled);
}

}  // namespace bokbok
