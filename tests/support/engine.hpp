// Test support for the engine tests: a loop on the backend the test run asks for, and
// running code on its thread.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <future>
#include <memory>
#include <string>

#include "io/loop.hpp"
#include "io/loop_backend.hpp"

namespace bokbok_test {

// The longest any single wait of an engine test may take.
inline constexpr std::chrono::seconds patience{10};

// Starts a loop and checks it runs on the backend BOKBOK_BACKEND names (tests/meson.build
// runs each engine test once per backend).
// `opts` varies what tests vary (loop_backend.hpp), e.g. how many buffers it lends.
inline std::shared_ptr<bokbok::io::loop> start_checked(const bokbok::io::loop_options& opts = {}) {
  auto l = bokbok::io::start_loop(bokbok::io::backend_from_env(), opts);
  const char* want = std::getenv("BOKBOK_BACKEND");
  if (want != nullptr && std::strcmp(want, "uring") == 0)
    REQUIRE(std::string(l->backend_name()) == "io_uring");
  if (want != nullptr && std::strcmp(want, "epoll") == 0)
    REQUIRE(std::string(l->backend_name()) == "epoll");
  return l;
}

// Runs `fn` on the loop thread and returns its result; fails the test after `patience`.
template <class F>
auto on_loop(bokbok::io::loop& l, F fn) -> decltype(fn()) {
  using R = decltype(fn());
  auto task = std::make_shared<std::packaged_task<R()>>(std::move(fn));
  auto result = task->get_future();
  l.post([task] { (*task)(); });
  REQUIRE(result.wait_for(patience) == std::future_status::ready);
  return result.get();
}

}  // namespace bokbok_test
