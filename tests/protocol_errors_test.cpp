// The error paths of the wire protocol (PROTOCOL.md §2.3, §4.3, §5.2, §6.1, §8.5, §8.6,
// §9), pinned on real sockets: a bokbok connection on one end, and on the other either
// a second connection or a hand-written raw peer that sends exact bytes and checks the
// exact bytes it gets back (which is how "no further frame" is seen).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <set>
#include <string>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "bokbok/key.hpp"
#include "support/child_process.hpp"
#include "base/unique_fd.hpp"
#include "support/key_users.hpp"
#include "support/raw_socket.hpp"
#include "wire/frame.hpp"
#include "wire/message_codec.hpp"
#include "wire/preamble.hpp"
#include "wire/settings.hpp"

using namespace std::chrono_literals;
using bokbok::message;
namespace wire = bokbok::wire;

namespace {

constexpr auto patience = 10s;  // the longest any single wait here may take

bool contains(const std::string& hay, std::string_view needle) {
  return hay.find(needle) != std::string::npos;
}

using bokbok_test::write_all;

// Reads until `want` bytes have come (or the stream ends, or `limit` passes).
std::string read_some(int fd, std::size_t want, std::chrono::milliseconds limit = patience) {
  return bokbok_test::read_some(fd, want, limit);
}

// What arrives until the peer ends the stream; `ended` says whether it did (EOF, not a
// reset, within `limit`).
struct rest {
  std::string bytes;
  bool ended = false;
  bool reset = false;
};
rest read_to_end(int fd, std::chrono::milliseconds limit = patience) {
  rest r;
  auto end = std::chrono::steady_clock::now() + limit;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return r;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, int(left.count())) <= 0) return r;
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      r.reset = true;
      return r;
    }
    if (n == 0) {
      r.ended = true;
      return r;
    }
    r.bytes.append(buf, std::size_t(n));
  }
}

// One record (u16 length || body): its body, or "" if the stream ended first.
std::string read_body(int fd) {
  std::string h = read_some(fd, 2);
  if (h.size() < 2) return "";
  std::size_t len = (std::size_t(std::uint8_t(h[0])) << 8) | std::uint8_t(h[1]);
  return read_some(fd, len);
}

std::string record(wire::frame_type t, std::uint8_t flags, std::uint32_t id, std::string_view payload) {
  std::string r;
  wire::append_frame(r, t, flags, id, payload);
  return r;
}

std::string plain_preamble() { return wire::encode_preamble({1, wire::mode::plain, ""}); }
std::string key_preamble(const std::string& user) {
  return wire::encode_preamble({1, wire::mode::key, user});
}
std::string hello(std::uint32_t features = wire::features_supported) {
  wire::settings s;
  s.features = features;
  return record(wire::frame_type::hello, 0, 0, wire::encode_settings(s));
}

// The frames of a whole stream (after its preamble), parsed.
struct frame_copy {
  wire::frame_type type;
  std::uint8_t flags;
  std::uint32_t id;
  std::string payload;
};
std::vector<frame_copy> frames_of(std::string_view records) {
  std::vector<frame_copy> out;
  wire::record_reader rr;
  rr.feed(records);
  std::string_view body;
  while (rr.next(body) == wire::record_reader::status::record) {
    wire::frame_view f;
    std::string err;
    REQUIRE_MESSAGE(wire::parse_frame(body, f, err), err);
    out.push_back({f.type, f.flags, f.call_id, std::string(f.payload)});
  }
  return out;
}

// A bokbok connection opening on one end of a socketpair (in the background: opening
// blocks until the peer's hello), and the raw other end.
struct raw_peer {
  bokbok::base::unique_fd fd;
  std::future<bokbok::connection> side;

  explicit raw_peer(const bokbok::options& opts) {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    fd.reset(sv[1]);
    int theirs = sv[0];
    side = std::async(std::launch::async, [theirs, opts] {
      return bokbok::connect_fds(theirs, theirs, opts, "raw peer");
    });
  }
  ~raw_peer() {
    fd.reset();  // the connection's end then reads end of stream
    if (side.valid()) side.wait_for(patience);
  }
  // Reads the plain side's preamble and hello, checking them.
  void read_plain_greeting() {
    REQUIRE(read_some(fd.get(), 9) == plain_preamble());
    std::string h = read_body(fd.get());
    auto fs = frames_of(std::string(1, char(h.size() >> 8)) + char(h.size() & 0xff) + h);
    REQUIRE(fs.size() == 1);
    CHECK(fs[0].type == wire::frame_type::hello);
  }
  // Plain: greets and opens.
  bokbok::connection open_plain(std::uint32_t features = wire::features_supported) {
    read_plain_greeting();
    REQUIRE(write_all(fd.get(), plain_preamble() + hello(features)));
    REQUIRE(side.wait_for(patience) == std::future_status::ready);
    return side.get();
  }
  // The error the opening side failed with ("" if it opened).
  std::string open_error() {
    REQUIRE(side.wait_for(patience) == std::future_status::ready);
    try {
      side.get();
      return "";
    } catch (const bokbok::protocol_error& e) {
      return std::string("protocol_error: ") + e.what();
    } catch (const std::exception& e) {
      return std::string("other: ") + e.what();
    }
  }
};

bokbok::options echo_options() {
  bokbok::options o;
  o.on_request = [](bokbok::connection&, message m) { return m; };
  return o;
}

// The echo options of a key-mode client, alice, with `k`'s key.
bokbok::options alice_echo_options(const bokbok_test::alice_key& k) {
  bokbok::options o = echo_options();
  o.keys.user = "alice";
  o.keys.key = k.alice;
  return o;
}

// The side under test ended the stream without one more byte (no goaway, no close).
void check_ends_silently(int fd) {
  auto after = read_to_end(fd);
  CHECK(after.ended);
  CHECK(after.bytes.empty());
}

}  // namespace

// ---- §2.3: a refused preamble gets no further frame ------------------------------------

TEST_CASE("a plain side that refuses the peer's preamble sends nothing after its own hello") {
  for (std::string bad : {std::string("Welcome\n"), std::string("BOKBOK\x02\x00\x00", 9)}) {
    CAPTURE(bad);
    raw_peer p(echo_options());
    p.read_plain_greeting();  // sent before it read anything of ours (§8.1)
    REQUIRE(write_all(p.fd.get(), bad));
    check_ends_silently(p.fd.get());  // the peer may not speak bokbok
    CHECK(contains(p.open_error(), "protocol_error"));
  }
}

TEST_CASE("a key-mode side that refuses the peer's preamble sends nothing after its own preamble") {
  bokbok_test::alice_key k;
  raw_peer p(alice_echo_options(k));
  REQUIRE(read_some(p.fd.get(), 14) == key_preamble("alice"));
  REQUIRE(write_all(p.fd.get(), "Welcome\n"));
  check_ends_silently(p.fd.get());
  CHECK(contains(p.open_error(), "does not speak bokbok"));
}

// ---- §9: mode mismatch, both ways ----------------------------------------------------------

TEST_CASE("a plain side meeting a key-mode peer closes without a frame after its hello") {
  raw_peer p(echo_options());
  p.read_plain_greeting();
  REQUIRE(write_all(p.fd.get(), key_preamble("alice")));
  check_ends_silently(p.fd.get());
  CHECK(contains(p.open_error(), "configure a key"));
}

TEST_CASE("a key-mode side meeting a plain peer sends nothing in plain mode") {
  bokbok_test::alice_key k;
  raw_peer p(alice_echo_options(k));
  REQUIRE(read_some(p.fd.get(), 14) == key_preamble("alice"));
  REQUIRE(write_all(p.fd.get(), plain_preamble() + hello()));
  check_ends_silently(p.fd.get());  // neither a plaintext goaway nor a close
  CHECK(contains(p.open_error(), "requires key mode"));
}

// ---- §4.3: which open messages count -------------------------------------------------------

TEST_CASE("open requests and notifications count together towards the limit of 16") {
  SUBCASE("15 open requests and an open notification are allowed") {
    raw_peer p(echo_options());
    auto c = p.open_plain();
    std::string out;
    for (std::uint32_t id = 1; id <= 15; ++id)
      out += record(wire::frame_type::request, wire::flag_more, id, "\0\0\0\0");
    out += record(wire::frame_type::notify, wire::flag_more, 1, "\0\0\0\0");
    out += record(wire::frame_type::ping, 0, 0, "alive");
    REQUIRE(write_all(p.fd.get(), out));
    std::string body = read_body(p.fd.get());
    auto fs = frames_of(std::string(1, char(body.size() >> 8)) + char(body.size() & 0xff) + body);
    REQUIRE(fs.size() == 1);
    CHECK(fs[0].type == wire::frame_type::pong);
    CHECK_FALSE(c.closed());
  }
  SUBCASE("16 open requests and an open notification are a violation") {
    raw_peer p(echo_options());
    auto c = p.open_plain();
    std::string out;
    for (std::uint32_t id = 1; id <= 16; ++id)
      out += record(wire::frame_type::request, wire::flag_more, id, "\0\0\0\0");
    out += record(wire::frame_type::notify, wire::flag_more, 1, "\0\0\0\0");
    REQUIRE(write_all(p.fd.get(), out));
    auto after = read_to_end(p.fd.get());
    CHECK(after.ended);
    auto fs = frames_of(after.bytes);
    REQUIRE(fs.size() == 2);
    CHECK(fs[0].type == wire::frame_type::goaway);
    CHECK(contains(fs[0].payload, "more than 16 partial messages"));
    CHECK(fs[1].type == wire::frame_type::close);
    c.wait_closed();
    CHECK(contains(c.close_reason(), "more than 16 partial messages"));
  }
}

TEST_CASE("a sender never has more than 16 requests and notifications open at once") {
  raw_peer p(echo_options());
  auto c = p.open_plain();
  // Five fragments each, more than the socket holds: nothing finishes before the raw
  // peer starts reading, after everything is queued.
  const std::string big(300 * 1024, 'x');
  std::vector<std::future<message>> calls;
  for (int i = 0; i < 20; ++i) calls.push_back(c.request_async({"echo", big}));
  c.notify({"log", big});
  std::size_t most_open = 0;
  int whole_requests = 0, whole_notifies = 0;
  std::set<std::pair<int, std::uint32_t>> open;
  while (whole_requests < 20 || whole_notifies < 1) {
    std::string body = read_body(p.fd.get());
    REQUIRE_FALSE(body.empty());
    wire::frame_view f;
    std::string err;
    REQUIRE(wire::parse_frame(body, f, err));
    if (f.type != wire::frame_type::request && f.type != wire::frame_type::notify) continue;
    auto key = std::make_pair(int(f.type), f.call_id);
    if (f.flags & wire::flag_more) {
      open.insert(key);
    } else {
      open.erase(key);
      ++(f.type == wire::frame_type::request ? whole_requests : whole_notifies);
    }
    most_open = std::max(most_open, open.size());
  }
  CHECK(most_open == 16);
  c.abort();
}

// ---- §5.2: an undecodable notification -------------------------------------------------------

TEST_CASE("an undecodable notification is a protocol violation: goaway, close") {
  raw_peer p(echo_options());
  auto c = p.open_plain();
  REQUIRE(write_all(p.fd.get(), record(wire::frame_type::notify, 0, 1, "\xff\xff\xff\xff")));
  auto after = read_to_end(p.fd.get());
  CHECK(after.ended);
  auto fs = frames_of(after.bytes);
  REQUIRE(fs.size() == 2);
  CHECK(fs[0].type == wire::frame_type::goaway);
  CHECK(fs[0].payload.substr(0, 2) == std::string("\0\x08", 2));
  CHECK(contains(fs[0].payload, "bad notification"));
  CHECK(fs[1].type == wire::frame_type::close);
}

// ---- §8.5: the close race ----------------------------------------------------------------------

TEST_CASE("50 graceful closes over a UNIX socket all end cleanly on both sides") {
  int lost = 0;
  for (int i = 0; i < 50; ++i) {
    auto [a, b] = bokbok::connect_socketpair(echo_options(), echo_options());
    // b says goaway, then (idle) close right after; a answers with its own close.
    b.close();
    a.wait_closed();
    b.wait_closed();
    CAPTURE(a.close_reason());
    CAPTURE(b.close_reason());
    // Clean: each side got the other's close (a may see b's goaway and close together).
    auto clean_end = [](const std::string& why) {
      return why == "closed by peer" || why.rfind("the peer is shutting down", 0) == 0 ||
             why.rfind("this side is shutting down", 0) == 0;
    };
    bool clean = clean_end(a.close_reason()) && clean_end(b.close_reason());
    if (!clean) ++lost;
    CHECK(clean);
    if (lost > 3) break;  // enough to see it
  }
  CHECK(lost == 0);
}

TEST_CASE("a side that closes keeps reading until the peer's close, so the peer's own close goes through") {
  for (int i = 0; i < 40; ++i) {
    raw_peer p(echo_options());
    auto c = p.open_plain();
    // The raw peer says goaway; the idle side answers close. The peer then sends its
    // own close, well after: the side must still be reading, not gone.
    REQUIRE(write_all(p.fd.get(), record(wire::frame_type::goaway, 0, 0, std::string("\0\x07", 2) + "bye")));
    std::string body = read_body(p.fd.get());
    REQUIRE(body.size() == 6);
    CHECK(body[0] == char(wire::frame_type::close));
    // Its output has ended (§8.5), but it has not hung up: our close is read.
    REQUIRE(write_all(p.fd.get(), record(wire::frame_type::close, 0, 0, "")));
    auto after = read_to_end(p.fd.get());
    CHECK(after.ended);
    CHECK(after.bytes.empty());
    c.wait_closed();
  }
}

// ---- §8: the smaller gaps the spec now decides --------------------------------------------------

namespace {
std::string spec_text() {
  std::string path = bokbok_test::built_program("BOKBOK_SOURCE_ROOT") + "/src/wire/PROTOCOL.md";
  FILE* f = std::fopen(path.c_str(), "r");
  REQUIRE(f != nullptr);
  std::string text;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
  std::fclose(f);
  return text;
}
// The goaway of a violation the raw peer gets, and its close: the goaway's text.
std::string violation_text(raw_peer& p) {
  auto after = read_to_end(p.fd.get());
  CHECK(after.ended);
  auto fs = frames_of(after.bytes);
  REQUIRE(fs.size() == 2);
  CHECK(fs[0].type == wire::frame_type::goaway);
  CHECK(fs[0].payload.substr(0, 2) == std::string("\0\x08", 2));
  CHECK(fs[1].type == wire::frame_type::close);
  return fs[0].payload.substr(2);
}
}  // namespace

TEST_CASE("a first frame that is not a hello fails with the text PROTOCOL.md quotes") {
  raw_peer p(echo_options());
  p.read_plain_greeting();
  std::string req;
  wire::encode_message({"ping"}, req);
  REQUIRE(write_all(p.fd.get(), plain_preamble() + record(wire::frame_type::request, 0, 1, req)));
  std::string text = violation_text(p);
  CHECK(text == "expected a hello frame first, got request");
  CHECK(contains(spec_text(), "`expected a hello frame first, got\n   request`"));
  CHECK(contains(p.open_error(), "expected a hello frame first"));
}

TEST_CASE("a deadline of 0 is not a violation: the call is answered deadline_exceeded without running") {
  std::atomic<int> ran{0};
  bokbok::options o;
  o.on_request = [&ran](bokbok::connection&, message m) { ++ran; return m; };
  raw_peer p(o);
  auto c = p.open_plain();
  std::string payload(4, '\0');  // u32 0
  wire::encode_message({"echo", "x"}, payload);
  REQUIRE(write_all(p.fd.get(), record(wire::frame_type::request, wire::flag_deadline, 7, payload)));
  auto fs = frames_of([&] {
    std::string b = read_body(p.fd.get());
    return std::string(1, char(b.size() >> 8)) + char(b.size() & 0xff) + b;
  }());
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].type == wire::frame_type::error);
  CHECK(fs[0].id == 7);
  CHECK(fs[0].payload.substr(0, 2) == std::string("\0\x06", 2));
  CHECK(ran == 0);
  CHECK_FALSE(c.closed());
}

TEST_CASE("a close in the middle of the peer's message ends the connection as closed by peer, not as a violation") {
  raw_peer p(echo_options());
  auto c = p.open_plain();
  REQUIRE(write_all(p.fd.get(), record(wire::frame_type::request, wire::flag_more, 3, "\0\0\0\x01") +
                                    record(wire::frame_type::close, 0, 0, "")));
  auto after = read_to_end(p.fd.get());
  CHECK(after.ended);
  auto fs = frames_of(after.bytes);
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].type == wire::frame_type::close);  // no goaway(protocol)
  c.wait_closed();
  CHECK(c.close_reason() == "closed by peer");
}

TEST_CASE("a goaway's call id: our calls above it fail at once, those up to it are still answered") {
  raw_peer p(echo_options());
  auto c = p.open_plain();
  std::vector<std::future<message>> calls;
  for (int i = 0; i < 3; ++i) calls.push_back(c.request_async({"echo", std::to_string(i)}));
  for (int i = 0; i < 3; ++i) CHECK_FALSE(read_body(p.fd.get()).empty());  // requests 1, 2, 3
  REQUIRE(write_all(p.fd.get(), record(wire::frame_type::goaway, 0, 2, std::string("\0\x07", 2) + "bye")));
  REQUIRE(calls[2].wait_for(patience) == std::future_status::ready);
  try {
    calls[2].get();
    FAIL("call 3 was answered");
  } catch (const bokbok::call_error& e) {
    CHECK(e.code() == bokbok::error_code::shutting_down);
  }
  CHECK(calls[0].wait_for(50ms) == std::future_status::timeout);  // still waiting
  std::string answer;
  wire::encode_message({"one"}, answer);
  std::string two;
  wire::encode_message({"two"}, two);
  REQUIRE(write_all(p.fd.get(), record(wire::frame_type::response, 0, 1, answer) +
                                    record(wire::frame_type::response, 0, 2, two)));
  REQUIRE(calls[0].wait_for(patience) == std::future_status::ready);
  CHECK(calls[0].get() == message{"one"});
  REQUIRE(calls[1].wait_for(patience) == std::future_status::ready);
  CHECK(calls[1].get() == message{"two"});
  // Nothing outstanding: the side closes (§8.4).
  std::string body = read_body(p.fd.get());
  REQUIRE(body.size() == 6);
  CHECK(body[0] == char(wire::frame_type::close));
  REQUIRE(write_all(p.fd.get(), record(wire::frame_type::close, 0, 0, "")));
  c.wait_closed();
}

TEST_CASE("a feature bit set by one side only: nothing is sent for it, and what comes anyway is taken") {
  std::promise<message> got;
  bokbok::options o = echo_options();
  o.on_notify = [&got](bokbok::connection&, message m) { got.set_value(std::move(m)); };
  raw_peer p(o);
  auto c = p.open_plain(0);  // the raw peer sets no feature bits
  try {
    c.notify({"log", "x"});
    FAIL("a notification went to a peer that did not set the bit");
  } catch (const bokbok::call_error& e) {
    CHECK(e.code() == bokbok::error_code::no_such_method);
  }
  std::string m;
  wire::encode_message({"log", "anyway"}, m);
  REQUIRE(write_all(p.fd.get(), record(wire::frame_type::notify, 0, 1, m)));
  auto f = got.get_future();
  REQUIRE(f.wait_for(patience) == std::future_status::ready);
  CHECK(f.get() == message{"log", "anyway"});
  CHECK_FALSE(c.closed());
}

// ---- §6.1: a reflected connection ----------------------------------------------------------------

TEST_CASE("a connection whose output comes back as its input fails to open, saying it is reflected") {
  SUBCASE("plain mode") {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    try {
      auto c = bokbok::connect_fds(p[0], p[1], echo_options(), "mirror");
      FAIL("a mirror was taken for a bokbok peer");
    } catch (const bokbok::protocol_error& e) {
      CHECK(contains(e.what(), "reflected"));
      CHECK(contains(e.what(), "not a bokbok server"));
    }
  }
  SUBCASE("key mode") {
    bokbok_test::alice_key k;
    bokbok::options o = alice_echo_options(k);
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    try {
      auto c = bokbok::connect_fds(p[0], p[1], o, "mirror");
      FAIL("a mirror was taken for a bokbok peer");
    } catch (const bokbok::protocol_error& e) {
      CHECK(contains(e.what(), "reflected"));
    }
  }
}

TEST_CASE("bokbok call to `cat` fails with exit status 3 and says the connection is reflected") {
  std::string cmd = "timeout 20 '" + bokbok_test::built_program("BOKBOK_TOOL") +
                    "' call exec:cat ping hi 2>&1";
  FILE* f = ::popen(cmd.c_str(), "r");
  REQUIRE(f != nullptr);
  std::string out;
  char buf[512];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  int status = ::pclose(f);
  CAPTURE(out);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 3);
  CHECK(contains(out, "reflected"));
  CHECK_FALSE(contains(out, "hi\n"));
}
