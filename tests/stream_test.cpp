// Stream calls (PROTOCOL.md §12, README "Streams"): in-process connections over a
// socketpair (both ends real bokbok connections), and a raw peer for the violations.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "rpc/outbox.hpp"
#include "rpc/stream_state.hpp"
#include "support/key_users.hpp"
#include "support/raw_peer.hpp"
#include "support/settle.hpp"
#include "wire/frame.hpp"
#include "wire/message_codec.hpp"

using namespace std::chrono_literals;
using bokbok::message;
namespace wire = bokbok::wire;

namespace {

// A pair: `client` calls, `server` runs `handler`.
struct pair_of {
  bokbok::connection client, server;
};
pair_of make_pair(bokbok::request_handler handler, std::uint32_t window_messages = 64,
                  std::uint32_t window_bytes = 1u << 20) {
  bokbok::options c, s;
  c.stream_window_messages = s.stream_window_messages = window_messages;
  c.stream_window_bytes = s.stream_window_bytes = window_bytes;
  s.on_request = std::move(handler);
  auto [a, b] = bokbok::connect_socketpair(c, s);
  return {a, b};
}

bokbok::call_options within(std::chrono::milliseconds d) {
  bokbok::call_options o;
  o.timeout = d;
  return o;
}

// Reads every message of `st` (bounded by the call's own deadline, or 30 s).
std::vector<message> read_all(bokbok::stream& st) {
  std::vector<message> out;
  const auto end = std::chrono::steady_clock::now() + 30s;
  while (auto m = st.read(end)) out.push_back(std::move(*m));
  return out;
}

}  // namespace

TEST_CASE("stream state: a writer takes one message and its bytes of credit, and may go negative once") {
  bokbok::detail::stream_state s(true, 4, 100);
  CHECK_FALSE(s.take_send_credit(10));  // nothing granted yet
  s.add_send_credit(2, 50);
  CHECK(s.take_send_credit(80));   // larger than the bytes left: goes, bytes negative
  CHECK_FALSE(s.take_send_credit(1));  // bytes <= 0
  s.add_send_credit(0, 40);        // -30 + 40 = 10 > 0, one message left
  CHECK(s.take_send_credit(1));
  CHECK_FALSE(s.take_send_credit(1));  // no message left
  s.add_send_credit(0xffffffffu, 0xffffffffu);
  s.add_send_credit(0xffffffffu, 0xffffffffu);  // saturates, never wraps to nothing
  CHECK(s.take_send_credit(1));
}

TEST_CASE("stream state: a message beyond the grant, or after stream_end, is refused; reading grants back at half the window") {
  bokbok::detail::stream_state s(false, 4, 1000);
  std::uint32_t rm = 0, rb = 0;
  CHECK(s.receive({"x"}, 10, rm, rb) == bokbok::detail::stream_state::receive_result::beyond_credit);
  s.grant_initial();
  for (int i = 0; i < 4; ++i)
    CHECK(s.receive({"x"}, 10, rm, rb) == bokbok::detail::stream_state::receive_result::queued);
  CHECK(s.receive({"x"}, 10, rm, rb) == bokbok::detail::stream_state::receive_result::beyond_credit);
  message m;
  CHECK(s.wait_read(std::nullopt, m, rm, rb) == bokbok::detail::stream_state::read_status::message);
  CHECK(rm == 0);  // one of four read: below half
  CHECK(s.wait_read(std::nullopt, m, rm, rb) == bokbok::detail::stream_state::read_status::message);
  CHECK(rm == 2);  // half: both granted back
  CHECK(rb == 20);
  CHECK(s.receive({"y"}, 10, rm, rb) == bokbok::detail::stream_state::receive_result::queued);
  CHECK(s.end_incoming());
  CHECK(s.receive({"z"}, 10, rm, rb) == bokbok::detail::stream_state::receive_result::after_end);
  CHECK_FALSE(s.end_incoming());
}

TEST_CASE("a server streams messages to its caller, then its final response") {
  auto p = make_pair([](bokbok::connection&, message req) {
    auto st = bokbok::this_call::stream();
    REQUIRE(st);
    int n = std::stoi(req.at(1));
    for (int i = 0; i < n; ++i) st.write({"item", std::to_string(i)});
    return message{"done", req.at(1)};
  });
  auto st = p.client.open_stream({"count", "500"}, within(60s));
  auto got = read_all(st);
  REQUIRE(got.size() == 500);
  for (int i = 0; i < 500; ++i) CHECK(got[i] == message{"item", std::to_string(i)});
  CHECK(st.finish() == message{"done", "500"});
}

TEST_CASE("a caller streams messages to the server, which answers once the stream ends") {
  auto p = make_pair([](bokbok::connection&, message) {
    auto st = bokbok::this_call::stream();
    long sum = 0, n = 0;
    while (auto m = st.read()) sum += std::stol(m->at(0)), ++n;
    return message{std::to_string(n), std::to_string(sum)};
  }, 8, 1024);  // a small window: the caller waits for credit many times
  auto st = p.client.open_stream({"sum"}, within(60s));
  long want = 0;
  for (int i = 0; i < 1000; ++i) st.write({std::to_string(i)}), want += i;
  st.close_write();
  CHECK(st.finish() == message{"1000", std::to_string(want)});
}

TEST_CASE("100,000 small messages each way on one stream arrive whole and in order") {
  constexpr int n = 100'000;
  auto p = make_pair([](bokbok::connection&, message) {
    auto st = bokbok::this_call::stream();
    int k = 0;
    while (auto m = st.read()) {
      st.write({"echo", m->at(0)});
      ++k;
    }
    return message{std::to_string(k)};
  });
  auto st = p.client.open_stream({"echo"}, within(300s));
  std::thread writer([&] {
    for (int i = 0; i < n; ++i) st.write({std::to_string(i)});
    st.close_write();
  });
  int bad = 0, count = 0;
  const auto end = std::chrono::steady_clock::now() + 300s;
  while (auto m = st.read(end)) {
    if (*m != message{"echo", std::to_string(count)}) ++bad;
    ++count;
  }
  writer.join();
  CHECK(bad == 0);
  CHECK(count == n);
  CHECK(st.finish() == message{std::to_string(n)});
}

TEST_CASE("a reader that stops holds its writer at one window, while ordinary calls go on") {
  std::atomic<int> written{0};
  auto p = make_pair([&](bokbok::connection&, message req) {
    if (req.at(0) == "ping") return message{"pong"};
    auto st = bokbok::this_call::stream();
    for (int i = 0; i < 200; ++i) {
      st.write({std::string(100, 'x')});
      ++written;
    }
    return message{"end"};
  }, 8, 1u << 20);
  auto st = p.client.open_stream({"flood"}, within(60s));
  // The writer has the window of 8 messages and no more: it blocks (holding no lock of
  // the connection: the pings below are answered).
  CHECK(bokbok_test::settles([&] { return written.load() == 8; }, 10s));
  for (int i = 0; i < 20; ++i) CHECK(p.client.request({"ping"}) == message{"pong"});
  CHECK(written.load() == 8);
  auto got = read_all(st);
  CHECK(got.size() == 200);
  CHECK(st.finish() == message{"end"});
}

TEST_CASE("try_write sends while there is credit and returns false, the message untouched, when there is none") {
  std::promise<void> go;
  auto started = go.get_future().share();
  auto p = make_pair([started](bokbok::connection&, message) {
    started.wait_for(20s);  // reads nothing until told
    auto st = bokbok::this_call::stream();
    int n = 0;
    while (st.read()) ++n;
    return message{std::to_string(n)};
  }, 2, 1u << 20);
  auto st = p.client.open_stream({"x"}, within(60s));
  message a{"a"}, b{"b"}, c{"c"};
  // The handler's initial credit comes when it starts: wait for it, bounded.
  CHECK(bokbok_test::settles([&] { return st.try_write(a); }, 10s));
  CHECK(st.try_write(b));
  CHECK_FALSE(st.try_write(c));  // the window of 2 is spent
  CHECK(c == message{"c"});
  go.set_value();
  st.write(std::move(c));  // granted back as the handler reads
  CHECK(st.finish() == message{"3"});
}

TEST_CASE("the caller cancels mid-stream: its reads fail cancelled, the handler's too") {
  std::promise<int> handler_saw;
  auto p = make_pair([&](bokbok::connection&, message) -> message {
    auto st = bokbok::this_call::stream();
    st.write({"first"});
    try {
      while (st.read()) {
      }
      handler_saw.set_value(0);
    } catch (const bokbok::call_error& e) {
      handler_saw.set_value(int(e.code()));
    }
    return {};
  });
  auto st = p.client.open_stream({"x"}, within(60s));
  CHECK(st.read() == message{"first"});
  st.cancel();
  CHECK_THROWS_AS(st.read(), bokbok::call_error);
  auto f = handler_saw.get_future();
  REQUIRE(f.wait_for(20s) == std::future_status::ready);
  CHECK(f.get() == int(bokbok::error_code::cancelled));
}

TEST_CASE("dropping the last handle of a blocking stream call cancels it; the callback form's call goes on without one") {
  std::promise<int> handler_saw;
  auto p = make_pair([&](bokbok::connection&, message req) -> message {
    auto st = bokbok::this_call::stream();
    if (req.at(0) == "endless") {
      try {
        for (;;) st.write({"more"});  // waits for credit once the window is spent
      } catch (const bokbok::call_error& e) {
        handler_saw.set_value(int(e.code()));
      }
      return {};
    }
    for (int i = 0; i < 100; ++i) st.write({std::to_string(i)});
    return {"done"};
  }, 4, 4096);
  {
    auto st = p.client.open_stream({"endless"}, within(60s));
    auto copy = st;
    CHECK(copy.read() == message{"more"});
    st = {};
    // One handle left: the call goes on, through several windows of credit.
    for (int i = 0; i < 20; ++i) REQUIRE(copy.read() == message{"more"});
  }  // the last one goes: the call is cancelled, so the handler's write ends
  auto f = handler_saw.get_future();
  REQUIRE(f.wait_for(20s) == std::future_status::ready);
  CHECK(f.get() == int(bokbok::error_code::cancelled));

  // The callback form's handle is for writing only: dropped at once, its call goes on.
  std::atomic<int> seen{0};
  std::promise<message> answer;
  p.client.open_stream({"count"}, within(60s), [&](message) { ++seen; },
                       [&](std::exception_ptr e, message m) {
                         if (e)
                           answer.set_exception(e);
                         else
                           answer.set_value(std::move(m));
                       });
  auto a = answer.get_future();
  REQUIRE(a.wait_for(20s) == std::future_status::ready);
  CHECK(a.get() == message{"done"});
  CHECK(seen.load() == 100);
}

TEST_CASE("the handler cancels mid-stream: the caller's read throws remote_error cancelled") {
  auto p = make_pair([&](bokbok::connection&, message) -> message {
    auto st = bokbok::this_call::stream();
    st.write({"first"});
    st.cancel();
    return {"ignored"};
  });
  auto st = p.client.open_stream({"x"}, within(60s));
  CHECK(st.read() == message{"first"});
  try {
    st.read();
    FAIL("read after the handler cancelled returned");
  } catch (const bokbok::remote_error& e) {
    CHECK(e.code() == bokbok::error_code::cancelled);
  }
}

TEST_CASE("a deadline mid-stream ends the reads on both ends deadline_exceeded") {
  std::promise<int> handler_saw;
  auto p = make_pair([&](bokbok::connection&, message) -> message {
    auto st = bokbok::this_call::stream();
    try {
      while (st.read()) {
      }
      handler_saw.set_value(0);
    } catch (const bokbok::call_error& e) {
      handler_saw.set_value(int(e.code()));
      throw;  // its answer, if it gets there before the caller's own deadline ends the call
    }
    return {};
  });
  auto st = p.client.open_stream({"x"}, within(500ms));
  st.write({"one"});
  try {
    st.read();
    FAIL("read past the deadline returned");
  } catch (const bokbok::call_error& e) {
    CHECK(e.code() == bokbok::error_code::deadline_exceeded);
  }
  auto f = handler_saw.get_future();
  REQUIRE(f.wait_for(20s) == std::future_status::ready);
  // Its own deadline, or the cancel the caller sends when the deadline ends its call first.
  const int code = f.get();
  CHECK((code == int(bokbok::error_code::deadline_exceeded) ||
         code == int(bokbok::error_code::cancelled)));
}

TEST_CASE("a connection aborted mid-stream fails both ends' reads with transport_error") {
  std::promise<bool> handler_saw;
  std::promise<void> started;
  auto p = make_pair([&](bokbok::connection&, message) -> message {
    auto st = bokbok::this_call::stream();
    started.set_value();
    try {
      while (st.read()) {
      }
      handler_saw.set_value(false);
    } catch (const bokbok::transport_error&) {
      handler_saw.set_value(true);
    } catch (...) {
      handler_saw.set_value(false);
    }
    return {};
  });
  auto st = p.client.open_stream({"x"}, within(60s));
  REQUIRE(started.get_future().wait_for(20s) == std::future_status::ready);
  p.client.abort();
  CHECK_THROWS_AS(st.read(), bokbok::transport_error);
  CHECK_THROWS_AS(st.write({"late"}), bokbok::transport_error);
  auto f = handler_saw.get_future();
  REQUIRE(f.wait_for(20s) == std::future_status::ready);
  CHECK(f.get());
}

TEST_CASE("many concurrent streams on one connection each get their own messages") {
  auto p = make_pair([](bokbok::connection&, message req) {
    auto st = bokbok::this_call::stream();
    int k = 0;
    while (auto m = st.read()) st.write({req.at(1), m->at(0)}), ++k;
    return message{req.at(1), std::to_string(k)};
  }, 4, 4096);
  constexpr int streams = 12, each = 300;
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < streams; ++t)
    threads.emplace_back([&, t] {
      auto st = p.client.open_stream({"echo", std::to_string(t)}, within(120s));
      std::thread w([&] {
        for (int i = 0; i < each; ++i) st.write({std::to_string(i)});
        st.close_write();
      });
      int i = 0;
      while (auto m = st.read()) {
        if (*m != message{std::to_string(t), std::to_string(i)}) ++bad;
        ++i;
      }
      w.join();
      if (i != each) ++bad;
      if (st.finish() != message{std::to_string(t), std::to_string(each)}) ++bad;
    });
  for (auto& th : threads) th.join();
  CHECK(bad.load() == 0);
}

namespace {
// A listening UNIX socket; a raw peer connects to it and the accepted end becomes a
// bokbok connection (connect_fds), so the test speaks raw bytes to a real connection.
struct raw_link {
  std::string path;
  bokbok::base::unique_fd listener;
  explicit raw_link(const char* name) {
    path = "/tmp/bokbok-stream-test-" + std::to_string(::getpid()) + "-" + name;
    ::unlink(path.c_str());
    listener.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(listener.get(), 4) == 0);
  }
  ~raw_link() { ::unlink(path.c_str()); }
  bokbok::connection accept(const bokbok::options& o) {
    int fd = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
    REQUIRE(fd >= 0);
    return bokbok::connect_fds(fd, fd, o, "raw");
  }
};

std::string stream_request(std::uint32_t id, const message& m) {
  std::string body, out;
  wire::encode_message(m, body);
  wire::append_frame(out, wire::frame_type::request, wire::flag_stream, id, body);
  return out;
}

std::string frame_record_end(std::uint32_t id) {
  return bokbok_test::frame_record(wire::frame_type::stream_end, id, {});
}

std::string stream_message(std::uint32_t id, const message& m) {
  std::string body, out;
  wire::encode_message(m, body);
  wire::append_frame(out, wire::frame_type::stream, 0, id, body);
  return out;
}

// Waits for the frame of `type` (skipping others) within a bound.
bool await_frame(bokbok_test::raw_peer& peer, wire::frame_type type) {
  const auto end = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < end)
    if (auto f = peer.next_frame(1s); f && f->type == type) return true;
  return false;
}
}  // namespace

TEST_CASE("a peer that sends a stream message beyond the credit granted is a protocol violation") {
  raw_link link("credit");
  bokbok_test::raw_peer peer(link.path);
  std::promise<void> release;
  auto released = release.get_future().share();
  bokbok::options o;
  o.stream_window_messages = 2;
  o.on_request = [released](bokbok::connection&, message) -> message {
    released.wait_for(20s);  // reads nothing: the grant stays at the initial window
    return {};
  };
  auto conn = link.accept(o);
  REQUIRE(peer.send(stream_request(1, {"s"})));
  REQUIRE(await_frame(peer, wire::frame_type::reply_credit));
  std::string three = stream_message(1, {"a"}) + stream_message(1, {"b"}) + stream_message(1, {"c"});
  peer.send(three);
  CHECK(bokbok_test::settles([&] { return conn.closed(); }, 20s));
  CHECK(conn.close_reason().find("stream message on call 1 beyond the credit granted") !=
        std::string::npos);
  release.set_value();
}

TEST_CASE("a peer that sends a stream message after its stream_end is a protocol violation") {
  raw_link link("end");
  bokbok_test::raw_peer peer(link.path);
  std::promise<void> release;
  auto released = release.get_future().share();
  bokbok::options o;
  o.on_request = [released](bokbok::connection&, message) -> message {
    released.wait_for(20s);
    return {};
  };
  auto conn = link.accept(o);
  REQUIRE(peer.send(stream_request(1, {"s"})));
  REQUIRE(await_frame(peer, wire::frame_type::reply_credit));
  peer.send(frame_record_end(1) + stream_message(1, {"late"}));
  CHECK(bokbok_test::settles([&] { return conn.closed(); }, 20s));
  CHECK(conn.close_reason().find("stream frame on call 1 after its stream_end") != std::string::npos);
  release.set_value();
}

TEST_CASE("a stream call to a peer without feature stream is refused before sending") {
  raw_link link("nofeature");
  // A raw peer whose hello offers deadline and notify only.
  bokbok::base::unique_fd fd = bokbok_test::connect_unix(link.path);
  wire::settings s;
  s.features = wire::feature_deadline | wire::feature_notify;
  REQUIRE(bokbok_test::write_all(fd.get(), wire::encode_preamble({1, wire::mode::plain, ""}) +
                                             bokbok_test::frame_record(wire::frame_type::hello, 0,
                                                                        wire::encode_settings(s))));
  auto conn = link.accept({});
  try {
    conn.open_stream({"x"});
    FAIL("open_stream to a peer without streams returned");
  } catch (const bokbok::call_error& e) {
    CHECK(e.code() == bokbok::error_code::no_such_method);
  }
}

TEST_CASE("a reply_stream frame on an ordinary call is a protocol violation; stream frames for ids not live are ignored") {
  raw_link link("notstream");
  bokbok_test::raw_peer peer(link.path);
  auto conn = link.accept({});
  // Ignored: credit and stream_end for calls that do not exist here (crossed their end).
  REQUIRE(peer.send(bokbok_test::frame_record(wire::frame_type::reply_credit, 77,
                                              wire::encode_credit_payload({1, 1})) +
                    frame_record_end(78)));
  auto answer = conn.request_async({"plain"});
  std::optional<bokbok_test::raw_frame> req;
  const auto end = std::chrono::steady_clock::now() + 20s;
  while (!req && std::chrono::steady_clock::now() < end)
    if (auto f = peer.next_frame(1s); f && f->type == wire::frame_type::request) req = f;
  REQUIRE(req);
  CHECK_FALSE(conn.closed());
  std::string body, out;
  wire::encode_message({"oops"}, body);
  wire::append_frame(out, wire::frame_type::reply_stream, 0, req->call_id, body);
  REQUIRE(peer.send(out));
  CHECK(bokbok_test::settles([&] { return conn.closed(); }, 20s));
  CHECK(conn.close_reason().find("which is not a stream call") != std::string::npos);
  CHECK_THROWS(answer.get());
}

TEST_CASE("large stream messages, each larger than the byte window, go one at a time both ways") {
  // The opening request is fragmented too: its credit (a control frame) may overtake it.
  const std::string big_arg(200 * 1024, 'o');
  auto p = make_pair([&](bokbok::connection&, message req) {
    auto st = bokbok::this_call::stream();
    std::size_t in = 0;
    while (auto m = st.read()) in += m->at(0).size();
    for (int i = 0; i < 5; ++i) st.write({std::string(300 * 1024, char('a' + i))});
    return message{std::to_string(req.at(1).size()), std::to_string(in)};
  }, 64, 64 * 1024);
  auto st = p.client.open_stream({"big", big_arg}, within(120s));
  for (int i = 0; i < 3; ++i) st.write({std::string(250 * 1024, 'w')});
  st.close_write();
  auto got = read_all(st);
  REQUIRE(got.size() == 5);
  for (int i = 0; i < 5; ++i) CHECK(got[i] == message{std::string(300 * 1024, char('a' + i))});
  CHECK(st.finish() == message{std::to_string(big_arg.size()), std::to_string(3 * 250 * 1024)});
}

TEST_CASE("outbox: a stream's next message and its stream_end wait until its large message has gone whole") {
  bokbok::rpc::outbox ob;
  const std::size_t max = wire::max_frame_payload;
  ob.push_message(wire::frame_type::stream, 5, std::string(3 * max, 'b'));
  ob.push_message(wire::frame_type::request, 9, std::string(2 * max, 'r'));  // another, interleaved
  ob.push_message(wire::frame_type::stream, 5, "xyz");
  ob.push_record_after(wire::frame_type::stream, 5,
                       bokbok_test::frame_record(wire::frame_type::stream_end, 5, {}));
  std::string wire_bytes;
  for (int i = 0; i < 100 && !ob.empty(); ++i) {
    bokbok::rpc::batch b;
    REQUIRE(ob.take_batch(b, max));  // about one frame per batch: many turns
    for (auto& v : b.iov) wire_bytes.append(static_cast<const char*>(v.iov_base), v.iov_len);
  }
  CHECK(ob.empty());
  wire::record_reader records;
  records.feed(wire_bytes);
  std::vector<std::string> of_stream5;  // "stream:<size>" / "end", in wire order
  std::string_view body;
  while (records.next(body) == wire::record_reader::status::record) {
    wire::frame_view f{};
    std::string err;
    REQUIRE(wire::parse_frame(body, f, err));
    if (f.call_id != 5) continue;
    of_stream5.push_back(f.type == wire::frame_type::stream_end
                             ? std::string("end")
                             : "stream:" + std::to_string(f.payload.size()));
  }
  const std::string full = "stream:" + std::to_string(max);
  CHECK(of_stream5 == std::vector<std::string>{full, full, full, "stream:3", "end"});
}

TEST_CASE("outbox: a small stream message with fds that waits behind a large one keeps its fds") {
  bokbok::rpc::outbox ob;
  const std::size_t max = wire::max_frame_payload;
  ob.push_message(wire::frame_type::reply_stream, 3, std::string(2 * max, 'b'));
  int p[2];
  REQUIRE(::pipe(p) == 0);
  std::vector<bokbok::base::unique_fd> fds;
  fds.emplace_back(p[0]);
  fds.emplace_back(p[1]);
  // The message bytes begin with the fd count its FDS flag announces.
  ob.push_message(wire::frame_type::reply_stream, 3, "\x02" + std::string(10, 's'), 0,
                  wire::flag_fds, std::move(fds));
  std::size_t records = 0, fds_seen = 0, small_at = 0, fds_at = 0;
  for (int i = 0; i < 100 && !ob.empty(); ++i) {
    bokbok::rpc::batch b;
    REQUIRE(ob.take_batch(b, max));
    for (auto& r : b.fds) {
      fds_seen += r.fds.size();
      fds_at = records + r.record;
    }
    for (std::size_t h = 0; h < b.headers.size(); ++h)
      if (b.iov[2 * h + (b.small.empty() ? 0 : 1) + 1].iov_len == 11) small_at = records + h;
    records += b.small_sizes.size() + b.headers.size();
  }
  CHECK(records == 3);      // two frames of the large one, then the small one
  CHECK(small_at == 2);
  CHECK(fds_seen == 2);     // before: dropped (closed) while it waited
  CHECK(fds_at == small_at);  // with the first byte of its own record
}

TEST_CASE("the callback form delivers the peer's stream on the loop thread, in order, then the answer") {
  auto p = make_pair([](bokbok::connection&, message req) {
    auto st = bokbok::this_call::stream();
    int n = std::stoi(req.at(1));
    for (int i = 0; i < n; ++i) st.write({std::to_string(i)});
    int back = 0;
    while (st.read()) ++back;
    return message{"done", std::to_string(back)};
  }, 8, 4096);  // a small window: credit must come back as the callback consumes
  std::atomic<int> seen{0}, bad{0};
  std::promise<message> answer;
  auto st = p.client.open_stream(
      {"count", "300"}, within(60s),
      [&](message m) {
        if (m != message{std::to_string(seen.load())}) ++bad;
        ++seen;
      },
      [&](std::exception_ptr e, message m) {
        if (e)
          answer.set_exception(e);
        else
          answer.set_value(std::move(m));
      });
  REQUIRE(st);
  st.write({"x"});
  st.close_write();
  auto f = answer.get_future();
  REQUIRE(f.wait_for(30s) == std::future_status::ready);
  CHECK(f.get() == message{"done", "1"});
  CHECK(seen.load() == 300);
  CHECK(bad.load() == 0);
}

TEST_CASE("a handler's error comes after the large messages it wrote before it") {
  auto p = make_pair([](bokbok::connection&, message) -> message {
    auto st = bokbok::this_call::stream();
    for (int i = 0; i < 3; ++i) st.write({std::string(200 * 1024, char('a' + i))});
    throw bokbok::call_error(bokbok::error_code::bad_arguments, "after three");
  });
  auto st = p.client.open_stream({"x"}, within(60s));
  for (int i = 0; i < 3; ++i) CHECK(st.read() == message{std::string(200 * 1024, char('a' + i))});
  try {
    st.read();
    FAIL("the error did not come");
  } catch (const bokbok::remote_error& e) {
    CHECK(e.code() == bokbok::error_code::bad_arguments);
  }
}

TEST_CASE("streams work in key mode: large and small messages both ways, in order") {
  bokbok_test::alice_key k;
  bokbok::options c, s;
  c.keys.user = "alice";
  c.keys.key = k.alice;
  s.keys.key_for_user = k.lookup();
  c.stream_window_bytes = s.stream_window_bytes = 64 * 1024;
  s.on_request = [](bokbok::connection&, message) {
    auto st = bokbok::this_call::stream();
    int n = 0;
    while (auto m = st.read()) st.write(std::move(*m)), ++n;
    return message{std::to_string(n)};
  };
  auto [client, server] = bokbok::connect_socketpair(c, s);
  auto st = client.open_stream({"echo"}, within(60s));
  std::vector<message> sent;
  for (int i = 0; i < 20; ++i)
    sent.push_back({std::string(i % 3 ? 10 : 150 * 1024, char('a' + i))});
  std::thread w([&] {
    for (auto& m : sent) st.write(m);
    st.close_write();
  });
  auto got = read_all(st);
  w.join();
  CHECK(got == sent);
  CHECK(st.finish() == message{"20"});
}

TEST_CASE("a stream window of 0 is refused with usage_error") {
  bokbok::options bad;
  bad.stream_window_messages = 0;
  CHECK_THROWS_AS(bokbok::connect_socketpair(bad, {}), bokbok::usage_error);
  bad.stream_window_messages = 1;
  bad.stream_window_bytes = 0;
  CHECK_THROWS_AS(bokbok::connect_socketpair({}, bad), bokbok::usage_error);
}

// A message given to write() by move keeps its large fields in place until written
// (stream_send with `&&`): messages of mixed field sizes, each way, arrive whole.
TEST_CASE("stream messages with large fields, written by move, arrive whole each way") {
  auto shaped = [](int i) {
    const std::size_t sizes[] = {16 * 1024, 16 * 1024 - 1, 70'000, 200'000, 0, 5};
    message m;
    for (std::size_t j = 0; j < std::size(sizes); ++j)
      m.push_back(std::string(sizes[(j + std::size_t(i)) % std::size(sizes)],
                              char('a' + (i * 7 + int(j)) % 26)));
    return m;
  };
  constexpr int n = 12;
  auto p = make_pair([&](bokbok::connection&, message) {
    auto st = bokbok::this_call::stream();
    int i = 0;
    while (auto m = st.read()) {
      if (*m != shaped(i)) return message{"bad", std::to_string(i)};
      message back = shaped(i + 1);
      st.write(std::move(back));
      ++i;
    }
    return message{std::to_string(i)};
  });
  auto st = p.client.open_stream({"mixed"}, within(60s));
  std::thread writer([&] {
    for (int i = 0; i < n; ++i) {
      message m = shaped(i);
      st.write(std::move(m));
    }
    st.close_write();
  });
  auto got = read_all(st);
  writer.join();
  REQUIRE(got.size() == std::size_t(n));
  for (int i = 0; i < n; ++i) CHECK(got[std::size_t(i)] == shaped(i + 1));
  CHECK(st.finish() == message{std::to_string(n)});
}
