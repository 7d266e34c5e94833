#include "rpc/send_path.hpp"

#include <cstring>

#include "wire/frame.hpp"

namespace bokbok::rpc {

bool record_sink::seal_batch(batch& b) const {
  if (!key_) return true;
  std::string sealed;
  sealed.reserve(b.bytes + (b.small_sizes.size() + b.headers.size()) * crypto::tag_len);
  // Small records: each a whole record of known size in b.small.
  std::string_view small = b.small;
  for (std::uint32_t n : b.small_sizes) {
    if (!key_->seal(small.substr(wire::record_header_size, n - wire::record_header_size), sealed))
      return false;
    small.remove_prefix(n);
  }
  // Frames of large messages: a header iovec, then the payload's, after b.small's one.
  std::string frame;
  std::size_t at = b.small.empty() ? 0 : 1;
  for (const wire::frame_header_bytes& h : b.headers) {
    const iovec& payload = b.iov[at + 1];
    frame.assign(reinterpret_cast<const char*>(h.bytes) + wire::record_header_size,
                 wire::frame_header_size);
    frame.append(static_cast<const char*>(payload.iov_base), payload.iov_len);
    if (!key_->seal(frame, sealed)) return false;
    at += 2;
  }
  b.clear();
  b.small = std::move(sealed);
  b.bytes = b.small.size();
  b.iov.push_back({b.small.data(), b.small.size()});
  return true;
}

bool record_sink::seal_record(std::string_view record, std::string& scratch,
                              std::string_view& to_write) const {
  if (!key_) {
    to_write = record;
    return true;
  }
  scratch.clear();
  if (!key_->seal(record.substr(wire::record_header_size), scratch)) return false;
  to_write = scratch;
  return true;
}

}  // namespace bokbok::rpc
