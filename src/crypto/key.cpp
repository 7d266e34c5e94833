// bokbok::key (include/bokbok/key.hpp), on top of src/crypto.
#include "bokbok/key.hpp"

#include <sodium.h>

#include <algorithm>
#include <new>
#include <utility>

#include "crypto/key_file.hpp"
#include "crypto/passphrase.hpp"
#include "crypto/secret.hpp"
#include "crypto/secret_arena.hpp"
#include "crypto/users_file.hpp"

namespace bokbok {

static_assert(key::size == crypto::key::size);
static_assert(key::size <= crypto::secret_arena::slot_size);

// One slot of the process's secret arena (locked, not dumped, zeroed on release): a
// server looks a user's key up for every handshake, so no mapping of its own.
key::key() {
  crypto::ensure_sodium();
  bytes_ = crypto::secret_arena::process().allocate();
}

key::key(key&& other) noexcept : bytes_(std::exchange(other.bytes_, nullptr)) {}

key& key::operator=(key&& other) noexcept {
  if (this != &other) {
    key old(std::move(*this));
    bytes_ = std::exchange(other.bytes_, nullptr);
  }
  return *this;
}

key::~key() {
  if (bytes_) crypto::secret_arena::process().release(bytes_);  // zeroes the slot first
}

key key::generate() {
  key k;
  randombytes_buf(k.bytes_, size);
  return k;
}

key key::from_bytes(std::span<const unsigned char, size> bytes) {
  key k;
  std::copy(bytes.begin(), bytes.end(), k.bytes_);
  return k;
}

std::span<const unsigned char, key::size> key::bytes() const noexcept {
  return std::span<const unsigned char, size>(bytes_, size);
}

key key::clone() const { return from_bytes(bytes()); }

key key::from_passphrase(std::string_view passphrase, std::string_view realm,
                         std::string_view user) {
  return from_bytes(crypto::derive_passphrase_key(passphrase, realm, user).bytes());
}

key key::load(const std::string& path) {
  return from_bytes(crypto::load_key_file(path).bytes());
}

void key::save(const std::string& path, bool overwrite) const {
  crypto::save_key_file(path, crypto::key::from_bytes(bytes()), overwrite);
}

}  // namespace bokbok

namespace bokbok {

std::function<std::optional<key>(std::string_view user)> load_users(const std::string& path) {
  auto table = std::make_shared<const crypto::users_table>(crypto::load_users_file(path));
  return [table](std::string_view user) -> std::optional<key> {
    auto k = table->find(user);
    if (!k) return std::nullopt;
    return key::from_bytes(k->bytes());
  };
}

}  // namespace bokbok
