// The preamble codec (src/wire/preamble.hpp, PROTOCOL.md §2).
#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <string_view>

#include "wire/preamble.hpp"

using namespace bokbok::wire;
using namespace std::string_literals;

namespace {

struct outcome {
  preamble_reader::status status;
  preamble value;
  std::string error;
  std::size_t consumed;
};

// Feeds `bytes` in pieces of `chunk` bytes until the reader stops asking for more.
outcome feed_in_chunks(std::string_view bytes, std::size_t chunk) {
  preamble_reader r;
  auto st = preamble_reader::status::need_more;
  std::size_t consumed = 0;
  for (std::size_t at = 0; at < bytes.size() && st == preamble_reader::status::need_more;
       at += chunk) {
    std::string_view in = bytes.substr(at, chunk);
    const std::size_t offered = in.size();
    st = r.feed(in);
    consumed += offered - in.size();
  }
  return {st, r.value(), r.error(), consumed};
}

const std::string plain_bytes = "BOKBOK\x01\x00\x00"s;

}  // namespace

TEST_CASE("a plain preamble encodes as magic, version 1, mode 0 and no user name") {
  CHECK(encode_preamble(preamble{}) == plain_bytes);
}

TEST_CASE("a key-mode preamble carries its user name after the length byte") {
  preamble p;
  p.mode = mode::key;
  p.user = "alice";
  CHECK(encode_preamble(p) == "BOKBOK\x01\x01\x05"s + "alice");
}

TEST_CASE("encoding refuses a user name longer than 255 bytes") {
  preamble p;
  p.mode = mode::key;
  p.user = std::string(256, 'u');
  CHECK_THROWS_AS(encode_preamble(p), std::length_error);
  p.user.pop_back();
  CHECK(encode_preamble(p).size() == 9 + 255);
}

TEST_CASE("the reader consumes only the preamble and leaves the first record in the input") {
  preamble_reader r;
  const std::string bytes = plain_bytes + "\x00\x06rest"s;
  std::string_view in = bytes;
  CHECK(r.feed(in) == preamble_reader::status::done);
  CHECK(in == "\x00\x06rest"s);
  CHECK(r.value() == preamble{});
}

TEST_CASE("after done or error, feeding again returns the same status and consumes nothing") {
  preamble_reader ok;
  std::string_view in = plain_bytes;
  REQUIRE(ok.feed(in) == preamble_reader::status::done);
  std::string_view more = "BOKBOK";
  CHECK(ok.feed(more) == preamble_reader::status::done);
  CHECK(more.size() == 6);

  preamble_reader bad;
  std::string_view junk = "xyz";
  REQUIRE(bad.feed(junk) == preamble_reader::status::error);
  const std::string first_error = bad.error();
  std::string_view again = "BOKBOK";
  CHECK(bad.feed(again) == preamble_reader::status::error);
  CHECK(again.size() == 6);
  CHECK(bad.error() == first_error);
}

TEST_CASE("the reader fed one byte at a time gives the same result as fed all at once") {
  preamble key;
  key.mode = mode::key;
  key.user = "bob";
  const std::string inputs[] = {
      plain_bytes,
      encode_preamble(key),
      plain_bytes + "trailing record bytes",
      "BOKBOK\x07\x00\x00"s,          // version
      "BOKBOK\x01\x05\x00"s,          // mode
      "BOKBOK\x01\x00\x02xy"s,        // plain with user
      "BOKBOX"s,                      // magic, last byte
      "Welcome\n"s,                   // magic, first byte
      "BOK"s,                         // incomplete
      "BOKBOK\x01\x01\x05"s + "ali",  // incomplete user name
  };
  for (const std::string& bytes : inputs) {
    CAPTURE(bytes);
    const outcome whole = feed_in_chunks(bytes, bytes.size());
    for (std::size_t chunk : {std::size_t{1}, std::size_t{2}, std::size_t{5}}) {
      CAPTURE(chunk);
      const outcome part = feed_in_chunks(bytes, chunk);
      CHECK(part.status == whole.status);
      if (whole.status == preamble_reader::status::done) {
        CHECK(part.value == whole.value);
        CHECK(part.consumed == whole.consumed);
      }
      if (whole.status == preamble_reader::status::error) {
        // The same failure; a magic mismatch quotes what had arrived, which may be less.
        const auto kind = [](const std::string& e) { return e.substr(0, e.find('"')); };
        CHECK(kind(part.error) == kind(whole.error));
      }
    }
  }
}

TEST_CASE("a shell banner instead of a preamble fails with the banner quoted and escaped") {
  const outcome o = feed_in_chunks("Welcome\n", 8);
  REQUIRE(o.status == preamble_reader::status::error);
  CHECK(o.error == R"(expected the bokbok preamble but got "Welcome\n")");
}

TEST_CASE("a wrong magic byte after a correct prefix reports every byte seen so far") {
  const outcome o = feed_in_chunks("BOKBAD!", 7);
  REQUIRE(o.status == preamble_reader::status::error);
  CHECK(o.error == R"(expected the bokbok preamble but got "BOKBAD!")");

  // Bytes fed earlier are part of the quote too.
  preamble_reader r;
  std::string_view a = "BOK";
  std::string_view b = "\x1b[0m\xff";
  CHECK(r.feed(a) == preamble_reader::status::need_more);
  CHECK(r.feed(b) == preamble_reader::status::error);
  CHECK(r.error() == R"(expected the bokbok preamble but got "BOK\x1b[0m\xff")");
}

TEST_CASE("a long stray output is quoted up to 64 bytes, then cut with an ellipsis") {
  const std::string noise(200, 'z');
  const outcome o = feed_in_chunks(noise, noise.size());
  REQUIRE(o.status == preamble_reader::status::error);
  CHECK(o.error == "expected the bokbok preamble but got \"" + std::string(64, 'z') + "...\"");
}

TEST_CASE("an unknown protocol version is refused with both versions named") {
  const outcome o = feed_in_chunks("BOKBOK\x07\x00\x00"s, 9);
  REQUIRE(o.status == preamble_reader::status::error);
  CHECK(o.error == "unsupported protocol version 7 (this side speaks 1)");
}

TEST_CASE("an unknown mode is refused") {
  const outcome o = feed_in_chunks("BOKBOK\x01\x02\x00"s, 9);
  REQUIRE(o.status == preamble_reader::status::error);
  CHECK(o.error == "unknown preamble mode 2 (0 is plain, 1 is key)");
}

TEST_CASE("a plain-mode preamble with a user name is refused at the length byte") {
  const outcome o = feed_in_chunks("BOKBOK\x01\x00\x04"s, 9);
  REQUIRE(o.status == preamble_reader::status::error);
  CHECK(o.error == "plain-mode preamble carries a user name of 4 bytes (plain mode has none)");
}

TEST_CASE("a key-mode preamble decodes with its user name") {
  const std::string bytes = "BOKBOK\x01\x01\x05"s + "alice";
  const outcome o = feed_in_chunks(bytes, bytes.size());
  REQUIRE(o.status == preamble_reader::status::done);
  CHECK(o.value.mode == mode::key);
  CHECK(o.value.user == "alice");
  CHECK(o.consumed == bytes.size());
}

TEST_CASE("a key-mode preamble with an empty user name is complete after 9 bytes") {
  const outcome o = feed_in_chunks("BOKBOK\x01\x01\x00"s, 9);
  CHECK(o.status == preamble_reader::status::done);
  CHECK(o.value.user.empty());
}

TEST_CASE("a plain side refuses a key-mode peer with a clear explanation") {
  preamble peer;
  peer.mode = mode::key;
  peer.user = "alice";
  CHECK(mode_mismatch(mode::plain, peer).find("key mode") != std::string::npos);
  CHECK(mode_mismatch(mode::key, preamble{}).find("plain mode") != std::string::npos);
  CHECK(mode_mismatch(mode::plain, preamble{}).empty());
  CHECK(mode_mismatch(mode::key, peer).empty());
}

TEST_CASE("a mode mismatch is explained in the words of PROTOCOL.md §9, which connections report") {
  preamble key_peer;
  key_peer.mode = mode::key;
  key_peer.user = "alice";
  CHECK(mode_mismatch(mode::plain, key_peer) ==
        "the peer requires key mode (authentication and encryption), this side is in plain "
        "mode: configure a key to talk to it");
  CHECK(mode_mismatch(mode::key, preamble{}) ==
        "the peer offers plain mode, this side requires key mode");
}

TEST_CASE("received() shows what arrived when the stream ends before the preamble does") {
  preamble_reader r;
  std::string_view in = "BOKB";
  CHECK(r.feed(in) == preamble_reader::status::need_more);
  CHECK(r.received() == "BOKB");
  CHECK(in.empty());
}

TEST_CASE("escape_bytes keeps printable ASCII and escapes everything else") {
  CHECK(escape_bytes("plain text") == "plain text");
  CHECK(escape_bytes("a\nb\rc\td") == R"(a\nb\rc\td)");
  CHECK(escape_bytes("say \"hi\" \\o/") == R"(say \"hi\" \\o/)");
  CHECK(escape_bytes("\x00\x7f\x80\xff"s) == R"(\x00\x7f\x80\xff)");
  CHECK(escape_bytes("") == "");
}

TEST_CASE("escape_bytes cuts at the limit and marks the cut") {
  CHECK(escape_bytes("abcdef", 3) == "abc...");
  CHECK(escape_bytes("abc", 3) == "abc");
  CHECK(escape_bytes(std::string(100, 'x')) == std::string(64, 'x') + "...");
}
