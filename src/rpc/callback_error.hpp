// callback_error: the one path by which exceptions from application callbacks that have
// nobody to answer to (options::on_callback_error, server_options::on_callback_error)
// are reported instead of ending the process.
//
// Threads: any; the hook runs on the calling thread. Never throws.
#pragma once

#include <exception>
#include <string_view>

#include "bokbok/connection.hpp"

namespace bokbok::detail {

// Hands `error` to `hook`; unset, or when the hook throws too: one line on stderr,
// "bokbok: <where> threw: <what>".
void report_callback_error(const callback_error_handler& hook, std::exception_ptr error,
                           std::string_view where) noexcept;

// Runs `f()`; what it throws is reported as above and swallowed. True when it returned.
template <class F>
bool guard_callback(const callback_error_handler& hook, std::string_view where, F&& f) noexcept {
  try {
    f();
    return true;
  } catch (...) {
    report_callback_error(hook, std::current_exception(), where);
    return false;
  }
}

}  // namespace bokbok::detail
