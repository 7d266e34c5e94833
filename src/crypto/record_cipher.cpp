#include "crypto/record_cipher.hpp"

#include "base/endian.hpp"

#include <cstring>
#include <stdexcept>
#include <utility>

namespace bokbok::crypto {

record_cipher::record_cipher(cipher_state state, rekey_limits limits)
    : state_(std::move(state)), limits_(limits) {
  if (!state_.has_key()) throw std::invalid_argument("record_cipher needs a keyed cipher_state");
  if (limits_.records == 0 || limits_.bytes == 0)
    throw std::invalid_argument("record_cipher rekey limits must be nonzero");
}

// After each record: rekey when either budget is used up. Sender and receiver call this
// for the same records with the same sizes, so they rekey at the same point.
void record_cipher::count(std::size_t plaintext_size) {
  ++records_since_rekey_;
  bytes_since_rekey_ += plaintext_size;
  if (records_since_rekey_ >= limits_.records || bytes_since_rekey_ >= limits_.bytes) {
    state_.rekey();
    ++rekeys_;
    records_since_rekey_ = 0;
    bytes_since_rekey_ = 0;
  }
}

bool record_cipher::seal(std::string_view plaintext, std::string& out) {
  const std::size_t at = out.size();
  out.resize(at + sealed_record_size(plaintext.size()));
  if (!seal_into(plaintext, {}, out.data() + at)) {
    out.resize(at);
    return false;
  }
  return true;
}

bool record_cipher::seal_into(std::string_view head, std::string_view rest, char* out) {
  const std::size_t size = head.size() + rest.size();
  if (failed_ || size == 0 || size > max_record_plaintext) {
    failed_ = true;
    return false;
  }
  const std::uint16_t body = static_cast<std::uint16_t>(size + tag_len);
  base::store_be16(reinterpret_cast<unsigned char*>(out), body);
  auto* text = reinterpret_cast<unsigned char*>(out + 2);
  bool sealed = false;
  if (head.size() <= 64 || rest.empty()) {
    // Straight from the parts to `out`: one pass, no copy (a frame header and payload).
    sealed = state_.encrypt_parts(head, rest, text);
  } else {
    std::memcpy(text, head.data(), head.size());
    std::memcpy(text + head.size(), rest.data(), rest.size());
    sealed = state_.encrypt_in_place(text, size);
  }
  if (!sealed) {
    failed_ = true;
    return false;
  }
  count(size);
  return true;
}

bool record_cipher::open(std::string_view body, std::string& out) {
  if (failed_ || body.size() <= tag_len || body.size() > max_record_body_size) {
    failed_ = true;
    return false;
  }
  if (!state_.decrypt_with_ad({}, body, out)) {
    failed_ = true;
    return false;
  }
  count(body.size() - tag_len);
  return true;
}

bool record_cipher::open_into(std::string_view body, char* out) {
  if (failed_ || body.size() <= tag_len || body.size() > max_record_body_size ||
      !state_.decrypt_into(body, reinterpret_cast<unsigned char*>(out))) {
    failed_ = true;
    return false;
  }
  count(body.size() - tag_len);
  return true;
}

}  // namespace bokbok::crypto
