#include "rpc/callback_error.hpp"

#include <cstdio>
#include <string>

namespace bokbok::detail {

namespace {

void print_line(std::exception_ptr error, std::string_view where) {
  std::string what = "a non-standard exception";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  std::fprintf(stderr, "bokbok: %.*s threw: %s\n", int(where.size()), where.data(),
               what.c_str());
}

}  // namespace

void report_callback_error(const callback_error_handler& hook, std::exception_ptr error,
                           std::string_view where) noexcept {
  if (hook) {
    try {
      hook(error, where);
      return;
    } catch (...) {
      // The hook failed too: fall back to the line on stderr.
    }
  }
  try {
    print_line(error, where);
  } catch (...) {
    // Out of memory for the text: nothing more can be said.
  }
}

}  // namespace bokbok::detail
