// bokbok-demo-server's stream methods (demo_streams.hpp). Each handler runs on a handler
// slot for the whole call and uses only its own stream.
#include "demo_streams.hpp"

#include <bokbok/bokbok.hpp>

#include <charconv>
#include <cstdint>
#include <string>

namespace demo {
namespace {

using bokbok::args;
using bokbok::connection;
using bokbok::message;
using bokbok::stream;

constexpr std::int64_t max_count = 1'000'000'000;
constexpr std::int64_t max_produce = 1ll << 40;   // 1 TiB: bounded by the caller's patience
constexpr std::int64_t max_chunk = 16ll << 20;    // 16 MiB, the default message limit

[[noreturn]] void bad_arguments(const std::string& why) {
  throw bokbok::remote_error(bokbok::error_code::bad_arguments, why);
}

std::int64_t in_range(const args& a, std::size_t i, const char* method, std::int64_t least,
                      std::int64_t most) {
  std::int64_t v = a.integer(i);
  if (v < least || v > most)
    bad_arguments(std::string(method) + ": " + std::to_string(v) + " is out of range (" +
                  std::to_string(least) + " to " + std::to_string(most) + ")");
  return v;
}

message on_count(args& a, stream& s) {
  const std::int64_t n = in_range(a, 0, "count", 0, max_count);
  for (std::int64_t i = 1; i <= n; ++i) s.write({std::to_string(i)});
  return {std::to_string(n)};
}

message on_tail(stream& s) {
  std::uint64_t n = 0;
  while (auto m = s.read()) {
    s.write(std::move(*m));
    ++n;
  }
  return {std::to_string(n)};
}

message on_sum(stream& s) {
  std::int64_t sum = 0;
  std::uint64_t n = 0;
  while (auto m = s.read()) {
    ++n;
    for (const std::string& f : *m) {
      std::int64_t v = 0;
      auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), v);
      if (ec != std::errc() || end != f.data() + f.size() || f.empty() || f[0] == '+')
        bad_arguments("sum: message " + std::to_string(n) + " holds '" + f.substr(0, 32) +
                      "', not an integer");
      if (__builtin_add_overflow(sum, v, &sum))
        bad_arguments("sum: the sum does not fit in 64 bits");
    }
  }
  return {std::to_string(sum)};
}

message on_produce(args& a, stream& s) {
  const std::int64_t total = in_range(a, 0, "produce", 0, max_produce);
  const std::int64_t chunk = in_range(a, 1, "produce", 1, max_chunk);
  std::string block(std::size_t(chunk), '\0');
  for (std::size_t i = 0; i < block.size(); ++i) block[i] = char('a' + i % 26);
  for (std::int64_t sent = 0; sent < total; sent += chunk) {
    message m;
    m.push_back(sent + chunk <= total ? block : block.substr(0, std::size_t(total - sent)));
    s.write(std::move(m));
  }
  return {"produced", std::to_string(total)};
}

message on_cancel_after(args& a, stream& s) {
  const std::int64_t n = in_range(a, 0, "cancel-after", 0, max_count);
  for (std::int64_t i = 1; i <= n; ++i) s.write({std::to_string(i)});
  s.cancel();  // answers the error cancelled; what we return is not sent
  return {"not sent"};
}

}  // namespace

void add_stream_methods(bokbok::router& r) {
  constexpr auto integer = bokbok::param_type::integer;
  using bokbok::stream_kind;
  r.add_stream("count", "streams 1..N, one message each, answers N", {{"n", integer}},
               stream_kind::out,
               [](connection&, args& a, stream& s) { return on_count(a, s); });
  r.add_stream("tail", "streams back each message of the caller's stream, answers the count",
               {}, stream_kind::both, [](connection&, args&, stream& s) { return on_tail(s); });
  r.add_stream("sum", "reads messages of integers, answers their sum", {}, stream_kind::in,
               [](connection&, args&, stream& s) { return on_sum(s); });
  r.add_stream("produce", "streams BYTES bytes in messages of CHUNK bytes ('abc...z')",
               {{"bytes", integer}, {"chunk", integer}}, stream_kind::out,
               [](connection&, args& a, stream& s) { return on_produce(a, s); });
  r.add_stream("cancel-after", "streams 1..N, then cancels the call (error cancelled)",
               {{"n", integer}}, stream_kind::out,
               [](connection&, args& a, stream& s) { return on_cancel_after(a, s); });
}

}  // namespace demo
