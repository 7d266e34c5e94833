#include "io/reactor.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>
#include <utility>

namespace bokbok::io {
namespace {

constexpr std::size_t events_reserved = 128;

}  // namespace

reactor::reactor(std::unique_ptr<loop_backend> backend)
    : channel_(std::make_shared<channel>()), backend_(std::move(backend)) {
  channel_->wake_fd =
      base::unique_fd(::eventfd(0, EFD_CLOEXEC | backend_->wake_fd_flags()));
  if (!channel_->wake_fd) throw std::system_error(errno, std::system_category(), "eventfd");
  events_.reserve(events_reserved);
}

// The backend goes first (members are destroyed in reverse order), the eventfd after it.
reactor::~reactor() = default;

void reactor::channel::wake() noexcept {
  std::uint64_t one = 1;
  while (::write(wake_fd.get(), &one, sizeof one) < 0 && errno == EINTR) {
  }
}

void reactor::post(std::function<void()> fn) {
  bool local = in_loop_thread();
  std::shared_ptr<channel> ch = channel_;  // `this` may be gone once fn is queued
  std::function<void()> dropped;           // destroyed after the lock is released
  {
    std::lock_guard lock(ch->mutex);
    if (ch->closed) {
      dropped = std::move(fn);
      return;
    }
    ch->queue.push_back(std::move(fn));
  }
  if (local) {
    local_posts_ = true;  // the loop thread is running: `this` is alive
    return;
  }
  // seq_cst pairs with the store in run_posted(): either this exchange sees the loop's
  // clear (and we write the eventfd), or the loop's drain sees our push.
  if (!ch->wake_pending.exchange(true)) ch->wake();
}

void reactor::request_stop() noexcept {
  std::deque<std::function<void()>> dropped;  // destroyed after the lock is released
  {
    std::lock_guard lock(channel_->mutex);
    if (channel_->closed) return;
    channel_->closed = true;
    dropped.swap(channel_->queue);
    stopping_.store(true, std::memory_order_release);
  }
  channel_->wake();
}

void reactor::run() {
  loop_thread_.store(std::this_thread::get_id());
  backend_->watch_wakeup(channel_->wake_fd.get());
  while (!stopping()) {
    bool woken = backend_->wait(wait_limit(), events_);
    dispatch();
    if (stopping()) break;
    if (woken) run_posted();
    timers_.run_due(clock::now());
    if (local_posts_) run_posted();
  }
  backend_->shutdown();
}

// How long the next wait may block: not at all while the loop thread's own posts wait,
// else until the nearest timer (zero when it is already due), else without limit.
std::optional<clock::duration> reactor::wait_limit() {
  if (local_posts_) return clock::duration::zero();
  if (auto d = timers_.next_deadline()) return *d - clock::now();
  return std::nullopt;
}

void reactor::dispatch() {
  // Completions may submit, cancel and forget: what that finishes stays in the backend
  // until the next wait, so events_ is not touched while it is walked.
  for (const backend_event& e : events_) {
    // A pipe write to a closed reader queued SIGPIPE on this thread, where it is blocked.
    if (e.res == -EPIPE) discard_pending_sigpipe();
    e.c->complete(e.res, e.flags);
    if (e.flags & lent_buffer_flag) backend_->give_back(e.flags);  // its data was valid until now
  }
  events_.clear();
}

// Loop thread, once the eventfd was consumed (or for local posts): clears the flag, then
// runs every function queued so far, in order. Functions they post run on the next
// call. Stops early, dropping the rest, if a function asked the loop to stop.
void reactor::run_posted() {
  channel& ch = *channel_;
  ch.wake_pending.store(false);
  local_posts_ = false;
  std::deque<std::function<void()>> batch;
  {
    std::lock_guard lock(ch.mutex);
    batch.swap(ch.queue);
  }
  for (auto& fn : batch) {
    if (stopping()) break;  // the rest is dropped with `batch`
    fn();
    fn = nullptr;  // release what it captured now, in order
  }
}

}  // namespace bokbok::io
