#include "crypto/secret.hpp"

#include "crypto/secret_arena.hpp"

#include <algorithm>
#include <atomic>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

namespace bokbok::crypto {

namespace {
std::atomic<std::size_t> live_secrets{0};
}  // namespace

void ensure_sodium() {
  // sodium_init() is thread-safe and idempotent; the static makes the check run once.
  static const int rc = sodium_init();
  if (rc < 0) throw std::runtime_error("libsodium could not be initialised");
}

secret_bytes::secret_bytes(std::size_t size) {
  if (size == 0) return;
  ensure_sodium();
  if (size <= secret_arena::slot_size) {
    // One slot of the process arena: locked, not dumped, no mapping of its own.
    data_ = secret_arena::process().allocate();
  } else {
    // sodium_malloc locks the pages (mlock, best effort) and places guard pages around them.
    data_ = static_cast<unsigned char*>(sodium_malloc(size));
    if (!data_) throw std::bad_alloc();
  }
  size_ = size;
  sodium_memzero(data_, size_);
  live_secrets.fetch_add(1, std::memory_order_relaxed);
}

secret_bytes::secret_bytes(secret_bytes&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

secret_bytes& secret_bytes::operator=(secret_bytes&& other) noexcept {
  if (this != &other) {
    secret_bytes old(std::move(*this));  // releases (and wipes) the previous buffer
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

secret_bytes::~secret_bytes() {
  if (!data_) return;
  sodium_memzero(data_, size_);  // release() and sodium_free wipe too; this keeps it explicit
  if (size_ <= secret_arena::slot_size)
    secret_arena::process().release(data_);
  else
    sodium_free(data_);
  live_secrets.fetch_sub(1, std::memory_order_relaxed);
}

secret_bytes secret_bytes::clone() const {
  secret_bytes copy(size_);
  if (size_) std::copy(data_, data_ + size_, copy.data_);
  return copy;
}

void secret_bytes::wipe() noexcept {
  if (data_) sodium_memzero(data_, size_);
}

std::size_t secret_bytes::live_count() noexcept {
  return live_secrets.load(std::memory_order_relaxed);
}

key::key() : bytes_(size) {}

key key::random() {
  key k;
  randombytes_buf(k.data(), size);
  return k;
}

key key::from_bytes(std::span<const unsigned char, size> bytes) {
  key k;
  std::copy(bytes.begin(), bytes.end(), k.data());
  return k;
}

key key::clone() const {
  key k;
  if (!empty()) std::copy(data(), data() + size, k.data());
  return k;
}

bool key::equals(const key& other) const noexcept {
  if (empty() || other.empty()) return empty() && other.empty();
  return sodium_memcmp(data(), other.data(), size) == 0;
}

std::string to_hex(std::span<const unsigned char> bytes) {
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), bytes.data(), bytes.size());
  out.pop_back();
  return out;
}

bool from_hex(std::string_view hex, std::span<unsigned char> out) noexcept {
  if (hex.size() != out.size() * 2) return false;
  std::size_t len = 0;
  const char* end = nullptr;
  if (sodium_hex2bin(out.data(), out.size(), hex.data(), hex.size(), nullptr, &len, &end) != 0)
    return false;
  return len == out.size() && end == hex.data() + hex.size();
}

}  // namespace bokbok::crypto
