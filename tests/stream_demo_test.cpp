// Stream calls (PROTOCOL.md §12) end to end: this process's bokbok::connection against the
// real demo server process (BOKBOK_DEMO_SERVER; its stream methods are in
// examples/demo_streams.hpp), over a UNIX socket and over exec: (a child on pipes).
// Every wait is bounded; every child is killed if it overstays.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bokbok/bokbok.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/child_process.hpp"
#include "support/demo_process.hpp"
#include "support/open_fds.hpp"
#include "support/proc_status.hpp"
#include "support/settle.hpp"

using namespace std::chrono_literals;
using bokbok::message;
using clock_type = std::chrono::steady_clock;

namespace {

// The error code a stream call ends with, reading it to its end; "answered" if it did not.
std::string ending_of(bokbok::stream& s, std::size_t max_messages = 100'000'000) {
  try {
    for (std::size_t i = 0; i < max_messages && s.read(); ++i) {
    }
    s.finish();
  } catch (const bokbok::call_error& e) {
    return bokbok::to_string(e.code());
  }
  return "answered";
}

std::string exec_address() {
  return "exec:" + bokbok_test::built_program("BOKBOK_DEMO_SERVER") + " --stdio";
}

// Streams 100,000 messages each way over `conn`, checking every one in order.
void hundred_thousand_each_way(bokbok::connection& conn) {
  constexpr int n = 100'000;
  auto counting = conn.open_stream({"count", std::to_string(n)});
  int expected = 1;
  bool in_order = true;
  while (auto m = counting.read()) {
    in_order = in_order && *m == message{std::to_string(expected)};
    ++expected;
  }
  CHECK(in_order);
  CHECK(expected == n + 1);
  CHECK(counting.finish() == message{std::to_string(n)});

  // tail echoes as it reads: write from one thread while this one reads, as a client
  // must (the server's window bounds how far its echoes can run ahead of our reads).
  auto tail = conn.open_stream({"tail"});
  auto writer = std::async(std::launch::async, [tail]() mutable {
    for (int i = 0; i < n; ++i) tail.write({"m", std::to_string(i)});
    tail.close_write();
  });
  int got = 0;
  in_order = true;
  while (auto m = tail.read()) {
    in_order = in_order && *m == message{"m", std::to_string(got)};
    ++got;
  }
  REQUIRE(writer.wait_for(60s) == std::future_status::ready);
  writer.get();
  CHECK(in_order);
  CHECK(got == n);
  CHECK(tail.finish() == message{std::to_string(n)});
}

}  // namespace

TEST_CASE("100,000 messages stream each way with their content, over a UNIX socket and exec:") {
  SUBCASE("unix") {
    bokbok_test::listening_demo server({});
    auto conn = bokbok::connect(server.address);
    hundred_thousand_each_way(conn);
  }
  SUBCASE("exec") {
    auto conn = bokbok::connect(exec_address());
    hundred_thousand_each_way(conn);
    conn.close();
    conn.wait_closed();
  }
}

TEST_CASE("a reader that stops while the server streams 1 GiB holds the server's memory bounded") {
  // The documented bound: one credit window (stream_window_bytes, 1 MiB) plus the send
  // queue and one message in hand. Allowed here: 64 MiB over the idle server, which a
  // server that produced ahead of its reader (1 GiB) would pass many times over.
  if (bokbok_test::sanitized_allocator) return;  // RSS says little under ASan/TSan
  bokbok_test::listening_demo server({});
  auto conn = bokbok::connect(server.address);
  CHECK(conn.request({"ping", "x"}) == message{"pong", "x"});
  const long idle_kib = bokbok_test::proc_status(server.pid, "VmRSS:");
  REQUIRE(idle_kib > 0);
  auto big = conn.open_stream({"produce", std::to_string(1ll << 30), std::to_string(32 << 10)});
  for (int i = 0; i < 4; ++i) REQUIRE(big.read().has_value());  // flowing; now stop reading
  {
    bokbok_test::status_sampler sampler(server.pid);
    // The server fills what it may and then waits; over a second and a half it must not
    // creep on (a sampling period, not a wait for a condition).
    std::this_thread::sleep_for(1500ms);
    sampler.stop();
    CHECK(sampler.max_rss_kib() - idle_kib < 64 * 1024);
  }
  CHECK(conn.request({"ping", "y"}) == message{"pong", "y"});  // the connection still serves
  big.cancel();
  CHECK(ending_of(big) == "cancelled");
}

TEST_CASE("stream messages larger than one frame arrive whole, one after another") {
  // 200 KiB messages: four fragments each (max_frame_payload is 65513), sent back to
  // back on one call; each must be finished before the next begins (PROTOCOL.md §4.3).
  bokbok_test::listening_demo server({});
  auto conn = bokbok::connect(server.address);
  constexpr long long chunk = 200 << 10, total = 40 * chunk + 123;
  auto s = conn.open_stream({"produce", std::to_string(total), std::to_string(chunk)});
  long long got = 0;
  int messages = 0;
  bool content_ok = true;
  while (auto m = s.read()) {
    const std::string& f = m->at(0);
    content_ok = content_ok && f.size() == std::size_t(std::min(chunk, total - got)) &&
                 f.front() == 'a' && f[25] == 'z';
    got += static_cast<long long>(f.size());
    ++messages;
  }
  CHECK(content_ok);
  CHECK(messages == 41);
  CHECK(got == total);
  CHECK(s.finish() == message{"produced", std::to_string(total)});
}

TEST_CASE("pings keep completing, each within 5 s, while a large stream flows") {
  bokbok_test::listening_demo server({});
  auto conn = bokbok::connect(server.address);
  auto big = conn.open_stream({"produce", std::to_string(256ll << 20), std::to_string(32 << 10)});
  std::atomic<long long> bytes{0};
  auto reader = std::async(std::launch::async, [&] {
    while (auto m = big.read()) bytes += static_cast<long long>(m->at(0).size());
    return big.finish();
  });
  int pings = 0;
  while (reader.wait_for(0s) != std::future_status::ready && pings < 200) {
    bokbok::call_options o;
    o.timeout = 5s;
    CHECK(conn.request({"ping", std::to_string(pings)}, o) == message{"pong", std::to_string(pings)});
    ++pings;
  }
  REQUIRE(reader.wait_for(120s) == std::future_status::ready);
  CHECK(reader.get() == message{"produced", std::to_string(256ll << 20)});
  CHECK(bytes == 256ll << 20);
  CHECK(pings >= 1);
}

TEST_CASE("either side may cancel a stream mid-way; the connection carries on") {
  bokbok_test::listening_demo server({});
  auto conn = bokbok::connect(server.address);
  SUBCASE("the client cancels") {
    auto s = conn.open_stream({"count", "1000000000"});
    for (int i = 1; i <= 10; ++i) REQUIRE(s.read() == message{std::to_string(i)});
    s.cancel();
    CHECK(ending_of(s) == "cancelled");
  }
  SUBCASE("the server cancels after 5 messages") {
    auto s = conn.open_stream({"cancel-after", "5"});
    for (int i = 1; i <= 5; ++i) REQUIRE(s.read() == message{std::to_string(i)});
    try {
      while (s.read()) {
      }
      s.finish();
      FAIL("the call was answered");
    } catch (const bokbok::remote_error& e) {
      CHECK(e.code() == bokbok::error_code::cancelled);
    }
  }
  CHECK(conn.request({"ping", "after"}) == message{"pong", "after"});
}

TEST_CASE("a deadline that passes mid-stream ends the call with deadline_exceeded, promptly") {
  bokbok_test::listening_demo server({});
  auto conn = bokbok::connect(server.address);
  bokbok::call_options o;
  o.timeout = 300ms;
  const auto start = clock_type::now();
  auto s = conn.open_stream({"count", "1000000000"}, o);
  CHECK(ending_of(s) == "deadline_exceeded");
  CHECK(clock_type::now() - start < 5s);
  CHECK(conn.request({"ping", "after"}) == message{"pong", "after"});
}

TEST_CASE("the server killed mid-stream: the client gets transport_error promptly, leaking nothing") {
  const auto fds_before = bokbok_test::open_fds();
  const auto threads_before = bokbok_test::other_thread_names(::getpid()).size();
  {
    bokbok_test::listening_demo server({});
    auto conn = bokbok::connect(server.address);
    auto s = conn.open_stream({"produce", std::to_string(1ll << 40), "32768"});
    for (int i = 0; i < 4; ++i) REQUIRE(s.read().has_value());
    REQUIRE(::kill(server.pid, SIGKILL) == 0);
    const auto killed_at = clock_type::now();
    bool transport = false;
    try {
      for (int i = 0; i < 10'000'000 && s.read(); ++i) {
      }
      s.finish();
    } catch (const bokbok::transport_error&) {
      transport = true;
    }
    CHECK(transport);
    CHECK(clock_type::now() - killed_at < 5s);
  }
  std::string left;  // on failure, what is left open
  CHECK(bokbok_test::settles([&] { return (left = bokbok_test::opened_since(fds_before)).empty(); }));
  CHECK(left == "");
  CHECK(bokbok_test::settles(
      [&] { return bokbok_test::other_thread_names(::getpid()).size() <= threads_before; }));
}

TEST_CASE("many concurrent streams on one connection each get their own messages") {
  bokbok_test::listening_demo server({});
  auto conn = bokbok::connect(server.address);
  constexpr int streams = 24, each = 2000;
  std::vector<std::future<bool>> done;
  for (int k = 0; k < streams; ++k)
    done.push_back(std::async(std::launch::async, [&conn, k] {
      bool ok = true;
      if (k % 2 == 0) {
        auto s = conn.open_stream({"count", std::to_string(each + k)});
        int expected = 1;
        while (auto m = s.read()) ok = ok && *m == message{std::to_string(expected++)};
        ok = ok && expected == each + k + 1 && s.finish() == message{std::to_string(each + k)};
      } else {
        auto s = conn.open_stream({"tail"});
        for (int i = 0; i < each; ++i) {
          s.write({std::to_string(k), std::to_string(i)});
          ok = ok && s.read() == message{std::to_string(k), std::to_string(i)};
        }
        s.close_write();
        ok = ok && !s.read() && s.finish() == message{std::to_string(each)};
      }
      return ok;
    }));
  for (auto& d : done) {
    REQUIRE(d.wait_for(120s) == std::future_status::ready);
    CHECK(d.get());
  }
}
