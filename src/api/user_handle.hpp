// user_handle: the handles the connect functions give the application, which keep a
// client connection open (include/bokbok/connection.hpp, "Lifetime").
//
// Every handle made here and its copies share one user_hold; when the last of them goes,
// the connection is closed gracefully (connection::close with its default grace), as if
// the application had called close(): a connection to a child then releases the child,
// whose loop reaps it. Handles made elsewhere (those a handler or close handler
// receives, a server's connections) carry no hold: copying them keeps the connection's
// memory, not the connection, alive.
//
// Threads: the hold may go on any thread, the loop's included; it only posts the close
// to the connection's loop, so it never blocks and never takes a connection's lock.
#pragma once

#include <memory>

#include "bokbok/connection.hpp"

namespace bokbok::detail {

// A handle that keeps `impl` (or, when reconnecting, `reconnect`) open while it or a
// copy of it exists.
connection user_handle(std::shared_ptr<connection_impl> impl,
                       std::shared_ptr<reconnector> reconnect = nullptr);

}  // namespace bokbok::detail
