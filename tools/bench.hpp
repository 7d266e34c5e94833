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
//   bench_pin.cpp        CPU placement (--pin same|split) and its check
//   bench_connect.cpp    connection set-up: 4 clients opening, calling once, closing
//
// The raw baseline and bokbok both implement echo_client, so every figure is measured by
// the same loop on both sides.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <bokbok/bokbok.hpp>

#include <chrono>
#include <functional>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bokbok::tools::bench {

using clock_type = std::chrono::steady_clock;
using seconds_f = std::chrono::duration<double>;

struct settings {
  seconds_f figure_time{2.0};       // each time-bounded figure runs this long
  std::size_t rtt_calls = 20'000;   // measured tiny calls (fewer if figure_time runs out)
  std::size_t rtt_warmup = 1'000;   // unmeasured tiny calls first
  unsigned callers = 16;            // threads calling at once on one connection, and the
                                    // raw pipelined baseline's requests in flight
  std::size_t tiny_size = 16;       // payload of a tiny call, bytes
  std::size_t bulk_size = 1 << 20;  // payload of a bulk call, bytes
  bool bulk_only = false;           // --only bulk: the bulk figures and nothing else
  bool rate_only = false;           // --only rate: 16 in flight against raw pipelined
  bool connect_only = false;        // --only connect: connects/s (unix) and nothing else
  bool memory_only = false;         // --only memory: idle-memory (unix) and nothing else
  bool malloc_keep = false;         // --malloc keep: glibc keeps big blocks (mallopt)
  // How the run was started, for the child run that measures with big blocks kept.
  std::string pin_arg, seconds_arg;
};

// A sanity check failed: an answer was not the echo of its request.
class check_failed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---- CPU placement (bench_pin.cpp) -------------------------------------------------

enum class pin_mode { none, same, split };

struct placement {
  pin_mode mode = pin_mode::none;
  int client_cpu = -1;  // same: both sides' CPU
  int server_cpu = -1;
};

// The CPUs for `mode`, the first one or two this process may run on. Throws usage_error
// when split finds fewer than 2.
placement choose_placement(pin_mode mode);
// Called once by run() on the main thread before any other thread starts: pins the
// calling thread to the client CPU (usage_error if the system refuses).
void set_placement(const placement& p);
const placement& current_placement();
// The placement, as the header prints it.
std::string describe_placement();

// While alive (split only), the calling thread runs on the server CPU, so the threads
// and processes it starts inherit that; the client CPU again afterwards.
class server_side_scope {
 public:
  server_side_scope();
  ~server_side_scope();
  server_side_scope(const server_side_scope&) = delete;
  server_side_scope& operator=(const server_side_scope&) = delete;

 private:
  bool active_;
};

// Pins the calling thread to the server CPU (when pinning).
void pin_this_thread_to_server();
// Pins this process's event-loop threads ("bokbok-loop") to the server CPU when they
// serve the in-process peer end too, else to the client CPU (when pinning).
void pin_event_loops(bool shared_with_server);
// Reads the affinity of every thread of this process and of its children; throws
// check_failed when one is not where its role says (pinned modes). Returns a summary:
// per CPU list, the thread names found there.
std::string check_placement();
// The same for the connects/s figure, while its server runs: this process's shared loop
// serves the clients, on the client CPU; the server's loops and handler threads are on
// the server CPU. Throws check_failed when not (pinned modes).
void check_connect_placement();

// ---- transports (bench_transport.cpp) ----------------------------------------------

// One end of a link: a read and a write descriptor (one socket for both), and for the
// child transport the child process, released when the end is closed.
using endpoint = byte_channel;

struct fd_link {
  endpoint caller;
  endpoint peer;  // empty when the peer is another process (child)
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
  // Pipelining, for a client that can send without waiting (the raw baseline): writes
  // one request / reads the next response. Default: unsupported (throws).
  virtual bool pipelines() const { return false; }
  virtual void send_request(const std::string& payload);
  virtual void receive_response(std::string& payload);
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

// bench_connect.cpp: connections per second from 4 client threads to one server over a
// UNIX socket, each connection opened, used for one tiny call, and closed: the raw
// baseline (connect, echo, close), a bokbok::server in plain mode, and in key mode.
struct connect_rates {
  double raw = 0, plain = 0, keyed = 0;
};
connect_rates measure_connect_rates(const settings& s);
// A name no other bench socket of this run uses ("bokbok-bench-<what>-<pid>-<n>"), and
// its address in the abstract UNIX namespace (usage_error for a name too long for it).
std::string unique_name(const char* what);
sockaddr_un abstract_address(const std::string& name, socklen_t& len);

// bench_idle.cpp: the resident memory a server process spends per idle connection over
// a UNIX socket (bytes), its server in a child process: bokbok::server plain and key
// mode, against a raw child that only holds the accepted sockets.
struct idle_memory {
  std::size_t connections = 0;
  double raw = 0, plain = 0, keyed = 0;
};
idle_memory measure_idle_memory(const settings& s);
// `bokbok bench --idle-server NAME plain|key|raw`: that child, listening on the abstract
// UNIX socket NAME until its stdin ends.
int serve_idle_server(const std::string& name, std::string_view kind);

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
// `while_running`, if set, runs once on the calling thread while the callers run.
double measure_rate(echo_client& echo, const settings& s,
                    const std::function<void()>& while_running = {});
// Calls per second pipelining s.callers requests: all written, then all read, again and
// again (echo must pipelines()).
double measure_pipelined(echo_client& echo, const settings& s);
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
// bench_malloc.cpp: glibc's malloc told to keep big blocks (see there).
void keep_big_blocks();
// Called once at the start, before pinning: the CPUs the second run may choose from.
void remember_cpus();
// Runs this program again with --only bulk --malloc keep for transport `t` and prints
// its bulk-1MiB lines: the same figures measured with big blocks kept, raw and bokbok
// from that one run. Throws check_failed when the child run fails.
void run_bulk_with_big_blocks_kept(const settings& s, std::string_view t);
void print_figure(const figure& f);
// A memory figure: bytes per connection, bokbok and raw, no ratio (raw is near zero).
void print_memory(std::string_view transport, double bokbok, double raw, const std::string& note);
void print_failure(std::string_view transport, const std::string& why);
// Where the threads were while 16 callers ran (check_placement()'s summary).
void print_placement(std::string_view transport, const std::string& where);

}  // namespace bokbok::tools::bench
