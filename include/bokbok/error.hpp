// The errors the public API throws. Every one derives from bokbok::error, so a caller
// can catch the family; the two that matter most are told apart by type:
//   remote_error    the far side received the call and refused or failed it (a
//                   call_error, like calls refused on this side before sending);
//   transport_error the call never got an answer because the connection could not be
//                   opened, broke, or was closed (with protocol_error for a peer that
//                   does not speak bokbok).
// Two more say the fault is not the peer's: usage_error (this program used the API
// wrongly: invalid options, a call where it cannot work) and resource_error (a
// transport_error: the system refused a thread, a file descriptor or memory this needed;
// only that one connection or call fails, the process goes on).
//
// Messages: what() is a C string and ends at the first NUL byte. Error texts from the
// peer are bytes (PROTOCOL.md §5.3) and may hold NULs: call_error::message() has the
// whole text.
#pragma once

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "bokbok needs C++20: compile with -std=c++20 (or later); g++ 12 defaults to C++17"
#endif

#include <cstdint>
#include <stdexcept>
#include <string>

#include "bokbok/export.hpp"

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
  bad_arguments = 10,     // the method exists but its arguments do not fit its signature
};

// Short stable name of a code ("handler_failed", ...); "unknown" for other values.
BOKBOK_API const char* to_string(error_code code) noexcept;

class BOKBOK_API error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The program used the API wrongly: an invalid option (a too-small max_message_size,
// keys.user without keys.key, ...), server::start() twice, or a blocking call on the
// event-loop thread. Fix the program; retrying does not help.
class BOKBOK_API usage_error : public error {
 public:
  using error::error;
};

// A call failed with a code: refused on this side before it was sent (too_large,
// shutting_down, busy when the send queue is full), ended on this side
// (deadline_exceeded, cancelled), or answered with an error by the peer (remote_error).
class BOKBOK_API call_error : public error {
 public:
  call_error(error_code code, const std::string& message)
      : error(message), code_(code), message_(message) {}
  error_code code() const noexcept { return code_; }
  // The whole message, NUL bytes included (what() stops at the first NUL). A handler
  // that throws a call_error sends this text.
  const std::string& message() const noexcept { return message_; }

 private:
  error_code code_;
  std::string message_;
};

// The peer answered the call with an error; message() is the peer's text, whole.
class BOKBOK_API remote_error : public call_error {
 public:
  using call_error::call_error;
};

// The connection could not be opened, failed, or closed before the answer came.
class BOKBOK_API transport_error : public error {
 public:
  using error::error;
};

// The system refused a resource this side needed for one connection or call: a thread
// (RLIMIT_NPROC, cgroup pids.max), a file descriptor (RLIMIT_NOFILE) or memory. Only
// that connection or call fails; the message names the resource and the system's error.
class BOKBOK_API resource_error : public transport_error {
 public:
  using transport_error::transport_error;
};

// The peer stopped answering heartbeats (options::heartbeat_interval): it may be
// stopped, hung or cut off. Pending calls fail with it; the connection is closed.
class BOKBOK_API peer_unresponsive_error : public transport_error {
 public:
  using transport_error::transport_error;
};

// The peer sent bytes that are not the bokbok protocol (stray output, bad frames).
class BOKBOK_API protocol_error : public transport_error {
 public:
  using transport_error::transport_error;
};

// Key mode: the peer refused our credentials, or we refused its. A client cannot tell
// an unknown user from a wrong key, by design; the message says so.
class BOKBOK_API authentication_error : public transport_error {
 public:
  using transport_error::transport_error;
};

// An address string could not be parsed; the message quotes it.
class BOKBOK_API address_error : public error {
 public:
  using error::error;
};

}  // namespace bokbok
