// Hello settings (src/wire/settings.hpp, PROTOCOL.md §6).
#include <doctest/doctest.h>

#include <cstdint>
#include <string>

#include "wire/frame.hpp"
#include "wire/settings.hpp"

using namespace bokbok::wire;
using namespace std::string_literals;

namespace {

std::string entry(std::uint16_t id, std::uint32_t v) {
  return {static_cast<char>(id >> 8),  static_cast<char>(id),
          static_cast<char>(v >> 24), static_cast<char>(v >> 16),
          static_cast<char>(v >> 8),  static_cast<char>(v)};
}

std::string decode_error(const std::string& payload) {
  settings s;
  std::string error;
  return decode_settings(payload, s, error) ? std::string() : error;
}

}  // namespace

TEST_CASE("settings encode as all four id-value entries in id order") {
  settings s;
  s.max_message_size = 1u << 20;
  s.heartbeat_ms = 250;
  s.max_concurrent_calls = 8;
  s.features = 0;
  CHECK(encode_settings(s) == entry(1, 1u << 20) + entry(2, 250) + entry(3, 8) + entry(4, 0));
}

TEST_CASE("settings round-trip") {
  settings s;
  s.max_message_size = 0xffffffff;
  s.heartbeat_ms = 30000;
  s.max_concurrent_calls = 1;
  s.features = 0x80000001;
  settings back;
  std::string error;
  REQUIRE_MESSAGE(decode_settings(encode_settings(s), back, error), error);
  CHECK(back == s);
}

TEST_CASE("an empty hello payload means every setting keeps its default") {
  settings s;
  s.heartbeat_ms = 99;  // overwritten: decoding starts from the defaults
  std::string error;
  REQUIRE(decode_settings("", s, error));
  CHECK(s == settings{});
  CHECK(s.max_message_size == 64u << 20);
}

TEST_CASE("absent settings keep their defaults and present ones may come in any order") {
  settings s;
  std::string error;
  REQUIRE(decode_settings(entry(2, 500) + entry(1, 65536), s, error));
  CHECK(s.max_message_size == 65536);
  CHECK(s.heartbeat_ms == 500);
  CHECK(s.max_concurrent_calls == 0);
}

TEST_CASE("unknown setting ids are skipped") {
  settings s;
  std::string error;
  REQUIRE(decode_settings(entry(0, 1) + entry(99, 7) + entry(3, 5) + entry(0xffff, 0), s, error));
  settings want;
  want.max_concurrent_calls = 5;
  CHECK(s == want);
}

TEST_CASE("a repeated setting id is refused, known or not") {
  CHECK(decode_error(entry(2, 0) + entry(2, 1)) == "setting 2 (heartbeat_ms) appears twice");
  CHECK(decode_error(entry(1, 65536) + entry(3, 0) + entry(1, 65536)) ==
        "setting 1 (max_message_size) appears twice");
  CHECK(decode_error(entry(77, 0) + entry(77, 0)) == "setting 77 (unknown) appears twice");
}

TEST_CASE("a hello payload that is not a whole number of entries is refused") {
  CHECK(decode_error("\x00"s) == "hello payload of 1 byte is not a whole number of 6-byte settings");
  CHECK(decode_error(entry(1, 65536) + "\x00\x02\x00"s) ==
        "hello payload of 9 bytes is not a whole number of 6-byte settings");
}

TEST_CASE("a max_message_size below 64 KiB is refused, and exactly 64 KiB is accepted") {
  CHECK(decode_error(entry(1, 65535)) == "max_message_size 65535 is below the minimum of 65536");
  CHECK(decode_error(entry(1, 0)) == "max_message_size 0 is below the minimum of 65536");
  CHECK(decode_error(entry(1, min_max_message_size)).empty());
}

TEST_CASE("a hello filling a whole frame with unknown settings decodes in bounded work") {
  // The largest hello payload that fits one frame: 10918 entries, all distinct ids.
  std::string payload;
  std::uint16_t id = 5;
  while (payload.size() + 12 <= max_frame_payload) payload += entry(id++, 0xdeadbeef);
  payload += entry(1, 1u << 30);  // a large limit is fine too
  CHECK(payload.size() / 6 == 10918);
  REQUIRE(payload.size() <= max_frame_payload);
  settings s;
  std::string error;
  REQUIRE_MESSAGE(decode_settings(payload, s, error), error);
  CHECK(s.max_message_size == 1u << 30);
  CHECK(s.heartbeat_ms == 0);
}

TEST_CASE("the negotiated maximum message size is the smaller of the two") {
  settings mine, peer;
  mine.max_message_size = 1u << 20;
  peer.max_message_size = 64u << 20;
  CHECK(negotiate_max_message_size(mine, peer) == 1u << 20);
  CHECK(negotiate_max_message_size(peer, mine) == 1u << 20);
  peer.max_message_size = 0xffffffff;
  CHECK(negotiate_max_message_size(mine, peer) == 1u << 20);
  CHECK(negotiate_max_message_size(peer, peer) == 0xffffffff);
}
