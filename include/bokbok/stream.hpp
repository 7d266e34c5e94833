// bokbok::stream: one stream call (PROTOCOL.md §12, README "Streams"), either end.
//
// A stream call opens like a request (connection::open_stream, a request flagged
// STREAM) and then carries a stream of messages each way: the requester's (write() on
// the requester, read() on the responder) until close_write(), and the responder's
// (write() in the handler, read() on the requester) until the handler returns. The
// handler's return value is the final response; what it throws is the error answer, as
// for any request. The call's deadline covers the whole call.
//
// Flow control: each direction has a window of credit (options::stream_window_messages
// and stream_window_bytes) that the reader grants as the application reads; a writer
// out of credit blocks in write() (holding no lock of the connection), so a reader that
// stops reading holds the writer at one window plus one message. A stream never holds
// up other calls: its messages are interleaved with responses and requests, its credit
// and end frames are sent as control frames.
//
// Thread-safety: a stream is a shared handle; copies refer to the same call. Every
// member may be called from any thread, but messages are taken in order: one reader and
// one writer at a time make sense (two writers interleave whole messages in some order).
// Never call the blocking members (write, read, finish) on the connection's event-loop
// thread (a response callback, an inline handler): they throw usage_error there.
//
// Lifetime: the requester's call ends when the answer arrives (or on cancel, deadline,
// connection loss). Dropping the last handle of a call opened by the blocking form of
// open_stream before then cancels it, as cancel() does (nothing could read its messages
// or answer any more); call finish() to wait for the answer. The callback form's call is
// kept by its callbacks: its handles may go. The responder's stream ends when its
// handler returns: a handle kept beyond that fails write() with call_error(cancelled),
// and read() returns nullopt.
#pragma once

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "bokbok needs C++20: compile with -std=c++20 (or later); g++ 12 defaults to C++17"
#endif

#include <chrono>
#include <memory>
#include <optional>
#include <utility>

#include "bokbok/export.hpp"
#include "bokbok/fd.hpp"
#include "bokbok/message.hpp"

namespace bokbok {

namespace detail {
struct stream_state;
}

class BOKBOK_API stream {
 public:
  stream() = default;
  // False for an empty handle (this_call::stream() in an ordinary call).
  explicit operator bool() const noexcept { return s_ != nullptr; }

  // Sends one message of this side's stream. Blocks while out of credit or while the
  // connection's send queue is full, until the call's deadline. Throws
  // call_error(cancelled | deadline_exceeded | shutting_down), remote_error (the peer
  // already answered with an error), transport_error (the connection failed or closed),
  // call_error(too_large) for a message above the negotiated maximum, usage_error after
  // close_write(); call_error(cancelled) once the call has ended normally (answered).
  void write(message m);
  // The same with file descriptors (README "File descriptors"): they go with the message
  // and are the connection's from the call on. Throws usage_error before anything is
  // sent, as connection::request_with_fds does, when the connection cannot carry fds or
  // for more than 253.
  void write(message m, fd_list fds);
  // Non-blocking write: false (m untouched) when out of credit or the send queue is
  // full now; throws like write() when the call has ended.
  bool try_write(message& m);
  // Requester: ends its stream (sends stream_end); idempotent. Responder: usage_error
  // (its stream ends when the handler returns).
  void close_write();

  // The next message of the peer's stream, in order; nullopt once it has ended
  // (stream_end, or the answer on the requester's side). Blocks until one comes or the
  // call's deadline passes. Throws like write() when the call failed: remote_error with
  // the peer's error once every message before it has been read.
  std::optional<message> read();
  // The same, waiting at most until `deadline` (call_error(deadline_exceeded) then; the
  // call goes on and read() may be called again).
  std::optional<message> read(std::chrono::steady_clock::time_point deadline);

  // The fds that came with the message read() returned last (empty if none); taken
  // once. Those not taken are closed when the next message is read or the stream goes.
  // The callback form of open_stream delivers messages without their fds (closed).
  fd_list take_fds();

  // Requester: cancels the call (a cancel frame; the handler's stop token fires);
  // pending and later reads and writes throw call_error(cancelled). Responder: answers
  // error(cancelled) at once; the handler's return value is then dropped.
  void cancel();

  // Requester only: close_write() if not done yet, drops messages not read yet and
  // waits for the answer: returns the final response, throws like request() (remote_error
  // for an error answer). Responder: usage_error.
  message finish();

  // Internal: made by connection::open_stream and this_call::stream().
  explicit stream(std::shared_ptr<detail::stream_state> s) noexcept : s_(std::move(s)) {}

 private:
  std::optional<message> read_until(std::optional<std::chrono::steady_clock::time_point> until);
  std::shared_ptr<detail::stream_state> s_;
};

}  // namespace bokbok
