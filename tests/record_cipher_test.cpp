// The key-mode record layer (src/crypto/record_cipher.hpp): round trips, tampering,
// replays and reordering, rekeying in step, nonce exhaustion, size limits.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "crypto/record_cipher.hpp"

using namespace bokbok::crypto;

namespace {

// A sender and a receiver for one direction, keyed alike.
struct direction {
  record_cipher send, receive;
};

direction make(rekey_limits send_limits = {}, rekey_limits receive_limits = {}) {
  symmetric_state s("test");
  s.mix_key(key::random().bytes());
  auto a = s.split();
  auto b = s.split();
  return {record_cipher(std::move(a.initiator_to_responder), send_limits),
          record_cipher(std::move(b.initiator_to_responder), receive_limits)};
}

std::string body_of(const std::string& record) {
  REQUIRE(record.size() >= 2);
  const std::size_t len = (std::size_t(static_cast<unsigned char>(record[0])) << 8) |
                          static_cast<unsigned char>(record[1]);
  REQUIRE(len == record.size() - 2);
  return record.substr(2);
}

std::string seal(record_cipher& c, std::string_view plain) {
  std::string rec;
  REQUIRE(c.seal(plain, rec));
  return body_of(rec);
}

}  // namespace

TEST_CASE("records round trip, each one a length and a ciphertext 16 bytes longer") {
  auto d = make();
  for (int i = 0; i < 5; ++i) {
    const std::string frame = "frame number " + std::to_string(i);
    const std::string body = seal(d.send, frame);
    CHECK(body.size() == frame.size() + tag_len);
    std::string out;
    REQUIRE(d.receive.open(body, out));
    CHECK(out == frame);
  }
  CHECK(d.send.records() == 5);
  CHECK(d.receive.records() == 5);
}

TEST_CASE("the largest frame fits the largest record; larger and empty frames are refused") {
  auto d = make();
  std::string rec;
  REQUIRE(d.send.seal(std::string(max_record_plaintext, 'x'), rec));
  CHECK(rec.size() == 2 + 65535);
  CHECK(rec.substr(0, 2) == "\xff\xff");
  std::string out;
  REQUIRE(d.receive.open(std::string_view(rec).substr(2), out));
  CHECK(out.size() == max_record_plaintext);
  auto e = make();
  std::string too_big;
  CHECK_FALSE(e.send.seal(std::string(max_record_plaintext + 1, 'x'), too_big));
  CHECK(too_big.empty());
  CHECK(e.send.failed());
  auto f = make();
  CHECK_FALSE(f.send.seal("", too_big));
  CHECK_FALSE(f.receive.open(std::string(tag_len, 'a'), out));  // no room for a frame
}

TEST_CASE("flipping any byte of a record makes it fail, and the stream stays dead") {
  const std::string frame = "a frame of some length";
  for (std::size_t i = 0; i < frame.size() + tag_len; ++i) {
    INFO("byte " << i);
    auto d = make();
    std::string body = seal(d.send, frame);
    body[i] = static_cast<char>(body[i] ^ 0x04);
    std::string out;
    CHECK_FALSE(d.receive.open(body, out));
    CHECK(out.empty());
    CHECK(d.receive.failed());
    const std::string next = seal(d.send, "next");
    CHECK_FALSE(d.receive.open(next, out));  // no recovery after a failure
  }
}

TEST_CASE("a replayed, reordered, dropped or truncated record fails") {
  auto d = make();
  const std::string a = seal(d.send, "first");
  const std::string b = seal(d.send, "second");
  std::string out;
  SUBCASE("replayed") {
    REQUIRE(d.receive.open(a, out));
    CHECK_FALSE(d.receive.open(a, out));
  }
  SUBCASE("reordered or dropped") { CHECK_FALSE(d.receive.open(b, out)); }
  SUBCASE("truncated") { CHECK_FALSE(d.receive.open(std::string_view(a).substr(0, a.size() - 1), out)); }
}

TEST_CASE("both sides rekey at the same record count and keep talking") {
  auto d = make({3, 1ull << 30}, {3, 1ull << 30});
  for (int i = 0; i < 10; ++i) {
    std::string out;
    REQUIRE(d.receive.open(seal(d.send, "r" + std::to_string(i)), out));
    CHECK(out == "r" + std::to_string(i));
  }
  CHECK(d.send.rekeys() == 3);
  CHECK(d.receive.rekeys() == 3);
  CHECK(d.send.records() == 10);  // nonces keep counting across rekeys
}

TEST_CASE("both sides rekey at the same byte count") {
  auto d = make({1ull << 20, 100}, {1ull << 20, 100});
  for (int i = 0; i < 6; ++i) {
    std::string out;
    REQUIRE(d.receive.open(seal(d.send, std::string(60, 'b')), out));
  }
  CHECK(d.send.rekeys() == 3);  // after records 2, 4 and 6 (120 bytes >= 100)
  CHECK(d.receive.rekeys() == 3);
}

TEST_CASE("a receiver that does not rekey when the sender does fails at that record") {
  auto d = make({3, 1ull << 30}, {});
  std::string out;
  for (int i = 0; i < 3; ++i) REQUIRE(d.receive.open(seal(d.send, "ok"), out));
  CHECK(d.send.rekeys() == 1);
  CHECK_FALSE(d.receive.open(seal(d.send, "after the rekey"), out));
  auto e = make({}, {1ull << 20, 10});  // the receiver rekeys early, by bytes
  REQUIRE(e.receive.open(seal(e.send, std::string(10, 'x')), out));
  CHECK_FALSE(e.receive.open(seal(e.send, "next"), out));
}

TEST_CASE("the default rekey limits are 2^20 records and 1 GiB") {
  const rekey_limits l;
  CHECK(l.records == 1048576);
  CHECK(l.bytes == 1073741824);
}

TEST_CASE("records stop when the nonce space is exhausted") {
  auto d = make();
  d.send.set_nonce_for_test(max_nonce);
  d.receive.set_nonce_for_test(max_nonce);
  std::string out;
  REQUIRE(d.receive.open(seal(d.send, "the last one"), out));
  std::string rec;
  CHECK_FALSE(d.send.seal("one too many", rec));
  CHECK(rec.empty());
  CHECK(d.send.failed());
}
