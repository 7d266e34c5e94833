// The frame trace's lines (wire/frame_trace.hpp): each frame type decoded, flags, fields
// abbreviated and escaped, fragments.
#include <doctest/doctest.h>

#include <string>

#include "bokbok/error.hpp"
#include "bokbok/message.hpp"
#include "wire/frame.hpp"
#include "wire/frame_trace.hpp"
#include "wire/message_codec.hpp"
#include "wire/settings.hpp"

using namespace bokbok;
using wire::trace_direction;

namespace {

// The line for the frame in the one record `record` (as append_frame makes it).
std::string line_of(trace_direction dir, const std::string& record) {
  wire::frame_view f{};
  std::string err;
  REQUIRE(wire::parse_frame(std::string_view(record).substr(wire::record_header_size), f, err));
  return wire::trace_line(dir, f);
}

std::string frame(wire::frame_type type, std::uint8_t flags, std::uint32_t id,
                  std::string_view payload) {
  std::string out;
  wire::append_frame(out, type, flags, id, payload);
  return out;
}

std::string encoded(const message& m) {
  std::string out;
  wire::encode_message(m, out);
  return out;
}

}  // namespace

TEST_CASE("a request is traced with its direction, id, flags and fields") {
  CHECK(line_of(trace_direction::sent, frame(wire::frame_type::request, 0, 1,
                                             encoded({"echo", "hi"}))) ==
        R"(> request id=1 flags=- [2] "echo" "hi")");
  std::string with_deadline;
  wire::put_deadline_prefix(with_deadline, 2000);
  with_deadline += encoded({"ping"});
  CHECK(line_of(trace_direction::received,
                frame(wire::frame_type::request, wire::flag_deadline, 7, with_deadline)) ==
        R"(< request id=7 flags=deadline deadline=2000ms [1] "ping")");
}

TEST_CASE("fields are escaped and cut at 32 bytes with their full size said") {
  std::string binary("a\"b\\c\n\t\r\x00\xff", 10);
  std::string long_field(100, 'x');
  CHECK(line_of(trace_direction::received,
                frame(wire::frame_type::response, 0, 3, encoded({binary, long_field, ""}))) ==
        "< response id=3 flags=- [3] \"a\\\"b\\\\c\\n\\t\\r\\x00\\xff\" \"" +
            std::string(32, 'x') + "\"...(100 bytes) \"\"");
}

TEST_CASE("a message with many fields shows the first eight and counts the rest") {
  message m;
  for (int i = 0; i < 11; ++i) m.push_back(std::to_string(i));
  CHECK(line_of(trace_direction::sent, frame(wire::frame_type::notify, 0, 2, encoded(m))) ==
        R"(> notify id=2 flags=- [11] "0" "1" "2" "3" "4" "5" "6" "7" ...(3 more))");
}

TEST_CASE("fragments: the first shows the fields it holds, the others their size") {
  std::string big = encoded({"store", std::string(100000, 'z')});
  std::string first = big.substr(0, 1000), rest = big.substr(1000, 500);
  CHECK(line_of(trace_direction::sent,
                frame(wire::frame_type::request, wire::flag_more, 9, first)) ==
        "> request id=9 flags=more [2] \"store\" \"" + std::string(32, 'z') +
            "\"...(100000 bytes)");
  CHECK(line_of(trace_direction::sent,
                frame(wire::frame_type::request, wire::flag_more | wire::flag_continued, 9,
                      rest)) == "> request id=9 flags=more|continued 500 bytes");
  // A first fragment that ends inside a length.
  CHECK(line_of(trace_direction::sent, frame(wire::frame_type::request, wire::flag_more, 9,
                                             big.substr(0, 6))) ==
        R"(> request id=9 flags=more [2] ...)");
}

TEST_CASE("a malformed single-frame message is shown as far as it goes") {
  std::string truncated = encoded({"abc", "defg"});
  truncated.resize(truncated.size() - 2);
  CHECK(line_of(trace_direction::received, frame(wire::frame_type::response, 0, 1, truncated)) ==
        R"(< response id=1 flags=- [2] "abc" "de"...(4 bytes) (truncated))");
  CHECK(line_of(trace_direction::received, frame(wire::frame_type::response, 0, 1, "ab")) ==
        "< response id=1 flags=- (2 bytes, no message)");
  CHECK(line_of(trace_direction::received,
                frame(wire::frame_type::response, 0, 1, encoded({"a"}) + "zz")) ==
        R"(< response id=1 flags=- [1] "a" (+2 bytes trailing))");
}

TEST_CASE("hello, error, goaway, ping, pong, cancel and close are decoded") {
  wire::settings s;
  s.max_message_size = 65536;
  s.heartbeat_ms = 30000;
  s.max_concurrent_calls = 4;
  s.features = 3;
  s.hello_nonce = 12345;
  CHECK(line_of(trace_direction::sent,
                frame(wire::frame_type::hello, 0, 0, wire::encode_settings(s))) ==
        "> hello id=0 flags=- max_message_size=65536 heartbeat_ms=30000 "
        "max_concurrent_calls=4 features=0x3");
  CHECK(line_of(trace_direction::received,
                frame(wire::frame_type::error, 0, 4,
                      wire::encode_code_payload(
                          static_cast<std::uint16_t>(error_code::no_such_method), "nope"))) ==
        R"(< error id=4 flags=- code=no_such_method(2) "nope")");
  CHECK(line_of(trace_direction::sent,
                frame(wire::frame_type::goaway, 0, 12, wire::encode_code_payload(7, "bye"))) ==
        R"(> goaway id=12 flags=- code=shutting_down(7) "bye")");
  CHECK(line_of(trace_direction::sent, frame(wire::frame_type::ping, 0, 0, std::string("\x01\x02", 2))) ==
        R"(> ping id=0 flags=- "\x01\x02")");
  CHECK(line_of(trace_direction::received, frame(wire::frame_type::pong, 0, 0, "")) ==
        R"(< pong id=0 flags=- "")");
  CHECK(line_of(trace_direction::sent, frame(wire::frame_type::cancel, 0, 5, "")) ==
        "> cancel id=5 flags=-");
  CHECK(line_of(trace_direction::received, frame(wire::frame_type::close, 0, 0, "")) ==
        "< close id=0 flags=-");
}

TEST_CASE("an error's text is cut at 160 bytes") {
  std::string text(200, 'e');
  CHECK(line_of(trace_direction::received,
                frame(wire::frame_type::error, 0, 1, wire::encode_code_payload(1, text))) ==
        "< error id=1 flags=- code=handler_failed(1) \"" +
            std::string(160, 'e') + "\"...(200 bytes)");
}
