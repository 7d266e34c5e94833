// Receive budgets (issue 12, item 4; README "Limits and memory"): what a peer sends and
// no handler has taken yet is bounded in bytes, per connection and per server.
// The accounts on their own, then hostile raw clients against the real demo server
// (a child process listening on a UNIX socket), each while a well-behaved client keeps
// calling it: the server's resident memory stays near its budget, and the good client
// sees no error.
#include "rpc/receive_budget.hpp"
#include "support/child_process.hpp"
#include "support/demo_process.hpp"
#include "support/good_client.hpp"
#include "support/proc_status.hpp"
#include "support/raw_peer.hpp"
#include "support/raw_socket.hpp"
#include "support/settle.hpp"

#include <bokbok/bokbok.hpp>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "wire/frame.hpp"
#include "wire/message_codec.hpp"
#include "wire/preamble.hpp"
#include "wire/settings.hpp"

using namespace std::chrono_literals;
using namespace std::string_literals;
using bokbok::message;
using bokbok_test::built_program;
namespace rpc = bokbok::rpc;
namespace wire = bokbok::wire;

namespace {

constexpr bool sanitized = bokbok_test::sanitized_allocator;

// ---- the accounts ----------------------------------------------------------------------

TEST_CASE("an account is over past its limit and has room again only at half of it") {
  auto acct = std::make_shared<rpc::receive_account>(1000, nullptr);
  int woken = 0;
  {
    rpc::receive_charge a(acct, 600), b(acct, 500);
    CHECK(acct->held() == 1100);
    CHECK(acct->over());
    acct->wait_for_room([&] { ++woken; });
    CHECK(woken == 0);
    b.release();
    CHECK_FALSE(acct->over());
    CHECK(woken == 0);  // 600 is more than half
  }
  CHECK(acct->held() == 0);
  CHECK(woken == 1);
  CHECK(acct->has_room());
}

TEST_CASE("a pool holds back only accounts above the floor, and wakes them below 3/4") {
  auto pool = std::make_shared<rpc::receive_pool>(4000);
  auto big = std::make_shared<rpc::receive_account>(10'000, pool, 100);
  auto small = std::make_shared<rpc::receive_account>(10'000, pool, 100);
  rpc::receive_charge hog(big, 4500);
  rpc::receive_charge little(small, 50);
  CHECK(pool->held() == 4550);
  CHECK(pool->over());
  CHECK(big->over());          // above its floor while the pool is spent
  CHECK_FALSE(small->over());  // within its floor: never held back by the pool
  int woken = 0;
  rpc::receive_charge rest(big, 0);
  {
    // big waits; giving back to 3,000 (= 3/4) is not enough, below it is.
    rpc::receive_charge part(std::move(hog));
    big->wait_for_room([&] { ++woken; });
    CHECK(woken == 0);
  }
  // hog (4,500) went back: the pool holds 50, big holds 0.
  CHECK(woken == 1);
  CHECK(pool->held() == 50);
}

TEST_CASE("a moved charge is given back once") {
  auto pool = std::make_shared<rpc::receive_pool>(100);
  auto acct = std::make_shared<rpc::receive_account>(100, pool);
  {
    rpc::receive_charge a(acct, 40);
    rpc::receive_charge b = std::move(a);
    rpc::receive_charge c;
    c = std::move(b);
    CHECK(acct->held() == 40);
  }
  CHECK(acct->held() == 0);
  CHECK(pool->held() == 0);
}

TEST_CASE("decoded cost counts each announced field, never more than the bytes can hold") {
  message m{"abc", "", "defgh"};
  std::string bytes;
  wire::encode_message(m, bytes);
  CHECK(wire::decoded_cost(bytes) == bytes.size() + 3 * wire::decoded_field_overhead);
  // A count the bytes cannot hold (decoding would fail): bounded by what they can.
  std::string lying = bytes;
  lying[0] = lying[1] = lying[2] = lying[3] = '\xff';
  CHECK(wire::decoded_cost(lying) ==
        lying.size() + (lying.size() - 4) / 4 * wire::decoded_field_overhead);
  CHECK(wire::decoded_cost("ab") == 2);
}

// ---- against the real server -----------------------------------------------------------

// The demo server on a UNIX socket; its resident size from /proc.
struct demo_server : bokbok_test::listening_demo {
  using listening_demo::listening_demo;
  long status_kib(const char* field) const { return bokbok_test::proc_status(pid, field); }
  long rss_kib() const { return status_kib("VmRSS:"); }
};

// A raw plain-mode client that has sent its preamble and hello.
std::unique_ptr<bokbok_test::raw_peer> raw_client(const demo_server& d) {
  return std::make_unique<bokbok_test::raw_peer>(d.path);
}

using bokbok_test::good_client;

TEST_CASE("partial messages past a connection's budget are refused, memory stays bounded") {
  // Budget per connection: twice the maximum message size (1 MiB here): 2 MiB.
  demo_server d({"--max-message-size", std::to_string(1 << 20)});
  good_client good(d.address);
  const long base_kib = d.rss_kib();
  std::vector<std::unique_ptr<bokbok_test::raw_peer>> hostile;
  // 10 connections each opening 16 messages of almost the maximum size: 160 MiB held if
  // nothing bounded it (the reassembler alone allows 16 partial messages per connection).
  for (int c = 0; c < 10; ++c) {
    hostile.push_back(raw_client(d));
    CHECK(bokbok_test::open_partials(*hostile.back(), 1, 16, (1 << 20) - (64 << 10), 120s));
  }
  // The server answers the refused ones busy: read one such error on the first.
  std::string got;
  CHECK(bokbok_test::settles([&] {
    got += bokbok_test::read_some(hostile[0]->fd(), 1, 10ms);
    return got.find("receive budget") != std::string::npos;
  }));
  const long grown_kib = d.rss_kib() - base_kib;
  MESSAGE("server RSS grew by ", grown_kib, " KiB for 10 connections of 16 partial messages");
  if (!sanitized) CHECK(grown_kib < 64 * 1024);  // 10 x 2 MiB budget, buffers; unbounded: 160 MiB
  CHECK(d.alive());
  REQUIRE(bokbok_test::settles([&] { return good.answers() > 10; }));
  good.stop();
  CHECK(good.errors() == 0);
  INFO(good.first_error());
}

TEST_CASE("the server-wide budget holds many greedy connections while small calls go on") {
  // 8 MiB for the whole server; 64 MiB per connection (twice 32 MiB messages).
  demo_server d({"--max-message-size", std::to_string(32 << 20), "--max-receive-bytes",
                 std::to_string(8 << 20)});
  good_client good(d.address);
  const long base_kib = d.rss_kib();
  std::vector<std::unique_ptr<bokbok_test::raw_peer>> hostile;
  for (int c = 0; c < 8; ++c) {
    hostile.push_back(raw_client(d));
    // 4 messages of 16 MiB each per connection: 512 MiB if nothing bounded it.
    CHECK(bokbok_test::open_partials(*hostile.back(), 1, 4, 16 << 20, 120s));
  }
  const long grown_kib = d.rss_kib() - base_kib;
  MESSAGE("server RSS grew by ", grown_kib, " KiB for 8 connections of 4 x 16 MiB partials");
  // The pool (8 MiB) plus 1 MiB floors, buffers, and what malloc keeps of blocks freed
  // as partial messages grew and were dropped.
  if (!sanitized) CHECK(grown_kib < 96 * 1024);
  CHECK(d.alive());
  int before = good.answers();
  REQUIRE(bokbok_test::settles([&] { return good.answers() > before + 10; }));
  good.stop();
  CHECK(good.errors() == 0);
  INFO(good.first_error());
}

TEST_CASE("a request of many empty fields is refused too_large before it is decoded") {
  // 1 MiB messages: a request of 262,000 empty fields fits, but decoded it would take
  // about 13 MiB, more than the 2 MiB budget.
  demo_server d({"--max-message-size", std::to_string(1 << 20)});
  message m;
  m.push_back("echo");
  m.resize(262'000);
  auto conn = bokbok::connect(d.address);
  try {
    conn.request(m);
    FAIL("the request was answered");
  } catch (const bokbok::remote_error& e) {
    CHECK(e.code() == bokbok::error_code::too_large);
    CHECK(e.message().find("receive budget") != std::string::npos);
  }
  CHECK(conn.request({"echo", "still here"}) == message{"still here"});
}

TEST_CASE("an answer the peer would refuse as too large is refused without being copied") {
  demo_server d(std::vector<std::string>{});
  bokbok::options o;
  o.max_message_size = 1 << 20;  // the server may send us at most 1 MiB
  auto conn = bokbok::connect(d.address, o);
  CHECK(conn.request({"echo", "x"}) == message{"x"});
  const long base_kib = d.status_kib("VmHWM:");
  try {
    conn.request({"blob", std::to_string(256 << 20)});
    FAIL("the blob was answered");
  } catch (const bokbok::remote_error& e) {
    CHECK(e.code() == bokbok::error_code::too_large);
  }
  // The handler's own 256 MiB, and no encoded copy of it (another 256 MiB).
  const long peak_kib = d.status_kib("VmHWM:") - base_kib;
  MESSAGE("server peak grew by ", peak_kib, " KiB for a 256 MiB answer refused");
  if (!sanitized) CHECK(peak_kib < 384 * 1024);
  CHECK(conn.request({"echo", "still here"}) == message{"still here"});
}

}  // namespace
