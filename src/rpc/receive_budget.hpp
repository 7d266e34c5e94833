// Receive budgets (README "Limits and memory"): the bytes a connection holds of what its
// peer sent that no handler has taken yet.
//   - A `receive_account` per connection counts requests received whole and waiting for
//     a handler (held while a server's on_open runs, queued under max_concurrent_calls,
//     or queued for a pool thread), each as its decoded cost (wire::decoded_cost). Past
//     options::max_receive_bytes the connection stops reading (transport backpressure)
//     until handlers have taken half of it: they always do in time, so this never stalls
//     for good.
//   - Partial messages (fragments being reassembled) are bounded by the connection itself
//     (connection_reader.cpp): one that would pass the budget is refused (busy) and its
//     rest skipped, since waiting for its rest with reading stopped could stall forever.
//   - A `receive_pool` shared by a server's connections counts both kinds, bounded by
//     server_options::max_receive_bytes. A connection holding no more than `floor` bytes
//     is never held back by the pool, so one greedy peer cannot starve the small calls
//     of all the others.
//
// Threads: every member is thread-safe. Bytes are charged on the connection's loop
// thread and given back from any thread (a handler starting, a queue dropped).
// Lifetime: shared; a `receive_charge` keeps its account (and the account its pool)
// alive until the bytes are given back.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace bokbok::rpc {

class receive_pool {
 public:
  explicit receive_pool(std::size_t limit) : limit_(limit) {}

  std::size_t limit() const noexcept { return limit_; }
  std::size_t held() const noexcept { return held_.load(std::memory_order_relaxed); }
  bool over() const noexcept { return held() > limit_; }

  // Adds `delta` bytes (negative: gives them back). Giving back below 3/4 of the limit
  // runs, once each, the functions wait_for_room() registered.
  void add(std::ptrdiff_t delta);
  // `wake` runs (on the thread giving bytes back, or at once here when there is room
  // already) when held() is below 3/4 of the limit. It must be quick and not call back
  // into the pool: post to a loop.
  void wait_for_room(std::function<void()> wake);

 private:
  const std::size_t limit_;
  std::atomic<std::size_t> held_{0};
  std::mutex mu_;
  std::vector<std::function<void()>> waiters_;  // guarded by mu_
};

class receive_account : public std::enable_shared_from_this<receive_account> {
 public:
  // `pool` may be null (a connection of its own). `floor`: what this account may hold
  // whatever the pool holds.
  receive_account(std::size_t limit, std::shared_ptr<receive_pool> pool,
                  std::size_t floor = default_floor);
  static constexpr std::size_t default_floor = 1u << 20;

  std::size_t limit() const noexcept { return limit_; }
  std::size_t held() const noexcept { return held_.load(std::memory_order_relaxed); }
  // More than this account's limit, or (holding more than the floor) the pool is past
  // its own.
  bool over() const noexcept;
  // The other way round, with room to spare: at most half the limit, and the floor or
  // the pool below 3/4 of its limit. Reading resumes only then, so it does not flap.
  bool has_room() const noexcept;

  void add(std::ptrdiff_t delta);
  // `wake` runs once (see receive_pool::wait_for_room) when has_room() has become true
  // (this account gave back enough, or the pool did), or at once if it is true now.
  // Replaces an earlier one. The account must be owned by a shared_ptr.
  void wait_for_room(std::function<void()> wake);

  const std::shared_ptr<receive_pool>& pool() const noexcept { return pool_; }

 private:
  void maybe_wake();
  const std::size_t limit_;
  const std::size_t floor_;
  const std::shared_ptr<receive_pool> pool_;
  std::atomic<std::size_t> held_{0};
  std::mutex mu_;
  std::function<void()> waiter_;  // guarded by mu_
  bool pool_wait_ = false;        // guarded by mu_: registered with the pool
};

// Bytes charged to an account, given back when the charge is released or destroyed.
// Move-only.
class receive_charge {
 public:
  receive_charge() noexcept = default;
  receive_charge(std::shared_ptr<receive_account> account, std::size_t bytes);
  receive_charge(receive_charge&& other) noexcept;
  receive_charge& operator=(receive_charge&& other) noexcept;
  receive_charge(const receive_charge&) = delete;
  receive_charge& operator=(const receive_charge&) = delete;
  ~receive_charge() { release(); }

  void release() noexcept;
  std::size_t bytes() const noexcept { return bytes_; }

 private:
  std::shared_ptr<receive_account> account_;
  std::size_t bytes_ = 0;
};

}  // namespace bokbok::rpc
