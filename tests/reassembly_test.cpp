// Reassembly of fragmented messages (src/wire/reassembly.hpp, PROTOCOL.md §4.3).
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "wire/message_codec.hpp"
#include "wire/reassembly.hpp"

using namespace bokbok::wire;
using status = reassembler::status;
using namespace std::string_literals;

namespace {

constexpr std::uint8_t first_more = flag_more;
constexpr std::uint8_t middle = flag_more | flag_continued;
constexpr std::uint8_t last = flag_continued;

frame_view req(std::uint8_t flags, std::uint32_t id, std::string_view payload) {
  return {frame_type::request, flags, id, payload};
}

frame_view resp(std::uint8_t flags, std::uint32_t id, std::string_view payload) {
  return {frame_type::response, flags, id, payload};
}

// Feeds one frame and returns its status, keeping the last output and error.
struct harness {
  reassembler r;
  std::string out;
  std::string error;
  harness(std::size_t max_size = 1000, std::size_t max_open = 4) : r(max_size, max_open) {}
  status add(const frame_view& f) { return r.add(f, out, error); }
};

}  // namespace

TEST_CASE("a single-frame message completes at once and never counts as open") {
  harness h(1000, 1);
  CHECK(h.add(req(0, 1, "whole")) == status::complete);
  CHECK(h.out == "whole");
  CHECK(h.r.open_messages() == 0);
  CHECK(h.r.buffered_bytes() == 0);
  // Even with the open table full, single-frame messages keep flowing.
  CHECK(h.add(req(first_more, 2, "a")) == status::incomplete);
  CHECK(h.add(req(0, 3, "b")) == status::complete);
  CHECK(h.add(resp(0, 3, "c")) == status::complete);
}

TEST_CASE("fragments in order reassemble into the whole message, then memory is released") {
  harness h;
  CHECK(h.add(req(first_more, 7, "abc")) == status::incomplete);
  CHECK(h.r.open_messages() == 1);
  CHECK(h.r.buffered_bytes() == 3);
  CHECK(h.add(req(middle, 7, "def")) == status::incomplete);
  CHECK(h.r.buffered_bytes() == 6);
  CHECK(h.add(req(last, 7, "g")) == status::complete);
  CHECK(h.out == "abcdefg");
  CHECK(h.r.open_messages() == 0);
  CHECK(h.r.buffered_bytes() == 0);
}

TEST_CASE("empty fragments are accepted") {
  harness h;
  CHECK(h.add(req(first_more, 1, "")) == status::incomplete);
  CHECK(h.add(req(middle, 1, "x")) == status::incomplete);
  CHECK(h.add(req(last, 1, "")) == status::complete);
  CHECK(h.out == "x");
}

TEST_CASE("interleaved fragments of different calls reassemble independently") {
  harness h;
  CHECK(h.add(req(first_more, 1, "1a")) == status::incomplete);
  CHECK(h.add(req(first_more, 2, "2a")) == status::incomplete);
  CHECK(h.add(resp(first_more, 1, "r1a")) == status::incomplete);  // same id, other type
  CHECK(h.r.open_messages() == 3);
  CHECK(h.add(req(last, 2, "2b")) == status::complete);
  CHECK(h.out == "2a2b");
  CHECK(h.add(resp(last, 1, "r1b")) == status::complete);
  CHECK(h.out == "r1ar1b");
  CHECK(h.add(req(last, 1, "1b")) == status::complete);
  CHECK(h.out == "1a1b");
  CHECK(h.r.open_messages() == 0);
}

TEST_CASE("a call id may carry a new message once its previous one is finished") {
  harness h;
  CHECK(h.add(req(first_more, 5, "a")) == status::incomplete);
  CHECK(h.add(req(last, 5, "b")) == status::complete);
  CHECK(h.add(req(first_more, 5, "c")) == status::incomplete);
  CHECK(h.add(req(last, 5, "d")) == status::complete);
  CHECK(h.out == "cd");
}

TEST_CASE("a continued fragment of an unknown call is a protocol error") {
  harness h;
  CHECK(h.add(req(last, 9, "x")) == status::error);
  CHECK(h.error ==
        "fragment of unknown call: a continued fragment on request call id 9, which has no "
        "message in progress");
  harness h2;
  CHECK(h2.add(resp(middle, 3, "x")) == status::error);
  CHECK(h2.error.find("response call id 3") != std::string::npos);
}

TEST_CASE("a new message while one is unfinished on the same type and id is a protocol error") {
  harness h;
  CHECK(h.add(req(first_more, 4, "a")) == status::incomplete);
  CHECK(h.add(req(0, 4, "b")) == status::error);
  CHECK(h.error == "a new message on request call id 4 while the previous one is unfinished");
  harness h2;
  CHECK(h2.add(resp(first_more, 4, "a")) == status::incomplete);
  CHECK(h2.add(resp(first_more, 4, "b")) == status::error);
}

TEST_CASE("opening more partial messages than allowed is a protocol error") {
  harness h(1000, 3);
  for (std::uint32_t id = 1; id <= 3; ++id) CHECK(h.add(req(first_more, id, "x")) == status::incomplete);
  CHECK(h.add(resp(first_more, 1, "x")) == status::error);
  CHECK(h.error == "more than 3 partial messages open at once");
  // Finishing one makes room again.
  harness h2(1000, 1);
  CHECK(h2.add(req(first_more, 1, "x")) == status::incomplete);
  CHECK(h2.add(req(last, 1, "y")) == status::complete);
  CHECK(h2.add(req(first_more, 2, "x")) == status::incomplete);
}

TEST_CASE("the protocol's open-message limit is 16") {
  CHECK(max_partial_messages == 16);
  harness h(1000, max_partial_messages);
  for (std::uint32_t id = 1; id <= 16; ++id) CHECK(h.add(req(first_more, id, "")) == status::incomplete);
  CHECK(h.add(req(first_more, 17, "")) == status::error);
}

TEST_CASE("a message beyond the size limit is reported too large once, then skipped to its last fragment") {
  harness h(10);
  CHECK(h.add(req(first_more, 1, "123456")) == status::incomplete);
  CHECK(h.r.buffered_bytes() == 6);
  CHECK(h.add(req(middle, 1, "7890X")) == status::too_large);
  CHECK(h.r.buffered_bytes() == 0);  // memory released at once
  CHECK(h.r.open_messages() == 1);   // still open: its fragments keep coming
  CHECK(h.add(req(middle, 1, std::string(100, 'y'))) == status::skipped);
  CHECK(h.r.buffered_bytes() == 0);
  CHECK(h.add(req(last, 1, "z")) == status::skipped);
  CHECK(h.r.open_messages() == 0);
  // The id is free again.
  CHECK(h.add(req(0, 1, "fits")) == status::complete);
}

TEST_CASE("a first fragment already beyond the limit is too large and nothing is kept") {
  harness h(4);
  CHECK(h.add(resp(first_more, 2, "12345")) == status::too_large);
  CHECK(h.r.buffered_bytes() == 0);
  CHECK(h.add(resp(last, 2, "6")) == status::skipped);
  CHECK(h.r.open_messages() == 0);
  CHECK(h.add(resp(0, 3, "12345")) == status::too_large);  // single frame: nothing opens
  CHECK(h.r.open_messages() == 0);
}

TEST_CASE("a message exactly at the size limit completes") {
  harness h(6);
  CHECK(h.add(req(first_more, 1, "123")) == status::incomplete);
  CHECK(h.add(req(last, 1, "456")) == status::complete);
  CHECK(h.out == "123456");
  CHECK(h.add(req(0, 2, "123456")) == status::complete);
}

TEST_CASE("the size limit may be lowered while a message is in progress") {
  harness h(100);
  CHECK(h.add(req(first_more, 1, std::string(50, 'a'))) == status::incomplete);
  h.r.set_max_message_size(20);
  CHECK(h.add(req(last, 1, "b")) == status::too_large);
  CHECK(h.r.open_messages() == 0);
  CHECK(h.r.buffered_bytes() == 0);
}

TEST_CASE("dropping a partial message releases its bytes and skips its remaining fragments") {
  harness h;
  CHECK(h.add(req(first_more, 3, "abc")) == status::incomplete);
  CHECK(h.add(req(first_more, 4, "keep")) == status::incomplete);
  h.r.drop(frame_type::request, 3);
  CHECK(h.r.buffered_bytes() == 4);
  CHECK(h.add(req(middle, 3, "def")) == status::skipped);
  CHECK(h.add(req(last, 3, "g")) == status::skipped);
  CHECK(h.r.open_messages() == 1);
  CHECK(h.add(req(last, 4, "!")) == status::complete);
  CHECK(h.out == "keep!");
}

TEST_CASE("dropping a call with no message in progress changes nothing") {
  harness h;
  h.r.drop(frame_type::response, 8);
  CHECK(h.r.open_messages() == 0);
  CHECK(h.add(resp(0, 8, "late answer")) == status::complete);
  CHECK(h.add(req(first_more, 8, "x")) == status::incomplete);
  h.r.drop(frame_type::response, 8);  // the request with the same id is untouched
  CHECK(h.add(req(last, 8, "y")) == status::complete);
  CHECK(h.out == "xy");
}

TEST_CASE("frames that carry no message are refused") {
  harness h;
  CHECK(h.add({frame_type::ping, 0, 0, ""}) == status::error);
  CHECK(h.error == "a ping frame carries no message");
}

// ---- views, buffer reuse, decode mode -----------------------------------------------

TEST_CASE("a single-frame message is given as a view of the frame's payload, not a copy") {
  reassembler r(1000, 4);
  std::string payload = "whole message";
  std::string_view whole;
  std::string error;
  REQUIRE(r.add(req(0, 1, payload), whole, error) == status::complete);
  CHECK(whole.data() == payload.data());
  CHECK(whole.size() == payload.size());
  // With a deadline prefix, the view starts after it.
  std::string with_deadline = "\0\0\x03\xe8"s + "m";
  REQUIRE(r.add(req(flag_deadline, 2, with_deadline), whole, error) == status::complete);
  CHECK(whole.data() == with_deadline.data() + deadline_prefix_size);
  CHECK(r.deadline_ms() == 1000u);
}

TEST_CASE("the buffer of a fragmented message is kept for the next one, up to a limit") {
  reassembler r(4 << 20, 4);
  std::string error;
  std::string_view whole;
  const std::string part(100'000, 'p');
  for (int round = 0; round < 3; ++round) {
    REQUIRE(r.add(req(first_more, 5, part), whole, error) == status::incomplete);
    REQUIRE(r.add(req(last, 5, part), whole, error) == status::complete);
    CHECK(whole.size() == 200'000);
    if (round > 0) {
      // The spare buffer was taken for this message: after it completes, nothing spare.
      CHECK(r.spare_capacity() < 200'000);
    }
    // The next add lets go of `whole`: its buffer becomes the spare one.
    REQUIRE(r.add(req(0, 6, "x"), whole, error) == status::complete);
    CHECK(r.spare_capacity() >= 200'000);
  }
  // A buffer beyond the limit is not kept.
  const std::string big(reassembler::spare_buffer_limit, 'b');
  r.release_spare();
  REQUIRE(r.add(req(first_more, 7, big), whole, error) == status::incomplete);
  REQUIRE(r.add(req(last, 7, "b"), whole, error) == status::complete);
  REQUIRE(r.add(req(0, 8, "x"), whole, error) == status::complete);
  CHECK(r.spare_capacity() < reassembler::spare_buffer_limit);
}

namespace {

std::string encoded(const bokbok::message& m) {
  std::string out;
  encode_message(m, out);
  return out;
}

}  // namespace

TEST_CASE("decode mode: a fragmented message comes decoded, its bytes counted while it is partial") {
  reassembler r(1 << 20, 4, true);
  const bokbok::message m{"put", std::string(150'000, 'v'), "tail"};
  const std::string bytes = encoded(m);
  std::string error;
  std::string_view whole;
  const std::size_t cut1 = 50'000, cut2 = 120'000;
  REQUIRE(r.add(req(first_more, 3, std::string_view(bytes).substr(0, cut1)), whole, error) ==
          status::incomplete);
  // The big field is reserved whole as soon as its length is known, and counted.
  CHECK(r.buffered_bytes() >= 150'000);
  CHECK_FALSE(r.has_decoded());
  REQUIRE(r.add(req(middle, 3, std::string_view(bytes).substr(cut1, cut2 - cut1)), whole, error) ==
          status::incomplete);
  REQUIRE(r.add(req(last, 3, std::string_view(bytes).substr(cut2)), whole, error) ==
          status::complete);
  CHECK(whole.empty());
  REQUIRE(r.has_decoded());
  std::size_t cost = 0;
  CHECK(r.take_decoded(cost) == m);
  CHECK(cost >= bytes.size());
  CHECK_FALSE(r.has_decoded());
  CHECK(r.buffered_bytes() == 0);
  CHECK(r.open_messages() == 0);
  // A single-frame message is still given as bytes, to decode in place.
  REQUIRE(r.add(resp(0, 4, bytes), whole, error) == status::complete);
  CHECK_FALSE(r.has_decoded());
  CHECK(whole.data() == bytes.data());
}

TEST_CASE("decode mode: a malformed fragmented message is an error naming its kind, and forgotten") {
  reassembler r(1 << 20, 4, true);
  std::string error;
  std::string_view whole;
  const std::string bytes = encoded({"a", "b"}) + "zz";
  REQUIRE(r.add(resp(first_more, 3, std::string_view(bytes).substr(0, 6)), whole, error) ==
          status::incomplete);
  REQUIRE(r.add(resp(last, 3, std::string_view(bytes).substr(6)), whole, error) == status::error);
  CHECK(error == "bad response: 2 bytes trailing after the last field");
  CHECK(r.open_messages() == 0);
  CHECK(r.buffered_bytes() == 0);
}

TEST_CASE("decode mode: a message announcing more than the size limit holds is too large at once, then skipped") {
  reassembler small(100, 4, true);
  std::string error;
  std::string_view whole;
  // One field of 4096 bytes: it could never fit in 100.
  REQUIRE(small.add(req(first_more, 9, "\0\0\0\x01\0\0\x10\0"s), whole, error) ==
          status::too_large);
  CHECK(small.buffered_bytes() == 0);
  CHECK(small.add(req(middle, 9, "more"), whole, error) == status::skipped);
  CHECK(small.add(req(last, 9, "end"), whole, error) == status::skipped);
  CHECK(small.open_messages() == 0);
  // A field count the limit cannot hold (each field takes 4 bytes at least) likewise.
  REQUIRE(small.add(resp(first_more, 2, "\0\0\x01\0"s), whole, error) == status::too_large);
  CHECK(small.add(resp(last, 2, ""), whole, error) == status::skipped);
}

TEST_CASE("decode mode: dropping or passing the limit releases a partial message's reserved fields") {
  reassembler r(300'000, 4, true);
  std::string error;
  std::string_view whole;
  const std::string bytes = encoded({std::string(200'000, 'd')});
  REQUIRE(r.add(req(first_more, 1, std::string_view(bytes).substr(0, 100)), whole, error) ==
          status::incomplete);
  CHECK(r.buffered_bytes() >= 200'000);
  r.drop(frame_type::request, 1);
  CHECK(r.buffered_bytes() == 0);
  CHECK(r.add(req(last, 1, "rest"), whole, error) == status::skipped);
  REQUIRE(r.add(req(first_more, 2, std::string_view(bytes).substr(0, 100)), whole, error) ==
          status::incomplete);
  r.set_max_message_size(150);
  CHECK(r.add(req(middle, 2, std::string(100, 'd')), whole, error) == status::too_large);
  CHECK(r.buffered_bytes() == 0);
}
