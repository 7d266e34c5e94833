// Hostile peers against the connection core (issue 12, Tests): the real demo server
// ($BOKBOK_DEMO_SERVER, a child process on a UNIX socket) attacked by raw clients that
// write the bytes they choose (src/wire/PROTOCOL.md), while a well-behaved client keeps
// calling it on a connection of its own. In every case that client sees no error and no
// call waits longer than 5 s (the machine may be loaded), the server lives, and its
// resident memory (VmRSS) and thread count (Threads), sampled from /proc throughout,
// stay under the bounds README "Limits and memory" documents, computed from the settings
// each case passes. Every attack is bounded in bytes, count and time.
#include <doctest/doctest.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "support/demo_process.hpp"
#include "support/good_client.hpp"
#include "support/proc_status.hpp"
#include "support/raw_peer.hpp"
#include "support/settle.hpp"
#include "wire/frame.hpp"
#include "wire/message_codec.hpp"

using namespace std::chrono_literals;
using bokbok::message;
using bokbok_test::good_client;
using bokbok_test::listening_demo;
using bokbok_test::raw_frame;
using bokbok_test::open_partials;
using bokbok_test::raw_peer;
using bokbok_test::status_sampler;
namespace wire = bokbok::wire;

namespace {

constexpr std::size_t KiB = 1024, MiB = 1024 * KiB;
// The longest the good client may wait for one answer.
constexpr auto stall_bound = 5s;
// What a server holds besides the documented budgets and queues: its code and libraries,
// read buffers (up to 256 KiB per connection), the touched part of thread stacks, and the
// blocks malloc keeps after freeing. Generous, and far below what any attack here would
// cost unbounded.
constexpr std::size_t allowance = 32 * MiB;
// Library defaults the demo server does not change (README "Limits and memory").
constexpr std::size_t max_send_queue = 8 * MiB;
constexpr std::size_t write_batch = 512 * KiB;
constexpr std::size_t server_receive_budget = 512 * MiB;

// The settings a case passes to the demo server, and the bounds they imply.
struct limits {
  std::size_t max_message_size = 64 * MiB;
  unsigned max_threads = 32;
  unsigned max_waiting_handlers = 0;  // 0: 8 x max_threads
  unsigned max_concurrent = 0;        // per connection; 0: no cap

  std::vector<std::string> args() const {
    return {"--max-message-size", std::to_string(max_message_size), "--max-threads",
            std::to_string(max_threads), "--max-waiting-handlers",
            std::to_string(max_waiting_handlers), "--max-concurrent",
            std::to_string(max_concurrent)};
  }
  // The receive budget of one connection: twice the maximum message size.
  std::size_t connection_budget() const { return 2 * max_message_size; }
  // What `connections` may hold of what their peers sent (receive budgets), all together.
  std::size_t received(unsigned connections) const {
    return std::min<std::size_t>(connections * connection_budget(),
                                 server_receive_budget + connections * MiB);
  }
  // What one connection may queue to send: max_send_queue, one message past it, one
  // write batch in flight.
  std::size_t sending() const { return max_send_queue + max_message_size + write_batch; }
  unsigned waiting() const {
    return max_waiting_handlers ? max_waiting_handlers : 8 * max_threads;
  }
  // The server's threads: its main thread, its loop's, the handlers running and those
  // waiting in nested calls (and ThreadSanitizer's own, when built with it).
  long threads() const {
    return 2 + long(max_threads) + long(waiting()) + (bokbok_test::under_tsan ? 1 : 0);
  }
};

// A demo server with `l`'s settings, a good client calling it and a sampler of its
// status, set up before an attack; check() after it.
struct arena {
  limits lim;
  listening_demo demo;
  long base_rss_kib;
  good_client good;
  status_sampler sampler;

  explicit arena(const limits& l, std::optional<uid_t> uid = std::nullopt, gid_t gid = 0)
      : lim(l),
        demo(l.args(), uid, gid),
        base_rss_kib(bokbok_test::proc_status(demo.pid, "VmRSS:")),
        good(demo.address),
        sampler(demo.pid) {
    REQUIRE(bokbok_test::settles([&] { return good.answers() > 0; }, 10s));
  }

  // After the attack: the good client makes progress again (20 more answers), has seen
  // no error and no stall, the server lives, and its memory growth and threads stayed
  // within `extra_bytes` and lim.threads().
  void check(std::size_t extra_bytes) {
    const int before = good.answers();
    const bool progresses =
        bokbok_test::settles([&] { return good.answers() >= before + 20; }, 2 * stall_bound);
    sampler.stop();
    const auto longest = good.longest_wait();
    good.stop();
    CHECK_MESSAGE(progresses, "the good client made no progress after the attack");
    CHECK_MESSAGE(good.errors() == 0, good.errors(), " errors, the first: ", good.first_error());
    CHECK_MESSAGE(longest < stall_bound, "the good client waited ", longest.count(), " ms");
    CHECK(demo.alive());
    const long grown_kib = sampler.max_rss_kib() - base_rss_kib;
    const long bound_kib = long((extra_bytes + allowance) / KiB);
    MESSAGE("server RSS grew by up to ", grown_kib, " KiB (bound ", bound_kib,
            " KiB); threads up to ", sampler.max_threads(), " (bound ", lim.threads(),
            "); the good client got ", good.answers(), " answers, waited ", longest.count(),
            " ms at most");
    if (!bokbok_test::sanitized_allocator) CHECK(grown_kib <= bound_kib);
    CHECK(sampler.max_threads() <= lim.threads());
  }
};

// The message a request or response frame carries whole (one fragment, no deadline
// prefix to skip unless flagged); nullopt if it does not decode.
std::optional<message> message_of(const raw_frame& f) {
  std::string_view bytes = f.payload;
  if (f.flags & wire::flag_deadline) bytes.remove_prefix(wire::deadline_prefix_size);
  message m;
  std::string error;
  if ((f.flags & (wire::flag_more | wire::flag_continued)) ||
      !wire::decode_message(bytes, m, error))
    return std::nullopt;
  return m;
}

// Whether `peer` receives, within `limit`, an error frame with `code` whose text holds
// `text`; frames of other kinds are skipped.
bool receives_error(raw_peer& peer, bokbok::error_code code, const std::string& text,
                    std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  for (int i = 0; i < 1'000'000; ++i) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    auto f = peer.next_frame(left);
    if (!f) return false;
    if (f->type != wire::frame_type::error) continue;
    auto c = wire::parse_code_payload(f->payload);
    if (c.code == std::uint16_t(code) && c.text.find(text) != std::string_view::npos)
      return true;
  }
  return false;
}

}  // namespace

TEST_CASE("16 partial messages of the maximum size on one connection hold the server to its receive budget") {
  limits lim;
  lim.max_message_size = 4 * MiB;
  lim.max_threads = 8;
  arena a(lim);
  raw_peer hostile(a.demo.path);
  // 16 messages of almost 4 MiB each: 64 MiB held if nothing bounded it; the budget is
  // 8 MiB, past which the server refuses the partial messages and skips their rest.
  CHECK(open_partials(hostile, 1, 16, lim.max_message_size - 64 * KiB, 60s));
  CHECK(receives_error(hostile, bokbok::error_code::busy, "receive budget", 10s));
  a.check(lim.received(1));
}

TEST_CASE("10 connections of 16 partial maximum-size messages each hold the server to its receive budgets") {
  limits lim;
  lim.max_message_size = 2 * MiB;
  lim.max_threads = 8;
  arena a(lim);
  std::vector<std::unique_ptr<raw_peer>> hostile;
  // 10 x 16 x 2 MiB: 320 MiB held if nothing bounded it; the budgets: 10 x 4 MiB.
  for (int c = 0; c < 10; ++c) {
    hostile.push_back(std::make_unique<raw_peer>(a.demo.path));
    CHECK(open_partials(*hostile.back(), 1, 16, lim.max_message_size - 64 * KiB, 60s));
  }
  CHECK(receives_error(*hostile.front(), bokbok::error_code::busy, "receive budget", 10s));
  a.check(lim.received(10));
}

// 100,000 requests `ping x` written at once by a client that never reads (2.5 MB; the
// answers too would fit the send queue, so this is about what waits for a handler).
void pipelined_never_read(const limits& lim) {
  arena a(lim);
  raw_peer hostile(a.demo.path);
  std::string requests;
  constexpr std::uint32_t count = 100'000;
  for (std::uint32_t id = 1; id <= count; ++id)
    requests += bokbok_test::request_bytes(id, {"ping", "x"});
  // The server may stop reading (its send queue full, its queues and budget spent):
  // then this stops writing after 20 s, having proved that much.
  const std::size_t written = hostile.send_within(requests, 20s);
  MESSAGE("wrote ", written, " of ", requests.size(), " bytes of requests; reading nothing");
  // What the server may hold: one connection's receive budget (the requests waiting for
  // a handler count in it) and its send queue.
  a.check(lim.received(1) + lim.sending());
}

TEST_CASE("100,000 pipelined requests whose answers are never read leave the server bounded") {
  limits lim;
  lim.max_message_size = 1 * MiB;
  lim.max_threads = 8;
  // A per-connection cap, so that this connection's backlog waits in its own queue
  // (max_queued_calls_per_connection, 1024) rather than in the pool's shared one.
  lim.max_concurrent = lim.max_threads;
  pipelined_never_read(lim);
}

// With no per-connection cap (max_concurrent_calls, the default 0) a connection still
// has at most its share (max_threads) of requests waiting in the server pool's shared
// queue; the rest wait in its own queue (max_queued_calls_per_connection), so one client
// pipelining requests cannot fill the shared queue and get others refused "busy: too
// many requests waiting for a handler" (issue 13, fair sharing).
TEST_CASE("100,000 pipelined requests never read, with no per-connection cap, refuse no other client") {
  limits lim;
  lim.max_message_size = 1 * MiB;
  lim.max_threads = 8;
  pipelined_never_read(lim);
}

// "The jam": a client asks for large answers and never reads them. Its send queue fills,
// and then each answer must wait somewhere; if it waits on a shared pool thread, every
// pool thread ends up waiting and every other client's calls hang. Fails while answers
// hold pool threads (the case issue 12 names; the connection core's send path fixes it).
TEST_CASE("large answers never read jam no other client") {
  limits lim;
  lim.max_message_size = 2 * MiB;
  lim.max_threads = 4;
  arena a(lim);
  raw_peer hostile(a.demo.path);
  // 8 x max_threads answers of 1 MiB: 32 MiB, four times the send queue.
  constexpr std::size_t answer = 1 * MiB;
  const std::uint32_t count = 8 * lim.max_threads;
  std::string requests;
  for (std::uint32_t id = 1; id <= count; ++id)
    requests += bokbok_test::request_bytes(id, {"blob", std::to_string(answer)});
  CHECK(hostile.send_within(requests, 10s) == requests.size());
  // The answers are made once each, whether queued, waiting or in the socket: at most
  // all of them, plus the send queue's own bound.
  a.check(lim.received(1) + lim.sending() + count * answer);
}

// Who the server runs as when it must be bound by RLIMIT_NPROC: root is exempt from it,
// so a test running as root runs the server as nobody; others run it as themselves.
struct run_as {
  std::optional<uid_t> uid;
  gid_t gid = 0;
  uid_t user() const { return uid.value_or(::getuid()); }
};
run_as unprivileged() {
  if (::geteuid() != 0) return {};
  passwd* nobody = ::getpwnam("nobody");
  REQUIRE(nobody != nullptr);
  return {nobody->pw_uid, nobody->pw_gid};
}

// Lets the server's user start only `more` threads beyond those it runs now (the
// kernel counts all of that user's threads against the limit).
void limit_threads(arena& a, const run_as& who, long more) {
  const long now = bokbok_test::threads_of_user(who.user());
  a.demo.limit(RLIMIT_NPROC, rlim_t(now + more));
}

// An arena whose server runs as an unprivileged user allowed only `more` threads beyond
// those it runs at the start; the limit is lifted when this goes.
struct few_threads_arena {
  run_as who = unprivileged();
  arena a;
  few_threads_arena(const limits& lim, long more) : a(lim, who.uid, who.gid) {
    limit_threads(a, who, more);
  }
  ~few_threads_arena() { a.demo.limit(RLIMIT_NPROC, RLIM_INFINITY); }
};

// We call `callback 1`; the server's handler calls us back; we answer that callback by
// calling `callback 1` again, one level deeper, up to `depth` levels. Where the server
// refuses to wait (a nested call fails busy at once) our deepest request fails; then we
// answer the callbacks waiting, innermost first, and every level returns. Checks that
// every level was answered or failed, at most one failed, busy. The levels called, and
// the threads of process `server` at the deepest point (every level waiting).
struct chain_result {
  unsigned levels;
  long threads_deepest;
};
chain_result callback_chain(raw_peer& hostile, unsigned depth, pid_t server) {
  long threads_deepest = -1;
  std::uint32_t next_id = 1;
  unsigned sent = 0, answered = 0, failed = 0;
  std::vector<std::uint32_t> waiting;  // the server's callbacks we have not answered
  bool deepest_reached = false;
  REQUIRE(hostile.send(bokbok_test::request_bytes(next_id++, {"callback", "1"})));
  ++sent;
  const auto end = std::chrono::steady_clock::now() + 60s;
  while (answered + failed < sent && std::chrono::steady_clock::now() < end) {
    auto f = hostile.next_frame(10s);
    REQUIRE_MESSAGE(f, "no frame from the server: ", hostile.error());
    if (f->type == wire::frame_type::request) {
      auto m = message_of(*f);
      REQUIRE(m);
      CHECK(m->at(0) == "callback");
      waiting.push_back(f->call_id);
      if (!deepest_reached && sent < depth) {
        REQUIRE(hostile.send(bokbok_test::request_bytes(next_id++, {"callback", "1"})));
        ++sent;
        continue;
      }
      if (!deepest_reached) threads_deepest = bokbok_test::proc_status(server, "Threads:");
      deepest_reached = true;
    } else if (f->type == wire::frame_type::response) {
      ++answered;
    } else if (f->type == wire::frame_type::error) {
      ++failed;
      if (!deepest_reached) threads_deepest = bokbok_test::proc_status(server, "Threads:");
      deepest_reached = true;
      auto c = wire::parse_code_payload(f->payload);
      CHECK(c.code == std::uint16_t(bokbok::error_code::busy));
      CHECK(c.text.find("wait in nested calls") != std::string_view::npos);
    } else {
      continue;  // pings and the like
    }
    // Unwinding: answer the innermost callback waiting, so its handler returns.
    if (deepest_reached && !waiting.empty()) {
      REQUIRE(hostile.send(bokbok_test::response_bytes(waiting.back(), {"ok"})));
      waiting.pop_back();
    }
  }
  MESSAGE("chain: ", sent, " levels called, ", answered, " answered, ", failed, " failed");
  CHECK(answered + failed == sent);
  CHECK(waiting.empty());
  CHECK(failed <= 1);
  return {sent, threads_deepest};
}

// The arena of the nested-call attacks: few threads, a low bound on waiting handlers.
limits nested_call_limits() {
  limits lim;
  lim.max_message_size = 1 * MiB;
  lim.max_threads = 8;
  lim.max_waiting_handlers = 64;
  return lim;
}

TEST_CASE("a callback chain 1,000 deep stops at the bound on waiting handlers and unwinds") {
  const limits lim = nested_call_limits();
  arena a(lim);
  raw_peer hostile(a.demo.path);
  const chain_result chain = callback_chain(hostile, 1'000, a.demo.pid);
  // Refused at the bound, not before it and not 1,000 deep.
  CHECK(chain.levels <= lim.waiting() + 1);
  CHECK(chain.levels >= lim.waiting());
  CHECK(chain.threads_deepest > long(lim.waiting()));  // they did wait, each on a thread
  CHECK(chain.threads_deepest <= lim.threads());
  a.check(lim.received(1) + lim.sending());
}

TEST_CASE("a callback chain 1,000 deep, under a low RLIMIT_NPROC, stops where threads run out and unwinds") {
  const limits lim = nested_call_limits();
  few_threads_arena few(lim, 4);  // fewer than the chain would hold waiting
  arena& a = few.a;
  raw_peer hostile(a.demo.path);
  const chain_result chain = callback_chain(hostile, 1'000, a.demo.pid);
  CHECK(chain.levels < lim.waiting());  // the thread limit stopped it first
  CHECK(chain.threads_deepest <= lim.threads());
  a.check(lim.received(1) + lim.sending());
}

// Sends `count` requests `callback 1` and never answers the callbacks they cause.
void flood_callbacks(raw_peer& hostile, std::uint32_t count) {
  std::string requests;
  for (std::uint32_t id = 1; id <= count; ++id)
    requests += bokbok_test::request_bytes(id, {"callback", "1"});
  CHECK(hostile.send_within(requests, 10s) == requests.size());
}

TEST_CASE("a flood of callbacks never answered holds no more threads than the bound") {
  const limits lim = nested_call_limits();
  arena a(lim);
  raw_peer hostile(a.demo.path);
  flood_callbacks(hostile, 2'000);
  // Past the bound the nested calls fail busy, and so do their requests (the demo's
  // handler lets a call_error through with its code): wait for one.
  CHECK(receives_error(hostile, bokbok::error_code::busy, "max_waiting_handlers", 20s));
  a.check(lim.received(1) + lim.sending());
}

TEST_CASE("a flood of callbacks never answered, under a low RLIMIT_NPROC, neither kills the server nor stalls others") {
  const limits lim = nested_call_limits();
  few_threads_arena few(lim, 4);  // fewer than the flood would hold waiting
  arena& a = few.a;
  raw_peer hostile(a.demo.path);
  flood_callbacks(hostile, 2'000);
  CHECK(receives_error(hostile, bokbok::error_code::busy, "wait in nested calls", 20s));
  a.check(lim.received(1) + lim.sending());
  // The thread limit held the flood back, before max_waiting_handlers did.
  CHECK(a.sampler.max_threads() < 2 + long(lim.waiting()));
}

TEST_CASE("requests of millions of empty fields are refused undecoded, the server stays bounded") {
  limits lim;
  lim.max_message_size = 16 * MiB;
  lim.max_threads = 8;
  arena a(lim);
  // A request of 4 million empty fields: 16 MiB of bytes, about 200 MB decoded; the
  // budget of a connection is 32 MiB. Three connections send two each.
  message m{"echo"};
  m.resize((lim.max_message_size - 64) / 4 - 1);
  std::string body;
  wire::encode_message(m, body);
  REQUIRE(body.size() <= lim.max_message_size);
  m.clear();
  std::vector<std::unique_ptr<raw_peer>> hostile;
  for (int c = 0; c < 3; ++c) {
    hostile.push_back(std::make_unique<raw_peer>(a.demo.path));
    for (std::uint32_t id = 1; id <= 2; ++id) {
      std::string request;
      wire::append_message_frames(request, wire::frame_type::request, id, body);
      CHECK(hostile.back()->send_within(request, 30s) == request.size());
    }
  }
  for (auto& h : hostile)
    CHECK(receives_error(*h, bokbok::error_code::too_large, "receive budget", 20s));
  a.check(lim.received(3));
}
