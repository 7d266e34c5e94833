// Our calls on a connection (README "Robust calls"): call, call_sync and notify with
// deadlines, cancellation and backpressure (room in the send queue), and the answers
// that end them. Threads: call, call_sync, notify and cancel_call from any thread; the
// deadline timer, answers and end_call_locally on the loop thread.
#include <algorithm>
#include <cstring>

#include "base/log.hpp"
#include "base/spinning.hpp"
#include "rpc/callback_error.hpp"
#include "rpc/connection_impl.hpp"
#include "rpc/error_ptr.hpp"
#include "wire/message_codec.hpp"

namespace bokbok::detail {

namespace {

// This thread's waker for blocking calls: made on its first, then reused.
const std::shared_ptr<rpc::thread_waker>& this_thread_waker() {
  thread_local std::shared_ptr<rpc::thread_waker> waker = std::make_shared<rpc::thread_waker>();
  return waker;
}

// The DEADLINE prefix for a deadline `left` away: whole milliseconds rounded up, 1 to
// ffffffff (PROTOCOL.md §8.2).
std::uint32_t deadline_prefix(io::clock::duration left) {
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<std::uint32_t>(std::clamp<long long>(ms, 1, 0xffffffffLL));
}

// The fds of the answer whose response callback deliver_answers runs now on this
// thread (null outside one): a thread-local, so that the callback type stays
// (error, message) for every call that carries no fds.
thread_local fd_list* answer_fds = nullptr;

}  // namespace

std::uint64_t connection_impl::call(message request, response_callback done,
                                    const call_options& opts, bool blocking,
                                    rpc::sync_wait* waiter, std::vector<base::unique_fd> fds,
                                    std::shared_ptr<stream_state> stream) {
  // The call's deadline and stop token: its own, and the running handler's (inherited).
  const auto deadline = effective_deadline(opts);
  std::stop_token stop = opts.stop;
  if (auto* h = current_handler(); h && !stop.stop_possible()) stop = h->stop_token();
  if (deadline && *deadline <= io::clock::now()) {
    done(error_ptr<call_error>(error_code::deadline_exceeded,
                               "the call's deadline had passed before it was sent"), {});
    return 0;
  }
  if (stop.stop_requested()) {
    done(error_ptr<call_error>(error_code::cancelled, "the call was cancelled before it was sent"), {});
    return 0;
  }
  wire::gathered_message framed = encode_framed(std::move(request));
  std::unique_lock lock(mu_);
  std::exception_ptr refused;
  if (life_.state() == phase::open && !life_.refuses_new_calls()) {
    if (auto why = too_large_locked("request", framed))
      refused = error_ptr<call_error>(error_code::too_large, *why);
    else
      wait_for_room_locked(lock, blocking, deadline, stop, refused);
  }
  if (!refused && life_.state() != phase::open) refused = not_sent_error_locked();
  if (!refused && life_.refuses_new_calls())
    refused = refused_error_locked();
  if (refused) {
    lock.unlock();
    done(std::move(refused), {});
    return 0;
  }
  pending_call& pc = calls_.start();
  const std::uint32_t id = pc.id;
  const std::uint64_t seq = pc.seq;
  pc.done = std::move(done);
  pc.waiter = waiter;
  pc.deadline = deadline;
  if (stream) {
    stream->id = id;
    stream->grant_initial();
    pc.stream = stream;
  }
  // Only a deadline earlier than the one armed needs the loop to move the timer.
  const bool rearm = deadline && (!deadline_armed_ || *deadline < *deadline_armed_);
  if (rearm) deadline_armed_ = deadline;
  std::optional<std::uint32_t> prefix;
  if (deadline && features_deadline_) prefix = deadline_prefix(*deadline - io::clock::now());
  send_.set_direct_request(id);  // send_now_locked marks it when a gone peer took nothing of it
  queue_message_locked(lock, wire::frame_type::request, id, std::move(framed), prefix,
                       std::move(fds), stream ? wire::flag_stream : 0);
  send_.set_direct_request(0);
  bool post = false;
  if (stream) {
    // The initial credit follows the request at once: no round trip (§12 "Credit").
    std::string rec;
    wire::append_frame(rec, wire::frame_type::credit, 0, id,
                       wire::encode_credit_payload({cfg_.opts.stream_window_messages,
                                                    cfg_.opts.stream_window_bytes}));
    send_.queue().push_record_bytes(rec);
    post = flush_wanted_locked();
  }
  lock.unlock();
  if (post) post_flush();
  if (rearm) cfg_.loop->post([self = shared_from_this()] { self->arm_deadline_timer(); });
  if (stop.stop_possible()) {
    // May run at once (stop already requested): cancel_call only posts.
    auto on_stop = std::make_unique<std::stop_callback<std::function<void()>>>(
        stop, std::function<void()>([weak = weak_from_this(), seq] {
          if (auto self = weak.lock()) self->cancel_call(seq, error_code::cancelled);
        }));
    lock.lock();
    if (auto* c = calls_.find_seq(seq)) c->on_stop = std::move(on_stop);
    lock.unlock();  // on_stop, if the call is over already, goes here, unlocked
  }
  return seq;
}

fd_list connection_impl::take_answer_fds() {
  if (!answer_fds) return {};
  return std::move(*answer_fds);
}

void connection_impl::run_response_callback(response_callback& done, std::exception_ptr error,
                                            message response) noexcept {
  guard_callback(cfg_.opts.on_callback_error, "response callback",
                 [&] { done(std::move(error), std::move(response)); });
}

message connection_impl::call_sync(message request, const call_options& opts,
                                   std::vector<base::unique_fd> fds, fd_list* received) {
  if (cfg_.loop->in_loop_thread())
    throw usage_error(
        "bokbok: request() would block the event loop thread it waits on (called from an "
        "inline handler or a response callback); use request_async there");
  // The wait lives here and in the call's slot: an answer fills it in place
  // (deliver_answers); any other end of the call comes through the callback, which holds
  // two pointers (kept inside the std::function, no allocation).
  rpc::sync_wait w;
  w.waker = this_thread_waker();
  rpc::handler_pool::blocking_scope blocked;  // a nested call frees its handler slot
  if (blocked.refused())
    throw call_error(error_code::busy,
                     "busy: " + std::to_string(blocked.limit()) +
                         " handler threads already wait in nested calls "
                         "(max_waiting_handlers); this one would grow the process further");
  call(
      std::move(request),
      [this, &w](std::exception_ptr e, message m) { end_sync_wait(w, std::move(e), std::move(m)); },
      opts, /*blocking=*/true, &w, std::move(fds));
  // No mutex for the wait: `done` is set last, after the answer (sync_wait). First a
  // bounded spin (base/spinning.hpp: when another CPU may be making the answer), then
  // the park, which returns at once if the spin saw it.
  auto answered = [&] { return w.done.load(std::memory_order_seq_cst); };
  base::spinning spin;
  spin.spin_until(answered, cfg_.opts.caller_spin);
  w.waker->park.park_until(answered);
  if (w.error) std::rethrow_exception(w.error);
  if (received) *received = std::move(w.fds);
  return std::move(w.response);
}

// Any thread, `mu_` not held. Unparked after unlocking, so that the caller, woken, does
// not find the mutex still held. The waker is copied first and `done` set last: the
// caller's `w` is gone as soon as it sees `done`.
void connection_impl::end_sync_wait(rpc::sync_wait& w, std::exception_ptr error,
                                    message response) {
  std::shared_ptr<rpc::thread_waker> waker;
  {
    std::lock_guard lock(mu_);
    waker = w.waker;
    w.error = std::move(error);
    w.response = std::move(response);
    w.done.store(true, std::memory_order_seq_cst);
  }
  waker->park.unpark();
}

void connection_impl::notify(message m, std::vector<base::unique_fd> fds) {
  wire::gathered_message framed = encode_framed(std::move(m));
  std::unique_lock lock(mu_);
  std::exception_ptr refused;
  if (life_.state() != phase::open) {
    refused = closed_error_locked();
  } else if (life_.refuses_new_calls()) {
    refused = refused_error_locked();
  } else if (!features_notify_) {
    refused = error_ptr<call_error>(error_code::no_such_method,
                                    "the peer " + cfg_.peer + " does not take notifications");
  } else if (auto why = too_large_locked("notification", framed)) {
    refused = error_ptr<call_error>(error_code::too_large, *why);
  } else {
    // A handler's thread is shared by every connection: it is refused busy, not held
    // (whether or not a context was made for its call).
    const bool in_handler = current_handler() != nullptr;
    wait_for_room_locked(lock, !in_handler, std::nullopt, std::stop_token(), refused);
    if (!refused && life_.state() != phase::open) refused = not_sent_error_locked();
  }
  if (refused) {
    lock.unlock();
    std::rethrow_exception(refused);
  }
  std::uint32_t id = next_notify_id_++;
  if (id == 0) id = next_notify_id_++;
  queue_message_locked(lock, wire::frame_type::notify, id, std::move(framed), std::nullopt,
                       std::move(fds));
}

// `mu_` held. Room means the outbox holds less than max_send_queue; the loop thread
// never waits (reading pauses instead, see on_data).
bool connection_impl::wait_for_room_locked(std::unique_lock<std::mutex>& lock, bool blocking,
                                           const std::optional<io::clock::time_point>& deadline,
                                           const std::stop_token& stop,
                                           std::exception_ptr& why) {
  const std::size_t bound = cfg_.opts.max_send_queue;
  if (send_.queued_bytes() < bound || cfg_.loop->in_loop_thread()) return true;
  if (!blocking) {
    why = error_ptr<call_error>(error_code::busy,
                                "the send queue to " + cfg_.peer + " is full (" +
                                    std::to_string(send_.queued_bytes()) + " bytes, bound " +
                                    std::to_string(bound) + "): the peer is not reading");
    return false;
  }
  auto room = [&] { return life_.state() != phase::open || send_.queued_bytes() < bound; };
  ++room_waiters_;
  bool ok = deadline ? room_cv_.wait_until(lock, stop, *deadline, room)
                     : room_cv_.wait(lock, stop, room);
  --room_waiters_;
  if (ok) return true;
  if (stop.stop_requested())
    why = error_ptr<call_error>(error_code::cancelled,
                                "the call was cancelled while waiting for room to send");
  else
    why = error_ptr<call_error>(error_code::deadline_exceeded,
                                "the call's deadline passed while waiting for room to send");
  return false;
}

// `mu_` held, loop thread: the outbox shrank. Wakes waiting senders, takes the requests
// that may start now (into `start`, for the caller to start unlocked: a handler that
// waited for room, see defer_while_send_full) and resumes reading.
void connection_impl::after_dequeue_locked(std::vector<queued_call>& start) {
  const std::size_t bound = cfg_.opts.max_send_queue;
  if (room_waiters_ && send_.queued_bytes() < bound) room_cv_.notify_all();
  while (auto next = take_startable_locked()) start.push_back(std::move(*next));
  // `<=`: with a bound of 1, half of it is 0, reached once the outbox is empty.
  if (reading_paused_ && stream_ && send_.queued_bytes() <= bound / 2) {
    reading_paused_ = false;
    if (budget_paused_) return;  // resume_after_budget() starts it
    stream_->start_reading();
    // Records read before the pause wait in frames_: handle them now.
    cfg_.loop->post([self = shared_from_this()] {
      if (self->stream_) self->on_data({});
    });
  }
}

void connection_impl::cancel_call(std::uint64_t seq, error_code code) {
  if (seq == 0) return;
  cfg_.loop->post([self = shared_from_this(), seq, code] { self->end_call_locally(seq, code); });
}

// Loop thread: sets the one deadline timer for deadline_armed_.
void connection_impl::arm_deadline_timer() {
  std::optional<io::clock::time_point> when;
  {
    std::lock_guard lock(mu_);
    if (life_.state() != phase::open) return;
    when = deadline_armed_;
  }
  if (deadline_timer_) cfg_.loop->cancel_timer(deadline_timer_);
  deadline_timer_ = 0;
  if (when)
    deadline_timer_ = cfg_.loop->add_timer(*when, [weak = weak_from_this()] {
      if (auto self = weak.lock()) self->sweep_deadlines();
    });
}

// Loop thread: the earliest deadline came. Ends the calls whose deadline passed and sets
// the timer for the next one (calls answered meanwhile are simply gone from calls_).
void connection_impl::sweep_deadlines() {
  deadline_timer_ = 0;
  const auto now = io::clock::now();
  std::vector<std::uint64_t> expired;
  {
    std::lock_guard lock(mu_);
    std::optional<io::clock::time_point> next;
    calls_.for_each([&](const pending_call& pc) {
      if (!pc.deadline) return;
      if (*pc.deadline <= now)
        expired.push_back(pc.seq);
      else if (!next || *pc.deadline < *next)
        next = pc.deadline;
    });
    deadline_armed_ = next;
  }
  arm_deadline_timer();
  for (auto seq : expired) end_call_locally(seq, error_code::deadline_exceeded);
}

// Loop thread: our call `seq` ends here (cancelled, its deadline passed, or refused
// here with `why`): the caller is told at once, the peer gets a cancel, and a late
// answer will find no call.
void connection_impl::end_call_locally(std::uint64_t seq, error_code code, std::string why) {
  pending_call pc;
  {
    std::unique_lock lock(mu_);
    pending_call* c = calls_.find_seq(seq);
    if (!c) return;
    const std::uint32_t id = c->id;
    pc = calls_.take(*c);
    if (life_.state() == phase::open) {
      std::string rec;
      wire::append_frame(rec, wire::frame_type::cancel, 0, id, {});
      queue_record_locked(lock, rec);
    }
  }
  if (why.empty())
    why = code == error_code::cancelled
              ? "the call was cancelled"
              : "the call's deadline passed before the answer came";
  run_response_callback(pc.done, error_ptr<call_error>(code, std::move(why)), {});
  live_.active(io::clock::now());
  close_if_drained();
}

void connection_impl::handle_error_frame(const wire::frame_view& f) {
  auto [code, text] = wire::parse_code_payload(f.payload);
  complete_call(f.call_id, error_ptr<remote_error>(static_cast<error_code>(code), std::string(text)), {});
}

// Loop thread: an answer to our call `id` (or the error it ended with) came; it ends the
// call in deliver_answers(), with the other answers of the same read.
void connection_impl::complete_call(std::uint32_t id, std::exception_ptr error, message response,
                                    fd_list fds) {
  answers_.push_back({id, std::move(error), std::move(response), {}, std::move(fds)});
}

// Loop thread: ends the calls answered in this read under one acquisition of the mutex.
// An id we no longer wait for (late, or never ours) is ignored. Blocking callers get
// their answer in place and are woken after unlocking; callbacks run unlocked, and the
// calls taken are destroyed unlocked (a stop callback's destructor may wait for it).
//
// Callbacks run newest answer first. A callback that completes a future (request_async)
// wakes the thread waiting on it at once, and on a shared CPU the woken thread runs
// before this one goes on. A thread that pipelines waits for its oldest call, whose
// answer came first: completed first, it would wake for that one answer, find the next
// future not yet done, and sleep again, two context switches per call. Completed last,
// it wakes once to find every answer of the read ready.
void connection_impl::deliver_answers() {
  std::vector<answer> batch;
  batch.swap(answers_);  // a callback may read more (it runs on this thread): kept apart
  bool going_away = false;
  {
    std::lock_guard lock(mu_);
    // Only a connection going away may close once drained; a goaway said after this
    // lock checks the drain itself (close_if_drained in its own path).
    going_away = life_.going_away();
    for (auto& a : batch) {
      pending_call* c = calls_.find(a.id);
      if (!c) {
        base::log_limited(log_level::debug, "connection", "answers dropped: no call waited",
                          cfg_.peer + ": dropped an answer to call " + std::to_string(a.id) +
                              ": no call waits for it (late, or never ours)");
        continue;
      }
      a.call = calls_.take(*c);
      if (rpc::sync_wait* w = a.call.waiter) {
        to_wake_.push_back(w->waker);  // copied first: `w` may be gone once `done` is set
        w->error = std::move(a.error);
        w->response = std::move(a.response);
        w->fds = std::move(a.fds);
        w->done.store(true, std::memory_order_seq_cst);
      }
    }
  }
  for (auto& waker : to_wake_) waker->park.unpark();
  to_wake_.clear();
  live_.active(io::clock::now());
  // Newest first (above). Not views::reverse: clang 14 rejects it with libstdc++ 12.
  for (auto it = batch.rbegin(); it != batch.rend(); ++it)
    if (answer& a = *it; a.call.id && !a.call.waiter) {
      answer_fds = &a.fds;  // lent to the callback (take_answer_fds); closed after
      run_response_callback(a.call.done, std::move(a.error), std::move(a.response));
      answer_fds = nullptr;
    }
  batch.clear();
  if (answers_.empty()) answers_.swap(batch);  // keeps its capacity for the next read
  if (going_away) close_if_drained();  // no second lock per read otherwise
}

}  // namespace bokbok::detail
