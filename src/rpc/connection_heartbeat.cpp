// Heartbeat (PROTOCOL.md §8.3) and the idle timeout of a connection: the timer and the
// actions. What is due when is decided by rpc::liveness (rpc/liveness.hpp). Loop thread
// only.
#include <string>

#include "rpc/connection_impl.hpp"
#include "wire/frame.hpp"

namespace bokbok::detail {

// Loop thread, once open: arms the first tick when either rule is on.
void connection_impl::arm_tick() {
  if (!live_.enabled()) return;
  arm_tick_at(live_.start(io::clock::now()));
}

void connection_impl::arm_tick_at(io::clock::time_point when) {
  tick_timer_ = cfg_.loop->add_timer(when, [weak = weak_from_this()] {
    if (auto self = weak.lock()) self->tick();
  });
}

// Loop thread: the timer fired; does what rpc::liveness finds due.
void connection_impl::tick() {
  tick_timer_ = 0;
  const auto now = io::clock::now();
  bool busy, going_away;
  {
    std::lock_guard lock(mu_);
    if (life_.state() != phase::open) return;
    busy = !calls_.empty() || inbound_.running_count() > 0 || inbound_.queued_count() > 0;
    going_away = life_.going_away();
  }
  rpc::liveness::verdict v = live_.tick(now, busy, going_away);
  if (v.ends == rpc::liveness::verdict::end::unresponsive)
    return finish(end_kind::unresponsive, v.why);
  if (v.ping) {
    // Its payload, which the pong carries back (§8.3): our clock.
    std::string rec;
    unsigned char stamp[8];
    auto n = static_cast<std::uint64_t>(now.time_since_epoch().count());
    for (int i = 7; i >= 0; --i, n >>= 8) stamp[i] = static_cast<unsigned char>(n);
    wire::append_frame(rec, wire::frame_type::ping, 0, 0,
                       std::string_view(reinterpret_cast<const char*>(stamp), 8));
    std::lock_guard lock(mu_);
    send_.queue().push_record_bytes(rec);  // a control frame: never held back
    schedule_flush_locked();
  }
  if (v.ends == rpc::liveness::verdict::end::idle) start_goaway(v.why);
  if (v.next) arm_tick_at(*v.next);
}

}  // namespace bokbok::detail
