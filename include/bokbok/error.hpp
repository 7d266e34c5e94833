// The errors the public API throws. Every one derives from bokbok::error, so a caller
// can catch the family; the two that matter most are told apart by type:
//   remote_error    the far side received the call and refused or failed it (a
//                   call_error, like calls refused on this side before sending);
//   transport_error the call never got an answer because the connection could not be
//                   opened, broke, or was closed (with protocol_error for a peer that
//                   does not speak bokbok).
#pragma once

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "bokbok needs C++20: compile with -std=c++20 (or later); g++ 12 defaults to C++17"
#endif

#include <cstdint>
#include <stdexcept>
#include <string>

namespace bokbok {

// Codes carried by ERROR frames (see src/wire/PROTOCOL.md). Values are wire-stable.
enum class error_code : std::uint16_t {
  handler_failed = 1,     // the remote handler threw; what() holds its message
  no_such_method = 2,     // the remote side has no handler for this request
  busy = 3,               // the remote side's handler queue is full
  too_large = 4,          // the message exceeds the negotiated maximum size
  cancelled = 5,          // the call was cancelled
  deadline_exceeded = 6,  // the call's deadline passed
  shutting_down = 7,      // the remote side is closing and takes no new calls
  protocol = 8,           // the remote side could not decode what we sent
  not_authorized = 9,     // the remote side does not accept us (peer credentials)
};

// Short stable name of a code ("handler_failed", ...); "unknown" for other values.
const char* to_string(error_code code) noexcept;

class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A call failed with a code: refused on this side before it was sent (too_large,
// shutting_down, busy when the send queue is full), ended on this side
// (deadline_exceeded, cancelled), or answered with an error by the peer (remote_error).
class call_error : public error {
 public:
  call_error(error_code code, const std::string& message) : error(message), code_(code) {}
  error_code code() const noexcept { return code_; }

 private:
  error_code code_;
};

// The peer answered the call with an error; what() is the peer's message.
class remote_error : public call_error {
 public:
  using call_error::call_error;
};

// The connection could not be opened, failed, or closed before the answer came.
class transport_error : public error {
 public:
  using error::error;
};

// The peer stopped answering heartbeats (options::heartbeat_interval): it may be
// stopped, hung or cut off. Pending calls fail with it; the connection is closed.
class peer_unresponsive_error : public transport_error {
 public:
  using transport_error::transport_error;
};

// The peer sent bytes that are not the bokbok protocol (stray output, bad frames).
class protocol_error : public transport_error {
 public:
  using transport_error::transport_error;
};

// Key mode: the peer refused our credentials, or we refused its. A client cannot tell
// an unknown user from a wrong key, by design; the message says so.
class authentication_error : public transport_error {
 public:
  using transport_error::transport_error;
};

// An address string could not be parsed; the message quotes it.
class address_error : public error {
 public:
  using error::error;
};

}  // namespace bokbok
