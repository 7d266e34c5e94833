// inbound_calls: see inbound_calls.hpp. The connection's mutex is held in every member.
#include "rpc/inbound_calls.hpp"

#include <algorithm>

namespace bokbok::rpc {

inbound_calls::inbound_calls(limits l) : limits_(l) {
  limits_.pool_share = std::max(1u, limits_.pool_share);
}

bool inbound_calls::room_for_handler() const {
  const unsigned cap = limits_.max_concurrent;
  if (cap && running_handlers_ >= cap) return false;
  return limits_.inline_handlers || in_pool_queue_ < limits_.pool_share;
}

inbound_calls::admission inbound_calls::admit(inbound_request& r, std::string& why) {
  if (room_for_handler()) {
    count_started();
    return admission::start;
  }
  if (queued_.size() < limits_.max_queued) {
    queued_.push_back(std::move(r));
    return admission::queued;
  }
  const unsigned cap = limits_.max_concurrent;
  why = "busy: " +
        (cap && running_handlers_ >= cap ? std::to_string(cap) + " calls running"
                                         : std::to_string(in_pool_queue_) +
                                               " calls waiting for a handler") +
        " and " + std::to_string(limits_.max_queued) + " more waiting on this connection";
  return admission::refused;
}

std::optional<inbound_request> inbound_calls::take_startable(bool may_start) {
  if (queued_.empty() || !may_start || !room_for_handler()) return std::nullopt;
  std::optional<inbound_request> next(std::move(queued_.front()));
  queued_.pop_front();
  count_started();
  return next;
}

void inbound_calls::running(std::uint32_t id, std::shared_ptr<detail::call_context> ctx) {
  if (ctx) with_context_.fetch_add(1, std::memory_order_release);
  running_.push_back({id, std::move(ctx)});
}

inbound_calls::running_call* inbound_calls::find_running(std::uint32_t id) {
  for (auto& r : running_)
    if (r.id == id) return &r;
  return nullptr;
}

std::shared_ptr<detail::call_context>& inbound_calls::make_context(running_call& r) {
  if (!r.ctx) {
    r.ctx = std::make_shared<detail::call_context>();
    with_context_.fetch_add(1, std::memory_order_release);
  }
  return r.ctx;
}

std::shared_ptr<detail::call_context> inbound_calls::context_of(std::uint32_t id) {
  if (running_call* r = find_running(id)) return make_context(*r);
  return std::make_shared<detail::call_context>();
}

std::shared_ptr<detail::call_context> inbound_calls::made_context(std::uint32_t id) const {
  for (const auto& r : running_)
    if (r.id == id) return r.ctx;
  return nullptr;
}

void inbound_calls::handler_done(std::uint32_t id) {
  if (id) {
    if (running_call* r = find_running(id)) {
      if (r->ctx) with_context_.fetch_sub(1, std::memory_order_release);
      *r = std::move(running_.back());
      running_.pop_back();
    }
  }
  --running_handlers_;
}

std::shared_ptr<detail::call_context> inbound_calls::cancel(std::uint32_t id, bool& dropped) {
  dropped = false;
  auto q = std::find_if(queued_.begin(), queued_.end(),
                        [id](const inbound_request& c) { return c.id == id; });
  if (q != queued_.end()) {
    queued_.erase(q);
    dropped = true;
  }
  running_call* r = find_running(id);
  return r ? make_context(*r) : nullptr;
}

std::vector<inbound_request> inbound_calls::take_held() {
  std::vector<inbound_request> held;
  held.swap(held_);
  running_handlers_ += static_cast<unsigned>(held.size());
  return held;
}

std::deque<inbound_request> inbound_calls::take_queued() { return queued_.take(); }

std::vector<std::shared_ptr<detail::call_context>> inbound_calls::running_contexts() {
  std::vector<std::shared_ptr<detail::call_context>> out;
  out.reserve(running_.size());
  for (auto& r : running_) out.push_back(make_context(r));
  return out;
}

}  // namespace bokbok::rpc
