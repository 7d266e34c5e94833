// `bokbok bench`: bokbok against the physical limit of each transport, in one run.
// See bench.hpp for how the files divide the work.
#include "bench.hpp"

#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "command.hpp"

namespace bokbok::tools::bench {
namespace {

constexpr std::string_view help_text =
    "usage: bokbok bench [--quick] [--transport socketpair|pipe|unix|tcp|child|all]\n"
    "                    [--seconds N] [--pin same|split]\n"
    "                    [--only bulk|rate|connect|memory]\n"
    "                    [--malloc default|keep]\n"
    "\n"
    "Measures bokbok against a raw baseline over the same transport: a blocking\n"
    "length-prefixed echo (u32 length, bytes), written then read back whole, with the\n"
    "echo peer on its own thread. Both run in this process. The transports:\n"
    "  socketpair  an AF_UNIX socketpair\n"
    "  pipe        two pipes, one per direction\n"
    "  unix        a UNIX stream socket, connected through a listener in the abstract\n"
    "              namespace\n"
    "  tcp         a TCP connection over 127.0.0.1, TCP_NODELAY on both ends\n"
    "  child       a spawned child process over its stdin/stdout: the echo peer is this\n"
    "              program re-run as `bokbok bench --echo-peer raw|bokbok` (bokbok\n"
    "              connects with an exec: address); the child transport also measures\n"
    "              spawn-to-first-response: spawning the peer and one tiny round trip\n"
    "              (raw: the same program spawned on two pipes, one raw echo)\n"
    "For each transport it prints one line per figure:\n"
    "  rtt-median, rtt-p99  round trip of a tiny call, one caller (lower is better)\n"
    "  calls/s              calls per second from 16 threads on one connection, twice:\n"
    "                       against raw's one-caller rate (\"raw: 1 caller\"), and\n"
    "                       against raw pipelined (\"raw: 16 pipelined\": 16 requests\n"
    "                       written, then the 16 replies read, as a blocking echo can\n"
    "                       do; it cannot multiplex) (higher is better)\n"
    "  pipelined/s          calls per second with 16 in flight on one connection from\n"
    "                       one thread, as raw pipelined does it: 16 request_async\n"
    "                       calls, then their 16 futures waited on in order, against\n"
    "                       raw pipelined (higher is better)\n"
    "  x16-vs-x1            bokbok's 16-caller rate against its own one-caller rate\n"
    "rtt, calls/s and pipelined/s are measured twice: with the echo handler on a\n"
    "handler thread (the default) and inline on the event-loop thread\n"
    "(options::inline_handlers).\n"
    "  bulk-1MiB            MB/s echoing 1 MiB payloads, both directions counted, with\n"
    "                       glibc's malloc as it comes, then (\"malloc keeps big\n"
    "                       blocks\") in a second run of this program that raises\n"
    "                       malloc's mmap and trim thresholds (--malloc keep)\n"
    "Each transport but child is measured again in key mode (encrypted; lines marked\n"
    "\"key mode\", against the same raw figures), and over socketpairs:\n"
    "  handshakes/s         connections opened and closed per second, one at a time,\n"
    "                       key mode against plain\n"
    "                       (higher is better)\n"
    "and over a UNIX socket:\n"
    "  connects/s           connections per second from 4 client threads to one\n"
    "                       server, each opened, used for one tiny call and closed:\n"
    "                       bokbok::server (plain, then key mode) against raw (accept,\n"
    "                       echo, close) (higher is better)\n"
    "  idle-memory          bytes of resident memory a server process spends per idle\n"
    "                       connection (the growth of its VmRSS while this process\n"
    "                       opens 2,000 connections, each used for one tiny call; 300\n"
    "                       with --quick): bokbok::server in a child process (this\n"
    "                       program re-run as `bokbok bench --idle-server`), plain and\n"
    "                       key mode, against a raw child that only holds the accepted\n"
    "                       sockets (lower is better; no ratio: raw is near zero)\n"
    "Every response is checked against its request; a mismatch fails the run.\n"
    "\n"
    "options:\n"
    "  --quick           a short smoke run (under 10 s in all), for CI\n"
    "  --transport NAME  socketpair, pipe, unix, tcp, child, or all (default: all)\n"
    "  --seconds N       seconds per time-bounded figure (default 2, quick 0.3)\n"
    "  --pin same|split  CPU placement: same: every thread of both sides (callers, the\n"
    "                    echo peer thread, event-loop and handler threads, the child\n"
    "                    process) on one CPU; split: the client side (callers) on one\n"
    "                    CPU, the server side (echo peer thread, handler threads, child\n"
    "                    process) on another. The in-process bokbok pair shares one\n"
    "                    event-loop thread (the public API gives connect_fds none of\n"
    "                    its own); split puts it on the server CPU (child, and\n"
    "                    connects/s: on the client CPU, as it serves the client end\n"
    "                    only there). The CPUs\n"
    "                    are the first one or two this process may run on; split\n"
    "                    with fewer than 2 is bad usage. The placement of every\n"
    "                    thread is checked (/proc) while 16 callers run (and while\n"
    "                    the connects/s server runs) and printed\n"
    "                    per transport.\n"
    "                    Default: placement left to the scheduler.\n"
    "  --only bulk|rate|connect|memory\n"
    "                    measure only the bulk figures; or only calls/s with 16\n"
    "                    callers and pipelined/s, against raw pipelined; or only\n"
    "                    connects/s (unix); or only idle-memory (unix) (for profiling)\n"
    "  --malloc keep     glibc's malloc keeps big blocks: mmap threshold 64 MiB, trim\n"
    "                    threshold 256 MiB (mallopt), for every figure of the run;\n"
    "                    default: as it comes (a 1 MiB block is mmapped and returned\n"
    "                    when freed, until glibc's dynamic threshold rises)\n"
    "  --help            show this help\n"
    "\n"
    "Exit status: 0 when every figure was measured, 1 when a run failed, 2 bad usage.\n";

// Ends the process if one step of the run takes far longer than it may, so a hung
// transport fails CI instead of stalling it.
class watchdog {
 public:
  watchdog() : thread_([this] { watch(); }) {}
  ~watchdog() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_all();
    thread_.join();
  }

  void arm(std::string step, seconds_f budget) {
    std::lock_guard lock(mutex_);
    step_ = std::move(step);
    deadline_ =
        clock_type::now() + std::chrono::duration_cast<clock_type::duration>(budget);
    changed_.notify_all();
  }

 private:
  void watch() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      if (deadline_ != clock_type::time_point{} && clock_type::now() >= deadline_) {
        std::fprintf(stderr, "bokbok bench: %s is stuck; giving up\n", step_.c_str());
        std::_Exit(1);
      }
      if (deadline_ == clock_type::time_point{})
        changed_.wait(lock);
      else
        changed_.wait_until(lock, deadline_);
    }
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  bool stopping_ = false;
  std::string step_;
  clock_type::time_point deadline_{};
  std::thread thread_;  // last: starts after the members it uses
};

// The bulk figures: with malloc as this run has it, then, in a run of its own (malloc
// settings cannot be undone), with big blocks kept. Returns raw's figure.
double run_bulk(const transport& t, const settings& s, watchdog& dog, echo_client& raw,
                echo_client& bokbok) {
  const std::string name(t.name);
  const seconds_f budget = s.figure_time * 4 + seconds_f(20);
  dog.arm(name + ": bulk (raw)", budget);
  double raw_bulk = measure_bulk(raw, s);
  dog.arm(name + ": bulk (bokbok)", budget);
  double bokbok_bulk = measure_bulk(bokbok, s);
  print_figure({t.name, "bulk-1MiB", bokbok_bulk, raw_bulk, "MB/s", better::higher,
                s.malloc_keep ? "malloc keeps big blocks" : ""});
  if (!s.malloc_keep) {
    dog.arm(name + ": bulk with big blocks kept (a second run)", budget * 2 + seconds_f(30));
    run_bulk_with_big_blocks_kept(s, t.name);
  }
  return raw_bulk;
}

// 16 in flight from one thread with request_async, as raw pipelined does it.
void run_pipelined(const transport& t, const settings& s, watchdog& dog, echo_client& bokbok,
                   echo_client& bokbok_inline, double raw_pipelined) {
  const std::string name(t.name);
  const seconds_f budget = s.figure_time * 4 + seconds_f(20);
  const std::string note = std::to_string(s.callers) +
                           " request_async from one thread; raw: " +
                           std::to_string(s.callers) + " pipelined";
  dog.arm(name + ": pipelined (bokbok)", budget);
  print_figure({t.name, "pipelined/s", measure_pipelined(bokbok, s), raw_pipelined, "/s",
                better::higher, note});
  dog.arm(name + ": pipelined (bokbok, inline handler)", budget);
  print_figure({t.name, "pipelined/s", measure_pipelined(bokbok_inline, s), raw_pipelined,
                "/s", better::higher, "inline handler; " + note});
}

void run_connects(const transport& t, const settings& s, watchdog& dog) {
  const seconds_f budget = s.figure_time * 4 + seconds_f(20);
  dog.arm(std::string(t.name) + ": connects/s", budget * 4);
  // The clients' connections run on this process's shared event loop, which the
  // in-process pairs' figures put on the server CPU. Here it serves the clients only
  // (the server has loops of its own, started on the server CPU): so, for this figure,
  // it goes to the client CPU, and back afterwards.
  pin_event_loops(false);
  connect_rates cr = measure_connect_rates(s);
  pin_event_loops(true);
  print_figure({t.name, "connects/s", cr.plain, cr.raw, "/s", better::higher,
                "4 clients to one server: open, one call, close"});
  print_figure({t.name, "connects/s", cr.keyed, cr.raw, "/s", better::higher,
                "key mode; 4 clients to one server: open, one call, close"});
}

void run_idle_memory(const transport& t, watchdog& dog, const settings& s) {
  dog.arm(std::string(t.name) + ": idle-memory", seconds_f(120));
  idle_memory m = measure_idle_memory(s);
  const std::string n = std::to_string(m.connections) + " idle connections, server side";
  print_memory(t.name, m.plain, m.raw, n);
  print_memory(t.name, m.keyed, m.raw, "key mode; " + n);
}

void run_transport(const transport& t, const settings& s, watchdog& dog) {
  const std::string name(t.name);
  const seconds_f budget = s.figure_time * 4 + seconds_f(20);
  if (s.connect_only) {
    if (t.name == "unix") run_connects(t, s, dog);
    return;
  }
  if (s.memory_only) {
    if (t.name == "unix") run_idle_memory(t, dog, s);
    return;
  }

  dog.arm(name + ": opening the connections", seconds_f(30));
  auto raw = open_raw_echo(t.open_fds());
  auto bokbok = open_bokbok_echo(t, false);
  if (s.bulk_only) {
    run_bulk(t, s, dog, *raw, *bokbok);
    dog.arm(name + ": closing the connections", seconds_f(30));
    return;
  }
  auto bokbok_inline = open_bokbok_echo(t, true);
  if (s.rate_only) {
    dog.arm(name + ": calls/s (raw, pipelined)", budget);
    double raw_pipelined = measure_pipelined(*raw, s);
    dog.arm(name + ": calls/s (bokbok)", budget);
    const std::string note = "raw: " + std::to_string(s.callers) + " pipelined";
    print_figure({t.name, "calls/s", measure_rate(*bokbok, s), raw_pipelined, "/s",
                  better::higher, note});
    dog.arm(name + ": calls/s (bokbok, inline handler)", budget);
    print_figure({t.name, "calls/s", measure_rate(*bokbok_inline, s), raw_pipelined, "/s",
                  better::higher, "inline handler; " + note});
    run_pipelined(t, s, dog, *bokbok, *bokbok_inline, raw_pipelined);
    dog.arm(name + ": closing the connections", seconds_f(30));
    return;
  }

  dog.arm(name + ": rtt (raw)", budget);
  rtt_result raw_rtt = measure_rtt(*raw, s);
  dog.arm(name + ": rtt (bokbok)", budget);
  rtt_result bokbok_rtt = measure_rtt(*bokbok, s);
  print_figure({t.name, "rtt-median", percentile(bokbok_rtt.micros, 50),
                percentile(raw_rtt.micros, 50), "us", better::lower, ""});
  print_figure({t.name, "rtt-p99", percentile(bokbok_rtt.micros, 99),
                percentile(raw_rtt.micros, 99), "us", better::lower, ""});
  dog.arm(name + ": rtt (bokbok, inline handler)", budget);
  rtt_result inline_rtt = measure_rtt(*bokbok_inline, s);
  print_figure({t.name, "rtt-median", percentile(inline_rtt.micros, 50),
                percentile(raw_rtt.micros, 50), "us", better::lower, "inline handler"});
  print_figure({t.name, "rtt-p99", percentile(inline_rtt.micros, 99),
                percentile(raw_rtt.micros, 99), "us", better::lower, "inline handler"});

  dog.arm(name + ": calls/s (raw, pipelined)", budget);
  double raw_pipelined = measure_pipelined(*raw, s);
  dog.arm(name + ": calls/s (bokbok)", budget);
  // While 16 callers run, every thread of both sides (and the child) exists: check
  // where each may run.
  std::string where;
  double rate = measure_rate(*bokbok, s, [&] { where = check_placement(); });
  print_figure({t.name, "calls/s", rate, raw_rtt.calls_per_second, "/s", better::higher,
                "raw: 1 caller"});
  print_figure({t.name, "calls/s", rate, raw_pipelined, "/s", better::higher,
                "raw: " + std::to_string(s.callers) + " pipelined"});
  dog.arm(name + ": calls/s (bokbok, inline handler)", budget);
  double inline_rate = measure_rate(*bokbok_inline, s);
  print_figure({t.name, "calls/s", inline_rate, raw_rtt.calls_per_second, "/s",
                better::higher, "inline handler; raw: 1 caller"});
  print_figure({t.name, "calls/s", inline_rate, raw_pipelined, "/s", better::higher,
                "inline handler; raw: " + std::to_string(s.callers) + " pipelined"});
  print_figure({t.name, "x16-vs-x1", rate, bokbok_rtt.calls_per_second, "/s", better::higher,
                "bokbok 16 callers against bokbok 1 caller"});
  run_pipelined(t, s, dog, *bokbok, *bokbok_inline, raw_pipelined);

  double raw_bulk = run_bulk(t, s, dog, *raw, *bokbok);

  // Key mode (encrypted), against the same raw figures. The child peer is another
  // program that would need the key too: plain only there.
  if (t.name != child_transport.name) {
    dog.arm(name + ": key mode", budget * 3);
    auto keyed = open_bokbok_echo(t, false, true);
    rtt_result key_rtt = measure_rtt(*keyed, s);
    print_figure({t.name, "rtt-median", percentile(key_rtt.micros, 50),
                  percentile(raw_rtt.micros, 50), "us", better::lower, "key mode"});
    print_figure({t.name, "rtt-p99", percentile(key_rtt.micros, 99),
                  percentile(raw_rtt.micros, 99), "us", better::lower, "key mode"});
    print_figure({t.name, "calls/s", measure_rate(*keyed, s), raw_rtt.calls_per_second, "/s",
                  better::higher, "key mode; raw: 1 caller"});
    print_figure({t.name, "bulk-1MiB", measure_bulk(*keyed, s), raw_bulk, "MB/s",
                  better::higher, "key mode"});
  }
  if (t.name == "socketpair") {
    dog.arm(name + ": handshakes", budget * 2);
    double plain = measure_handshakes(s, false);
    double keyed = measure_handshakes(s, true);
    print_figure({t.name, "handshakes/s", keyed, plain, "/s", better::higher,
                  "key mode against plain: open and close one connection"});
  }
  if (t.name == "unix") {
    run_connects(t, s, dog);
    run_idle_memory(t, dog, s);
  }

  if (t.name == child_transport.name) {
    dog.arm(name + ": spawn to first response", budget * 2);
    spawn_result sp = measure_spawn(s);
    print_figure({t.name, "spawn-median", percentile(sp.bokbok_micros, 50),
                  percentile(sp.raw_micros, 50), "us", better::lower,
                  std::to_string(sp.bokbok_micros.size()) + " spawns each"});
  }

  print_placement(t.name, where);
  dog.arm(name + ": closing the connections", seconds_f(30));
}

double parse_seconds(std::string_view text) {
  std::string s(text);
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !(v > 0) || v > 600)
    throw usage_error("--seconds wants a number of seconds in (0, 600], not '" + s + "'");
  return v;
}

int run(args_view args) {
  settings s;
  bool quick = false;
  std::string transport_name = "all";
  double seconds = 0;
  pin_mode pin = pin_mode::none;

  arg_reader reader(args);
  while (!reader.done()) {
    std::string_view opt = reader.next();
    if (opt == "--quick") {
      reader.no_value();
      quick = true;
    } else if (opt == "--transport") {
      transport_name = reader.value();
    } else if (opt == "--only") {
      std::string_view v = reader.value();
      if (v == "bulk")
        s.bulk_only = true;
      else if (v == "rate")
        s.rate_only = true;
      else if (v == "connect")
        s.connect_only = true;
      else if (v == "memory")
        s.memory_only = true;
      else
        throw usage_error("--only wants bulk, rate, connect or memory, not '" + std::string(v) +
                          "'");
    } else if (opt == "--malloc") {
      std::string_view v = reader.value();
      if (v == "keep")
        s.malloc_keep = true;
      else if (v != "default")
        throw usage_error("--malloc wants default or keep, not '" + std::string(v) + "'");
    } else if (opt == "--idle-server") {  // internal: the idle-memory figure's server
      std::string name(reader.value());
      return serve_idle_server(name, reader.value());
    } else if (opt == "--echo-peer") {
      return serve_echo_peer(reader.value());  // internal: the child transport's peer
    } else if (opt == "--pin") {
      std::string_view v = reader.value();
      s.pin_arg = v;
      if (v == "same")
        pin = pin_mode::same;
      else if (v == "split")
        pin = pin_mode::split;
      else
        throw usage_error("--pin wants same or split, not '" + std::string(v) + "'");
    } else if (opt == "--seconds") {
      s.seconds_arg = reader.value();
      seconds = parse_seconds(s.seconds_arg);
    } else if (opt.starts_with("-")) {
      throw usage_error("unknown option '" + std::string(opt) + "'");
    } else {
      throw usage_error("unexpected argument '" + std::string(opt) + "'");
    }
  }

  std::vector<const transport*> chosen;
  if (transport_name == "all") {
    for (const transport& t : all_transports()) chosen.push_back(&t);
  } else if (const transport* t = find_transport(transport_name)) {
    chosen.push_back(t);
  } else {
    throw usage_error("unknown transport '" + transport_name +
                      "' (socketpair, pipe, unix, tcp, child or all)");
  }

  if (s.malloc_keep) keep_big_blocks();  // before any thread starts
  if (quick && s.seconds_arg.empty()) s.seconds_arg = "0.3";
  if (quick) {
    s.figure_time = seconds_f(0.3);
    s.rtt_calls = 2'000;
    s.rtt_warmup = 200;
  }
  if (seconds > 0) s.figure_time = seconds_f(seconds);

  // The raw baseline writes to pipes whose reader may be gone; we want EPIPE, not death.
  std::signal(SIGPIPE, SIG_IGN);

  remember_cpus();
  // Before any thread starts: they inherit the client CPU from this one.
  set_placement(choose_placement(pin));
  print_header(s, quick);
  watchdog dog;
  int failures = 0;
  for (const transport* t : chosen) {
    try {
      run_transport(*t, s, dog);
    } catch (const std::exception& e) {
      ++failures;
      print_failure(t->name, e.what());
    }
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace bokbok::tools::bench

namespace bokbok::tools {

const command bench_command = {
    "bench",
    "measure bokbok against a raw echo over the same transport",
    bench::help_text,
    bench::run,
    nullptr,
};

}  // namespace bokbok::tools
