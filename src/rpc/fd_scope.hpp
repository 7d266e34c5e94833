// The fds of the request or notification a handler runs (this_call::take_fds) and those
// it attaches to its response (this_call::attach_fds): on the handler's stack, found
// through a thread-local pointer while it runs (rpc/connection_fds.cpp).
#pragma once

#include "bokbok/fd.hpp"

namespace bokbok::detail {

class connection_impl;

struct handler_fds {
  connection_impl* conn = nullptr;
  fd_list received;               // not taken: closed when the handler returns
  fd_list* attach = nullptr;      // null for a notification (no response)
};

class handler_fds_scope {
 public:
  explicit handler_fds_scope(handler_fds* h) noexcept;
  ~handler_fds_scope();
  handler_fds_scope(const handler_fds_scope&) = delete;
  handler_fds_scope& operator=(const handler_fds_scope&) = delete;

 private:
  handler_fds* saved_;
};

}  // namespace bokbok::detail
