// Secret buffers and keys (src/crypto/secret.hpp, include/bokbok/key.hpp): move-only,
// locked sodium memory, released (and so wiped) on destruction.
#include <doctest/doctest.h>

#include <type_traits>

#include "bokbok/key.hpp"
#include "crypto/secret.hpp"

using namespace bokbok::crypto;

static_assert(!std::is_copy_constructible_v<secret_bytes>);
static_assert(!std::is_copy_assignable_v<secret_bytes>);
static_assert(std::is_nothrow_move_constructible_v<secret_bytes>);
static_assert(!std::is_copy_constructible_v<key>);
static_assert(!std::is_copy_assignable_v<key>);
static_assert(std::is_nothrow_move_constructible_v<key>);
static_assert(!std::is_copy_constructible_v<bokbok::key>);
static_assert(!std::is_copy_assignable_v<bokbok::key>);
static_assert(std::is_nothrow_move_constructible_v<bokbok::key>);
static_assert(key::size == 32 && bokbok::key::size == 32);

TEST_CASE("a secret buffer starts zeroed and is released when destroyed") {
  const std::size_t live = secret_bytes::live_count();
  {
    secret_bytes s(100);
    CHECK(secret_bytes::live_count() == live + 1);
    REQUIRE(s.size() == 100);
    for (unsigned char b : s.span()) CHECK(b == 0);
  }
  CHECK(secret_bytes::live_count() == live);
}

TEST_CASE("moving a secret leaves the source empty and keeps one allocation") {
  const std::size_t live = secret_bytes::live_count();
  secret_bytes a(8);
  a.data()[0] = 42;
  const unsigned char* where = a.data();
  secret_bytes b(std::move(a));
  CHECK(a.empty());
  CHECK(a.data() == nullptr);
  CHECK(b.data() == where);
  CHECK(b.data()[0] == 42);
  secret_bytes c(4);
  CHECK(secret_bytes::live_count() == live + 2);
  c = std::move(b);  // c's old buffer is released
  CHECK(secret_bytes::live_count() == live + 1);
  CHECK(c.data()[0] == 42);
}

TEST_CASE("wipe zeroes a secret in place and clone copies it into new memory") {
  secret_bytes s(16);
  for (std::size_t i = 0; i < 16; ++i) s.data()[i] = static_cast<unsigned char>(i + 1);
  secret_bytes copy = s.clone();
  CHECK(copy.data() != s.data());
  CHECK(sodium_memcmp(copy.data(), s.data(), 16) == 0);
  s.wipe();
  for (unsigned char b : s.span()) CHECK(b == 0);
  CHECK(copy.data()[15] == 16);
}

TEST_CASE("random keys differ, and equality is by content") {
  const key a = key::random();
  const key b = key::random();
  CHECK_FALSE(a.equals(b));
  const key c = a.clone();
  CHECK(a.equals(c));
  CHECK(c.data() != a.data());
  const key d = key::from_bytes(a.bytes());
  CHECK(d.equals(a));
  key moved = key::random();
  key target = std::move(moved);
  CHECK(moved.empty());
  CHECK_FALSE(target.empty());
}

TEST_CASE("hex round trips and refuses anything but exactly the right digits") {
  std::array<unsigned char, 4> out{};
  CHECK(from_hex("0aFf10c3", out));
  CHECK(to_hex(out) == "0aff10c3");
  CHECK_FALSE(from_hex("0aff10c", out));
  CHECK_FALSE(from_hex("0aff10c3aa", out));
  CHECK_FALSE(from_hex("0aff10cg", out));
  CHECK_FALSE(from_hex("0a ff10c", out));
}

TEST_CASE("the public key type generates, clones and moves in locked memory") {
  auto a = bokbok::key::generate();
  auto b = bokbok::key::generate();
  CHECK(sodium_memcmp(a.bytes().data(), b.bytes().data(), 32) != 0);
  auto c = a.clone();
  CHECK(sodium_memcmp(a.bytes().data(), c.bytes().data(), 32) == 0);
  CHECK(c.bytes().data() != a.bytes().data());
  const unsigned char* where = a.bytes().data();
  bokbok::key d(std::move(a));
  CHECK(d.bytes().data() == where);
  auto e = bokbok::key::from_bytes(d.bytes());
  CHECK(sodium_memcmp(e.bytes().data(), c.bytes().data(), 32) == 0);
}
