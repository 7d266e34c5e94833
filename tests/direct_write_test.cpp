// The writer's shortcut as connections use it: a caller's thread writes its own small
// record through the stream's try_write_now when the send side is idle. It needs no
// descriptor of its own, and it works while the connection's loop thread is busy.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <string>
#include <utility>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "bokbok/server.hpp"
#include "support/key_users.hpp"
#include "support/open_fds.hpp"
#include "support/raw_peer.hpp"

using namespace std::chrono_literals;
using bokbok::message;
using bokbok_test::open_fds;

namespace {

constexpr auto patience = 10s;

bokbok::options echo_options() {
  bokbok::options o;
  o.on_request = [](bokbok::connection&, message m) { return m; };
  return o;
}

std::pair<bokbok::connection, bokbok::connection> pipe_pair(const bokbok::options& o) {
  int ab[2], ba[2];
  REQUIRE(pipe2(ab, O_CLOEXEC) == 0);
  REQUIRE(pipe2(ba, O_CLOEXEC) == 0);
  auto second =
      std::async(std::launch::async, [&] { return bokbok::connect_fds(ab[0], ba[1], o, "pipes-b"); });
  auto first = bokbok::connect_fds(ba[0], ab[1], o, "pipes-a");
  return {first, second.get()};
}

// One call at a time each way, so each finds the send side idle and is written by its
// caller; then the same descriptors are open as before.
void check_calls_take_no_descriptor(bokbok::connection a, bokbok::connection b) {
  auto before = open_fds();
  for (int i = 0; i < 5; ++i) {
    CHECK(a.request({"ping", std::to_string(i)}) == message{"ping", std::to_string(i)});
    CHECK(b.request({"pong", std::to_string(i)}) == message{"pong", std::to_string(i)});
  }
  CHECK(open_fds() == before);
  a.abort();
  b.wait_closed();
}

}  // namespace

TEST_CASE("calls written by their callers take no descriptor beyond the connection's own") {
  SUBCASE("over a socketpair") {
    auto [a, b] = bokbok::connect_socketpair(echo_options(), echo_options());
    check_calls_take_no_descriptor(a, b);
  }
  SUBCASE("over a pair of pipes") {
    auto [a, b] = pipe_pair(echo_options());
    check_calls_take_no_descriptor(a, b);
  }
}

namespace {

// A server on its own loop and a client on the default loop, in key mode when
// `keys` is set; the client's loop thread is then held by another connection's inline
// handler while the client calls: only the caller's thread can write (and, in key mode,
// seal) the request.
void check_request_reaches_peer_while_loop_is_busy(bool keys) {
  bokbok_test::alice_key alice;
  // The peer: a server on its own loop, telling when the request has arrived.
  std::promise<void> arrived;
  bokbok::server_options so;
  std::string address = "unix:@bokbok-direct-write-" + std::to_string(getpid()) +
                        (keys ? "-key" : "-plain");
  so.listen = {address};
  so.on_request = [&](bokbok::connection&, message m) {
    if (!m.empty() && m[0] == "here") arrived.set_value();
    return m;
  };
  if (keys) so.keys.key_for_user = alice.lookup();
  bokbok::server srv(so);
  srv.start();
  bokbok::options co;
  if (keys) {
    co.keys.user = "alice";
    co.keys.key = alice.alice;
  }
  auto client = bokbok::connect(address, co);
  CHECK(client.request({"warm-up"}) == message{"warm-up"});

  // Another connection on the same (default) loop whose inline handler holds the loop
  // thread until released.
  std::promise<void> entered;
  std::promise<void> release;
  auto released = release.get_future().share();
  bokbok::options holder = echo_options();
  holder.inline_handlers = true;
  holder.on_request = [&, released](bokbok::connection&, message m) {
    entered.set_value();
    released.wait_for(patience);
    return m;
  };
  auto [x, y] = bokbok::connect_socketpair({}, holder);
  auto held = x.request_async({"hold"});
  REQUIRE(entered.get_future().wait_for(patience) == std::future_status::ready);

  // The loop thread is held: only this thread can write the request.
  auto answer = client.request_async({"here"});
  bool reached = arrived.get_future().wait_for(patience) == std::future_status::ready;
  release.set_value();
  CHECK(reached);
  REQUIRE(answer.wait_for(patience) == std::future_status::ready);
  CHECK(answer.get() == message{"here"});
  REQUIRE(held.wait_for(patience) == std::future_status::ready);
  CHECK(held.get() == message{"hold"});
  x.abort();
  client.abort();
  srv.stop();
}

}  // namespace

TEST_CASE("a caller's request reaches the peer while its connection's loop thread is busy") {
  check_request_reaches_peer_while_loop_is_busy(false);
}

TEST_CASE("in key mode too, a caller's request is sealed and written by the caller's thread") {
  check_request_reaches_peer_while_loop_is_busy(true);
}

namespace {

// One packet of a SOCK_SEQPACKET socket, within `patience`: every write the other end
// made is a packet of its own, so a packet shows what one write carried. Empty when none
// came.
std::string next_packet(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, int(std::chrono::milliseconds(patience).count())) <= 0) return {};
  std::string buf(256 << 10, '\0');
  ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
  buf.resize(n > 0 ? std::size_t(n) : 0);
  return buf;
}

}  // namespace

// Inline handlers answer on the loop thread while it handles a read: the first answer
// leaves at once (a lone call's latency), the others wait for the end of that read and
// leave in one write, not one write each (a write per answer woke the peer once per
// answer: 16 calls in flight went at half the speed).
TEST_CASE("the answers of inline handlers to one read leave in two writes") {
  namespace wire = bokbok::wire;
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
  bokbok::base::unique_fd mine(sv[0]);
  // The raw client's greeting waits in the socket; the connection reads it as it starts.
  REQUIRE(bokbok_test::write_all(mine.get(), bokbok_test::plain_greeting()));
  bokbok::options o = echo_options();
  o.inline_handlers = true;
  auto server = bokbok::connect_fds(sv[1], sv[1], o, "seqpacket");

  // Its preamble and hello, in whatever packets it wrote them.
  wire::preamble_reader preamble;
  bool preamble_done = false;
  wire::record_reader records;
  bool hello = false;
  while (!hello) {
    std::string packet = next_packet(mine.get());
    REQUIRE(!packet.empty());
    std::string_view in = packet;
    if (!preamble_done) {
      auto st = preamble.feed(in);  // takes the preamble's bytes off the front of `in`
      REQUIRE(st != wire::preamble_reader::status::error);
      if (st == wire::preamble_reader::status::need_more) continue;
      preamble_done = true;
    }
    std::string_view body;
    while (records.next(in, body) == wire::record_reader::status::record) {
      wire::frame_view f{};
      std::string err;
      REQUIRE(wire::parse_frame(body, f, err));
      hello = f.type == wire::frame_type::hello;
    }
  }

  // 16 requests in one write, so in one read of the connection's.
  constexpr std::uint32_t calls = 16;
  std::string requests;
  for (std::uint32_t id = 1; id <= calls; ++id)
    requests += bokbok_test::request_bytes(id, {"call", std::to_string(id)});
  REQUIRE(bokbok_test::write_all(mine.get(), requests));

  // The first write back holds the first answer, the second the 15 others, in order.
  std::uint32_t answered = 0;
  std::vector<std::uint32_t> per_write;
  for (int w = 0; w < 2; ++w) {
    std::string packet = next_packet(mine.get());
    std::string_view in = packet;
    std::string_view body;
    std::uint32_t in_this = 0;
    while (records.next(in, body) == wire::record_reader::status::record) {
      wire::frame_view f{};
      std::string err;
      REQUIRE(wire::parse_frame(body, f, err));
      REQUIRE(f.type == wire::frame_type::response);
      CHECK(f.call_id == answered + 1);
      message m;
      REQUIRE(wire::decode_message(f.payload, m, err));
      CHECK(m == message{"call", std::to_string(answered + 1)});
      ++answered;
      ++in_this;
    }
    per_write.push_back(in_this);
  }
  CHECK(answered == calls);
  CHECK(per_write == std::vector<std::uint32_t>{1, calls - 1});
  server.abort();
}
