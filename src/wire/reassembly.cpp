// Reassembly of fragmented messages (PROTOCOL.md §4.3).
#include "wire/reassembly.hpp"

#include <optional>

namespace bokbok::wire {
namespace {

std::string describe(frame_type type, std::uint32_t id) {
  return std::string(to_string(type)) + " call id " + std::to_string(id);
}

}  // namespace

reassembler::reassembler(std::size_t max_message_size, std::size_t max_open)
    : max_message_size_(max_message_size), max_open_(max_open) {}

reassembler::reassembler(std::size_t max_message_size, std::size_t max_open, bool decode)
    : max_message_size_(max_message_size), max_open_(max_open), decode_(decode) {}

// Decode mode: feeds one fragment's payload to its message's decoder; completes the
// message on its last fragment. One announcing more than the size limit is too large
// (skipped to its last fragment); a malformed one forgets its partial state.
reassembler::status reassembler::add_decoding(
    std::unordered_map<std::uint64_t, partial>::iterator it, std::string_view payload,
    frame_type type, bool more, std::string& error) {
  partial& p = it->second;
  message_decoder& d = *p.decoder;
  const std::size_t before = d.cost();
  std::string err;
  bool ok = d.feed(payload, err);
  buffered_ = buffered_ - before + d.cost();
  if (!ok) {  // it announces more than the size limit holds: too large, skipped
    buffered_ -= d.cost();
    p.decoder.reset();
    p.skipping = true;
    if (!more) partial_.erase(it);
    return status::too_large;
  }
  if (more) return status::incomplete;
  buffered_ -= d.cost();
  decoded_cost_ = d.cost();
  if (d.finish(decoded_, err)) {
    has_decoded_ = true;
    deadline_ = p.deadline;
    partial_.erase(it);
    return status::complete;
  }
  partial_.erase(it);  // malformed: the connection ends
  error = std::string(type == frame_type::request    ? "bad request: "
                      : type == frame_type::response ? "bad response: "
                                                     : "bad notification: ") +
          err;
  return status::error;
}

reassembler::status reassembler::add(const frame_view& f, std::string& out,
                                     std::string& error) {
  std::string_view whole;
  status st = add(f, whole, error);
  if (st == status::complete) out.assign(whole);
  return st;
}

// An empty buffer for a new partial message: the spare one, its capacity kept.
std::string reassembler::fresh_buffer() {
  std::string b = std::move(spare_);
  spare_ = std::string();
  b.clear();
  return b;
}

// Keeps the larger of `bytes` and the spare buffer for the next message, within the
// limit; the other is freed.
void reassembler::recycle(std::string&& bytes) {
  if (bytes.capacity() > spare_.capacity() && bytes.capacity() <= spare_buffer_limit) {
    spare_ = std::move(bytes);
    spare_.clear();
  }
  bytes = std::string();
}

reassembler::status reassembler::add(const frame_view& f, std::string_view& whole,
                                     std::string& error) {
  recycle(std::move(done_));  // the last `whole` lapses
  has_decoded_ = false;
  decoded_.clear();
  if (!carries_message(f.type)) {
    error = std::string(f.type == frame_type::error ? "an " : "a ") + to_string(f.type) +
            " frame carries no message";
    return status::error;
  }
  const bool more = f.flags & flag_more;
  const std::uint64_t k = key(f.type, f.call_id);
  auto it = partial_.empty() ? partial_.end() : partial_.find(k);  // most messages: one frame

  if (!(f.flags & flag_continued)) {  // first fragment
    std::string_view payload = f.payload;
    std::optional<std::uint32_t> deadline;
    // parse_frame checked that the prefix is there
    const first_prefix prefix = parse_first_prefix(f.flags, payload);
    if (f.flags & flag_deadline) deadline = prefix.deadline_ms;
    payload.remove_prefix(prefix.size);
    fd_count_ = prefix.fd_count;
    if (it != partial_.end()) {
      error = "a new message on " + describe(f.type, f.call_id) +
              " while the previous one is unfinished";
      return status::error;
    }
    if (more && partial_.size() >= max_open_) {
      error = "more than " + std::to_string(max_open_) + " partial messages open at once";
      return status::error;
    }
    if (payload.size() > max_message_size_) {
      if (more) partial_.emplace(k, partial{{}, true, deadline, std::nullopt});
      return status::too_large;
    }
    if (!more) {
      whole = payload;
      deadline_ = deadline;
      return status::complete;
    }
    if (decode_) {
      auto nit =
          partial_.emplace(k, partial{{}, false, deadline, message_decoder(max_message_size_)})
              .first;
      return add_decoding(nit, payload, f.type, more, error);
    }
    std::string bytes = fresh_buffer();
    bytes.append(payload);
    partial_.emplace(k, partial{std::move(bytes), false, deadline, std::nullopt});
    buffered_ += payload.size();
    return status::incomplete;
  }

  if (it == partial_.end()) {
    error = "fragment of unknown call: a continued fragment on " +
            describe(f.type, f.call_id) + ", which has no message in progress";
    return status::error;
  }
  partial& p = it->second;
  if (p.skipping) {
    if (!more) partial_.erase(it);
    return status::skipped;
  }
  const std::size_t held = p.decoder ? p.decoder->size() : p.bytes.size();
  if (held + f.payload.size() > max_message_size_) {
    if (p.decoder) {
      buffered_ -= p.decoder->cost();
      p.decoder.reset();
    }
    buffered_ -= p.bytes.size();
    recycle(std::move(p.bytes));  // its memory is released or kept for reuse
    p.skipping = true;
    if (!more) partial_.erase(it);
    return status::too_large;
  }
  if (p.decoder) return add_decoding(it, f.payload, f.type, more, error);
  p.bytes.append(f.payload);
  buffered_ += f.payload.size();
  if (more) return status::incomplete;
  buffered_ -= p.bytes.size();
  done_ = std::move(p.bytes);
  whole = done_;
  deadline_ = p.deadline;
  partial_.erase(it);
  return status::complete;
}

std::size_t reassembler::message_bytes(frame_type type, std::uint32_t call_id) const {
  auto it = partial_.find(key(type, call_id));
  if (it == partial_.end()) return 0;
  return it->second.decoder ? it->second.decoder->cost() : it->second.bytes.size();
}

void reassembler::drop(frame_type type, std::uint32_t call_id) {
  auto it = partial_.find(key(type, call_id));
  if (it == partial_.end() || it->second.skipping) return;
  recycle(std::move(done_));
  if (it->second.decoder) {
    buffered_ -= it->second.decoder->cost();
    it->second.decoder.reset();
  }
  buffered_ -= it->second.bytes.size();
  recycle(std::move(it->second.bytes));
  it->second.skipping = true;
}

}  // namespace bokbok::wire
