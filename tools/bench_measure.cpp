// The measurement loops of `bokbok bench`, run identically on the raw baseline and on
// bokbok. Every answer is checked against what was sent, so a transport that loses,
// reorders or corrupts bytes fails the run instead of printing a pretty figure:
//   - every payload carries a unique call id in its first and last 8 bytes (and in the
//     middle when it is large); every response must carry the id of its request;
//   - the other bytes follow a fixed pattern (all 256 byte values, NULs included),
//     compared in full on every tiny call and on every 8th and the last bulk call (a
//     corrupted byte is echoed back in later calls, so it cannot hide between checks).
// Checks run outside the timed intervals.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <pthread.h>
#include <thread>

#include "bench.hpp"

namespace bokbok::tools::bench {
namespace {

std::string pattern(std::size_t size) {
  std::string p(size, '\0');
  for (std::size_t i = 0; i < size; ++i) p[i] = char((i * 131 + 17) & 0xff);
  return p;
}

// Where the call id goes: the first and last 8 bytes, and an aligned middle one.
std::size_t stamp_offsets(std::size_t size, std::size_t out[3]) {
  out[0] = 0;
  out[1] = size - 8;
  if (size < 32) return 2;
  out[2] = (size / 2) & ~std::size_t(7);
  return 3;
}

void stamp(std::string& payload, std::uint64_t id) {
  std::size_t at[3];
  std::size_t n = stamp_offsets(payload.size(), at);
  for (std::size_t i = 0; i < n; ++i) std::memcpy(payload.data() + at[i], &id, 8);
}

void check_echo(const std::string& got, const std::string& reference, std::uint64_t id,
                bool full, const char* what) {
  if (got.size() != reference.size())
    throw check_failed(std::string(what) + ": response of " + std::to_string(got.size()) +
                       " bytes to a request of " + std::to_string(reference.size()));
  std::size_t at[3];
  std::size_t n = stamp_offsets(got.size(), at);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t seen;
    std::memcpy(&seen, got.data() + at[i], 8);
    if (seen != id)
      throw check_failed(std::string(what) + ": the response to call " +
                         std::to_string(id) + " carries the id " + std::to_string(seen));
  }
  if (!full) return;
  std::sort(at, at + n);
  std::size_t from = 0;
  for (std::size_t i = 0; i <= n; ++i) {
    std::size_t to = i < n ? at[i] : got.size();
    if (std::memcmp(got.data() + from, reference.data() + from, to - from) != 0)
      throw check_failed(std::string(what) + ": the response to call " +
                         std::to_string(id) + " differs from the request");
    if (i < n) from = at[i] + 8;
  }
}

double elapsed_seconds(clock_type::time_point since) {
  return seconds_f(clock_type::now() - since).count();
}

}  // namespace

rtt_result measure_rtt(echo_client& echo, const settings& s) {
  const std::string reference = pattern(s.tiny_size);
  std::string payload = reference;
  std::uint64_t id = 0;
  auto call = [&] {
    stamp(payload, ++id);
    auto t0 = clock_type::now();
    echo.round_trip(payload);
    auto t1 = clock_type::now();
    check_echo(payload, reference, id, true, "tiny call");
    return t1 - t0;
  };

  auto start = clock_type::now();
  for (std::size_t i = 0;
       i < s.rtt_warmup && elapsed_seconds(start) < s.figure_time.count() / 4; ++i)
    call();

  rtt_result r;
  r.micros.reserve(s.rtt_calls);
  clock_type::duration busy{};
  start = clock_type::now();
  while (r.micros.size() < s.rtt_calls &&
         elapsed_seconds(start) < s.figure_time.count()) {
    auto d = call();
    busy += d;
    r.micros.push_back(std::chrono::duration<double, std::micro>(d).count());
  }
  r.calls_per_second = double(r.micros.size()) / seconds_f(busy).count();
  return r;
}

void echo_client::send_request(const std::string&) {
  throw std::logic_error("bench: this echo client cannot pipeline");
}
void echo_client::receive_response(std::string&) {
  throw std::logic_error("bench: this echo client cannot pipeline");
}

double measure_rate(echo_client& echo, const settings& s,
                    const std::function<void()>& while_running) {
  std::atomic<std::uint64_t> calls{0};
  std::atomic<bool> stop{false};
  std::vector<std::exception_ptr> errors(s.callers);
  std::vector<std::thread> threads;
  const std::string reference = pattern(s.tiny_size);

  for (unsigned t = 0; t < s.callers; ++t) {
    threads.emplace_back([&, t] {
      pthread_setname_np(pthread_self(), "bench-caller");  // for check_placement()
      try {
        std::string payload = reference;
        for (std::uint64_t n = 1; !stop.load(std::memory_order_relaxed); ++n) {
          std::uint64_t id = (std::uint64_t(t + 1) << 40) | n;
          stamp(payload, id);
          echo.round_trip(payload);
          check_echo(payload, reference, id, true, "concurrent call");
          calls.fetch_add(1, std::memory_order_relaxed);
        }
      } catch (...) {
        errors[t] = std::current_exception();
        stop = true;
      }
    });
  }

  auto warmup = std::min(s.figure_time / 4, seconds_f(0.5));
  std::this_thread::sleep_for(warmup);
  std::uint64_t c0 = calls.load();
  auto t0 = clock_type::now();
  // Sleep in slices so a failing caller ends the run early.
  while (!stop.load() && clock_type::now() - t0 < s.figure_time)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::uint64_t c1 = calls.load();
  double secs = elapsed_seconds(t0);
  std::exception_ptr probe_error;
  if (while_running) {
    try {
      while_running();
    } catch (...) {
      probe_error = std::current_exception();
    }
  }
  stop = true;
  for (auto& th : threads) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  if (probe_error) std::rethrow_exception(probe_error);
  return double(c1 - c0) / secs;
}

double measure_pipelined(echo_client& echo, const settings& s) {
  const std::string reference = pattern(s.tiny_size);
  const std::size_t depth = s.callers;
  std::vector<std::string> sent(depth, reference);
  std::vector<std::uint64_t> ids(depth);
  std::string reply;
  std::uint64_t next_id = 0;
  // One round: every request written, then every reply read and checked, in order.
  auto round = [&] {
    for (std::size_t i = 0; i < depth; ++i) {
      ids[i] = ++next_id;
      stamp(sent[i], ids[i]);
      echo.send_request(sent[i]);
    }
    for (std::size_t i = 0; i < depth; ++i) {
      echo.receive_response(reply);
      check_echo(reply, reference, ids[i], true, "pipelined call");
    }
  };

  auto start = clock_type::now();
  for (std::size_t i = 0; i * depth < s.rtt_warmup &&
                          elapsed_seconds(start) < s.figure_time.count() / 4;
       ++i)
    round();

  std::uint64_t calls = 0;
  start = clock_type::now();
  do {
    round();
    calls += depth;
  } while (elapsed_seconds(start) < s.figure_time.count());
  return double(calls) / elapsed_seconds(start);
}

double measure_bulk(echo_client& echo, const settings& s) {
  const std::string reference = pattern(s.bulk_size);
  std::string payload = reference;
  std::uint64_t id = 0;
  auto call = [&](bool full) {
    stamp(payload, ++id);
    auto t0 = clock_type::now();
    echo.round_trip(payload);
    auto d = clock_type::now() - t0;
    check_echo(payload, reference, id, full, "bulk call");
    return d;
  };

  auto start = clock_type::now();
  for (int i = 0; i < 3 || elapsed_seconds(start) < s.figure_time.count() / 8; ++i)
    call(true);

  std::uint64_t calls = 0;
  clock_type::duration busy{};
  start = clock_type::now();
  do {
    busy += call(calls % 8 == 0);
    ++calls;
  } while (elapsed_seconds(start) < s.figure_time.count());
  call(true);  // a last full check catches corruption since the last full one

  double bytes = double(calls) * 2.0 * double(s.bulk_size);
  return bytes / seconds_f(busy).count() / 1e6;
}

}  // namespace bokbok::tools::bench
