// Message bytes (src/wire/message_codec.hpp, PROTOCOL.md §5).
#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

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

// ---- message_decoder: a message fed in pieces -----------------------------------------

namespace {

// Feeds `bytes` cut at `cuts` (ascending); the decoded message, or the error.
struct piecewise {
  bool ok = false;
  message m;
  std::string error;
};
piecewise decode_in_pieces(std::string_view bytes, std::vector<std::size_t> cuts,
                           std::size_t max_size = 1 << 20) {
  message_decoder d(max_size);
  piecewise r;
  cuts.push_back(bytes.size());
  std::size_t from = 0;
  for (std::size_t to : cuts) {
    if (!d.feed(bytes.substr(from, to - from), r.error)) return r;
    from = to;
  }
  r.ok = d.finish(r.m, r.error);
  return r;
}

}  // namespace

TEST_CASE("a message fed in pieces cut anywhere decodes as decode_message decodes it whole") {
  const message m{"echo", "", std::string(70, 'x'), "\0\x01\x02"s, "last"};
  const std::string bytes = encode(m);
  for (std::size_t a = 0; a <= bytes.size(); ++a) {
    for (std::size_t b = a; b <= bytes.size(); b += 5) {
      CAPTURE(a);
      CAPTURE(b);
      piecewise r = decode_in_pieces(bytes, {a, b});
      REQUIRE(r.ok);
      CHECK(r.m == m);
    }
  }
}

TEST_CASE("a message fed in pieces is refused exactly when decode_message refuses it whole") {
  const std::string good = encode({"a", "bcd", ""});
  std::vector<std::string> inputs;
  for (std::size_t n = 0; n < good.size(); ++n) inputs.push_back(good.substr(0, n));  // truncated
  inputs.push_back(good + "z");                       // trailing
  inputs.push_back("\0\0\0\x02\0\0\0\x01" "a"s);      // a field missing
  for (const std::string& in : inputs) {
    CAPTURE(in.size());
    const bool whole_ok = decode_error(in).empty();
    for (std::size_t a = 0; a <= in.size(); ++a) CHECK(decode_in_pieces(in, {a}).ok == whole_ok);
  }
  CHECK(decode_in_pieces(good + "zz", {3}).error == "2 bytes trailing after the last field");
}

TEST_CASE("a message decoder reserves each field at its announced length and counts it as cost") {
  message_decoder d(1 << 20);
  std::string error;
  std::string bytes = encode({std::string(100'000, 'q')});
  REQUIRE(d.feed(std::string_view(bytes).substr(0, 100), error));
  // 100 bytes arrived; the field's 100,000 bytes are reserved and counted.
  CHECK(d.size() == 100);
  CHECK(d.cost() == 100'000 + decoded_field_overhead);
  REQUIRE(d.feed(std::string_view(bytes).substr(100), error));
  message m;
  REQUIRE(d.finish(m, error));
  CHECK(m.front() == std::string(100'000, 'q'));
}

TEST_CASE("a message decoder refuses at once a count or a field length the size limit cannot hold") {
  message_decoder counts(100);
  std::string error;
  CHECK_FALSE(counts.feed("\0\0\0\x64"s, error));  // 100 fields need 400 bytes
  CHECK(error.find("field count 100 exceeds the message size limit") != std::string::npos);
  message_decoder lengths(100);
  CHECK_FALSE(lengths.feed("\0\0\0\x01\0\0\0\x60"s, error));  // 96 bytes after 8
  CHECK(error.find("length 96 exceeds the message size limit") != std::string::npos);
  CHECK(lengths.cost() == 0);  // nothing was reserved for it
}

namespace {
// A gathered message's whole bytes, joined in the order gathered_message documents.
std::string joined(const gathered_message& g) {
  std::string out;
  std::size_t from = 0;
  for (const auto& i : g.in_place) {
    out.append(g.bytes, from, i.at - from);
    out += g.fields[i.field];
    from = i.at;
  }
  out.append(g.bytes, from);
  return out;
}
}  // namespace

TEST_CASE("a gathered message's pieces, joined, are encode_message's bytes; large fields stay in place") {
  const std::size_t at = 1000;  // fields of this size or more stay in place
  const std::vector<message> shapes = {
      {},
      {"small", ""},
      {std::string(at, 'a')},                                 // the only field, in place
      {std::string(at - 1, 'b'), std::string(at, 'c')},       // one copied, one in place
      {std::string(5000, 'd'), "x", std::string(3000, 'e')},  // in place at both ends
      {std::string(2000, 'f'), std::string(2000, 'g'), ""},   // two in a row, then empty
  };
  for (const message& m : shapes) {
    CAPTURE(m.size());
    message given = m;
    std::vector<const char*> where;  // each field's memory, as its owner had it
    for (const auto& f : given) where.push_back(f.data());
    gathered_message g;
    g.bytes = "room";  // what the caller left in front: kept, before the message
    encode_gathered(std::move(given), g, at);
    CHECK(joined(g) == "room" + encode(m));
    CHECK(g.size() == 4 + encoded_size(m));
    std::size_t in_place = 0;
    for (std::size_t i = 0; i < m.size(); ++i) in_place += m[i].size() >= at;
    REQUIRE(g.in_place.size() == in_place);
    CHECK(g.contiguous() == (in_place == 0));
    for (const auto& i : g.in_place) CHECK(g.fields[i.field].data() == where[i.field]);  // not copied
    // Only the count, the lengths and the copied fields were copied.
    CHECK(g.bytes.size() == g.size() - [&] {
      std::size_t n = 0;
      for (const auto& i : g.in_place) n += m[i.field].size();
      return n;
    }());
  }
}
