// Statistics and output of `bokbok bench`: one line per figure, each line complete on
// its own (transport, figure, both values, the ratio and which direction is better), so
// that CI logs can be grepped and compared.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "bench.hpp"

#ifndef BOKBOK_VERSION
#define BOKBOK_VERSION "unknown"
#endif

namespace bokbok::tools::bench {
namespace {

// A value in its unit, right-aligned in a fixed width: "    18.2 us  ", "   52340 /s   ".
std::string format_value(double v, std::string_view unit) {
  char buf[64];
  int decimals = unit == "us" ? 1 : 0;
  std::snprintf(buf, sizeof buf, "%8.*f %-4.*s", decimals, v, int(unit.size()),
                unit.data());
  return buf;
}

// "1 MiB", "64 KiB", "100 bytes".
std::string size_text(std::size_t bytes) {
  if (bytes % (1u << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  if (bytes % 1024 == 0) return std::to_string(bytes >> 10) + " KiB";
  return std::to_string(bytes) + " bytes";
}

}  // namespace

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  auto rank = std::size_t(std::ceil(p / 100.0 * double(values.size())));
  rank = std::clamp<std::size_t>(rank, 1, values.size());
  return values[rank - 1];
}

void print_header(const settings& s, bool quick) {
  const char* backend = std::getenv("BOKBOK_BACKEND");
  std::printf(
      "bokbok bench %s%s: bokbok against a raw blocking length-prefixed echo over the\n"
      "same transport, both in this process with the echo peer on its own thread\n"
      "(child: the echo peer is a spawned process).\n"
      "%u CPUs, backend %s, %.1f s per figure, ratio = bokbok / raw.\n"
      "  rtt-median, rtt-p99  one caller, %zu-byte echoes, up to %zu calls\n"
      "  calls/s              bokbok: %u caller threads on one connection; raw: its\n"
      "                       one-caller rate, and pipelined (%u written, then %u read:\n"
      "                       a blocking echo cannot multiplex)\n"
      "  bulk-1MiB            MB/s (10^6 bytes) echoing %s, both directions counted\n"
      "  spawn-median         child only: spawn the peer, one tiny round trip\n"
      "  idle-memory          unix only: resident bytes per idle connection of a server\n"
      "                       process, against one that only holds the sockets\n"
      "%s.\n"
      "malloc: %s.\n"
      "\n",
      BOKBOK_VERSION, quick ? " (quick)" : "", std::thread::hardware_concurrency(),
      backend ? backend : "default", s.figure_time.count(), s.tiny_size, s.rtt_calls,
      s.callers, s.callers, s.callers, size_text(s.bulk_size).c_str(),
      describe_placement().c_str(),
      s.malloc_keep ? "keeps big blocks (--malloc keep)" : "glibc's default");
  std::fflush(stdout);
}

void print_figure(const figure& f) {
  double ratio = f.raw > 0 ? f.bokbok / f.raw : 0;
  std::printf("%-10.*s  %-12.*s  bokbok %s  raw %s  ratio %6.2fx  (%s%s%s)\n",
              int(f.transport.size()), f.transport.data(), int(f.name.size()),
              f.name.data(), format_value(f.bokbok, f.unit).c_str(),
              format_value(f.raw, f.unit).c_str(), ratio,
              f.direction == better::lower ? "lower is better" : "higher is better",
              f.note.empty() ? "" : "; ", f.note.c_str());
  std::fflush(stdout);
}

void print_memory(std::string_view transport, double bokbok, double raw, const std::string& note) {
  std::printf("%-10.*s  %-12s  bokbok %8.0f B/conn  raw %8.0f B/conn  (lower is better; %s)\n",
              int(transport.size()), transport.data(), "idle-memory", bokbok, raw, note.c_str());
  std::fflush(stdout);
}

void print_placement(std::string_view transport, const std::string& where) {
  std::printf("%-10.*s  placement     %s\n", int(transport.size()), transport.data(),
              where.c_str());
  std::fflush(stdout);
}

void print_failure(std::string_view transport, const std::string& why) {
  std::fflush(stdout);
  std::fprintf(stderr, "bokbok bench: %.*s FAILED: %s\n", int(transport.size()),
               transport.data(), why.c_str());
}

}  // namespace bokbok::tools::bench
