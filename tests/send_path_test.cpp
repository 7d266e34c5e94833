// The send path (src/rpc/send_path.hpp): who may write now, and the record sink. In key
// mode the sink seals each record from the frames as the outbox cut them; what a peer
// opens from the sealed batches is exactly the plain records the outbox gives.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <new>
#include <chrono>
#include <future>
#include <string>

#include "base/endian.hpp"
#include "base/unique_fd.hpp"
#include "bokbok/bokbok.hpp"
#include "bokbok/server.hpp"
#include "crypto/record_cipher.hpp"
#include "io/duplex_stream.hpp"
#include "io/loop.hpp"
#include "rpc/send_path.hpp"
#include "wire/frame.hpp"

using namespace bokbok;

// Allocations made by this program, counted so a test can tell that sealing reuses its
// buffers (the replaced global operator new counts, then allocates as usual).
namespace {
std::atomic<std::size_t> allocations{0};
}  // namespace

void* operator new(std::size_t n) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
// GCC takes these for a free() of what operator new returned; here they are a pair.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace {

constexpr auto patience = std::chrono::seconds(10);  // the longest any one wait may take

// One direction's cipher, keyed with a fixed test key.
crypto::record_cipher test_cipher() {
  std::array<unsigned char, crypto::cipher_key_len> k{};
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<unsigned char>(i * 7 + 1);
  crypto::cipher_state st;
  st.initialize_key(k);
  return crypto::record_cipher(std::move(st));
}

// The same records queued in two outboxes: small ones, and messages of several frames.
void fill(rpc::outbox& box) {
  std::string ping;
  wire::append_frame(ping, wire::frame_type::ping, 0, 0, {});
  box.push_record_bytes(ping + ping);  // two records at once
  box.push_message(wire::frame_type::request, 1, std::string(10, 'a'));
  box.push_message(wire::frame_type::request, 3, std::string(8, '-') + std::string(200000, 'b'), 8);
  box.push_message(wire::frame_type::response, 2, std::string(70000, 'c'));
  // Large fields in place: frames whose payload spans pieces, sealed from them joined.
  wire::gathered_message g;
  g.bytes = std::string(6, '-');
  wire::encode_gathered({std::string(30000, 'd'), "e", std::string(100000, 'f')}, g, 20000);
  box.push_message(wire::frame_type::response, 4, std::move(g), 6);
  box.push_record_bytes(ping);
}

std::string concat(const rpc::batch& b) {
  std::string out;
  for (const iovec& v : b.iov) out.append(static_cast<const char*>(v.iov_base), v.iov_len);
  return out;
}

}  // namespace

TEST_CASE("a caller may write only when the send side is idle and its sink is ready") {
  rpc::send_side idle{false, false, false, true, true};
  CHECK(rpc::caller_may_write(idle));
  auto in_flight = idle;
  in_flight.in_flight = true;
  auto posted = idle;
  posted.flush_posted = true;
  auto queued = idle;
  queued.queued = true;
  auto no_stream = idle;
  no_stream.stream = false;
  auto handshaking = idle;
  handshaking.sink_ready = false;
  for (const auto& s : {in_flight, posted, queued, no_stream, handshaking})
    CHECK_FALSE(rpc::caller_may_write(s));
}

TEST_CASE("a plain sink passes batches and records through unchanged") {
  rpc::outbox box;
  fill(box);
  rpc::batch b;
  REQUIRE(box.take_batch(b, 1 << 20));
  const std::string before = concat(b);
  rpc::record_sink plain;
  CHECK_FALSE(plain.sealing());
  rpc::sealed_buffers buffers;
  REQUIRE(plain.seal_batch(b, buffers));
  CHECK(buffers.held_bytes() == 0);
  CHECK(concat(b) == before);
  std::string scratch;
  std::string_view out;
  REQUIRE(plain.seal_record("ab", scratch, out));
  CHECK(out == "ab");
}

TEST_CASE("sealed batches open, record by record and in order, to the outbox's plain records") {
  rpc::outbox plain_box, sealed_box;
  fill(plain_box);
  fill(sealed_box);
  crypto::record_cipher send = test_cipher();
  crypto::record_cipher receive = test_cipher();
  rpc::record_sink sink(&send);
  CHECK(sink.sealing());
  std::string plain, opened;
  rpc::sealed_buffers buffers;
  for (int turns = 0; turns < 100; ++turns) {
    rpc::batch p, s;
    const bool more = plain_box.take_batch(p, 100000);
    REQUIRE(sealed_box.take_batch(s, 100000) == more);
    if (!more) break;
    plain += concat(p);
    const std::size_t records = s.small_sizes.size() + s.headers.size();
    const std::size_t plain_bytes = s.bytes;
    REQUIRE(sink.seal_batch(s, buffers));
    REQUIRE(s.iov.size() == 1);
    std::string_view wire_bytes(static_cast<const char*>(s.iov[0].iov_base), s.iov[0].iov_len);
    CHECK(wire_bytes.size() == plain_bytes + records * crypto::tag_len);
    CHECK(s.bytes == wire_bytes.size());
    while (!wire_bytes.empty()) {
      REQUIRE(wire_bytes.size() >= 2);
      const std::size_t len = base::load_be16(wire_bytes);
      REQUIRE(wire_bytes.size() >= 2 + len);
      std::string frame;
      REQUIRE(receive.open(wire_bytes.substr(2, len), frame));
      base::append_be16(opened, static_cast<std::uint16_t>(frame.size()));
      opened += frame;
      wire_bytes.remove_prefix(2 + len);
    }
  }
  CHECK(plain_box.empty());
  CHECK(opened.size() == plain.size());
  CHECK(opened == plain);
  // Then one record on its own (a caller's direct write) follows in nonce order.
  std::string ping, scratch;
  wire::append_frame(ping, wire::frame_type::ping, 0, 0, {});
  std::string_view out;
  REQUIRE(sink.seal_record(ping, scratch, out));
  std::string frame;
  REQUIRE(receive.open(out.substr(2), frame));
  CHECK(std::string_view(frame) == std::string_view(ping).substr(2));
}

TEST_CASE("a frame sealed from two parts is the record sealed from the whole frame") {
  crypto::record_cipher whole = test_cipher();
  crypto::record_cipher parts = test_cipher();
  for (std::size_t split : {std::size_t{0}, std::size_t{8}, std::size_t{1000}, std::size_t{65519}}) {
    std::string frame(65519, '\0');
    for (std::size_t i = 0; i < frame.size(); ++i) frame[i] = static_cast<char>(i * 31 + split);
    std::string expected;
    REQUIRE(whole.seal(frame, expected));
    std::string got(crypto::sealed_record_size(frame.size()), '\0');
    REQUIRE(parts.seal_into(std::string_view(frame).substr(0, split),
                            std::string_view(frame).substr(split), got.data()));
    CHECK(got == expected);
  }
  std::string room(crypto::sealed_record_size(0), '\0');
  CHECK_FALSE(parts.seal_into({}, {}, room.data()));  // an empty frame: refused, cipher dead
  CHECK(parts.failed());
}

TEST_CASE("sealing bulk batches reuses its buffers, and an idle send side keeps none") {
  crypto::record_cipher send = test_cipher();
  crypto::record_cipher receive = test_cipher();
  rpc::record_sink sink(&send);
  rpc::sealed_buffers buffers;
  const std::string big(1 << 20, 'z');
  rpc::outbox box;
  rpc::batch b;
  std::size_t sealed_batches = 0, allocations_after_first = 0;
  for (int message = 0; message < 3; ++message) {
    box.push_message(wire::frame_type::response, 1, big);
    for (int turns = 0; turns < 100 && box.take_batch(b, 512 * 1024); ++turns) {
      const std::size_t before = allocations.load();
      REQUIRE(sink.seal_batch(b, buffers));
      if (sealed_batches++ > 0) allocations_after_first += allocations.load() - before;
      // What went out opens, record by record, to frames of `big`.
      std::string_view wire_bytes(static_cast<const char*>(b.iov[0].iov_base), b.iov[0].iov_len);
      std::string frame;
      while (!wire_bytes.empty()) {
        const std::size_t len = base::load_be16(wire_bytes);
        frame.clear();
        REQUIRE(receive.open(wire_bytes.substr(2, len), frame));
        CHECK(frame.size() > wire::frame_header_size);
        wire_bytes.remove_prefix(2 + len);
      }
      b.clear();  // the write is done
    }
  }
  CHECK(sealed_batches >= 6);
  // Each batch was sealed into a buffer it already had: no allocation, no scratch copy.
  CHECK(allocations_after_first == 0);
  CHECK(buffers.held_bytes() >= 512 * 1024);
  buffers.release_idle();
  CHECK(buffers.held_bytes() == 0);
}

TEST_CASE("a send queue bound of zero is refused when a connection opens or a server is made") {
  bokbok::options zero;
  zero.max_send_queue = 0;
  CHECK_THROWS_WITH_AS(bokbok::connect_socketpair(zero, {}),
                       doctest::Contains("max_send_queue must be at least 1"),
                       bokbok::usage_error);
  bokbok::server_options so;
  so.listen = {"unix:@bokbok-send-path-zero-" + std::to_string(getpid())};
  so.max_send_queue = 0;
  CHECK_THROWS_WITH_AS(bokbok::server{so}, doctest::Contains("max_send_queue must be at least 1"),
                       bokbok::usage_error);
  // The smallest bound works: every record still goes out, one batch at a time.
  bokbok::options one;
  one.max_send_queue = 1;
  one.on_request = [](bokbok::connection&, bokbok::message m) { return m; };
  auto [a, b] = bokbok::connect_socketpair(one, one);
  CHECK(a.request({"x", std::string(100000, 'y')}) == bokbok::message{"x", std::string(100000, 'y')});
  a.abort();
  b.wait_closed();
}

TEST_CASE("notify() in a handler is refused busy when the send queue is full, not held") {
  // The receiver's loop thread (the default loop, shared by every connection here) is
  // held by another connection's inline handler: it reads nothing meanwhile.
  std::promise<void> entered, release, go;
  auto released = release.get_future().share();
  auto started = go.get_future().share();
  bokbok::options holder;
  holder.inline_handlers = true;
  holder.on_request = [&entered, released](bokbok::connection&, bokbok::message m) {
    entered.set_value();
    released.wait_for(patience);
    return m;
  };
  bokbok::options receiver;
  receiver.on_notify = [](bokbok::connection&, bokbok::message) {};
  // The sender's handler, on a pool thread, notifies until the queue is full.
  std::promise<std::string> outcome;
  bokbok::options sender;
  sender.max_send_queue = 64 * 1024;
  sender.on_request = [&outcome, started](bokbok::connection& c, bokbok::message m) {
    started.wait_for(patience);
    std::string what = "never full";
    try {
      for (int i = 0; i < 1000; ++i) c.notify({std::string(16 * 1024, 'n')});
    } catch (const bokbok::call_error& e) {
      what = e.code() == bokbok::error_code::busy ? "busy" : e.what();
    }
    outcome.set_value(what);
    return m;
  };
  auto [a, b] = bokbok::connect_socketpair(receiver, sender);
  auto answer = a.request_async({"go"});  // b's handler starts and waits for `go`
  auto [x, y] = bokbok::connect_socketpair({}, holder);
  auto held = x.request_async({"hold"});
  REQUIRE(entered.get_future().wait_for(patience) == std::future_status::ready);
  go.set_value();
  auto result = outcome.get_future();
  const bool ended = result.wait_for(patience) == std::future_status::ready;
  release.set_value();
  CHECK(ended);
  if (ended) CHECK(result.get() == "busy");
  CHECK(answer.wait_for(patience) == std::future_status::ready);
  CHECK(held.wait_for(patience) == std::future_status::ready);
  a.abort();
  x.abort();
  b.wait_closed();
  y.wait_closed();
}

namespace {

struct quiet_events : io::stream_events {
  void on_data(std::string_view) override {}
  void on_read_end(int) override {}
  void on_write_done(int) override {}
};

// A real stream over one end of a socketpair (send buffer kept small, so the kernel
// takes part of a large write), and the other end, read by the test.
struct wired {
  std::shared_ptr<io::loop> loop = io::loop::start();
  quiet_events events;
  std::shared_ptr<io::duplex_stream> stream;
  base::unique_fd peer;
  wired() {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    int small = 4096;
    REQUIRE(::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
    peer = base::unique_fd(sv[1]);
    stream = io::duplex_stream::create(loop, base::unique_fd(sv[0]), {}, &events);
  }
  ~wired() {
    // The stream is closed on its loop thread (its rule), waited for within patience.
    auto closed = std::make_shared<std::promise<void>>();
    auto f = closed->get_future();
    loop->post([s = stream, closed] {
      s->close();
      closed->set_value();
    });
    f.wait_for(patience);
  }
  // Everything the peer can read now (bounded: 10 s, and stops at `want` bytes).
  std::string read_peer(std::size_t want) {
    std::string got;
    const auto until = std::chrono::steady_clock::now() + patience;
    while (got.size() < want && std::chrono::steady_clock::now() < until) {
      pollfd p{peer.get(), POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[65536];
      ssize_t n = ::read(peer.get(), buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, static_cast<std::size_t>(n));
    }
    return got;
  }
};

std::string ping_record() {
  std::string ping;
  wire::append_frame(ping, wire::frame_type::ping, 0, 0, {});
  return ping;
}

}  // namespace

TEST_CASE("the writer role is held by one writer at a time: a caller's direct write, then the loop") {
  wired w;
  rpc::send_path send;
  CHECK_FALSE(send.begin_direct(true, false));  // no stream yet
  send.set_stream(w.stream);
  auto direct = send.begin_direct(true, false);
  REQUIRE(direct);
  CHECK(send.writing());
  CHECK(send.direct_writing());
  CHECK_FALSE(send.begin_direct(true, false));  // a second caller waits its turn
  const std::string ping = ping_record();
  auto r = direct->stream->try_write_now(ping);
  REQUIRE(r.what == io::try_write_result::status::wrote);
  auto done = send.end_direct(*direct, true, ping, r);
  CHECK_FALSE(done.flush);
  CHECK_FALSE(send.writing());
  CHECK(w.read_peer(ping.size()) == ping);

  // Queued records belong to the loop: no caller goes ahead of them.
  send.queue().push_record_bytes(ping);
  CHECK_FALSE(send.begin_direct(true, false));
  CHECK(send.want_flush());
  CHECK_FALSE(send.want_flush());  // one flush posted is enough
  send.flush_started();
  rpc::batch b;
  rpc::record_sink sink;
  REQUIRE(send.take_write(b, nullptr, sink) == rpc::send_path::taken::records);
  CHECK(send.writing());
  CHECK_FALSE(send.want_flush());  // the writer flushes again when its write is done
  CHECK_FALSE(send.begin_direct(true, false));  // a batch in flight
  send.write_done();
  CHECK(send.all_written());
  CHECK(send.take_write(b = {}, nullptr, sink) == rpc::send_path::taken::nothing);
  CHECK(send.begin_direct(true, false));  // idle again
}

TEST_CASE("a direct write is refused when traced, and in key mode until the sink seals") {
  wired w;
  rpc::send_path send;
  send.set_stream(w.stream);
  CHECK_FALSE(send.begin_direct(false, false));  // the frame trace wants the loop
  CHECK_FALSE(send.begin_direct(true, true));    // key mode, handshake not done
  send.drop_stream();
  CHECK_FALSE(send.begin_direct(true, false));  // the stream is let go of
}

TEST_CASE("what the kernel did not take of a direct write goes out next, before queued records") {
  wired w;
  rpc::send_path send;
  send.set_stream(w.stream);
  send.set_direct_request(5);
  std::string big;
  wire::append_frame(big, wire::frame_type::request, 0, 5, std::string(60000, 'q'));
  auto direct = send.begin_direct(true, false);
  REQUIRE(direct);
  auto r = direct->stream->try_write_now(big);
  REQUIRE(r.what == io::try_write_result::status::wrote);
  REQUIRE(r.written < big.size());  // the small send buffer took only part of it
  auto done = send.end_direct(*direct, true, big, r);
  CHECK(done.flush);
  CHECK(done.not_sent == 0);
  CHECK(send.last_written_request() == 0);  // not all of it went
  CHECK(send.has_raw());
  const std::string ping = ping_record();
  send.queue().push_record_bytes(ping);
  CHECK_FALSE(send.begin_direct(true, false));
  std::string wire_bytes = w.read_peer(r.written);
  for (int turns = 0; turns < 10; ++turns) {
    rpc::batch b;
    rpc::record_sink sink;
    auto t = send.take_write(b, nullptr, sink);
    if (t == rpc::send_path::taken::nothing) break;
    CHECK(t == (turns == 0 ? rpc::send_path::taken::raw : rpc::send_path::taken::records));
    REQUIRE(send.seal(b, sink));
    wire_bytes += concat(b);
    send.write_done();
  }
  CHECK(wire_bytes == big + ping);
}

TEST_CASE("a direct write that a gone peer took nothing of reports its request not sent") {
  wired w;
  rpc::send_path send;
  send.set_stream(w.stream);
  const std::string ping = ping_record();
  send.set_direct_request(9);
  auto whole = send.begin_direct(true, false);
  REQUIRE(whole);
  auto r = whole->stream->try_write_now(ping);
  REQUIRE(r.written == ping.size());
  CHECK(send.end_direct(*whole, true, ping, r).not_sent == 0);
  CHECK(send.last_written_request() == 9);  // its record was the last bytes written
  w.peer.reset();  // the peer goes away
  auto lost = send.begin_direct(true, false);
  REQUIRE(lost);
  r = lost->stream->try_write_now(ping);
  REQUIRE(r.what == io::try_write_result::status::failed);
  auto done = send.end_direct(*lost, true, ping, r);
  CHECK(done.not_sent == 9);
  CHECK(send.last_written_request() == 0);
  CHECK(done.flush);  // the loop's own write of it reports the failure
  CHECK(send.has_raw());
}

TEST_CASE("the send path lets go of its sealing buffers when nothing is left to write") {
  rpc::send_path send;
  crypto::record_cipher cipher = test_cipher();
  const rpc::record_sink sealing(&cipher);
  send.queue().push_message(wire::frame_type::response, 1, std::string(300000, 'k'));
  int batches = 0;
  for (int turns = 0; turns < 10; ++turns) {
    rpc::batch b;
    rpc::record_sink plain;
    if (send.take_write(b, nullptr, plain) == rpc::send_path::taken::nothing) break;
    REQUIRE(send.seal(b, sealing));
    ++batches;
    CHECK(send.sealing_bytes() >= b.bytes);  // sealed into a buffer the path keeps
    send.write_done();
  }
  CHECK(batches >= 1);
  CHECK(send.all_written());
  // Idle: an idle connection holds no large sealing buffer (one small one at most).
  CHECK(send.sealing_bytes() <= rpc::sealed_buffers::idle_keep);
}

TEST_CASE("key mode's small records are sealed without an allocation per round trip, and idle keeps one small buffer") {
  rpc::send_path send;
  crypto::record_cipher cipher = test_cipher();
  const rpc::record_sink sealing(&cipher);
  rpc::batch b;
  std::size_t allocations_after_warmup = 0;
  // Round trips of a quiet connection: one small answer queued, written by the loop, then
  // the send side falls idle (take_write finds nothing) before the next one.
  for (int round = 0; round < 50; ++round) {
    send.queue().push_message(wire::frame_type::response, 1,
                              std::string(16 + static_cast<std::size_t>(round % 7) * 40, 'r'));
    rpc::record_sink plain;
    REQUIRE(send.take_write(b, nullptr, plain) == rpc::send_path::taken::records);
    const std::size_t before = allocations.load();
    REQUIRE(send.seal(b, sealing));
    send.write_done();
    b.clear();
    REQUIRE(send.take_write(b, nullptr, plain) == rpc::send_path::taken::nothing);
    if (round >= 7) allocations_after_warmup += allocations.load() - before;  // each size seen
    CHECK(send.sealing_bytes() > 0);  // idle, yet the small buffer stays
    CHECK(send.sealing_bytes() <= rpc::sealed_buffers::idle_keep);
  }
  CHECK(allocations_after_warmup == 0);
  // A large answer grows the buffers; idle again, only a small one may stay.
  send.queue().push_message(wire::frame_type::response, 1, std::string(300000, 'k'));
  for (int turns = 0; turns < 10; ++turns) {
    rpc::record_sink plain;
    b.clear();
    if (send.take_write(b, nullptr, plain) == rpc::send_path::taken::nothing) break;
    REQUIRE(send.seal(b, sealing));
    CHECK(send.sealing_bytes() >= b.bytes);
    send.write_done();
  }
  CHECK(send.all_written());
  CHECK(send.sealing_bytes() <= rpc::sealed_buffers::idle_keep);
}
