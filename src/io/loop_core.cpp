#include "io/loop_core.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>
#include <utility>

namespace bokbok::io {

loop_core::loop_core(int eventfd_flags) : channel_(std::make_shared<channel>()) {
  channel_->wake_fd = base::unique_fd(::eventfd(0, EFD_CLOEXEC | eventfd_flags));
  if (!channel_->wake_fd) throw std::system_error(errno, std::system_category(), "eventfd");
}

int loop_core::wake_fd() const noexcept { return channel_->wake_fd.get(); }

void loop_core::channel::wake() noexcept {
  std::uint64_t one = 1;
  while (::write(wake_fd.get(), &one, sizeof one) < 0 && errno == EINTR) {
  }
}

void loop_core::post(std::function<void()>&& fn) {
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

void loop_core::run_posted() {
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

void loop_core::request_stop() noexcept {
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

}  // namespace bokbok::io
