// libFuzzer target: decode_message over arbitrary bytes (PROTOCOL.md §5).
//
// Properties checked: a decode either fails with an explanation and leaves no fields, or
// succeeds and re-encoding gives exactly the input bytes. Allocation is bounded by the
// input's size (AddressSanitizer's malloc limit catches a hostile count that allocates).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "wire/message_codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  bokbok::message m{"stale"};
  std::string error;
  if (!bokbok::wire::decode_message(bytes, m, error)) {
    FUZZ_CHECK(!error.empty());
    FUZZ_CHECK(m.empty());
    return 0;
  }
  FUZZ_CHECK(m.size() <= size / 4);
  FUZZ_CHECK(bokbok::wire::encoded_size(m) == size);
  std::string again;
  bokbok::wire::encode_message(m, again);
  FUZZ_CHECK(again == bytes);
  return 0;
}
