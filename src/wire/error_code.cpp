// Names of the ERROR frame codes (PROTOCOL.md §7).
#include "bokbok/error.hpp"

namespace bokbok {

const char* to_string(error_code code) noexcept {
  switch (code) {
    case error_code::handler_failed: return "handler_failed";
    case error_code::no_such_method: return "no_such_method";
    case error_code::busy: return "busy";
    case error_code::too_large: return "too_large";
    case error_code::cancelled: return "cancelled";
    case error_code::deadline_exceeded: return "deadline_exceeded";
    case error_code::shutting_down: return "shutting_down";
    case error_code::protocol: return "protocol";
    case error_code::not_authorized: return "not_authorized";
    case error_code::bad_arguments: return "bad_arguments";
  }
  return "unknown";
}

}  // namespace bokbok
