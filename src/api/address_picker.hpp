// address_picker: how a client dials a tcp: address that names several addresses (a
// list, or a host name resolving to several) per options::address_choice, and skips,
// with backoff, the addresses that failed.
//
// Each dial resolves every name again (a DNS change is seen at the next redial), orders
// the addresses (first_healthy: as resolved; round_robin: rotated to start one further
// than the previous dial, the first dial of each picker one further than the previous
// picker's in this process), puts the addresses still in their backoff last (soonest
// ending first), then tries them in turn until one connects and opens.
// An address that fails (connect, or opening: the peer closed, spoke no bokbok, timed
// out) starts a backoff of reconnect_policy::initial_delay, doubling with each further
// failure up to max_delay; one that opens is forgotten (its backoff reset). Memory is
// bounded: state is kept only for the addresses the latest resolution gave.
//
// Threads: dial() may be called from any thread, one dial at a time per picker (the
// reconnector dials from its one pool thread); a mutex guards the state.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "bokbok/connection.hpp"
#include "transport/address.hpp"
#include "transport/sockets.hpp"

namespace bokbok::detail {

class connection_impl;

class address_picker {
 public:
  // Opens a connection over a connected socket (non-blocking, its kind stated: it is
  // for the event loop); throws transport_error (or a subclass) when that fails.
  using open_fn = std::function<std::shared_ptr<connection_impl>(transport::connected_socket)>;

  address_picker(transport::tcp_address where, address_choice choice,
                 std::chrono::milliseconds initial_backoff, std::chrono::milliseconds max_backoff);

  // Dials as described above, each connect within `connect_timeout`. When a single
  // address was tried and opening it failed, throws what `open` threw; otherwise throws
  // transport_error naming every address tried and why each failed ("bokbok: cannot
  // connect to tcp:a:1,b:2: 10.0.0.1:1: Connection refused; ..."), exactly as
  // connect_socket does for a single address; authentication_error from `open` at
  // once (a key problem is not a dead backend).
  std::shared_ptr<connection_impl> dial(std::chrono::milliseconds connect_timeout,
                                        const open_fn& open);

 private:
  using clock = std::chrono::steady_clock;
  struct backoff {
    std::chrono::milliseconds delay;
    clock::time_point until;
  };
  void failed_locked(const std::string& name);

  const transport::tcp_address where_;
  const std::string name_;
  const address_choice choice_;
  const std::chrono::milliseconds initial_, max_;
  std::mutex mu_;
  unsigned next_start_;
  std::map<std::string, backoff> failed_;  // by address text ("tcp:127.0.0.1:7000")
};

}  // namespace bokbok::detail
