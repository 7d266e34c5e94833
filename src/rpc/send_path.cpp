#include "rpc/send_path.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "wire/frame.hpp"

namespace bokbok::rpc {

std::shared_ptr<std::string> sealed_buffers::take(std::size_t n) {
  for (auto& buf : bufs_) {
    if (buf && buf.use_count() > 1) continue;  // a batch still holds it
    if (buf && buf->capacity() > keep_limit && n <= keep_limit) buf.reset();
    if (!buf) buf = std::make_shared<std::string>();
    // Grown only, so the bytes are zeroed once per buffer, not once per batch; below
    // idle_keep it at least doubles, so records of varying small sizes settle in one.
    if (buf->size() < n) {
      std::string grown;
      grown.resize(n <= idle_keep ? std::max(n, std::min(2 * buf->size(), idle_keep)) : n);
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
  bool kept = false;
  for (auto& buf : bufs_) {
    if (!buf) continue;
    // One small buffer no batch holds stays: the next record of a quiet connection is
    // sealed without an allocation. Every other buffer goes.
    if (!kept && buf->capacity() <= idle_keep && buf.use_count() == 1) {
      kept = true;
      continue;
    }
    buf.reset();
  }
}

std::size_t sealed_buffers::held_bytes() const {
  std::size_t n = 0;
  for (const auto& buf : bufs_)
    if (buf) n += buf->capacity();
  return n;
}

namespace {
// Moves the fds of `b` into `b.attach` at the offsets `offset_of(record index)` gives.
template <class F>
void place_fds(batch& b, F offset_of) {
  for (auto& r : b.fds) b.attach.push_back({offset_of(r.record), std::move(r.fds)});
  b.fds.clear();
}
}  // namespace

bool record_sink::seal_batch(batch& b, sealed_buffers& buffers) const {
  if (!key_) {
    if (b.fds.empty()) return true;
    // Plain: the records of `small` in order, then each frame as a header and a payload.
    std::vector<std::size_t> starts;
    std::size_t at = 0;
    for (std::uint32_t n : b.small_sizes) {
      starts.push_back(at);
      at += n;
    }
    std::size_t i = b.small.empty() ? 0 : 1;
    for (std::size_t k = 0; k < b.headers.size(); ++k) {
      starts.push_back(at);
      for (std::size_t e = i + 1 + b.frame_iovs[k]; i < e; ++i) at += b.iov[i].iov_len;
    }
    place_fds(b, [&](std::size_t r) { return starts[r]; });
    return true;
  }
  std::vector<std::size_t> starts;  // sealed offset of each record, when fds need them
  const bool want_starts = !b.fds.empty();
  // Each record grows by its tag when sealed; its u16 length stays.
  std::size_t size = b.bytes + (b.small_sizes.size() + b.headers.size()) * crypto::tag_len;
  std::shared_ptr<std::string> out = buffers.take(size);
  char* at = out->data();
  // Small records: each a whole record of known size in b.small.
  std::string_view small = b.small;
  for (std::uint32_t n : b.small_sizes) {
    std::string_view frame = small.substr(wire::record_header_size, n - wire::record_header_size);
    if (want_starts) starts.push_back(static_cast<std::size_t>(at - out->data()));
    if (!key_->seal_into(frame, {}, at)) return false;
    at += crypto::sealed_record_size(frame.size());
    small.remove_prefix(n);
  }
  // Frames of large messages: a header iovec, then the payload's, after b.small's one. A
  // payload in several pieces (a frame across the edge of a gathered message's field in
  // place: one or two per such field) is joined first.
  std::string joined;
  std::size_t i = b.small.empty() ? 0 : 1;
  for (std::size_t k = 0; k < b.headers.size(); ++k) {
    const wire::frame_header_bytes& h = b.headers[k];
    std::string_view head(reinterpret_cast<const char*>(h.bytes) + wire::record_header_size,
                          wire::frame_header_size);
    std::string_view rest;
    if (b.frame_iovs[k] == 1) {
      rest = {static_cast<const char*>(b.iov[i + 1].iov_base), b.iov[i + 1].iov_len};
    } else {
      joined.clear();
      for (std::size_t e = 0; e < b.frame_iovs[k]; ++e)
        joined.append(static_cast<const char*>(b.iov[i + 1 + e].iov_base), b.iov[i + 1 + e].iov_len);
      rest = joined;
    }
    if (want_starts) starts.push_back(static_cast<std::size_t>(at - out->data()));
    if (!key_->seal_into(head, rest, at)) return false;
    at += crypto::sealed_record_size(head.size() + rest.size());
    i += 1 + b.frame_iovs[k];
  }
  const std::size_t used = static_cast<std::size_t>(at - out->data());
  std::vector<record_fds> fds = std::move(b.fds);
  b.clear();
  b.fds = std::move(fds);
  place_fds(b, [&](std::size_t r) { return starts[r]; });
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

bool send_path::want_flush() {
  if (writing_ || flush_scheduled_) return false;
  flush_scheduled_ = true;
  return true;
}

std::optional<send_path::direct_write> send_path::begin_direct(bool allowed, bool key_mode) {
  send_side side;
  side.in_flight = writing_;
  side.flush_posted = flush_scheduled_;
  side.queued = has_unsent();
  side.stream = static_cast<bool>(direct_stream_);
  side.sink_ready = !key_mode || sink_.sealing();
  if (!allowed || !caller_may_write(side)) return std::nullopt;
  writing_ = direct_writing_ = true;  // the send side is the caller's until end_direct
  return direct_write{direct_stream_, sink_, direct_request_};
}

send_path::direct_done send_path::end_direct(const direct_write& w, bool sealed_ok,
                                             std::string_view out,
                                             const io::try_write_result& r) {
  writing_ = direct_writing_ = false;
  direct_done done;
  if (!sealed_ok) return done;  // the cipher is spent: nothing more goes out
  using st = io::try_write_result::status;
  const bool gone = r.what == st::failed && (r.error == -EPIPE || r.error == -ECONNRESET);
  // The peer is gone, or the stream closed, and nothing of this request was written.
  if (w.request && (gone || r.what == st::closed)) done.not_sent = w.request;
  last_written_request_ = w.request && r.written == out.size() ? w.request : 0;
  if (r.what == st::closed) return done;  // the stream closed meanwhile: nothing goes out
  // The unsent rest is wire bytes (sealed, in key mode): it goes out as it is, first.
  if (r.written < out.size()) raw_pending_.insert(0, out.substr(r.written));
  done.flush = has_unsent();
  return done;
}

send_path::taken send_path::take_write(batch& b, key_session* key, record_sink& sink) {
  sink = record_sink();  // raw bytes go out as they are
  if (!raw_pending_.empty()) {
    b.small.swap(raw_pending_);
    b.bytes = b.small.size();
    b.iov.push_back({b.small.data(), b.small.size()});
    writing_ = true;
    return taken::raw;
  }
  if (key && !key->ready()) return taken::nothing;  // nothing before the handshake ends
  // From here on records are sealed, by whichever thread writes them.
  if (key && !sink_.sealing()) sink_ = record_sink(&key->send_cipher());
  if (!outbox_.take_batch(b, batch_bytes)) {
    sealed_.release_idle();  // the send side is idle: at most one small buffer stays
    return taken::nothing;
  }
  last_written_request_ = 0;  // written last now: something else
  sink = sink_;
  writing_ = true;
  return taken::records;
}

}  // namespace bokbok::rpc
