// The frame source (see frame_source.hpp): records, key-mode opening, frames.
#include "rpc/frame_source.hpp"

#include <algorithm>

#include "crypto/record_cipher.hpp"

namespace bokbok::rpc {

frame_source::frame_source(std::size_t max_message_size, std::size_t max_open)
    : messages_(max_message_size, max_open, true) {}

frame_source::status frame_source::next_with(std::string_view& input,
                                             crypto::record_cipher* key, wire::frame_view& f) {
  if (!error_.empty()) return status::error;
  std::string_view body;
  auto st = records_.next(input, body);
  if (st == wire::record_reader::status::need_more) {
    // The read is used up and nothing refers to the buffer any more: a large one goes.
    if (opened_size_ > idle_keep) {
      opened_.reset();
      opened_size_ = 0;
    }
    return status::need_more;
  }
  if (st == wire::record_reader::status::error) {
    error_ = records_.error();
    return status::error;
  }
  if (key) {
    // Shorter than a frame header and its tag: malformed, not forged (§9.6).
    if (body.size() < wire::frame_header_size + crypto::tag_len) {
      error_ = "key-mode record of " + std::to_string(body.size()) +
               " bytes is shorter than a frame header and its tag (" +
               std::to_string(wire::frame_header_size + crypto::tag_len) + ")";
      return status::error;
    }
    const std::size_t size = body.size() - crypto::tag_len;
    if (opened_size_ < size) {
      // Doubles while small, so records of varying small sizes settle in one buffer.
      const std::size_t grown = std::max(size, std::min(2 * opened_size_, idle_keep));
      opened_ = std::make_unique_for_overwrite<char[]>(grown);  // not zeroed
      opened_size_ = grown;
    }
    if (!key->open_into(body, opened_.get())) {
      forged_ = true;
      error_ = std::string(crypto::record_authentication_failed);
      return status::error;
    }
    body = std::string_view(opened_.get(), size);
  }
  std::string err;
  if (!wire::parse_frame(body, f, err)) {
    error_ = err.empty() ? "malformed frame" : std::move(err);
    return status::error;
  }
  return status::frame;
}

}  // namespace bokbok::rpc
