// stream_state: one stream call's state (PROTOCOL.md §12), at either end: the peer's
// messages received and not read yet, the credit each way, and how the call ended.
// bokbok::stream is a handle to it; the connection holds it in the call's slot
// (requester: call_table's outgoing_call; responder: connection_impl's inbound streams).
//
// Credit (design15 "Credit"): `send_messages`/`send_bytes` is what this side may still
// send (bytes may go negative: one message larger than the window goes once the window
// is granted whole); `grant_messages`/`grant_bytes` is what the peer may still send us
// (a message begun beyond it is a protocol violation); `consumed_*` counts what the
// application has read since the last grant, granted back at half the window.
//
// Threads: every member takes `mu`; none calls into the connection while holding it, so
// the connection may call them with its own mutex held (lock order: connection, then
// stream). Blocking waits (wait_*) run on application threads only.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <utility>

#include "bokbok/fd.hpp"
#include "bokbok/message.hpp"
#include "rpc/fd_queue.hpp"

namespace bokbok::detail {

class connection_impl;

struct stream_state {
  using clock = std::chrono::steady_clock;
  // What the credit bookkeeping decided for a message received.
  enum class receive_result { queued, beyond_credit, after_end };

  stream_state(bool requester, std::uint32_t window_messages, std::uint32_t window_bytes)
      : requester(requester), window_messages(window_messages), window_bytes(window_bytes) {}

  // Fixed once the call is registered (before any frame of it is read).
  const bool requester;
  const std::uint32_t window_messages, window_bytes;
  std::weak_ptr<connection_impl> conn;
  std::uint32_t id = 0;
  std::uint64_t seq = 0;  // requester: the call's seq (cancel_call)
  std::optional<clock::time_point> deadline;
  // The callback form (connection::open_stream): messages go here on the loop thread.
  std::function<void(message)> on_message;

  // Credit to send. Returns false (nothing taken) when out of credit now.
  bool take_send_credit(std::size_t bytes);
  void add_send_credit(std::uint32_t messages, std::uint32_t bytes);
  // This side grants the peer its initial window (and records it).
  void grant_initial();

  // A whole message of the peer's stream arrived (loop thread).
  // `regrant_*`: credit to grant back at once (after finish(), messages are dropped).
  // `fds`: those that came with it (PROTOCOL.md §13), kept with it until it is read.
  receive_result receive(message m, std::size_t bytes, std::uint32_t& regrant_messages,
                         std::uint32_t& regrant_bytes, rpc::received_fds fds = {});
  // The peer's stream ended (stream_end, or the answer on the requester's side).
  // false: it had ended already by a stream_end (a second one: a violation).
  bool end_incoming();
  // The call ended: `error` null for a normal answer (`response`), else why. Wakes every
  // waiter. Idempotent: the first ending wins.
  void end(std::exception_ptr error, message response = {});

  // Application side. Waits until a message, the end of the peer's stream, or the call's
  // failure; `until` bounds it (nullopt: the call's deadline only). On a message,
  // `regrant` is set to what to grant back now (zero when nothing).
  enum class read_status { message, ended, failed, timed_out, stopped };
  // The message's fds, if any, replace those of the message read before (take_fds()).
  read_status wait_read(std::optional<clock::time_point> until, message& out,
                        std::uint32_t& regrant_messages, std::uint32_t& regrant_bytes);
  // The fds of the message wait_read() returned last; taken once (stream::take_fds).
  fd_list take_fds();
  // Waits for credit for a message of `bytes` and takes it. false: the call ended (see
  // ended_error()), the deadline passed (`timed_out`) or the stop fired (`stopped`).
  bool wait_send_credit(std::size_t bytes, bool& timed_out, bool& stopped, bool blocking);

  // Flags, under mu.
  bool ended() const;
  std::exception_ptr ended_error() const;
  bool mark_write_closed();  // true the first time
  bool write_closed() const;
  // Responder: cancel() answered the call itself; the handler's return value is dropped.
  bool mark_answered();  // true the first time
  bool answered() const;
  // Requester finish(): drops the messages queued and any that come later, setting
  // `regrant_*` to the credit to grant back for them; then wait_end() waits for the
  // answer: returns the response or throws the error.
  void discard(std::uint32_t& regrant_messages, std::uint32_t& regrant_bytes);
  message wait_end();

 private:
  void consumed_locked(std::size_t bytes, std::uint32_t& regrant_messages,
                       std::uint32_t& regrant_bytes);
  void grant_back_locked(std::uint64_t messages, std::uint64_t bytes,
                         std::uint32_t& regrant_messages, std::uint32_t& regrant_bytes);
  mutable std::mutex mu;
  std::condition_variable_any cv;
  struct received {
    message m;
    std::size_t bytes;  // its encoded size
    rpc::received_fds fds;
  };
  std::deque<received> queue_;
  fd_list last_fds_;  // of the message read last, until taken
  bool in_ended_ = false;
  bool ended_ = false;
  bool write_closed_ = false;
  bool answered_ = false;
  std::exception_ptr error_;
  message response_;
  std::uint64_t send_messages_ = 0;
  std::int64_t send_bytes_ = 0;
  std::uint64_t grant_messages_ = 0;
  std::int64_t grant_bytes_ = 0;
  std::uint64_t consumed_messages_ = 0, consumed_bytes_ = 0;
  bool discard_ = false;  // finish(): further messages are dropped
};

}  // namespace bokbok::detail
