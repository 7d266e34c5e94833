// Secret bytes: keys and other material that must not leak (DESIGN.md, security).
//
// A `secret_bytes` owns a buffer locked in RAM (not swapped out, where the system allows
// it), left out of core dumps, and wiped when it is released. One of at most
// secret_arena::slot_size (32) bytes, which is every key and per-connection secret, is a
// slot of the process's secret_arena (crypto/secret_arena.hpp: no mapping of its own); a
// larger one (a key file's text, a users table) comes from sodium_malloc(), with guard
// pages around it. It is move-only: a secret exists once, and copies are explicit
// (`clone()`). A moved-from object is empty (size 0).
//
// `key` is the 32-byte symmetric key used everywhere in src/crypto (Noise pre-shared
// key, cipher keys). `wiped<N>` is a small fixed buffer for temporaries on the stack,
// zeroed in its destructor, for the intermediate values of HKDF and the like.
//
// Thread-safety: none of these types is shared between threads; distinct objects may be
// used from any thread. Allocation calls sodium_init() once (thread-safe in libsodium).
#pragma once

#include <sodium.h>

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace bokbok::crypto {

// Calls sodium_init() once; throws std::runtime_error if libsodium cannot start.
void ensure_sodium();

class secret_bytes {
 public:
  secret_bytes() noexcept = default;  // empty
  // `size` bytes of locked memory, zero-filled. Throws std::bad_alloc when the arena is
  // at its bound or sodium_malloc fails (out of memory or address space).
  explicit secret_bytes(std::size_t size);
  secret_bytes(const secret_bytes&) = delete;
  secret_bytes& operator=(const secret_bytes&) = delete;
  secret_bytes(secret_bytes&& other) noexcept;
  secret_bytes& operator=(secret_bytes&& other) noexcept;
  ~secret_bytes();

  // An explicit copy, in its own locked memory.
  secret_bytes clone() const;

  unsigned char* data() noexcept { return data_; }
  const unsigned char* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::span<unsigned char> span() noexcept { return {data_, size_}; }
  std::span<const unsigned char> span() const noexcept { return {data_, size_}; }

  // Overwrites the contents with zeros (the buffer stays allocated).
  void wipe() noexcept;

  // How many secret_bytes buffers are allocated right now in this process (a test hook:
  // a test can check that a secret's memory was released, and hence wiped).
  static std::size_t live_count() noexcept;

 private:
  unsigned char* data_ = nullptr;
  std::size_t size_ = 0;
};

// A 32-byte symmetric key in locked memory. Move-only; a moved-from key is empty and must
// not be used except to be assigned or destroyed.
class key {
 public:
  static constexpr std::size_t size = 32;
  static_assert(size == crypto_aead_chacha20poly1305_ietf_KEYBYTES);
  static_assert(size == crypto_scalarmult_BYTES);

  key();  // all zeros (a placeholder to be filled through data())
  static key random();                                        // randombytes_buf
  static key from_bytes(std::span<const unsigned char, size> bytes);

  key(key&&) noexcept = default;
  key& operator=(key&&) noexcept = default;
  key(const key&) = delete;
  key& operator=(const key&) = delete;

  key clone() const;

  unsigned char* data() noexcept { return bytes_.data(); }
  const unsigned char* data() const noexcept { return bytes_.data(); }
  std::span<const unsigned char, size> bytes() const noexcept {
    return std::span<const unsigned char, size>(bytes_.data(), size);
  }
  bool empty() const noexcept { return bytes_.empty(); }

  // Constant-time comparison (sodium_memcmp).
  bool equals(const key& other) const noexcept;

 private:
  secret_bytes bytes_;
};

// A fixed-size buffer for secret temporaries on the stack, zeroed on destruction.
template <std::size_t N>
class wiped {
 public:
  wiped() noexcept { buf_.fill(0); }
  wiped(const wiped&) = delete;
  wiped& operator=(const wiped&) = delete;
  ~wiped() { sodium_memzero(buf_.data(), N); }

  static constexpr std::size_t size() noexcept { return N; }
  unsigned char* data() noexcept { return buf_.data(); }
  const unsigned char* data() const noexcept { return buf_.data(); }
  std::span<unsigned char, N> span() noexcept { return buf_; }
  std::span<const unsigned char, N> span() const noexcept { return buf_; }

 private:
  std::array<unsigned char, N> buf_;
};

// Lower-case hex of `bytes` (for public values only: ephemeral keys, hashes, vectors).
std::string to_hex(std::span<const unsigned char> bytes);

// Decodes exactly `out.size()` bytes of hex from `hex` (either case, no separators), in
// constant time (sodium_hex2bin). Returns false if `hex` is not exactly that.
bool from_hex(std::string_view hex, std::span<unsigned char> out) noexcept;

}  // namespace bokbok::crypto
