// What a closed connection leaves behind: nothing. Connections opened, used for one
// call and closed, over and over, against a real server in this process: once they have
// ended on both sides, the memory in use (glibc's mallinfo2) is back where it was. A
// timer left pending after the close (the graceful close's grace period, the close's
// drain wait) would hold each connection's memory until it fired.
#include <doctest/doctest.h>

#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "bokbok/bokbok.hpp"
#include "bokbok/server.hpp"
#include "support/settle.hpp"

// The sanitizers' allocators do not report through mallinfo2.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool mallinfo_is_real = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool mallinfo_is_real = false;
#else
constexpr bool mallinfo_is_real = true;
#endif
#else
constexpr bool mallinfo_is_real = true;
#endif

using namespace bokbok;

namespace {

std::size_t bytes_in_use() {
  const struct mallinfo2 m = ::mallinfo2();
  return m.uordblks + m.hblkhd;
}

}  // namespace

TEST_CASE("connections opened, used and closed hold no memory once they have ended") {
  if (!mallinfo_is_real) return;
  server_options so;
  const std::string address = "unix:@bokbok-connection-memory-" + std::to_string(::getpid());
  so.listen = {address};
  so.on_request = [](connection&, message request) { return request; };
  server srv(so);
  srv.start();
  // The close's grace period is long: a connection that kept its grace timer after it
  // ended would be held for the whole test.
  const auto cycle = [&] {
    connection c = connect(address);
    const message request{std::string(16, 'x')};
    CHECK(c.request(request) == request);
    c.close(std::chrono::seconds(120));
    c.wait_closed();
  };
  const auto all_ended = [&] { return srv.connection_count() == 0; };
  for (int i = 0; i < 20; ++i) cycle();  // threads, buffers and caches made once
  REQUIRE(bokbok_test::settles(all_ended));
  const std::size_t before = bytes_in_use();
  constexpr int connections = 300;
  for (int i = 0; i < connections; ++i) cycle();
  REQUIRE(bokbok_test::settles(all_ended));
  const std::size_t after = bytes_in_use();
  const std::size_t grown = after > before ? after - before : 0;
  MESSAGE("in use after " << connections << " connections: +" << grown << " bytes");
  // A connection object alone is a few KiB; allow a little churn, far less than one
  // connection's worth per connection.
  CHECK(grown < connections * 256);
  srv.stop(std::chrono::seconds(5));
  srv.wait();
}
