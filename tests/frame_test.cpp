// Records and frames (src/wire/frame.hpp, PROTOCOL.md §3-§4).
#include <doctest/doctest.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "wire/frame.hpp"

using namespace bokbok::wire;
using namespace std::string_literals;

namespace {

struct sample {
  frame_type type;
  std::uint8_t flags;
  std::uint32_t id;
  std::string payload;
};

// One valid frame of every type (and every flag combination on message frames).
std::vector<sample> every_frame_type() {
  return {
      {frame_type::hello, 0, 0, "\x00\x01\x00\x01\x00\x00"s},
      {frame_type::request, 0, 1, "\x00\x00\x00\x00"s},
      {frame_type::request, flag_more, 2, "part"},
      {frame_type::request, flag_more | flag_continued, 2, "middle"},
      {frame_type::request, flag_continued, 2, "end"},
      {frame_type::response, 0, 0xffffffff, "\x00\x00\x00\x00"s},
      {frame_type::response, flag_more, 3, std::string(max_frame_payload, 'r')},
      {frame_type::error, 0, 4, "\x00\x02no such method"s},
      {frame_type::cancel, 0, 5, ""},
      {frame_type::ping, 0, 0, "12345678"},
      {frame_type::pong, 0, 0, ""},
      {frame_type::goaway, 0, 0, "\x00\x07"s},
      {frame_type::goaway, 0, 17, "\x00\x08unknown frame type 10"s},
      {frame_type::close, 0, 0, ""},
  };
}

// Splits `bytes` into record bodies, feeding `chunk` bytes at a time.
std::vector<std::string> records_of(std::string_view bytes, std::size_t chunk,
                                    std::string* error = nullptr) {
  std::vector<std::string> out;
  record_reader r;
  for (std::size_t at = 0; at < bytes.size(); at += chunk) {
    r.feed(bytes.substr(at, chunk));
    std::string_view body;
    for (;;) {
      const auto st = r.next(body);
      if (st == record_reader::status::need_more) break;
      if (st == record_reader::status::error) {
        if (error) *error = r.error();
        return out;
      }
      out.emplace_back(body);
    }
  }
  return out;
}

// The error parse_frame gives for a record body ("" if it parses).
std::string frame_error(std::string_view body) {
  frame_view f;
  std::string error;
  return parse_frame(body, f, error) ? std::string() : error;
}

std::string body(std::uint8_t type, std::uint8_t flags, std::uint32_t id,
                 std::string_view payload = {}) {
  std::string b{static_cast<char>(type), static_cast<char>(flags),
                static_cast<char>(id >> 24), static_cast<char>(id >> 16),
                static_cast<char>(id >> 8), static_cast<char>(id)};
  b.append(payload);
  return b;
}

}  // namespace

TEST_CASE("every frame type round-trips through append_frame, the record reader and parse_frame") {
  for (const sample& s : every_frame_type()) {
    CAPTURE(to_string(s.type));
    CAPTURE(int(s.flags));
    std::string wire;
    append_frame(wire, s.type, s.flags, s.id, s.payload);
    CHECK(wire.size() == 8 + s.payload.size());
    const auto records = records_of(wire, wire.size());
    REQUIRE(records.size() == 1);
    frame_view f;
    std::string error;
    REQUIRE_MESSAGE(parse_frame(records[0], f, error), error);
    CHECK(f.type == s.type);
    CHECK(f.flags == s.flags);
    CHECK(f.call_id == s.id);
    CHECK(f.payload == s.payload);
  }
}

TEST_CASE("a frame is a big-endian length, type, flags, big-endian call id, then payload") {
  std::string wire;
  append_frame(wire, frame_type::request, flag_more, 0x01020304, "xy");
  CHECK(wire == "\x00\x08\x02\x01\x01\x02\x03\x04xy"s);
}

TEST_CASE("encode_frame_header gives the bytes append_frame puts before the payload") {
  for (const sample& s : every_frame_type()) {
    std::string wire;
    append_frame(wire, s.type, s.flags, s.id, s.payload);
    const frame_header_bytes h = encode_frame_header(s.type, s.flags, s.id, s.payload.size());
    CHECK(std::string_view(reinterpret_cast<const char*>(h.bytes), sizeof h.bytes) ==
          std::string_view(wire).substr(0, 8));
  }
}

TEST_CASE("a payload larger than the frame limit cannot be encoded") {
  std::string wire;
  CHECK_THROWS_AS(append_frame(wire, frame_type::request, 0, 1,
                               std::string(max_frame_payload + 1, 'x')),
                  std::length_error);
  CHECK_THROWS_AS(encode_frame_header(frame_type::request, 0, 1, max_frame_payload + 1),
                  std::length_error);
}

TEST_CASE("the record reader fed one byte at a time gives the same records as fed all at once") {
  std::string wire;
  for (const sample& s : every_frame_type()) append_frame(wire, s.type, s.flags, s.id, s.payload);
  const auto whole = records_of(wire, wire.size());
  CHECK(whole.size() == every_frame_type().size());
  CHECK(records_of(wire, 1) == whole);
  CHECK(records_of(wire, 7) == whole);
  CHECK(records_of(wire, 65536) == whole);
}

TEST_CASE("the record reader waits for the rest of a split record") {
  record_reader r;
  std::string_view b;
  r.feed("\x00"s);
  CHECK(r.next(b) == record_reader::status::need_more);
  r.feed("\x03"s "ab");
  CHECK(r.next(b) == record_reader::status::need_more);
  CHECK(r.buffered() == 4);
  r.feed("c" "\x00"s);
  REQUIRE(r.next(b) == record_reader::status::record);
  CHECK(b == "abc");
  CHECK(r.next(b) == record_reader::status::need_more);
  CHECK(r.buffered() == 1);
}

TEST_CASE("a record of the largest length is read whole") {
  std::string wire = "\xff\xff"s + std::string(65535, 'm');
  const auto records = records_of(wire, 4096);
  REQUIRE(records.size() == 1);
  CHECK(records[0].size() == max_record_body);
}

TEST_CASE("a record of length 0 is an error, and the reader stays failed") {
  std::string error;
  const auto records = records_of("\x00\x01x\x00\x00\x00\x01y"s, 1, &error);
  CHECK(records == std::vector<std::string>{"x"});
  CHECK(error == "record length 0 (a record holds 1 to 65535 bytes)");

  record_reader r;
  std::string_view b;
  r.feed("\x00\x00"s);
  CHECK(r.next(b) == record_reader::status::error);
  r.feed("\x00\x01z"s);
  CHECK(r.next(b) == record_reader::status::error);
}

TEST_CASE("the record reader does not keep consumed records") {
  record_reader r;
  std::string wire;
  append_frame(wire, frame_type::ping, 0, 0, "");
  std::string_view b;
  for (int i = 0; i < 1000; ++i) {
    r.feed(wire);
    REQUIRE(r.next(b) == record_reader::status::record);
    REQUIRE(r.next(b) == record_reader::status::need_more);
  }
  CHECK(r.buffered() == 0);
}

TEST_CASE("a record body shorter than the frame header is refused") {
  CHECK(frame_error("\x02\x00\x00"s) == "frame of 3 bytes is shorter than its 6-byte header");
  CHECK(frame_error("\x02"s) == "frame of 1 byte is shorter than its 6-byte header");
}

TEST_CASE("an unknown frame type is refused with its number") {
  CHECK(frame_error(body(0, 0, 0)) == "unknown frame type 0");
  CHECK(frame_error(body(16, 0, 0)) == "unknown frame type 16");
  CHECK(frame_error(body(255, 0, 0)) == "unknown frame type 255");
}

TEST_CASE("unknown flag bits are refused") {
  CHECK(frame_error(body(2, 0x20, 1, "\0\0\0\0"s)) == "unknown flags 0x20 on a request frame");
  CHECK(frame_error(body(3, 0x81, 1)) == "unknown flags 0x81 on a response frame");
}

TEST_CASE("fragment flags are refused on frames that carry no message") {
  CHECK(frame_error(body(6, flag_more, 0)) == "flags 0x01 not allowed on a ping frame");
  CHECK(frame_error(body(1, flag_continued, 0)) == "flags 0x02 not allowed on a hello frame");
  CHECK(frame_error(body(4, flag_more, 1, "\0\1"s)) == "flags 0x01 not allowed on an error frame");
}

TEST_CASE("the deadline flag is only for the first fragment of a request with its prefix") {
  CHECK(frame_error(body(2, flag_deadline, 1, "\0\0\1\0"s)).empty());
  CHECK(frame_error(body(2, flag_deadline | flag_more, 1, "\0\0\1\0"s)).empty());
  CHECK(frame_error(body(2, flag_deadline | flag_continued, 1, "\0\0\1\0"s)) ==
        "flag 0x04 (deadline) not allowed on a continued request fragment");
  CHECK(frame_error(body(3, flag_deadline, 1, "\0\0\1\0"s)) ==
        "flag 0x04 (deadline) not allowed on a response frame");
  CHECK(frame_error(body(10, flag_deadline, 1, "\0\0\1\0"s)) ==
        "flag 0x04 (deadline) not allowed on a notify frame");
  CHECK(frame_error(body(2, flag_deadline, 1, "\0\0\1"s)) ==
        "request with a deadline has a payload of 3 bytes, shorter than its 4-byte deadline");
}

TEST_CASE("notify frames carry fragments under a nonzero id") {
  CHECK(frame_error(body(10, flag_more, 1, "\0\0\0\0"s)).empty());
  CHECK(frame_error(body(10, flag_continued, 1, "xy")).empty());
  CHECK(frame_error(body(10, 0, 0, "\0\0\0\0"s)) == "notify frame with call id 0 (must be nonzero)");
  CHECK(std::string(to_string(frame_type::notify)) == "notify");
}

TEST_CASE("each frame type's call id rule is enforced") {
  CHECK(frame_error(body(1, 0, 1)) == "hello frame with call id 1 (must be 0)");
  CHECK(frame_error(body(6, 0, 9)) == "ping frame with call id 9 (must be 0)");
  CHECK(frame_error(body(7, 0, 9)) == "pong frame with call id 9 (must be 0)");
  CHECK(frame_error(body(9, 0, 9)) == "close frame with call id 9 (must be 0)");
  CHECK(frame_error(body(2, 0, 0)) == "request frame with call id 0 (must be nonzero)");
  CHECK(frame_error(body(3, 0, 0)) == "response frame with call id 0 (must be nonzero)");
  CHECK(frame_error(body(4, 0, 0, "\0\1"s)) == "error frame with call id 0 (must be nonzero)");
  CHECK(frame_error(body(5, 0, 0)) == "cancel frame with call id 0 (must be nonzero)");
  CHECK(frame_error(body(8, 0, 0, "\0\7"s)).empty());
  CHECK(frame_error(body(8, 0, 123, "\0\7"s)).empty());
}

TEST_CASE("payload size rules are enforced per frame type") {
  CHECK(frame_error(body(6, 0, 0, "123456789")) == "ping payload of 9 bytes (at most 8)");
  CHECK(frame_error(body(7, 0, 0, "123456789")) == "pong payload of 9 bytes (at most 8)");
  CHECK(frame_error(body(4, 0, 1, "\0"s)) ==
        "error frame payload of 1 byte is shorter than its 2-byte code");
  CHECK(frame_error(body(8, 0, 0)) ==
        "goaway frame payload of 0 bytes is shorter than its 2-byte code");
  CHECK(frame_error(body(5, 0, 1, "x")) == "cancel frame with a 1-byte payload (must be empty)");
  CHECK(frame_error(body(9, 0, 0, "xy")) == "close frame with a 2-byte payload (must be empty)");
  CHECK(frame_error(body(2, 0, 1, std::string(max_frame_payload + 1, 'x'))) ==
        "request frame payload of 65514 bytes exceeds the frame limit of 65513");
  CHECK(frame_error(body(2, 0, 1, std::string(max_frame_payload, 'x'))).empty());
}

TEST_CASE("the payload view of a parsed frame points into the record body") {
  const std::string b = body(2, 0, 1, "payload");
  frame_view f;
  std::string error;
  REQUIRE(parse_frame(b, f, error));
  CHECK(f.payload.data() == b.data() + 6);
}

TEST_CASE("fragment flags mark every piece but the first as continued and all but the last as more") {
  const std::size_t m = max_frame_payload;
  CHECK(fragment_flags(0, 10) == 0);
  CHECK(fragment_flags(0, m) == 0);
  CHECK(fragment_flags(0, m + 1) == flag_more);
  CHECK(fragment_flags(m, m + 1) == flag_continued);
  CHECK(fragment_flags(m, 3 * m) == (flag_more | flag_continued));
  CHECK(fragment_flags(2 * m, 3 * m) == flag_continued);
}

TEST_CASE("a message is cut into frames of the largest payload, the last one shorter") {
  const std::size_t m = max_frame_payload;
  for (std::size_t size : {std::size_t{0}, std::size_t{4}, m, m + 1, 2 * m, 2 * m + 5}) {
    CAPTURE(size);
    std::string msg(size, '\0');
    for (std::size_t i = 0; i < size; ++i) msg[i] = static_cast<char>(i * 7);
    std::string wire;
    append_message_frames(wire, frame_type::response, 42, msg);
    const auto records = records_of(wire, wire.size());
    const std::size_t expected = size == 0 ? 1 : (size + m - 1) / m;
    REQUIRE(records.size() == expected);
    std::string joined;
    for (std::size_t i = 0; i < records.size(); ++i) {
      frame_view f;
      std::string error;
      REQUIRE(parse_frame(records[i], f, error));
      CHECK(f.type == frame_type::response);
      CHECK(f.call_id == 42);
      CHECK(f.flags == fragment_flags(joined.size(), size));
      CHECK(f.payload.size() == (i + 1 < records.size() ? m : size - joined.size()));
      joined.append(f.payload);
    }
    CHECK(joined == msg);
  }
}

TEST_CASE("an error or goaway payload is a big-endian code followed by the text") {
  const std::string p = encode_code_payload(0x0102, "oops");
  CHECK(p == "\x01\x02oops"s);
  const code_payload c = parse_code_payload(p);
  CHECK(c.code == 0x0102);
  CHECK(c.text == "oops");
  CHECK(parse_code_payload("\x00\x07"s).text.empty());
  CHECK_THROWS_AS(parse_code_payload("\x00"s), std::invalid_argument);
}

TEST_CASE("a long error text is cut to fit one frame without splitting a UTF-8 character") {
  // "é" is 2 bytes: 65511 bytes of text room, so the cut falls inside a character.
  std::string text;
  while (text.size() < 70000) text += "\xc3\xa9";
  const std::string p = encode_code_payload(1, text);
  CHECK(p.size() == max_frame_payload - 1);
  CHECK(p.size() - 2 == 65510);
  CHECK(static_cast<unsigned char>(p.back()) == 0xa9);

  const std::string ascii(70000, 'a');
  CHECK(encode_code_payload(1, ascii).size() == max_frame_payload);

  std::string wire;
  append_frame(wire, frame_type::error, 0, 1, encode_code_payload(1, ascii));
  CHECK(wire.size() == 8 + max_frame_payload);
}

TEST_CASE("a request with a deadline is cut like any message, DEADLINE on its first fragment only") {
  const std::size_t m = max_frame_payload;
  std::string payload;
  put_deadline_prefix(payload, 1500);
  payload.append(2 * m, 'x');  // prefix + message: three fragments
  std::string wire;
  append_message_frames(wire, frame_type::request, 9, payload, flag_deadline);
  const auto records = records_of(wire, wire.size());
  REQUIRE(records.size() == 3);
  std::vector<std::uint8_t> flags;
  std::string joined;
  for (const std::string& r : records) {
    frame_view f;
    std::string error;
    REQUIRE_MESSAGE(parse_frame(r, f, error), error);
    flags.push_back(f.flags);
    joined.append(f.payload);
  }
  CHECK(flags == std::vector<std::uint8_t>{flag_deadline | flag_more,
                                           flag_continued | flag_more, flag_continued});
  CHECK(joined == payload);
  CHECK(get_deadline_prefix(joined) == 1500);

  // A single fragment: flags are just DEADLINE.
  std::string one;
  append_message_frames(one, frame_type::request, 9, payload.substr(0, 10), flag_deadline);
  CHECK(static_cast<std::uint8_t>(one[3]) == flag_deadline);
}

TEST_CASE("message_fragment gives each fragment's header and size, as append_message_frames cuts") {
  const std::size_t m = max_frame_payload;
  const std::size_t total = 2 * m + 3;
  std::string expected;
  append_message_frames(expected, frame_type::notify, 5, std::string(total, 'n'));
  std::string built;
  std::size_t offset = 0;
  do {
    const fragment f = message_fragment(frame_type::notify, 5, offset, total);
    built.append(reinterpret_cast<const char*>(f.header.bytes), sizeof f.header.bytes);
    built.append(f.size, 'n');
    offset += f.size;
  } while (offset < total);
  CHECK(built == expected);
  CHECK(message_fragment(frame_type::notify, 5, 2 * m, total).size == 3);
  CHECK(message_fragment(frame_type::notify, 5, 0, 0).size == 0);  // the empty message
}

TEST_CASE("an error frame built in place never cuts a multi-byte character at the frame's end") {
  // 65510 ASCII bytes, then "€" (3 bytes) across the 65511-byte limit for the text: a cut
  // at the limit would keep the euro sign's first two bytes only.
  const std::string text = std::string(65510, 'a') + "\xe2\x82\xac" + "tail";
  for (frame_type t : {frame_type::error, frame_type::goaway}) {
    std::string in_place;
    append_code_frame(in_place, t, 3, 8, text);
    std::string by_payload;
    append_frame(by_payload, t, 0, 3, encode_code_payload(8, text));
    CHECK(in_place == by_payload);
    frame_view f;
    std::string error;
    REQUIRE(parse_frame(std::string_view(in_place).substr(record_header_size), f, error));
    const code_payload c = parse_code_payload(f.payload);
    CHECK(c.code == 8);
    CHECK(c.text == std::string(65510, 'a'));  // the whole character went, not half of it
  }
  std::string short_one;
  append_code_frame(short_one, frame_type::goaway, 0, 8, "bad frame");
  CHECK(short_one.substr(record_header_size + frame_header_size) == "\x00\x08"s + "bad frame");
}

TEST_CASE("frame types have names, and unknown values are called unknown") {
  CHECK(std::string(to_string(frame_type::hello)) == "hello");
  CHECK(std::string(to_string(frame_type::goaway)) == "goaway");
  CHECK(std::string(to_string(frame_type::close)) == "close");
  CHECK(std::string(to_string(static_cast<frame_type>(0))) == "unknown");
  CHECK(std::string(to_string(frame_type::stream)) == "stream");
  CHECK(std::string(to_string(frame_type::reply_credit)) == "reply_credit");
  CHECK(std::string(to_string(static_cast<frame_type>(16))) == "unknown");
}

TEST_CASE("the stream flag is only for the first fragment of a request") {
  CHECK(frame_error(body(2, flag_stream, 1, "\0\0\0\0"s)).empty());
  CHECK(frame_error(body(2, flag_stream | flag_deadline | flag_more, 1, "\0\0\1\0"s)).empty());
  CHECK(frame_error(body(2, flag_stream | flag_continued, 1)) ==
        "flag 0x08 (stream) not allowed on a continued request fragment");
  CHECK(frame_error(body(3, flag_stream, 1)) == "flag 0x08 (stream) not allowed on a response frame");
  CHECK(frame_error(body(11, flag_stream, 1)) == "flag 0x08 (stream) not allowed on a stream frame");
}

TEST_CASE("the fds flag needs a count of 1 to 253 after any deadline, on a first fragment") {
  CHECK(frame_error(body(2, flag_fds, 1, "\x01\0\0\0\0"s)).empty());
  CHECK(frame_error(body(12, flag_fds | flag_more, 1, "\xfd"s)).empty());
  CHECK(parse_first_prefix(flag_fds, "\xfd"s).fd_count == 253);
  const first_prefix both = parse_first_prefix(flag_deadline | flag_fds, "\0\0\1\0\x03"s);
  CHECK(both.deadline_ms == 256);
  CHECK(both.fd_count == 3);
  CHECK(both.size == 5);
  CHECK(frame_error(body(2, flag_deadline | flag_fds, 1, "\0\0\1\0"s)) ==
        "request with fds has a payload of 4 bytes, shorter than its deadline and fd count");
  CHECK(frame_error(body(3, flag_fds, 1)) ==
        "response with fds has a payload of 0 bytes, shorter than its fd count");
  CHECK(frame_error(body(10, flag_fds, 1, "\0"s)) == "notify declares 0 file descriptors (1 to 253)");
  CHECK(frame_error(body(11, flag_fds, 1, "\xfe"s)) ==
        "stream declares 254 file descriptors (1 to 253)");
  CHECK(frame_error(body(11, flag_fds | flag_continued, 1, "\x01"s)) ==
        "flag 0x10 (fds) not allowed on a continued stream fragment");
  CHECK(frame_error(body(4, flag_fds, 1, "\0\1"s)) == "flag 0x10 (fds) not allowed on an error frame");
}

TEST_CASE("stream frames: ids nonzero, stream_end empty, credit exactly 8 bytes") {
  CHECK(frame_error(body(11, flag_more, 1, "abc"s)).empty());
  CHECK(frame_error(body(12, flag_continued, 1, "abc"s)).empty());
  CHECK(frame_error(body(11, 0, 0)) == "stream frame with call id 0 (must be nonzero)");
  CHECK(frame_error(body(13, 0, 1)).empty());
  CHECK(frame_error(body(13, 0, 1, "x"s)) ==
        "stream_end frame with a 1-byte payload (must be empty)");
  CHECK(frame_error(body(13, flag_more, 1)) == "flags 0x01 not allowed on a stream_end frame");
  CHECK(frame_error(body(14, 0, 1, "\0\0\0\x10\0\x01\0\0"s)).empty());
  CHECK(parse_credit_payload("\0\0\0\x10\0\x01\0\0"s).messages == 16);
  CHECK(parse_credit_payload("\0\0\0\x10\0\x01\0\0"s).bytes == 65536);
  CHECK(encode_credit_payload({16, 65536}) == "\0\0\0\x10\0\x01\0\0"s);
  CHECK(frame_error(body(15, 0, 1, "\0\0\0\x10"s)) ==
        "reply_credit frame payload of 4 bytes (must be 8)");
  CHECK(frame_error(body(15, 0, 0, "\0\0\0\0\0\0\0\0"s)) ==
        "reply_credit frame with call id 0 (must be nonzero)");
}

// ---- the record reader fed straight from a read buffer (next(input, body)) ----------

namespace {

std::string three_records() {
  std::string s;
  append_frame(s, frame_type::ping, 0, 0, "12345678");
  append_frame(s, frame_type::request, 0, 9, std::string(300, 'r'));
  append_frame(s, frame_type::pong, 0, 0, "");
  return s;
}

// Every body the reader gives for `stream` cut into reads at `cuts` (ascending).
std::vector<std::string> bodies_when_cut(const std::string& stream, std::vector<std::size_t> cuts) {
  record_reader r;
  std::vector<std::string> out;
  cuts.push_back(stream.size());
  std::size_t from = 0;
  for (std::size_t to : cuts) {
    std::string read = stream.substr(from, to - from);  // the read buffer of this turn
    std::string_view input = read;
    std::string_view body;
    record_reader::status st;
    while ((st = r.next(input, body)) == record_reader::status::record) out.emplace_back(body);
    REQUIRE(st == record_reader::status::need_more);
    CHECK(input.empty());
    from = to;
  }
  CHECK(r.buffered() == 0);
  return out;
}

}  // namespace

TEST_CASE("a record that lies whole in the input is a view into it: no copy is made") {
  std::string read = three_records();
  std::string_view input = read;
  std::string_view body;
  for (int i = 0; i < 3; ++i) {
    REQUIRE(record_reader().next(input, body) == record_reader::status::record);
    CHECK(body.data() >= read.data());
    CHECK(body.data() + body.size() <= read.data() + read.size());
  }
  CHECK(input.empty());
}

TEST_CASE("records cut anywhere by the ends of reads come out whole and in order") {
  const std::string stream = three_records();
  const std::vector<std::string> whole = bodies_when_cut(stream, {});
  REQUIRE(whole.size() == 3);
  for (std::size_t a = 0; a <= stream.size(); ++a) {
    CAPTURE(a);
    CHECK(bodies_when_cut(stream, {a}) == whole);
    for (std::size_t b = a; b <= stream.size(); b += 7) CHECK(bodies_when_cut(stream, {a, b}) == whole);
  }
}

TEST_CASE("only a record cut by a read's end is held, and after it the reader reads in place again") {
  const std::string stream = three_records();
  const std::size_t first = record_header_size + frame_header_size + 8;  // the ping record
  record_reader r;
  std::string read1 = stream.substr(0, first + 5);  // the ping, then 5 bytes of the request
  std::string_view input = read1;
  std::string_view body;
  REQUIRE(r.next(input, body) == record_reader::status::record);
  REQUIRE(r.next(input, body) == record_reader::status::need_more);
  CHECK(r.buffered() == 5);
  std::string read2 = stream.substr(first + 5);
  input = read2;
  REQUIRE(r.next(input, body) == record_reader::status::record);  // completed from read2
  CHECK(body.size() == frame_header_size + 300);
  CHECK((body.data() < read2.data() || body.data() >= read2.data() + read2.size()));
  REQUIRE(r.next(input, body) == record_reader::status::record);  // the pong: in place
  CHECK(body.data() >= read2.data());
  CHECK(body.data() < read2.data() + read2.size());
  CHECK(r.next(input, body) == record_reader::status::need_more);
  CHECK(r.buffered() == 0);
}

TEST_CASE("input kept while reading is paused comes out first, then the next read's") {
  const std::string stream = three_records();
  record_reader r;
  std::string read1 = stream.substr(0, 20);
  std::string_view input = read1;
  std::string_view body;
  REQUIRE(r.next(input, body) == record_reader::status::record);  // the ping
  r.keep(input);  // the caller stops here; read1's memory goes
  read1.assign(read1.size(), 'x');
  std::string read2 = stream.substr(20);
  input = read2;
  std::vector<std::string> got;
  while (r.next(input, body) == record_reader::status::record) got.emplace_back(body);
  REQUIRE(got.size() == 2);
  CHECK(got[0] == bodies_when_cut(stream, {})[1]);
  CHECK(got[1] == bodies_when_cut(stream, {})[2]);
}

TEST_CASE("a zero record length read in place is an error") {
  std::string read("\0\0\x06\0"s);
  std::string_view input = read;
  std::string_view body;
  record_reader r;
  CHECK(r.next(input, body) == record_reader::status::error);
  CHECK(r.error().find("record length 0") != std::string::npos);
}
