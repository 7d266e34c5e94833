// pool_task: a task for the handler pool that may own what cannot be copied (a peer
// request's receive_charge travels with it into the handler). Move-only, type-erased:
// one allocation per task, as std::function makes for any capture beyond two pointers.
//
// Threads: none of its own; a task is moved between threads, run once, then destroyed.
#pragma once

#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>

namespace bokbok::rpc {

class pool_task {
 public:
  pool_task() noexcept = default;
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, pool_task>>>
  pool_task(F f) : run_(std::make_unique<holder<F>>(std::move(f))) {}  // NOLINT: implicit
  pool_task(pool_task&&) noexcept = default;
  pool_task& operator=(pool_task&&) noexcept = default;
  pool_task& operator=(std::nullptr_t) noexcept {
    run_.reset();
    return *this;
  }

  void operator()() { run_->run(); }
  explicit operator bool() const noexcept { return run_ != nullptr; }

 private:
  struct base {
    virtual ~base() = default;
    virtual void run() = 0;
  };
  template <class F>
  struct holder final : base {
    explicit holder(F&& g) : f(std::move(g)) {}
    void run() override { f(); }
    F f;
  };
  std::unique_ptr<base> run_;
};

}  // namespace bokbok::rpc
