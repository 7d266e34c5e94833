#include "rpc/outbox.hpp"

#include <algorithm>

#include "base/endian.hpp"

namespace bokbok::rpc {

void batch::clear() {
  small.clear();
  small_sizes.clear();
  headers.clear();
  frame_iovs.clear();
  keep.clear();
  iov.clear();
  bytes = 0;
  fds.clear();
  attach.clear();
}

// Notes the sizes of the records in `records`, from the length each was encoded with.
// Only a sealing sink uses them (key mode, where everything queued is whole records); a
// plain connection also queues its preamble here, which is not a record: bytes that do
// not parse as whole records are noted as one piece (never sealed).
void outbox::note_records(std::string_view records) {
  while (!records.empty()) {
    std::size_t n = records.size();
    if (n >= wire::record_header_size)
      n = std::min(n, wire::record_header_size + base::load_be16(records));
    small_sizes_.push_back(static_cast<std::uint32_t>(n));
    records.remove_prefix(n);
  }
}

void outbox::push_record_bytes(std::string_view records) {
  note_records(records);
  small_.append(records);
  queued_.add(records.size());
}

void outbox::push_record_after(wire::frame_type type, std::uint32_t call_id,
                               std::string_view record) {
  const std::uint64_t key = key_of(type, call_id);
  if (!active_.count(key)) return push_record_bytes(record);
  queued_.add(record.size());
  held_[key].push_back({std::string(record), std::nullopt});
}

void outbox::release_held(std::uint64_t key) {
  auto it = held_.find(key);
  while (it != held_.end() && !it->second.empty()) {
    held_item h = std::move(it->second.front());
    it->second.pop_front();
    if (!h.large) {  // counted in queued_ when held
      note_records(h.records);
      small_.append(h.records);
      continue;
    }
    if (large_.size() < wire::max_partial_messages)
      large_.push_back(std::move(*h.large));
    else
      waiting_.push_back(std::move(*h.large));
    if (it->second.empty()) held_.erase(it);
    return;  // the key stays active until this one has gone too
  }
  if (it != held_.end()) held_.erase(it);
  active_.erase(key);
}

namespace {

// A gathered message's pieces, in order: even ones are runs of its `bytes` between
// fields in place, odd ones those fields.
std::size_t piece_count(const wire::gathered_message& g) { return 2 * g.in_place.size() + 1; }
std::string_view piece_of(const wire::gathered_message& g, std::size_t j) {
  const auto& in = g.in_place;
  if (j % 2) return g.fields[in[j / 2].field];
  const std::size_t t = j / 2;
  const std::size_t from = t == 0 ? 0 : in[t - 1].at;
  const std::size_t to = t == in.size() ? g.bytes.size() : in[t].at;
  return std::string_view(g.bytes).substr(from, to - from);
}

}  // namespace

outbox::large_message outbox::make_large(wire::frame_type type, std::uint32_t call_id,
                                         wire::gathered_message message, std::size_t start,
                                         std::uint8_t first_flags,
                                         std::vector<base::unique_fd> fds) {
  large_message m{type, call_id, nullptr, start, start, message.size(), 0, start, first_flags,
                  std::move(fds)};
  m.bytes = std::make_shared<const wire::gathered_message>(std::move(message));
  return m;
}

void outbox::append_payload(large_message& m, std::size_t n, batch& b) {
  std::uint32_t iovs = 0;
  while (n > 0) {
    const std::string_view p = piece_of(*m.bytes, m.piece);
    const std::size_t take = std::min(n, p.size() - m.piece_at);
    if (take > 0) {
      b.iov.push_back({const_cast<char*>(p.data()) + m.piece_at, take});
      ++iovs;
    }
    n -= take;
    m.piece_at += take;
    if (m.piece_at < p.size()) continue;
    if (m.piece + 1 == piece_count(*m.bytes)) break;  // the end (n is 0 by then)
    ++m.piece;
    m.piece_at = 0;
  }
  b.frame_iovs.push_back(iovs);
}

void outbox::push_message(wire::frame_type type, std::uint32_t call_id, std::string bytes,
                          std::size_t start, std::uint8_t first_flags,
                          std::vector<base::unique_fd> fds) {
  wire::gathered_message g;
  g.bytes = std::move(bytes);
  push_message(type, call_id, std::move(g), start, first_flags, std::move(fds));
}

void outbox::push_message(wire::frame_type type, std::uint32_t call_id,
                          wire::gathered_message message, std::size_t start,
                          std::uint8_t first_flags, std::vector<base::unique_fd> fds) {
  const std::size_t size = message.size() - start;
  if (waits(type, call_id)) {
    // Behind a large message of its stream, whatever its size: it waits as a message (cut
    // into frames when its turn comes, as large ones are), with its fds.
    queued_.add(size);
    held_item h;
    h.large = make_large(type, call_id, std::move(message), start, first_flags, std::move(fds));
    held_[hold_key(type, call_id)].push_back(std::move(h));
    return;
  }
  if (size <= wire::max_frame_payload && message.contiguous()) {
    std::string_view body = std::string_view(message.bytes).substr(start);
    if (!fds.empty()) small_fds_.push_back({small_sizes_.size(), std::move(fds)});
    wire::append_message_frames(small_, type, call_id, body, first_flags);
    const std::size_t n = wire::record_header_size + wire::frame_header_size + body.size();
    small_sizes_.push_back(static_cast<std::uint32_t>(n));  // one frame, one record
    queued_.add(n);
    return;
  }
  queued_.add(size);
  if (is_stream(type)) active_.insert(key_of(type, call_id));
  large_message m =
      make_large(type, call_id, std::move(message), start, first_flags, std::move(fds));
  if (large_.size() < wire::max_partial_messages)
    large_.push_back(std::move(m));
  else
    waiting_.push_back(std::move(m));
}

bool outbox::take_batch(batch& b, std::size_t max_bytes) {
  if (empty()) return false;
  b.small.swap(small_);
  b.small_sizes.swap(small_sizes_);
  b.fds.swap(small_fds_);
  queued_.sub(b.small.size());
  b.bytes = b.small.size();
  // Each frame is either a full one or the last of its message, so this bounds the
  // frames of one batch; reserving it keeps the iovecs' pointers into `headers` valid.
  std::size_t max_frames = max_bytes / wire::max_frame_payload + 1 + large_.size();
  b.headers.reserve(max_frames);
  b.iov.reserve(1 + 2 * max_frames);
  // A frame of a gathered message may take several iovecs: the batch stops well before
  // what one writev takes (IOV_MAX, 1024), whatever the messages' shapes.
  constexpr std::size_t max_iovs = 512;
  if (!b.small.empty()) b.iov.push_back({b.small.data(), b.small.size()});
  // Frames of large messages, one per message per turn, until the batch is full.
  while (!large_.empty() && b.bytes < max_bytes && b.headers.size() < max_frames &&
         b.iov.size() < max_iovs) {
    large_message m = std::move(large_.front());
    large_.pop_front();
    const wire::fragment f = wire::message_fragment(
        m.type, m.call_id, m.sent - m.start, m.size - m.start, m.first_flags);
    const std::size_t n = f.size;
    if (!m.fds.empty())  // its first fragment: the record after those already in `b`
      b.fds.push_back({b.small_sizes.size() + b.headers.size(), std::move(m.fds)});
    b.headers.push_back(f.header);
    b.iov.push_back({b.headers.back().bytes, sizeof b.headers.back().bytes});
    append_payload(m, n, b);
    b.keep.push_back(m.bytes);
    b.bytes += sizeof b.headers.back().bytes + n;
    m.sent += n;
    queued_.sub(n);
    if (m.sent < m.size) {
      large_.push_back(std::move(m));  // round robin: to the back of the line
      continue;
    }
    if (const auto hk = hold_key(m.type, m.call_id); hk && active_.count(hk))
      release_held(hk);  // may refill large_
    if (!waiting_.empty() && large_.size() < wire::max_partial_messages) {
      large_.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
    }
  }
  return !b.iov.empty();
}

}  // namespace bokbok::rpc
