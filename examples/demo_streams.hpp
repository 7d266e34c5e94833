// bokbok-demo-server's stream methods (PROTOCOL.md §12), registered on its router.
//   count N            stream:out   streams "1", "2", ... "N" (one field each), answers N
//   tail               stream:both  streams back each message of the caller's stream as
//                                   it arrives; answers the count when that stream ends
//   sum                stream:in    reads messages of integers (decimal, any number of
//                                   fields each); answers their sum
//   produce BYTES CHUNK stream:out  streams BYTES bytes in messages of one field of CHUNK
//                                   bytes (the last may be shorter); answers produced BYTES
//   cancel-after N     stream:out   streams "1".."N", then cancels the call itself (the
//                                   caller gets the error cancelled)
// The handlers hold at most one message at a time: the server's memory for a stream is
// the library's (the credit window and the send queue), whatever the caller reads.
#pragma once

#include <bokbok/router.hpp>

namespace demo {

void add_stream_methods(bokbok::router& r);

}  // namespace demo
