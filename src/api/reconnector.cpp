// reconnector (api/reconnector.hpp).
#include "api/reconnector.hpp"

#include <pthread.h>

#include <algorithm>
#include <system_error>
#include <thread>

#include "rpc/connection_impl.hpp"
#include "rpc/error_ptr.hpp"

namespace bokbok::detail {

reconnector::reconnector(dial_fn dial, options opts, reconnect_policy policy)
    : dial_(std::move(dial)), opts_(std::move(opts)), policy_(std::move(policy)) {
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
  // told us (dropped()): the call waits for the next one.
  auto ready = [&] { return usable_locked() || final_; };
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
  }
  if (stop) return finish(std::move(inner), why);
  if (policy_.on_drop) policy_.on_drop(why);
  try {
    std::thread([self = shared_from_this(), inner] { self->redial(inner); }).detach();
  } catch (const std::system_error& e) {
    finish(std::move(inner), why + "; cannot start a thread to reconnect: " + e.what());
  }
}

// Its own thread: dials with exponential backoff until it works, the policy gives up, or
// close() is called.
void reconnector::redial(std::shared_ptr<connection_impl> last) {
  pthread_setname_np(pthread_self(), "bokbok-redial");
  auto delay = policy_.initial_delay;
  std::string why;
  for (unsigned attempt = 1;; ++attempt) {
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, delay, [&] { return user_closed_; });
      if (user_closed_) {
        lock.unlock();
        return finish(std::move(last), "closed by this side while reconnecting");
      }
    }
    try {
      auto fresh = dial_(inner_options());
      bool closed_meanwhile;
      {
        std::lock_guard lock(mu_);
        closed_meanwhile = user_closed_;
        cur_ = fresh;
        up_ = !closed_meanwhile;
        cv_.notify_all();
      }
      if (closed_meanwhile) return fresh->close();  // its close handler finishes
      if (policy_.on_reconnect) policy_.on_reconnect();
      return;
    } catch (const std::exception& e) {
      why = e.what();
    }
    if (policy_.max_attempts && attempt >= policy_.max_attempts)
      return finish(std::move(last), "gave up reconnecting after " + std::to_string(attempt) +
                                         " attempts: " + why);
    delay = std::min(delay * 2, policy_.max_delay);
  }
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
