#include "rpc/send_path.hpp"

#include <cstring>

#include "wire/frame.hpp"

namespace bokbok::rpc {

std::shared_ptr<std::string> sealed_buffers::take(std::size_t n) {
  for (auto& buf : bufs_) {
    if (buf && buf.use_count() > 1) continue;  // a batch still holds it
    if (buf && buf->capacity() > keep_limit && n <= keep_limit) buf.reset();
    if (!buf) buf = std::make_shared<std::string>();
    // Grown only, so the bytes are zeroed once per buffer, not once per batch.
    if (buf->size() < n) {
      std::string grown;
      grown.resize(n);
      buf->swap(grown);
    }
    return buf;
  }
  // Both held by batches in flight (cannot happen with one writer, but stay correct).
  auto buf = std::make_shared<std::string>();
  buf->resize(n);
  return buf;
}

void sealed_buffers::release_idle() {
  for (auto& buf : bufs_) buf.reset();
}

std::size_t sealed_buffers::held_bytes() const {
  std::size_t n = 0;
  for (const auto& buf : bufs_)
    if (buf) n += buf->capacity();
  return n;
}

bool record_sink::seal_batch(batch& b, sealed_buffers& buffers) const {
  if (!key_) return true;
  // Each record grows by its tag when sealed; its u16 length stays.
  std::size_t size = b.bytes + (b.small_sizes.size() + b.headers.size()) * crypto::tag_len;
  std::shared_ptr<std::string> out = buffers.take(size);
  char* at = out->data();
  // Small records: each a whole record of known size in b.small.
  std::string_view small = b.small;
  for (std::uint32_t n : b.small_sizes) {
    std::string_view frame = small.substr(wire::record_header_size, n - wire::record_header_size);
    if (!key_->seal_into(frame, {}, at)) return false;
    at += crypto::sealed_record_size(frame.size());
    small.remove_prefix(n);
  }
  // Frames of large messages: a header iovec, then the payload's, after b.small's one.
  std::size_t i = b.small.empty() ? 0 : 1;
  for (const wire::frame_header_bytes& h : b.headers) {
    const iovec& payload = b.iov[i + 1];
    std::string_view head(reinterpret_cast<const char*>(h.bytes) + wire::record_header_size,
                          wire::frame_header_size);
    std::string_view rest(static_cast<const char*>(payload.iov_base), payload.iov_len);
    if (!key_->seal_into(head, rest, at)) return false;
    at += crypto::sealed_record_size(head.size() + rest.size());
    i += 2;
  }
  const std::size_t used = static_cast<std::size_t>(at - out->data());
  b.clear();
  b.bytes = used;
  b.iov.push_back({out->data(), used});
  b.keep.push_back(std::move(out));
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
