// Message bytes (src/wire/message_codec.hpp, PROTOCOL.md §5).
#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "wire/message_codec.hpp"

using bokbok::message;
using namespace bokbok::wire;
using namespace std::string_literals;

namespace {

std::string encode(const message& m) {
  std::string out;
  encode_message(m, out);
  return out;
}

// The error decode_message gives ("" if the bytes decode).
std::string decode_error(std::string_view bytes) {
  message m{"stale"};
  std::string error;
  if (decode_message(bytes, m, error)) return {};
  CHECK(m.empty());  // a failed decode leaves nothing half-filled
  return error;
}

}  // namespace

TEST_CASE("a message encodes as a big-endian count, then each field's length and bytes") {
  CHECK(encode({"ping", "hi"}) == "\x00\x00\x00\x02\x00\x00\x00\x04ping\x00\x00\x00\x02hi"s);
  CHECK(encode({}) == "\x00\x00\x00\x00"s);
}

TEST_CASE("messages round-trip, binary fields and empty fields included") {
  std::string all_bytes;
  for (int i = 0; i < 256; ++i) all_bytes.push_back(static_cast<char>(i));
  const message samples[] = {
      {},
      {""},
      {"", "", ""},
      {"ping"},
      {"echo", "\0\0\0"s, all_bytes},
      {std::string(100000, 'x'), "tail"},
  };
  for (const message& m : samples) {
    const std::string bytes = encode(m);
    CHECK(bytes.size() == encoded_size(m));
    message back;
    std::string error;
    REQUIRE_MESSAGE(decode_message(bytes, back, error), error);
    CHECK(back == m);
  }
}

TEST_CASE("encoding appends to what the output already holds") {
  std::string out = "head";
  encode_message({"a"}, out);
  CHECK(out == "head\x00\x00\x00\x01\x00\x00\x00\x01" "a"s);
}

TEST_CASE("decoding replaces the output's previous contents") {
  message m{"old", "fields"};
  std::string error;
  REQUIRE(decode_message(encode({"new"}), m, error));
  CHECK(m == message{"new"});
}

TEST_CASE("bytes too short for the field count are refused") {
  CHECK(decode_error("") == "message of 0 bytes is shorter than its 4-byte field count");
  CHECK(decode_error("\0\0\0"s) == "message of 3 bytes is shorter than its 4-byte field count");
}

TEST_CASE("a field count beyond the bytes present is refused before anything is allocated") {
  message m;
  std::string error;
  CHECK_FALSE(decode_message("\xff\xff\xff\xff\0\0\0\0"s, m, error));
  CHECK(error == "field count 4294967295 exceeds the message size (4 bytes after the count)");
  CHECK(m.capacity() == 0);
  CHECK(decode_error("\0\0\0\x02\0\0\0\0"s) ==
        "field count 2 exceeds the message size (4 bytes after the count)");
}

TEST_CASE("a field length beyond the bytes present is refused as a truncated field") {
  CHECK(decode_error("\0\0\0\x02\0\0\0\x01" "a\0\0\0\x05hi"s) ==
        "truncated field 2 of 2: length 5 but 2 bytes left");
  CHECK(decode_error("\0\0\0\x01\xff\xff\xff\xff" "abc"s) ==
        "truncated field 1 of 1: length 4294967295 but 3 bytes left");
}

TEST_CASE("a missing field length is refused as truncated") {
  CHECK(decode_error("\0\0\0\x02\0\0\0\x00\0\0\0\x00"s) == "");
  CHECK(decode_error("\0\0\0\x03\0\0\0\x00\0\0\0\x00\0\0"s) ==
        "field count 3 exceeds the message size (10 bytes after the count)");
  CHECK(decode_error("\0\0\0\x02\0\0\0\x02xy\0\0"s) == "truncated length of field 2 of 2");
}

TEST_CASE("bytes after the last field are refused") {
  CHECK(decode_error("\0\0\0\x01\0\0\0\x01" "a\0\0\0"s) == "3 bytes trailing after the last field");
  CHECK(decode_error("\0\0\0\x00z"s) == "1 byte trailing after the last field");
}

TEST_CASE("every truncation of a valid message fails, and so does any extra byte") {
  const std::string bytes = encode({"method", "", "\x01\x02\x03"s, "last field"});
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    CAPTURE(n);
    CHECK_FALSE(decode_error(std::string_view(bytes).substr(0, n)).empty());
  }
  CHECK(decode_error(bytes).empty());
  CHECK_FALSE(decode_error(bytes + "!").empty());
}

TEST_CASE("encoded_size counts the count, each length and each field") {
  CHECK(encoded_size({}) == 4);
  CHECK(encoded_size({""}) == 8);
  CHECK(encoded_size({"ping", "hi"}) == 4 + 8 + 6);
}
