// Heartbeat (PROTOCOL.md §8.3) and the idle timeout of a connection. Loop thread only.
#include <string>

#include "rpc/connection_impl.hpp"
#include "wire/frame.hpp"

namespace bokbok::detail {

namespace {

std::string ms_text(io::clock::duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

}  // namespace

// Loop thread: (re)arms the heartbeat and idle timer for what is due next.
void connection_impl::arm_tick() {
  const auto hb = cfg_.opts.heartbeat_interval;
  const auto idle = cfg_.opts.idle_timeout;
  if (hb.count() <= 0 && idle.count() <= 0) return;
  auto now = io::clock::now();
  last_rx_ = last_activity_ = now;
  auto first = now + (hb.count() > 0 && (idle.count() <= 0 || hb < idle) ? hb : idle);
  tick_timer_ = cfg_.loop->add_timer(first, [weak = weak_from_this()] {
    if (auto self = weak.lock()) self->tick();
  });
}

// Loop thread: heartbeat (PROTOCOL.md §8.3) and idle timeout.
void connection_impl::tick() {
  tick_timer_ = 0;
  const auto hb = cfg_.opts.heartbeat_interval;
  const auto idle = cfg_.opts.idle_timeout;
  const auto now = io::clock::now();
  auto next = io::clock::time_point::max();
  bool busy, going_away;
  {
    std::lock_guard lock(mu_);
    if (life_.state() != phase::open) return;
    busy = !calls_.empty() || inbound_.running_count() > 0 || inbound_.queued_count() > 0;
    going_away = life_.going_away();
  }
  if (hb.count() > 0) {
    if (ping_sent_at_ && last_rx_ <= *ping_sent_at_) {
      if (now - *ping_sent_at_ >= hb)
        return finish(end_kind::unresponsive,
                      "peer unresponsive: nothing received for " + ms_text(now - last_rx_) +
                          " (heartbeat every " + ms_text(hb) + ")");
      next = *ping_sent_at_ + hb;
    } else if (now - last_rx_ >= hb) {
      std::string rec;
      unsigned char stamp[8];
      auto n = static_cast<std::uint64_t>(now.time_since_epoch().count());
      for (int i = 7; i >= 0; --i, n >>= 8) stamp[i] = static_cast<unsigned char>(n);
      wire::append_frame(rec, wire::frame_type::ping, 0, 0,
                         std::string_view(reinterpret_cast<const char*>(stamp), 8));
      {
        std::lock_guard lock(mu_);
        send_.queue().push_record_bytes(rec);  // a control frame: never held back
        schedule_flush_locked();
      }
      ping_sent_at_ = now;
      next = now + hb;
    } else {
      ping_sent_at_.reset();
      next = last_rx_ + hb;
    }
  }
  if (idle.count() > 0 && !going_away) {
    if (busy) last_activity_ = now;
    if (now - last_activity_ >= idle)
      start_goaway("idle for " + ms_text(now - last_activity_));
    else
      next = std::min(next, last_activity_ + idle);
  }
  if (next != io::clock::time_point::max())
    tick_timer_ = cfg_.loop->add_timer(next, [weak = weak_from_this()] {
      if (auto self = weak.lock()) self->tick();
    });
}

}  // namespace bokbok::detail
