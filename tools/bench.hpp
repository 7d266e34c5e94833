// `bokbok bench`, internals shared by its files:
//   bench.cpp            the subcommand: options, the order of the figures, the watchdog
//   bench_transport.cpp  the transports: descriptor pairs, and bokbok connections on them
//   bench_raw.cpp        the raw baseline: blocking length-prefixed echo, peer thread
//   bench_bokbok.cpp     the same echo through a pair of bokbok connections
//   bench_child.cpp      the spawned-child transport (the echo peer is this program
//                        re-run as `bokbok bench --echo-peer KIND`) and spawn latency
//   bench_measure.cpp    the measurement loops (latency, concurrent rate, bulk) and the
//                        sanity checks on every answer
//   bench_report.cpp     statistics and the printed lines
//
// The raw baseline and bokbok both implement echo_client, so every figure is measured by
// the same loop on both sides.
#pragma once

#include <bokbok/bokbok.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/unique_fd.hpp"

namespace bokbok::tools::bench {

using clock_type = std::chrono::steady_clock;
using seconds_f = std::chrono::duration<double>;

struct settings {
  seconds_f figure_time{2.0};       // each time-bounded figure runs this long
  std::size_t rtt_calls = 20'000;   // measured tiny calls (fewer if figure_time runs out)
  std::size_t rtt_warmup = 1'000;   // unmeasured tiny calls first
  unsigned callers = 16;            // threads calling at once on one connection
  std::size_t tiny_size = 16;       // payload of a tiny call, bytes
  std::size_t bulk_size = 1 << 20;  // payload of a bulk call, bytes
};

// A sanity check failed: an answer was not the echo of its request.
class check_failed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---- transports (bench_transport.cpp) ----------------------------------------------

// One end of a link: reads from `in`, writes to `out`, or to `in` too when `out` is empty
// (a socket).
struct endpoint {
  base::unique_fd in;
  base::unique_fd out;
  int read_fd() const { return in.get(); }
  int write_fd() const { return out ? out.get() : in.get(); }
};

struct fd_link {
  endpoint caller;
  endpoint peer;  // empty when the peer is another process (child)
  // The child process at the far end, if any: kept until the link is done with.
  std::shared_ptr<void> child;
};

struct bokbok_pair {
  connection caller;
  std::optional<connection> peer;  // empty when the peer is another process
};

struct transport {
  std::string_view name;
  fd_link (*open_fds)();  // a fresh link, for the raw baseline
  // A fresh pair of bokbok connections over the same kind of link, handshake done.
  bokbok_pair (*open_bokbok)(const options& caller, const options& peer);
};

std::span<const transport> all_transports();
const transport* find_transport(std::string_view name);

// ---- what is measured --------------------------------------------------------------

class echo_client {
 public:
  virtual ~echo_client() = default;
  // Sends `payload` as one request and replaces it with the response's bytes. Throws
  // check_failed if the response is not shaped like an echo (the caller compares bytes).
  // Thread-safe only if concurrent() is true.
  virtual void round_trip(std::string& payload) = 0;
  virtual bool concurrent() const = 0;
};

// bench_raw.cpp: starts the echo peer thread on link.peer; the caller uses link.caller.
std::unique_ptr<echo_client> open_raw_echo(fd_link link);

// bench_bokbok.cpp: a bokbok pair over `t` whose peer answers every request with itself.
// `inline_handlers`: the peer runs its echo handler on its event-loop thread
// (options::inline_handlers) rather than on a handler thread.
// `keys`: both ends in key mode (encrypted), with a fresh random key.
std::unique_ptr<echo_client> open_bokbok_echo(const transport& t, bool inline_handlers,
                                              bool keys = false);

// Options for a key-mode pair: the caller as user "bench", the peer accepting it.
void use_bench_keys(options& caller, options& peer);

// Connections opened (handshake done) and closed per second over socketpairs, one at a
// time, in key mode or plain.
double measure_handshakes(const settings& s, bool keys);

// bench_raw.cpp: the raw echo loop over (in, out) until EOF; the peer side.
void run_raw_echo_peer(int in_fd, int out_fd);

// ---- the child transport (bench_child.cpp) ------------------------------------------

extern const transport child_transport;
// `bokbok bench --echo-peer raw|bokbok|bokbok-inline`: serves the echo on stdin/stdout.
int serve_echo_peer(std::string_view kind);

struct spawn_result {
  std::vector<double> bokbok_micros;  // spawn to first response, one per spawn
  std::vector<double> raw_micros;
};
// Spawns the echo peer again and again (alternating raw and bokbok) and times each
// spawn up to its first answer.
spawn_result measure_spawn(const settings& s);

// ---- measurements (bench_measure.cpp) ----------------------------------------------

struct rtt_result {
  std::vector<double> micros;   // one round trip each, in measurement order
  double calls_per_second = 0;  // measured calls / their total time (one caller)
};

rtt_result measure_rtt(echo_client& echo, const settings& s);
// Calls per second from s.callers threads sharing `echo` (which must be concurrent()).
double measure_rate(echo_client& echo, const settings& s);
// Bulk echo throughput in MB/s (10^6 bytes), counting the bytes of both directions.
double measure_bulk(echo_client& echo, const settings& s);

// ---- statistics and printing (bench_report.cpp) -------------------------------------

// The p-th percentile (0 <= p <= 100) of `values`, nearest rank; 0 when empty.
double percentile(std::vector<double> values, double p);

enum class better { lower, higher };

struct figure {
  std::string_view transport;
  std::string_view name;  // "rtt-median", ...
  double bokbok;
  double raw;
  std::string_view unit;  // "us", "calls/s", "MB/s"
  better direction;
  std::string note;  // printed after the direction, may be empty
};

void print_header(const settings& s, bool quick);
void print_figure(const figure& f);
void print_failure(std::string_view transport, const std::string& why);

}  // namespace bokbok::tools::bench
