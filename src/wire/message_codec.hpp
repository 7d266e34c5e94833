// Message bytes (PROTOCOL.md §5): `u32 field count || (u32 length || bytes)*`, big-endian.
// Pure code over bytes, no I/O.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "bokbok/message.hpp"

namespace bokbok::wire {

// Encoded size without encoding.
std::size_t encoded_size(const message& m);

// Appends the encoding of `m` to `out`.
void encode_message(const message& m, std::string& out);

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

}  // namespace bokbok::wire
