// A connection's graceful close (README "Robust calls"). Our calls: connection_calls.cpp;
// the peer's requests: connection_requests.cpp; heartbeat: connection_heartbeat.cpp.
#include "rpc/connection_impl.hpp"

namespace bokbok::detail {

void connection_impl::close_gracefully(std::chrono::milliseconds grace) {
  {
    // From now on our new calls fail (shutting_down), even before the goaway is out.
    std::lock_guard lock(mu_);
    if (phase_ == phase::open) life_.start_closing();
  }
  cfg_.loop->post([self = shared_from_this(), grace] {
    phase ph;
    {
      std::lock_guard lock(self->mu_);
      ph = self->phase_;
    }
    if (ph == phase::closed) return;
    if (ph == phase::handshaking) return self->finish(end_kind::clean, "closed by this side");
    // The text is the peer's to read: "the peer is shutting down: it is closing the
    // connection".
    self->start_goaway("it is closing the connection");
    auto weak = self->weak_from_this();
    self->cfg_.loop->add_timer(io::clock::now() + grace, [weak, grace] {
      if (auto s = weak.lock())
        s->finish(end_kind::clean, "closed by this side (calls still running after the " +
                                       std::to_string(grace.count()) + " ms grace period)");
    });
  });
}

}  // namespace bokbok::detail
