#include "crypto/record_cipher.hpp"

#include "base/endian.hpp"

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
  if (failed_ || plaintext.empty() || plaintext.size() > max_record_plaintext) {
    failed_ = true;
    return false;
  }
  const std::size_t body = plaintext.size() + tag_len;
  const std::size_t at = out.size();
  base::append_be16(out, static_cast<std::uint16_t>(body));
  if (!state_.encrypt_with_ad({}, plaintext, out)) {
    out.resize(at);
    failed_ = true;
    return false;
  }
  count(plaintext.size());
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

}  // namespace bokbok::crypto
