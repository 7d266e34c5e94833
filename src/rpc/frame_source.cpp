// The frame source (see frame_source.hpp): records, key-mode opening, frames.
#include "rpc/frame_source.hpp"

#include "crypto/record_cipher.hpp"

namespace bokbok::rpc {

frame_source::frame_source(std::size_t max_message_size, std::size_t max_open)
    : messages_(max_message_size, max_open, true) {}

frame_source::status frame_source::next(std::string_view& input, key_session* key,
                                        wire::frame_view& f) {
  if (!error_.empty()) return status::error;
  std::string_view body;
  auto st = records_.next(input, body);
  if (st == wire::record_reader::status::need_more) return status::need_more;
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
    opened_.clear();
    if (!key->open(body, opened_)) {
      forged_ = true;
      error_ = std::string(crypto::record_authentication_failed);
      return status::error;
    }
    body = opened_;
  }
  std::string err;
  if (!wire::parse_frame(body, f, err)) {
    error_ = err.empty() ? "malformed frame" : std::move(err);
    return status::error;
  }
  return status::frame;
}

}  // namespace bokbok::rpc
