// The frame trace of a connection (options::trace, BOKBOK_TRACE): where its lines go, and
// the hooks the connection calls where frames are received and sent. The lines
// themselves are wire::trace_line's (wire/frame_trace.hpp).
//
// Cost when off: the connection keeps an empty sink and tests it (one branch) at each
// hook. When on, the connection sends every record through the loop's batches (its
// direct-write short cut is off), so each record is traced whole, once, in wire order,
// before key mode seals it.
//
// Threads: the sink is called on the loop thread (frames received, batches written),
// with the connection's mutex held for batches; it must be quick and must not call the
// connection.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "rpc/outbox.hpp"
#include "wire/frame.hpp"

namespace bokbok::rpc {

using trace_sink = std::function<void(std::string_view line)>;

// The sink a connection to `peer` uses: `option` when set; else, when the environment
// has BOKBOK_TRACE set to anything but "" or "0", one that writes
// "bokbok trace PEER: LINE\n" to stderr in one write(); else an empty sink (no trace).
trace_sink choose_trace_sink(const trace_sink& option, const std::string& peer);

// A frame received (after key mode opened it).
void trace_received(const trace_sink& sink, const wire::frame_view& f);

// Every frame of a batch about to be written (plain: before key mode seals it). The
// batch holds whole records (outbox.hpp).
void trace_sent(const trace_sink& sink, const batch& b);

}  // namespace bokbok::rpc
