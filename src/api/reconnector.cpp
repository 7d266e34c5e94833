// reconnector (api/reconnector.hpp).
#include "api/reconnector.hpp"

#include <algorithm>

#include "base/log.hpp"
#include "rpc/connection_impl.hpp"
#include "rpc/error_ptr.hpp"

namespace bokbok::detail {

namespace {
// One attempt at a time; its thread leaves soon after the redial is over.
constexpr rpc::handler_pool::limits dialer_limits{1, 8, std::chrono::seconds(1), 0};
}  // namespace

reconnector::reconnector(dial_fn dial, options opts, reconnect_policy policy,
                         std::shared_ptr<io::loop> loop)
    : dial_(std::move(dial)),
      opts_(std::move(opts)),
      policy_(std::move(policy)),
      loop_(std::move(loop)),
      dialer_(std::make_shared<rpc::handler_pool>(dialer_limits)) {
  if (policy_.initial_delay.count() <= 0) policy_.initial_delay = std::chrono::milliseconds(1);
  if (policy_.max_delay < policy_.initial_delay) policy_.max_delay = policy_.initial_delay;
}

// The options of each inner connection: the user's, with a close handler that redials.
options reconnector::inner_options() {
  options o = opts_;
  o.on_close = [weak = weak_from_this()](connection& c) {
    if (auto self = weak.lock()) self->dropped(c.impl_for_reconnect());
  };
  return o;
}

void reconnector::start() {
  auto first = dial_(inner_options());
  std::lock_guard lock(mu_);
  cur_ = std::move(first);
  up_ = true;
}

std::shared_ptr<connection_impl> reconnector::current(
    std::optional<steady_clock::time_point> deadline) {
  std::unique_lock lock(mu_);
  // A closed inner connection is never handed out, even before its close handler has
  // told us (dropped()), nor one the peer's goaway reached (it takes no new call and
  // closes once drained): the call waits for the next one.
  auto ready = [&] { return (usable_locked() && !cur_->peer_going_away()) || final_; };
  if (deadline) {
    if (!cv_.wait_until(lock, *deadline, ready))
      std::rethrow_exception(error_ptr<call_error>(
          error_code::deadline_exceeded,
          "the call's deadline passed while the connection was reconnecting"));
  } else {
    cv_.wait(lock, ready);
  }
  if (final_ && !usable_locked())
    std::rethrow_exception(error_ptr<transport_error>("bokbok: connection closed: " + reason_));
  return cur_;
}

bool reconnector::usable_locked() const { return up_ && cur_ && !cur_->closed(); }

std::shared_ptr<connection_impl> reconnector::current_now() {
  std::lock_guard lock(mu_);
  if (!usable_locked())
    std::rethrow_exception(error_ptr<transport_error>(
        final_ ? "bokbok: connection closed: " + reason_
               : "bokbok: the connection is reconnecting (an asynchronous call does not wait)"));
  return cur_;
}

std::shared_ptr<connection_impl> reconnector::latest() const {
  std::lock_guard lock(mu_);
  return cur_;
}

// A handler thread of the inner connection: it closed. Redial, unless closing for good.
void reconnector::dropped(std::shared_ptr<connection_impl> inner) {
  std::string why = inner->close_reason();
  bool stop;
  {
    std::lock_guard lock(mu_);
    if (inner != cur_) return;  // an old one
    up_ = false;
    stop = user_closed_;
    if (!stop) {
      last_ = inner;
      delay_ = policy_.initial_delay;
      attempts_ = 0;
    }
  }
  if (stop) return finish(std::move(inner), why);
  base::log(log_level::info, "reconnect",
            "connection to " + inner->peer_address() + " lost (" + why + "); reconnecting");
  if (policy_.on_drop) policy_.on_drop(why);
  loop_->post([self = shared_from_this()] { self->arm_backoff(); });
}

// Loop thread: waits delay_, then has the pool make the next attempt.
void reconnector::arm_backoff() {
  std::unique_lock lock(mu_);
  if (user_closed_) {
    lock.unlock();
    return run_on_pool([self = shared_from_this()] { self->finish_closed_while_redialling(); });
  }
  auto when = io::clock::now() + delay_;
  lock.unlock();
  backoff_timer_ = loop_->add_timer(when, [self = shared_from_this()] {
    self->backoff_timer_ = 0;
    self->run_on_pool([self] { self->attempt(); });
  });
}

// Loop thread, after close() or abort(): a redial waiting for its timer ends now.
void reconnector::cancel_backoff() {
  if (!backoff_timer_) return;  // not waiting: the attempt in progress sees user_closed_
  loop_->cancel_timer(backoff_timer_);
  backoff_timer_ = 0;
  run_on_pool([self = shared_from_this()] { self->finish_closed_while_redialling(); });
}

void reconnector::finish_closed_while_redialling() {
  std::shared_ptr<connection_impl> last;
  {
    std::lock_guard lock(mu_);
    last = last_;
  }
  finish(std::move(last), "closed by this side while reconnecting");
}

// Loop or pool thread: runs `step` on the dialer pool; when the pool cannot take it (no
// thread can be started), the redial ends here instead.
void reconnector::run_on_pool(std::function<void()> step) {
  std::string why;
  if (dialer_->submit(std::move(step), &why)) return;
  std::shared_ptr<connection_impl> last;
  {
    std::lock_guard lock(mu_);
    last = last_;
  }
  finish(std::move(last), "closed while reconnecting: " + why);
}

// Pool thread: one dial. On failure, the next waits twice as long (up to max_delay),
// until the policy gives up.
void reconnector::attempt() {
  std::shared_ptr<connection_impl> last;
  bool stop;
  {
    std::lock_guard lock(mu_);
    last = last_;
    stop = user_closed_;
  }
  if (stop) return finish(std::move(last), "closed by this side while reconnecting");
  std::string why;
  try {
    auto fresh = dial_(inner_options());
    bool closed_meanwhile;
    {
      std::lock_guard lock(mu_);
      closed_meanwhile = user_closed_;
      cur_ = fresh;
      up_ = !closed_meanwhile;
      last_ = nullptr;
      cv_.notify_all();
    }
    if (closed_meanwhile) return fresh->close();  // its close handler finishes
    base::log(log_level::info, "reconnect", "reconnected to " + fresh->peer_address());
    if (policy_.on_reconnect) policy_.on_reconnect();
    return;
  } catch (const std::exception& e) {
    why = e.what();
  }
  unsigned n;
  std::chrono::milliseconds next;
  {
    std::lock_guard lock(mu_);
    n = ++attempts_;
    next = delay_;
    delay_ = std::min(delay_ * 2, policy_.max_delay);
  }
  std::string peer = last ? last->peer_address() : std::string("the peer");
  if (policy_.max_attempts && n >= policy_.max_attempts) {
    base::log(log_level::warning, "reconnect",
              "gave up reconnecting to " + peer + " after " + std::to_string(n) +
                  " attempts: " + why);
    return finish(std::move(last),
                  "gave up reconnecting after " + std::to_string(n) + " attempts: " + why);
  }
  base::log_limited(log_level::info, "reconnect", "reconnect attempts failed",
                    "reconnect attempt " + std::to_string(n) + " to " + peer + " failed (" + why +
                        "); next in " + std::to_string(next.count()) + " ms");
  loop_->post([self = shared_from_this()] { self->arm_backoff(); });
}

// Closed for good: the user's close handler runs once, with a handle on this.
void reconnector::finish(std::shared_ptr<connection_impl> last, std::string reason) {
  {
    std::lock_guard lock(mu_);
    if (final_) return;
    reason_ = std::move(reason);
  }
  if (opts_.on_close) {
    connection handle(last, shared_from_this());
    try {
      opts_.on_close(handle);
    } catch (...) {
      // Nobody to report to.
    }
  }
  std::shared_ptr<reconnector> keep;  // the last reference may go here, after the lock
  std::lock_guard lock(mu_);
  final_ = true;
  cv_.notify_all();
  keep = std::move(keep_until_final_);
}

// No more redialling; the connection to close now, if one is up.
std::shared_ptr<connection_impl> reconnector::stop_redialling() {
  std::lock_guard lock(mu_);
  user_closed_ = true;
  // The last handle may be gone (closed because it went): live on until the inner
  // connection's close handler has come back here and finish() has run.
  if (!final_) keep_until_final_ = shared_from_this();
  cv_.notify_all();
  if (!up_ && !final_)  // a redial waiting for its timer ends at once
    loop_->post([self = shared_from_this()] { self->cancel_backoff(); });
  return up_ ? cur_ : nullptr;
}

void reconnector::close(std::chrono::milliseconds grace) {
  if (auto c = stop_redialling()) c->close_gracefully(grace);
}

void reconnector::abort() {
  if (auto c = stop_redialling()) c->close();
}

bool reconnector::closed() const {
  std::lock_guard lock(mu_);
  return final_;
}

void reconnector::wait_closed() const {
  std::shared_ptr<connection_impl> last;
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return final_; });
    last = cur_;
  }
  last->wait_closed();
}

std::string reconnector::close_reason() const {
  std::lock_guard lock(mu_);
  return final_ ? reason_ : "";
}

}  // namespace bokbok::detail
