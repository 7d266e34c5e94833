#include "io/timer_queue.hpp"

#include <algorithm>
#include <utility>

namespace bokbok::io {

bool timer_queue::later(const entry& a, const entry& b) noexcept {
  if (a.when != b.when) return a.when > b.when;
  return a.id > b.id;
}

timer_id timer_queue::add(clock::time_point when, std::function<void()> fn) {
  timer_id id = next_id_++;
  live_.emplace(id, std::move(fn));
  heap_.push_back({when, id});
  std::push_heap(heap_.begin(), heap_.end(), later);
  return id;
}

void timer_queue::cancel(timer_id id) {
  if (live_.erase(id) == 0) return;
  if (heap_.size() > 64 && heap_.size() > 2 * live_.size()) compact();
}

void timer_queue::compact() {
  std::erase_if(heap_, [this](const entry& e) { return !live_.contains(e.id); });
  std::make_heap(heap_.begin(), heap_.end(), later);
}

void timer_queue::drop_dead_top() {
  while (!heap_.empty() && !live_.contains(heap_.front().id)) {
    std::pop_heap(heap_.begin(), heap_.end(), later);
    heap_.pop_back();
  }
}

std::optional<clock::time_point> timer_queue::next_deadline() {
  drop_dead_top();
  if (heap_.empty()) return std::nullopt;
  return heap_.front().when;
}

std::size_t timer_queue::run_due(clock::time_point now) {
  // Collect first, run after: what the timers add or cancel cannot disturb the walk.
  std::vector<timer_id> due;
  for (;;) {
    drop_dead_top();
    if (heap_.empty() || heap_.front().when > now) break;
    due.push_back(heap_.front().id);
    std::pop_heap(heap_.begin(), heap_.end(), later);
    heap_.pop_back();
  }
  std::size_t ran = 0;
  for (timer_id id : due) {
    auto it = live_.find(id);
    if (it == live_.end()) continue;  // cancelled by a timer that ran before it
    std::function<void()> fn = std::move(it->second);
    live_.erase(it);
    fn();
    ++ran;
  }
  return ran;
}

}  // namespace bokbok::io
