// reconnector: what a connection opened with a reconnect_policy points to besides its
// current connection_impl. When the transport drops, it dials again with bounded
// exponential backoff; calls in flight at the drop fail (the inner connection fails
// them), calls made while reconnecting wait for the new connection up to their deadline.
// A closed inner connection is never handed out, even in the moment between its close
// and its close handler telling the reconnector, nor one that received the peer's goaway
// (to a blocking call); a blocking call whose request the dropped connection never wrote
// (not_sent_error), or that the peer's goaway refused unrun (unrun_refusal_error), is
// sent again on the next one.
//
// Threads: every member is thread-safe. No thread per drop: the backoff between
// attempts is a timer on the given event loop, and each attempt runs on the
// reconnector's own handler pool (one bounded "bokbok-handler" thread, which leaves
// when idle), because a dial may block (name resolution, a connect with its timeout,
// the wait for the peer's handshake, which itself runs on the loop). A pending timer or
// attempt holds the reconnector until it is done.
// Lifetime: shared by the public handles; the current inner connection is kept open by
// its own self-reference, as any connection. From close() or abort() until it has
// finished, it also holds itself (its last handle may be what closed it).
#pragma once

#include <any>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "bokbok/bokbok.hpp"
#include "io/loop.hpp"
#include "rpc/handler_pool.hpp"

namespace bokbok::detail {

class connection_impl;

class reconnector final : public std::enable_shared_from_this<reconnector> {
 public:
  // `dial` opens a connection with the options it is given, or throws.
  using dial_fn = std::function<std::shared_ptr<connection_impl>(const options&)>;
  // `loop` runs the backoff timers (the loop the dialled connections use).
  reconnector(dial_fn dial, options opts, reconnect_policy policy, std::shared_ptr<io::loop> loop);

  // Dials the first time; throws what dial throws.
  void start();
  // The connection to call on now. While reconnecting (or after the peer's goaway on the
  // current one), waits until the new one is up or `deadline` passes (then throws call_error(deadline_exceeded)); throws
  // transport_error once closed for good.
  std::shared_ptr<connection_impl> current(std::optional<steady_clock::time_point> deadline);
  // The same without waiting: throws transport_error while reconnecting.
  std::shared_ptr<connection_impl> current_now();
  // The latest inner connection, open or not (for accessors); never null after start().
  std::shared_ptr<connection_impl> latest() const;

  void close(std::chrono::milliseconds grace);
  void abort();
  bool closed() const;
  void wait_closed() const;
  std::string close_reason() const;
  std::any& user_data() { return user_data_; }

 private:
  options inner_options();
  // `mu_` held: cur_ is up and not closed (locks cur_'s own mutex: ours comes first).
  bool usable_locked() const;
  void dropped(std::shared_ptr<connection_impl> inner);
  void arm_backoff();     // loop thread
  void cancel_backoff();  // loop thread
  void attempt();         // pool thread
  void run_on_pool(std::function<void()> step);
  void finish_closed_while_redialling();
  void finish(std::shared_ptr<connection_impl> last, std::string reason);
  std::shared_ptr<connection_impl> stop_redialling();

  dial_fn dial_;
  options opts_;
  reconnect_policy policy_;
  std::any user_data_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::shared_ptr<connection_impl> cur_;
  bool up_ = false;           // cur_ is open (as far as we know)
  bool user_closed_ = false;  // close() / abort(): no more redialling
  bool final_ = false;        // closed for good, on_close has run
  std::string reason_;
  // From close() or abort() until finish(): this, so the close handler finds us.
  std::shared_ptr<reconnector> keep_until_final_;
  std::shared_ptr<io::loop> loop_;
  std::shared_ptr<rpc::handler_pool> dialer_;
  // The redial in progress, one step at a time (timer, attempt, timer...); guarded by mu_.
  std::shared_ptr<connection_impl> last_;  // the connection that dropped
  std::chrono::milliseconds delay_{};      // before the next attempt
  unsigned attempts_ = 0;
  io::timer_id backoff_timer_ = 0;         // loop thread only
};

}  // namespace bokbok::detail
