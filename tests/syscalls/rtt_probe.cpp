// rtt_probe N: makes N tiny calls (one short field each, echoed back) over a pair of
// connections on a socketpair, one caller, the echo handler on a handler thread (the
// default; inline on the loop thread when RTT_PROBE_INLINE is set), then closes. With
// RTT_PROBE_CONNECTS set, opens N connections one after another to a bokbok::server on
// an abstract UNIX socket instead (on 127.0.0.1 when RTT_PROBE_TCP is set too), each
// used for one tiny call, closed and waited for.
// Only the public API. syscalls_per_rtt.sh and futex_wakes_per_rtt.sh run it under
// strace with two values of N: the difference in system calls, divided by the
// difference in N, is the cost of one round trip (or connection), setup and teardown
// cancelling out.
// Exit status: 0 when every response matched its request, 1 otherwise, 2 bad usage.
#include <bokbok/bokbok.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

// RTT_PROBE_CONNECTS: N connections to a server, one call each.
int connects(long n) {
  bokbok::server_options o;
  o.listen = {std::getenv("RTT_PROBE_TCP") ? std::string("tcp:127.0.0.1:0")
                                           : "unix:@bokbok-rtt-probe-" + std::to_string(::getpid())};
  o.on_request = [](bokbok::connection&, bokbok::message m) { return m; };
  bokbok::server s(o);
  s.start();
  const std::string address = s.local_addresses().at(0);
  int status = 0;
  for (long i = 0; i < n && status == 0; ++i) {
    auto c = bokbok::connect(address);
    if (c.request({"tiny"}) != bokbok::message{"tiny"}) {
      std::fprintf(stderr, "rtt_probe: connection %ld: wrong response\n", i);
      status = 1;
    }
    c.close();
    c.wait_closed();
  }
  s.stop();
  s.wait();
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: rtt_probe N\n");
    return 2;
  }
  long n = std::strtol(argv[1], nullptr, 10);
  if (n < 0 || n > 10'000'000) return 2;
  if (std::getenv("RTT_PROBE_CONNECTS")) return connects(n);
  bokbok::options caller, peer;
  peer.on_request = [](bokbok::connection&, bokbok::message m) { return m; };
  peer.inline_handlers = std::getenv("RTT_PROBE_INLINE") != nullptr;
  auto [a, b] = bokbok::connect_socketpair(caller, peer);
  int status = 0;
  for (long i = 0; i < n; ++i) {
    bokbok::message request;
    request.push_back(std::string("tiny") + std::to_string(i % 10000));
    bokbok::message response = a.request(std::move(request));
    if (response.size() != 1 || response[0] != "tiny" + std::to_string(i % 10000)) {
      std::fprintf(stderr, "rtt_probe: call %ld: wrong response\n", i);
      status = 1;
      break;
    }
  }
  a.close();
  a.wait_closed();
  b.wait_closed();
  return status;
}
