// timer_queue: the loop's timers, shared by both backends. A binary min-heap of
// (deadline, id) with the functions in a map by id; cancel removes the function only and
// the heap entry is skipped when it surfaces (lazy cancel). The heap is rebuilt when
// cancelled entries outnumber live ones, so heartbeats that are re-armed and cancelled
// forever keep it bounded.
//
// Threads: not synchronised; the loop thread owns it.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <unordered_map>
#include <vector>

#include "io/loop.hpp"

namespace bokbok::io {

class timer_queue final {
 public:
  // Ids start at 1 and are never reused.
  timer_id add(clock::time_point when, std::function<void()> fn);

  // Does nothing when `id` already ran or was cancelled.
  void cancel(timer_id id);

  // The earliest deadline of a live timer, if any.
  std::optional<clock::time_point> next_deadline();

  // Runs every timer whose deadline is at or before `now`, earliest first (equal
  // deadlines in the order added). Timers added while running, even already due, wait for
  // the next call, so a timer that re-arms itself cannot starve the loop. A timer
  // cancelled by an earlier one in the same call does not run. Returns how many ran.
  std::size_t run_due(clock::time_point now);

  std::size_t size() const noexcept { return live_.size(); }

 private:
  struct entry {
    clock::time_point when;
    timer_id id;
  };
  static bool later(const entry& a, const entry& b) noexcept;
  void drop_dead_top();
  void compact();

  std::vector<entry> heap_;  // min-heap by (when, id) through later()
  std::unordered_map<timer_id, std::function<void()>> live_;
  timer_id next_id_ = 1;
};

}  // namespace bokbok::io
