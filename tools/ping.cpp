// `bokbok ping ADDR`: a health probe for exec checks (a Kubernetes liveness probe, a
// monitoring script): exit 0 when a bokbok server at ADDR answers within the timeout.
//
// What counts as an answer: the protocol's opening exchange (PROTOCOL.md §2-§4), which a
// server's event loop answers itself with its preamble and hello, then a graceful close
// (§8.4). No request is made, so no handler of the server runs and nothing it does is
// touched; a server that accepts but does not speak bokbok, or whose loop is stuck,
// fails the probe.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "bokbok/bokbok.hpp"
#include "command.hpp"
#include "connect_flags.hpp"
#include "trace_option.hpp"

namespace bokbok::tools {
namespace {

constexpr std::string_view help_text =
    "usage: bokbok ping [--timeout SECONDS] [--quiet] [-v] ADDRESS\n"
    "\n"
    "Checks that a bokbok server at ADDRESS (tcp:HOST:PORT, unix:PATH, unix:@NAME)\n"
    "answers: connects, completes the protocol's opening exchange (the server's\n"
    "preamble and hello) and closes gracefully, all within the timeout. No request is\n"
    "made: no handler of the server runs. For exec health probes (Kubernetes liveness\n"
    "and readiness probes, scripts). A key-mode server refuses a plain client: ping\n"
    "reports that as a failure.\n"
    "\n"
    "options:\n"
    "  --timeout SECONDS  give up after SECONDS (decimals allowed; default 5), as\n"
    "                     `bokbok call --timeout` counts\n"
    "  --quiet            print nothing; the exit status says it all\n"
    "  -v, --trace        print every frame sent and received, decoded, on stderr\n"
    "\n"
    "Prints \"ADDRESS answered in N ms\" on success, why not on stderr otherwise.\n"
    "Exit status: 0 the server answered; 1 it did not (refused, timed out, not a bokbok\n"
    "server); 2 bad usage.\n";

int run_ping(args_view args) {
  connect_flags flags;  // --timeout only: ping has no key mode
  flags.timeout = 5;
  bool quiet = false;
  bool trace = false;
  std::string address;
  arg_reader reader(args);
  while (!reader.done()) {
    std::string_view a = reader.next();
    if (flags.take(a, reader, /*keys=*/false)) {
    } else if (is_trace_option(a)) {
      reader.no_value();
      trace = true;
    } else if (a == "--quiet" || a == "-q") {
      reader.no_value();
      quiet = true;
    } else if (a.starts_with("-")) {
      throw usage_error("unknown option " + std::string(a));
    } else if (address.empty()) {
      address = a;
    } else {
      throw usage_error("one ADDRESS only");
    }
  }
  const std::chrono::milliseconds timeout(static_cast<long long>(flags.timeout * 1000 + 0.5));
  if (address.empty()) throw usage_error("ping needs an ADDRESS");
  auto fail = [&](const std::string& why) {
    if (!quiet) std::fprintf(stderr, "bokbok ping: %s: %s\n", address.c_str(), why.c_str());
    return 1;
  };
  const auto start = std::chrono::steady_clock::now();
  try {
    options o;
    o.connect_timeout = timeout;
    o.heartbeat_interval = std::chrono::milliseconds(0);
    if (trace) trace_to_stderr(o, "bokbok ping");
    connection c = connect(address, o);
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    c.close(std::chrono::milliseconds(0));
    c.wait_closed();
    if (took > timeout)
      return fail("answered only after " + std::to_string(took.count()) + " ms (timeout " +
                  std::to_string(timeout.count()) + " ms)");
    if (!quiet) std::printf("%s answered in %lld ms\n", address.c_str(), (long long)took.count());
    return 0;
  } catch (const usage_error&) {
    throw;
  } catch (const bokbok::address_error& e) {
    throw usage_error(without_prefix(e.what()));
  } catch (const std::exception& e) {
    return fail(without_prefix(e.what()));
  }
}

}  // namespace

const command ping_command{"ping", "check that a server answers (health probes)", help_text,
                           run_ping, nullptr};

}  // namespace bokbok::tools
