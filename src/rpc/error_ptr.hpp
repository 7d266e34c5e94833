// error_ptr: builds an exception_ptr holding a new E.
//
// Why not std::make_exception_ptr(E(...)) at the call site: that temporary E shares its
// message buffer (reference counted inside libstdc++) with the stored copy and dies only
// at the end of the caller's full expression — after the callback it was handed to may
// already have woken another thread that read and dropped it. Building it here keeps
// every temporary inside this function, so the only owner that leaves is the pointer.
// Likewise, give each waiter its own pointer rather than sharing one across threads.
#pragma once

#include <exception>
#include <utility>

namespace bokbok::detail {

template <class E, class... Args>
std::exception_ptr error_ptr(Args&&... args) {
  return std::make_exception_ptr(E(std::forward<Args>(args)...));
}

}  // namespace bokbok::detail
