#include "rpc/liveness.hpp"

#include <algorithm>
#include <chrono>

namespace bokbok::rpc {

namespace {

std::string ms_text(io::clock::duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

}  // namespace

liveness::time_point liveness::start(time_point now) {
  last_rx_ = last_activity_ = now;
  ping_sent_at_.reset();
  return now + (on(heartbeat_) && (!on(idle_) || heartbeat_ < idle_) ? heartbeat_ : idle_);
}

liveness::verdict liveness::tick(time_point now, bool busy, bool going_away) {
  verdict v;
  auto sooner = [&v](time_point t) { v.next = v.next ? std::min(*v.next, t) : t; };
  if (on(heartbeat_)) {
    if (ping_sent_at_ && last_rx_ <= *ping_sent_at_) {
      // A ping is out and nothing has come since.
      if (now - *ping_sent_at_ >= heartbeat_) {
        v.ends = verdict::end::unresponsive;
        v.why = "peer unresponsive: nothing received for " + ms_text(now - last_rx_) +
                " (heartbeat every " + ms_text(heartbeat_) + ")";
        v.next.reset();
        return v;
      }
      sooner(*ping_sent_at_ + heartbeat_);
    } else if (now - last_rx_ >= heartbeat_) {
      v.ping = true;
      ping_sent_at_ = now;
      sooner(now + heartbeat_);
    } else {
      ping_sent_at_.reset();
      sooner(last_rx_ + heartbeat_);
    }
  }
  if (on(idle_) && !going_away) {
    if (busy) last_activity_ = now;
    if (now - last_activity_ >= idle_) {
      v.ends = verdict::end::idle;
      v.why = "idle for " + ms_text(now - last_activity_);
      // The heartbeat goes on watching while the goaway drains (`next` as it set it);
      // a ping due at this tick still goes, before the goaway.
      return v;
    }
    sooner(last_activity_ + idle_);
  }
  return v;
}

}  // namespace bokbok::rpc
