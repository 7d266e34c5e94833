// call_table: this side's outgoing calls that wait for an answer (the requester's half of
// PROTOCOL.md §8.2), in slots of one vector: no hash map and no allocation per call.
//
// Ids. A call's id counts up from 1 and wraps after ffffffff, skipping 0, as §8.2
// expects, so that ids keep the order calls were made in (a goaway's promise, §8.4,
// compares them as numbers). Its slot is `id mod capacity`: the counter skips ids whose
// slot is taken, and the table doubles (moving each call to its new slot) before it is
// half full, so a call finds its id in about one step and an answer finds its call in
// one. Reuse rule: an id is never given again while a call holds it, and a call that
// ends here (answered, cancelled, timed out, or failed by a goaway) frees its slot at
// once, yet its id recurs only after the counter has wrapped, past four thousand million
// calls: a late answer from the peer to a cancelled or timed-out call (which the peer
// may send, or not, §8.2 "Cancel") finds a slot holding another id, or none, and is
// ignored. A call's `seq` (what connection_impl::call returns, for cancel_call) is its
// id with the number of wraps above it: unique for the connection's life, never 0, and
// it leads to the slot as directly.
//
// A stream call (issue 15, PROTOCOL.md §12) keeps its stream state (rpc/stream_state.hpp:
// messages received, credit each way) in its slot, next to `done`.
//
// Threads: not synchronised; the connection guards it with its mutex. References
// returned stay valid until the next start() (which may move every call).
#pragma once

#include <cstddef>
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <vector>

#include "bokbok/connection.hpp"
#include "bokbok/fd.hpp"
#include "base/parking.hpp"
#include "io/loop.hpp"

namespace bokbok::rpc {

// What wakes a blocking caller: one per thread that ever blocks in a call (made on its
// first, kept for the thread's life), shared so that a waker may unpark it after
// releasing the connection's mutex even if the caller has returned meanwhile (a late
// unpark only wakes the thread's next wait spuriously: base/parking.hpp).
struct thread_waker {
  base::parking park;
};

// What a blocking caller (connection_impl::call_sync) waits on: on the caller's stack,
// pointed to by its call's slot. Filled under the connection's mutex by whoever ends
// the call, which copies `waker` first, sets `done` last (the caller, which reads `done`
// without the mutex, may return and free this the moment it is set), and unparks the
// waker after releasing that mutex (only this caller wakes).
struct sync_wait {
  std::atomic<bool> done{false};  // set once, last; both sides seq_cst (base/parking.hpp)
  std::exception_ptr error;
  message response;
  fd_list fds;  // those of the response (request_with_fds)
  std::shared_ptr<thread_waker> waker;
};

// One of our calls, from its request until its answer (or until it ends here).
struct outgoing_call {
  std::uint32_t id = 0;   // 0: the slot is free
  std::uint64_t seq = 0;  // (wraps << 32) | id
  response_callback done;
  // A blocking caller's wait, or null: an answer is filled into it directly (no
  // callback); every other ending (close, goaway, cancel, deadline) runs `done`, which
  // fills it too.
  sync_wait* waiter = nullptr;
  std::optional<io::clock::time_point> deadline;
  std::unique_ptr<std::stop_callback<std::function<void()>>> on_stop;
  // The write of its request found the peer gone (EPIPE, ECONNRESET) and wrote nothing:
  // it fails with not_sent_error.
  bool not_sent = false;
  // A stream call's state (connection_streams.cpp), else null.
  std::shared_ptr<detail::stream_state> stream;
};

class call_table {
 public:
  // A new call with its id and seq set, in its slot (the rest is the caller's to fill).
  outgoing_call& start();
  // The call `id` waits for an answer, or null (a late answer, or never ours).
  outgoing_call* find(std::uint32_t id);
  // The call `seq` is still going, or null.
  outgoing_call* find_seq(std::uint64_t seq);
  // Ends `c` (a call of this table): moves it out and frees its slot.
  outgoing_call take(outgoing_call& c);
  // Ends every call `pred` holds true for, in id order of their slots (any order).
  template <class Pred>
  std::vector<outgoing_call> take_if(Pred pred) {
    std::vector<outgoing_call> out;
    for (auto& s : slots_)
      if (s.id && pred(static_cast<const outgoing_call&>(s))) out.push_back(take(s));
    return out;
  }
  // Every call still going, read-only.
  template <class F>
  void for_each(F f) const {
    for (const auto& s : slots_)
      if (s.id) f(s);
  }
  bool empty() const { return live_ == 0; }
  std::size_t size() const { return live_; }
  std::size_t capacity() const { return slots_.size(); }

 private:
  void grow();
  std::vector<outgoing_call> slots_;  // size 0 or a power of two
  std::size_t live_ = 0;
  std::uint32_t last_id_ = 0;
  std::uint64_t wraps_ = 0;  // times the id counter wrapped
};

}  // namespace bokbok::rpc
