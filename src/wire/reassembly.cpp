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

reassembler::status reassembler::add(const frame_view& f, std::string& out,
                                     std::string& error) {
  if (f.type != frame_type::request && f.type != frame_type::response &&
      f.type != frame_type::notify) {
    error = std::string(f.type == frame_type::error ? "an " : "a ") + to_string(f.type) +
            " frame carries no message";
    return status::error;
  }
  const bool more = f.flags & flag_more;
  const std::uint64_t k = key(f.type, f.call_id);
  auto it = partial_.find(k);

  if (!(f.flags & flag_continued)) {  // first fragment
    std::string_view payload = f.payload;
    std::optional<std::uint32_t> deadline;
    if (f.flags & flag_deadline) {  // parse_frame checked the prefix is there
      deadline = get_deadline_prefix(payload);
      payload.remove_prefix(deadline_prefix_size);
    }
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
      if (more) partial_.emplace(k, partial{{}, true, deadline});
      return status::too_large;
    }
    if (!more) {
      out.assign(payload);
      deadline_ = deadline;
      return status::complete;
    }
    partial_.emplace(k, partial{std::string(payload), false, deadline});
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
  if (p.bytes.size() + f.payload.size() > max_message_size_) {
    buffered_ -= p.bytes.size();
    std::string().swap(p.bytes);  // release the memory, not just the size
    p.skipping = true;
    if (!more) partial_.erase(it);
    return status::too_large;
  }
  p.bytes.append(f.payload);
  buffered_ += f.payload.size();
  if (more) return status::incomplete;
  buffered_ -= p.bytes.size();
  out = std::move(p.bytes);
  deadline_ = p.deadline;
  partial_.erase(it);
  return status::complete;
}

void reassembler::drop(frame_type type, std::uint32_t call_id) {
  auto it = partial_.find(key(type, call_id));
  if (it == partial_.end() || it->second.skipping) return;
  buffered_ -= it->second.bytes.size();
  std::string().swap(it->second.bytes);
  it->second.skipping = true;
}

}  // namespace bokbok::wire
