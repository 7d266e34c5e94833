#include "rpc/receive_budget.hpp"

#include <utility>

namespace bokbok::rpc {
namespace {

std::size_t three_quarters(std::size_t n) { return n / 4 * 3; }

}  // namespace

void receive_pool::add(std::ptrdiff_t delta) {
  std::size_t before = held_.fetch_add(static_cast<std::size_t>(delta), std::memory_order_relaxed);
  if (delta >= 0) return;
  std::size_t after = before + static_cast<std::size_t>(delta);
  if (after >= three_quarters(limit_)) return;
  std::vector<std::function<void()>> wake;
  {
    std::lock_guard lock(mu_);
    wake.swap(waiters_);
  }
  for (auto& w : wake) w();
}

void receive_pool::wait_for_room(std::function<void()> wake) {
  {
    std::lock_guard lock(mu_);
    if (held() >= three_quarters(limit_)) {
      waiters_.push_back(std::move(wake));
      return;
    }
  }
  wake();  // room already (given back between the caller's check and now)
}

receive_account::receive_account(std::size_t limit, std::shared_ptr<receive_pool> pool,
                                 std::size_t floor)
    : limit_(limit), floor_(floor), pool_(std::move(pool)) {}

bool receive_account::over() const noexcept {
  std::size_t h = held();
  return h > limit_ || (pool_ && h > floor_ && pool_->over());
}

bool receive_account::has_room() const noexcept {
  std::size_t h = held();
  return h <= limit_ / 2 && (!pool_ || h <= floor_ || pool_->held() < three_quarters(pool_->limit()));
}

void receive_account::add(std::ptrdiff_t delta) {
  held_.fetch_add(static_cast<std::size_t>(delta), std::memory_order_relaxed);
  if (pool_) pool_->add(delta);
  if (delta < 0) maybe_wake();
}

// Runs the waiter when there is room; when only the pool stands in the way, asks the
// pool to call back once it has room.
void receive_account::maybe_wake() {
  std::function<void()> wake;
  bool ask_pool = false;
  {
    std::lock_guard lock(mu_);
    if (!waiter_) return;
    if (has_room()) {
      wake = std::exchange(waiter_, nullptr);
    } else if (pool_ && held() <= limit_ / 2 && !pool_wait_) {
      pool_wait_ = ask_pool = true;
    }
  }
  if (wake) return wake();
  if (!ask_pool) return;
  pool_->wait_for_room([weak = weak_from_this()] {
    auto self = weak.lock();
    if (!self) return;
    {
      std::lock_guard lock(self->mu_);
      self->pool_wait_ = false;
    }
    self->maybe_wake();
  });
}

void receive_account::wait_for_room(std::function<void()> wake) {
  {
    std::lock_guard lock(mu_);
    waiter_ = std::move(wake);
  }
  maybe_wake();
}

receive_charge::receive_charge(std::shared_ptr<receive_account> account, std::size_t bytes)
    : account_(std::move(account)), bytes_(bytes) {
  if (account_ && bytes_) account_->add(static_cast<std::ptrdiff_t>(bytes_));
}

receive_charge::receive_charge(receive_charge&& other) noexcept
    : account_(std::move(other.account_)), bytes_(std::exchange(other.bytes_, 0)) {}

receive_charge& receive_charge::operator=(receive_charge&& other) noexcept {
  if (this != &other) {
    release();
    account_ = std::move(other.account_);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void receive_charge::release() noexcept {
  if (account_ && bytes_) account_->add(-static_cast<std::ptrdiff_t>(bytes_));
  bytes_ = 0;
  account_.reset();
}

}  // namespace bokbok::rpc
