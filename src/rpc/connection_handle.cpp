// The bokbok::connection handle over one connection_impl, which rpc gives request,
// notify and close handlers. The rest of the public handle (forwarding, and the
// reconnecting form) is api/connection.cpp, a layer above.
#include "bokbok/connection.hpp"

#include <utility>

namespace bokbok {

connection::connection(std::shared_ptr<detail::connection_impl> impl) : impl_(std::move(impl)) {}

}  // namespace bokbok
