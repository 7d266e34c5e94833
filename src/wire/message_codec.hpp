// Message bytes (PROTOCOL.md §5): `u32 field count || (u32 length || bytes)*`, big-endian.
// Pure code over bytes, no I/O.
#pragma once

#include <cstddef>
#include <string>
#include <cstdint>
#include <string_view>
#include <vector>

#include "bokbok/message.hpp"

namespace bokbok::wire {

// Encoded size without encoding.
std::size_t encoded_size(const message& m);

// Appends the encoding of `m` to `out`.
void encode_message(const message& m, std::string& out);

// A message encoded without copying its large fields: the bytes of encode_message(),
// with every field of at least `in_place_from` bytes left where it is, in `fields`,
// and only the rest (the count, every length, the smaller fields) in `bytes`. What
// goes out for a 1 MiB field is then that field's own memory (the outbox writes it
// with writev, key mode seals from it), not a copy.
//
// The encoding is, in order: bytes[0, in_place[0].at), fields[in_place[0].field],
// bytes[in_place[0].at, in_place[1].at), ..., bytes[in_place.back().at, end).
// `bytes` may begin with room the caller left (encode_gathered appends).
//
// Moving a gathered_message keeps views of its in-place fields valid only while the
// fields' strings are not small (SSO); in_place_from is never that small.
struct gathered_message {
  struct insert {
    std::size_t at;       // the field goes before bytes[at]
    std::uint32_t field;  // index in `fields`
  };
  std::string bytes;
  message fields;  // empty when nothing is in place
  std::vector<insert> in_place;

  // The whole length: bytes' and the in-place fields'.
  std::size_t size() const;
  // Whether all of it is in `bytes` (nothing in place).
  bool contiguous() const { return in_place.empty(); }
};
// Appends `m`'s encoding to `out.bytes` (which may already hold the caller's room),
// keeping fields of `in_place_from` bytes or more in place (moved into `out.fields`).
void encode_gathered(message m, gathered_message& out, std::size_t in_place_from);

// Decodes exactly one message spanning all of `bytes`. Checks every length against the
// bytes that remain before allocating, so a hostile count or length never allocates more
// than the input's size. Returns false with `error` set ("truncated field 2 of 3",
// "field count 4294967295 exceeds the message size", "3 bytes trailing after the last
// field", ...). On failure `out` is left empty.
bool decode_message(std::string_view bytes, message& out, std::string& error);

// What decoding `bytes` would cost in memory, without decoding: its size plus, for each
// field its count announces, a std::string and the overhead of one allocation. A message
// of millions of empty fields costs far more than its bytes; receive budgets count this.
// Bytes too short for a count cost their size.
std::size_t decoded_cost(std::string_view bytes) noexcept;
inline constexpr std::size_t decoded_field_overhead = sizeof(std::string) + 16;

// Decodes one message fed in pieces (the fragments of a large message, PROTOCOL.md
// §4.3), each byte copied once, straight into its field: no buffer holds the whole
// message's bytes first. The same rules as decode_message(), with the same errors at
// finish() (truncated, trailing bytes). A field count or field length that `max_size`
// cannot hold fails feed() at once: the message would pass the size limit, so the
// caller treats it as too large (PROTOCOL.md §8.7), not as malformed.
//
// Memory: a field's string is reserved at its announced length once that is known (a
// length beyond what `max_size` leaves is an error), so a large field never grows by
// copies; cost() counts what is reserved, not only what arrived, plus
// decoded_field_overhead per field, so budgets see the memory as held.
class message_decoder {
 public:
  explicit message_decoder(std::size_t max_size) : max_size_(max_size) {}

  // The next piece of the message's bytes. False (with `error`) only when they announce
  // more than max_size can hold (too large); the decoder is then of no further use.
  bool feed(std::string_view piece, std::string& error);
  // After the last piece: moves the message into `out`, or false (with `error`) when
  // the bytes end inside the count or a field, or run past the last field.
  bool finish(message& out, std::string& error);

  std::size_t size() const { return bytes_; }  // bytes fed so far
  std::size_t cost() const { return cost_; }

 private:
  bool take_u32(std::string_view& piece, std::uint32_t& value);
  std::size_t max_size_;
  std::size_t bytes_ = 0;
  std::size_t cost_ = 0;
  message m_;
  std::uint32_t count_ = 0;
  bool have_count_ = false;
  bool in_field_ = false;       // inside a field's bytes (else at a count or length)
  std::size_t field_left_ = 0;  // bytes of the current field still to come
  unsigned char head_[4] = {};  // a count or length cut between pieces
  std::size_t head_len_ = 0;
};

}  // namespace bokbok::wire
