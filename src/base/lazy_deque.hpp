// lazy_deque: a std::deque made on the first insertion, for queues that most objects
// have and few ever use. libstdc++'s deque allocates its map and a first block even
// while empty (about 600 bytes): for the queues every connection holds, that was a
// tenth of an idle connection's memory.
//
// Threads: as std::deque (none of its own).
#pragma once

#include <deque>
#include <memory>
#include <utility>

namespace bokbok::base {

template <class T>
class lazy_deque {
 public:
  using iterator = typename std::deque<T>::iterator;

  bool empty() const noexcept { return !d_ || d_->empty(); }
  std::size_t size() const noexcept { return d_ ? d_->size() : 0; }
  void push_back(T v) { made().push_back(std::move(v)); }
  void push_front(T v) { made().push_front(std::move(v)); }
  // Not empty().
  T& front() { return d_->front(); }
  void pop_front() { d_->pop_front(); }
  // While nothing was ever queued both are end() of one empty deque shared by all.
  iterator begin() { return d_ ? d_->begin() : none().begin(); }
  iterator end() { return d_ ? d_->end() : none().end(); }
  // An iterator of this queue's own (so never while it is unmade).
  void erase(iterator it) { d_->erase(it); }
  // Everything queued, leaving this empty (and unmade).
  std::deque<T> take() { return d_ ? std::move(*std::exchange(d_, nullptr)) : std::deque<T>{}; }

 private:
  std::deque<T>& made() {
    if (!d_) d_ = std::make_unique<std::deque<T>>();
    return *d_;
  }
  // Never changed: only its begin() and end() are used.
  static std::deque<T>& none() {
    static std::deque<T> empty;
    return empty;
  }
  std::unique_ptr<std::deque<T>> d_;
};

}  // namespace bokbok::base
