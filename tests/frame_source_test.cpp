// The frame source (src/rpc/frame_source.hpp) on its own: records read in place from a
// read buffer, frames, messages whole or fragmented, and the errors that end a stream.
#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/noise_symmetric.hpp"
#include "crypto/record_cipher.hpp"
#include "rpc/frame_source.hpp"
#include "wire/frame.hpp"
#include "wire/message_codec.hpp"

using bokbok::message;
using bokbok::rpc::frame_source;
using namespace bokbok::wire;
using namespace std::string_literals;

namespace {

std::string encoded(const message& m) {
  std::string out;
  encode_message(m, out);
  return out;
}

// What a peer sends: a ping, a fragmented request (200 KiB field), a single-frame
// response.
struct stream {
  message big{"put", std::string(200'000, 'v')};
  message small{"ok"};
  std::string bytes;
  stream() {
    append_frame(bytes, frame_type::ping, 0, 0, "12345678");
    append_message_frames(bytes, frame_type::request, 7, encoded(big));
    append_message_frames(bytes, frame_type::response, 3, encoded(small));
  }
};

// Everything the source makes of `bytes` cut into reads of `read_size`: frame types in
// order, and the messages completed.
struct outcome {
  std::vector<frame_type> types;
  std::vector<message> messages;
  std::string error;
};
outcome run(const std::string& bytes, std::size_t read_size) {
  frame_source src(1 << 20, max_partial_messages);
  outcome out;
  for (std::size_t at = 0; at < bytes.size(); at += read_size) {
    std::string read = bytes.substr(at, read_size);  // this turn's read buffer
    std::string_view input = read;
    frame_view f;
    for (;;) {
      auto st = src.next(input, nullptr, f);
      if (st == frame_source::status::need_more) break;
      if (st == frame_source::status::error) {
        out.error = src.error();
        return out;
      }
      out.types.push_back(f.type);
      if (f.type == frame_type::ping) continue;
      std::string_view whole;
      std::string err;
      auto rs = src.add_message(f, whole, err);
      REQUIRE(rs != reassembler::status::error);
      if (rs != reassembler::status::complete) continue;
      message m;
      std::size_t cost = 0;
      if (src.messages().has_decoded())
        m = src.messages().take_decoded(cost);
      else
        REQUIRE(decode_message(whole, m, err));
      out.messages.push_back(std::move(m));
    }
    CHECK(input.empty());
  }
  return out;
}

}  // namespace

TEST_CASE("frames of one read are views into the read buffer, and a one-frame message is decoded from there") {
  frame_source src(1 << 20, max_partial_messages);
  std::string read;
  append_message_frames(read, frame_type::response, 3, encoded({"ok", "fine"}));
  std::string_view input = read;
  frame_view f;
  REQUIRE(src.next(input, nullptr, f) == frame_source::status::frame);
  CHECK(f.payload.data() >= read.data());
  CHECK(f.payload.data() + f.payload.size() <= read.data() + read.size());
  std::string_view whole;
  std::string err;
  REQUIRE(src.add_message(f, whole, err) == reassembler::status::complete);
  CHECK(whole.data() == f.payload.data());  // no copy before the fields
  CHECK_FALSE(src.messages().has_decoded());
  CHECK(src.next(input, nullptr, f) == frame_source::status::need_more);
}

TEST_CASE("a stream cut into reads of any size gives the same frames and messages") {
  stream s;
  for (std::size_t read_size : {std::size_t(1), std::size_t(7), std::size_t(4096),
                                std::size_t(65'537), std::size_t(256 * 1024), s.bytes.size()}) {
    CAPTURE(read_size);
    outcome o = run(s.bytes, read_size);
    REQUIRE(o.error.empty());
    CHECK(o.types.front() == frame_type::ping);
    CHECK(o.types.size() == 1 + (200'000 + 20) / max_frame_payload + 1 + 1);
    REQUIRE(o.messages.size() == 2);
    CHECK(o.messages[0] == s.big);  // fragmented: decoded as it came
    CHECK(o.messages[1] == s.small);
  }
}

TEST_CASE("the rest of a read kept while reading is paused comes first on the next call") {
  stream s;
  frame_source src(1 << 20, max_partial_messages);
  std::string read = s.bytes;
  std::string_view input = read;
  frame_view f;
  REQUIRE(src.next(input, nullptr, f) == frame_source::status::frame);  // the ping
  src.keep(input);  // reading paused here; the read buffer is reused for other bytes
  read.assign(read.size(), '\0');
  std::string_view none;
  std::size_t frames = 0;
  while (src.next(none, nullptr, f) == frame_source::status::frame) ++frames;
  CHECK(frames == (200'000 + 20) / max_frame_payload + 1 + 1);
}

TEST_CASE("a malformed record or frame ends the stream with an error that says why, and stays ended") {
  frame_source src(1 << 20, max_partial_messages);
  std::string read = "\0\x06\x63\0\0\0\0\0"s;  // frame type 99
  std::string_view input = read;
  frame_view f;
  REQUIRE(src.next(input, nullptr, f) == frame_source::status::error);
  CHECK(src.error() == "unknown frame type 99");
  CHECK_FALSE(src.forged());
  std::string good;
  append_frame(good, frame_type::ping, 0, 0, "");
  input = good;
  CHECK(src.next(input, nullptr, f) == frame_source::status::error);

  frame_source zero(1 << 20, max_partial_messages);
  std::string empty_record = "\0\0"s;
  input = empty_record;
  REQUIRE(zero.next(input, nullptr, f) == frame_source::status::error);
  CHECK(zero.error().find("record length 0") != std::string::npos);
}

TEST_CASE("dropping the messages forgets partial ones and their reserved fields") {
  stream s;
  frame_source src(1 << 20, max_partial_messages);
  std::string read = s.bytes.substr(0, 20'000);  // the ping and the request's start
  std::string_view input = read;
  frame_view f;
  REQUIRE(src.next(input, nullptr, f) == frame_source::status::frame);
  CHECK(src.next(input, nullptr, f) == frame_source::status::need_more);
  // The request's first record is not whole yet: nothing reserved.
  CHECK(src.messages().buffered_bytes() == 0);
  std::string rest = s.bytes.substr(20'000, 70'000);
  input = rest;
  REQUIRE(src.next(input, nullptr, f) == frame_source::status::frame);
  std::string_view whole;
  std::string err;
  REQUIRE(src.add_message(f, whole, err) == reassembler::status::incomplete);
  CHECK(src.messages().buffered_bytes() >= 200'000);  // the field, at its announced length
  src.drop_messages(1 << 20, max_partial_messages);
  CHECK(src.messages().buffered_bytes() == 0);
  CHECK(src.messages().open_messages() == 0);
}

namespace {

// One direction's cipher, keyed with a fixed test key (both ends make the same).
bokbok::crypto::record_cipher test_cipher() {
  std::array<unsigned char, bokbok::crypto::cipher_key_len> k{};
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<unsigned char>(i * 5 + 3);
  bokbok::crypto::cipher_state st;
  st.initialize_key(k);
  return bokbok::crypto::record_cipher(std::move(st));
}

// Each record of `plain` (whole plain records) sealed into one key-mode record.
std::string sealed(bokbok::crypto::record_cipher& send, std::string_view plain) {
  std::string out;
  record_reader records;
  std::string_view body;
  while (records.next(plain, body) == record_reader::status::record) REQUIRE(send.seal(body, out));
  return out;
}

}  // namespace

TEST_CASE("key mode opens each record in place, and an idle source keeps only a small decrypt buffer") {
  bokbok::crypto::record_cipher send = test_cipher();
  bokbok::crypto::record_cipher receive = test_cipher();
  frame_source src(1 << 20, max_partial_messages);
  frame_view f;
  // Small records: opened, and between reads the buffer stays (a quiet connection's next
  // record needs no allocation), within one small record's room.
  for (int round = 0; round < 5; ++round) {
    std::string plain;
    const std::string answer = encoded({"ok", std::string(10 + round * 70, char('a' + round))});
    append_message_frames(plain, frame_type::response, 3, answer);
    std::string read = sealed(send, plain);
    std::string_view input = read;
    const auto st = src.next_with(input, &receive, f);
    INFO(src.error());
    REQUIRE(st == frame_source::status::frame);
    CHECK(f.type == frame_type::response);
    CHECK(f.payload == answer);
    CHECK(src.next_with(input, &receive, f) == frame_source::status::need_more);
    CHECK(src.decrypt_bytes() > 0);
    CHECK(src.decrypt_bytes() <= frame_source::idle_keep);
  }
  // A large record grows the buffer while it is read; once the read is used up, it goes.
  std::string plain;
  append_frame(plain, frame_type::ping, 0, 0, "12345678");
  const std::string big = encoded({"put", std::string(60'000, 'q')});
  append_message_frames(plain, frame_type::request, 9, big);
  std::string read = sealed(send, plain);
  std::string_view input = read;
  REQUIRE(src.next_with(input, &receive, f) == frame_source::status::frame);
  REQUIRE(src.next_with(input, &receive, f) == frame_source::status::frame);
  CHECK(f.type == frame_type::request);
  CHECK(src.decrypt_bytes() >= f.payload.size());
  std::string_view whole;
  std::string err;
  REQUIRE(src.add_message(f, whole, err) == reassembler::status::complete);
  CHECK(whole == big);
  CHECK(src.next_with(input, &receive, f) == frame_source::status::need_more);
  CHECK(src.decrypt_bytes() <= frame_source::idle_keep);
  // A forged record ends the stream as forged.
  std::string bad = sealed(send, plain);
  bad[10] ^= 1;
  input = bad;
  CHECK(src.next_with(input, &receive, f) == frame_source::status::error);
  CHECK(src.forged());
}
