// bokbok::this_call and call_handle: a handler's view of the call it runs, and the
// cancel handle of an asynchronous call.
#include "rpc/connection_impl.hpp"

namespace bokbok {
namespace detail {
namespace {
// The handler running on this thread; null elsewhere. Set by handler_scope around each
// request handler (which may nest on the loop thread, inline handlers).
thread_local running_handler* current = nullptr;
}  // namespace

running_handler* current_handler() noexcept { return current; }

handler_scope::handler_scope(running_handler* h) noexcept : saved_(current) { current = h; }
handler_scope::~handler_scope() { current = saved_; }

std::stop_token running_handler::stop_token() {
  if (!ctx) ctx = conn->handler_context(id);
  return ctx->stop.get_token();
}

std::optional<io::clock::time_point> effective_deadline(const call_options& opts) {
  std::optional<io::clock::time_point> deadline = opts.deadline;
  if (opts.timeout) {
    auto t = io::clock::now() + *opts.timeout;
    if (!deadline || t < *deadline) deadline = t;
  }
  if (auto* h = current; h && h->deadline && (!deadline || *h->deadline < *deadline))
    deadline = h->deadline;
  return deadline;
}

}  // namespace detail

namespace this_call {

std::optional<steady_clock::time_point> deadline() {
  auto* h = detail::current_handler();
  return h ? h->deadline : std::nullopt;
}

std::chrono::milliseconds remaining() {
  auto d = deadline();
  if (!d) return std::chrono::milliseconds::max();
  return std::chrono::duration_cast<std::chrono::milliseconds>(*d - steady_clock::now());
}

// Made on first use (running_handler::stop_token): a handler that never asks costs no
// stop state.
std::stop_token stop_token() {
  auto* h = detail::current_handler();
  return h ? h->stop_token() : std::stop_token();
}

bokbok::stream stream() {
  auto* h = detail::current_handler();
  return h && h->stream ? bokbok::stream(h->stream) : bokbok::stream();
}

}  // namespace this_call

void call_handle::cancel() const {
  if (auto c = conn_.lock()) c->cancel_call(seq_, error_code::cancelled);
}

}  // namespace bokbok
