// Message bytes (PROTOCOL.md §5).
#include "wire/message_codec.hpp"

#include "base/endian.hpp"

#include <algorithm>
#include <cstring>
#include <cstdint>
#include <limits>
#include <stdexcept>

namespace bokbok::wire {
namespace {

constexpr std::size_t u32_size = 4;

void put_u32(std::string& out, std::size_t v) {
  if (v > std::numeric_limits<std::uint32_t>::max())
    throw std::length_error("bokbok message: field count or length exceeds 2^32-1");
  base::append_be32(out, static_cast<std::uint32_t>(v));
}

std::string bytes_text(std::size_t n) {
  return std::to_string(n) + (n == 1 ? " byte" : " bytes");
}

std::string field_of(std::size_t i, std::size_t count) {
  return "field " + std::to_string(i + 1) + " of " + std::to_string(count);
}

}  // namespace

std::size_t encoded_size(const message& m) {
  std::size_t n = u32_size;
  for (const std::string& f : m) n += u32_size + f.size();
  return n;
}

void encode_message(const message& m, std::string& out) {
  out.reserve(out.size() + encoded_size(m));
  put_u32(out, m.size());
  for (const std::string& f : m) {
    put_u32(out, f.size());
    out.append(f);
  }
}

std::size_t gathered_message::size() const {
  std::size_t n = bytes.size();
  for (const insert& i : in_place) n += fields[i.field].size();
  return n;
}

void encode_gathered(message m, gathered_message& out, std::size_t in_place_from) {
  // Never so small that a field's bytes live inside its std::string (SSO): views of
  // them must survive moving the message.
  in_place_from = std::max<std::size_t>(in_place_from, sizeof(std::string) + 1);
  std::size_t copied = u32_size;
  for (const std::string& f : m)
    copied += u32_size + (f.size() >= in_place_from ? 0 : f.size());
  out.bytes.reserve(out.bytes.size() + copied);
  put_u32(out.bytes, m.size());
  for (std::size_t i = 0; i < m.size(); ++i) {
    const std::string& f = m[i];
    put_u32(out.bytes, f.size());
    if (f.size() >= in_place_from)
      out.in_place.push_back({out.bytes.size(), static_cast<std::uint32_t>(i)});
    else
      out.bytes.append(f);
  }
  if (!out.in_place.empty()) out.fields = std::move(m);
}

bool decode_message(std::string_view bytes, message& out, std::string& error) {
  out.clear();
  if (bytes.size() < u32_size) {
    error = "message of " + bytes_text(bytes.size()) +
            " is shorter than its 4-byte field count";
    return false;
  }
  const std::uint32_t count = base::load_be32(bytes);
  bytes.remove_prefix(u32_size);
  // Every field takes at least its 4-byte length, so this bounds the allocation below.
  if (count > bytes.size() / u32_size) {
    error = "field count " + std::to_string(count) + " exceeds the message size (" +
            bytes_text(bytes.size()) + " after the count)";
    return false;
  }
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    if (bytes.size() < u32_size) {
      error = "truncated length of " + field_of(i, count);
      out.clear();
      return false;
    }
    const std::uint32_t len = base::load_be32(bytes);
    bytes.remove_prefix(u32_size);
    if (len > bytes.size()) {
      error = "truncated " + field_of(i, count) + ": length " + std::to_string(len) +
              " but " + bytes_text(bytes.size()) + " left";
      out.clear();
      return false;
    }
    out.emplace_back(bytes.substr(0, len));
    bytes.remove_prefix(len);
  }
  if (!bytes.empty()) {
    error = bytes_text(bytes.size()) + " trailing after the last field";
    out.clear();
    return false;
  }
  return true;
}

std::size_t decoded_cost(std::string_view bytes) noexcept {
  if (bytes.size() < u32_size) return bytes.size();
  // A count the bytes cannot hold fails decoding; it costs no more than they can hold.
  std::size_t count =
      std::min<std::size_t>(base::load_be32(bytes), (bytes.size() - u32_size) / u32_size);
  return bytes.size() + count * decoded_field_overhead;
}

// Completes a u32 from `head_` and `piece`; false while more bytes are needed.
bool message_decoder::take_u32(std::string_view& piece, std::uint32_t& value) {
  if (head_len_ == 0 && piece.size() >= u32_size) {
    value = base::load_be32(piece);
    piece.remove_prefix(u32_size);
    return true;
  }
  std::size_t take = std::min(u32_size - head_len_, piece.size());
  std::memcpy(head_ + head_len_, piece.data(), take);
  head_len_ += take;
  piece.remove_prefix(take);
  if (head_len_ < u32_size) return false;
  head_len_ = 0;
  value = base::load_be32(std::string_view(reinterpret_cast<const char*>(head_), u32_size));
  return true;
}

bool message_decoder::feed(std::string_view piece, std::string& error) {
  bytes_ += piece.size();
  while (!piece.empty()) {
    if (!have_count_) {
      if (!take_u32(piece, count_)) break;
      have_count_ = true;
      // Every field takes at least its 4-byte length (as decode_message checks).
      if (count_ > (max_size_ < u32_size ? 0 : (max_size_ - u32_size) / u32_size)) {
        error = "field count " + std::to_string(count_) + " exceeds the message size limit (" +
                bytes_text(max_size_) + ")";
        return false;
      }
      continue;
    }
    if (in_field_) {
      std::size_t take = std::min(field_left_, piece.size());
      m_.back().append(piece.substr(0, take));  // within its reserved length
      piece.remove_prefix(take);
      field_left_ -= take;
      if (field_left_ == 0) in_field_ = false;
      continue;
    }
    if (m_.size() == count_) {
      // Past the last field: finish() says how many bytes trail.
      break;
    }
    std::uint32_t len = 0;
    if (!take_u32(piece, len)) break;
    const std::size_t consumed = bytes_ - piece.size();  // message bytes before the field's
    if (consumed > max_size_ || len > max_size_ - consumed) {
      error = "field " + std::to_string(m_.size() + 1) + " of " + std::to_string(count_) +
              ": length " + std::to_string(len) + " exceeds the message size limit (" +
              bytes_text(max_size_) + ")";
      return false;
    }
    m_.emplace_back();
    m_.back().reserve(len);
    cost_ += decoded_field_overhead + len;
    field_left_ = len;
    in_field_ = len > 0;
  }
  return true;  // bytes past the last field are not kept; finish() reports them
}

bool message_decoder::finish(message& out, std::string& error) {
  out.clear();
  if (!have_count_) {
    error = "message of " + bytes_text(bytes_) + " is shorter than its 4-byte field count";
    return false;
  }
  if (in_field_) {
    error = "truncated " + field_of(m_.size() - 1, count_) + ": length " +
            std::to_string(m_.back().size() + field_left_) + " but " +
            bytes_text(m_.back().size()) + " left";
    return false;
  }
  if (m_.size() < count_) {
    error = "truncated length of " + field_of(m_.size(), count_);
    return false;
  }
  // Bytes past the last field: what was fed beyond the fields' end.
  std::size_t used = u32_size;
  for (const std::string& f : m_) used += u32_size + f.size();
  if (bytes_ > used) {
    error = bytes_text(bytes_ - used) + " trailing after the last field";
    return false;
  }
  out = std::move(m_);
  m_.clear();
  return true;
}

}  // namespace bokbok::wire
