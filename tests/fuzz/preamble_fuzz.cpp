// libFuzzer target: preamble_reader over arbitrary bytes, fed in arbitrary chunk sizes
// (PROTOCOL.md §2).
//
// Input: byte 0 is n (taken mod 16); the next n bytes give the chunk sizes (each mod 16,
// plus 1, used in turn); the rest is the stream. Properties checked: fed in those chunks
// the reader reaches the same status as fed at once; when done, the same preamble and the
// same number of bytes consumed, and re-encoding the preamble gives exactly those bytes;
// when failed, the same kind of error; after done or error nothing more is consumed.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "wire/preamble.hpp"

using namespace bokbok::wire;

namespace {

struct outcome {
  preamble_reader::status status;
  preamble value;
  std::string error;
  std::size_t consumed;
};

outcome run(std::string_view stream, const std::vector<std::size_t>& chunks) {
  preamble_reader r;
  auto st = preamble_reader::status::need_more;
  std::size_t at = 0, turn = 0;
  while (at < stream.size() && st == preamble_reader::status::need_more) {
    const std::size_t n = chunks.empty() ? stream.size() : chunks[turn++ % chunks.size()];
    std::string_view in = stream.substr(at, n);
    const std::size_t offered = in.size();
    st = r.feed(in);
    FUZZ_CHECK(in.size() <= offered);
    if (st == preamble_reader::status::done)
      FUZZ_CHECK(r.received().size() == at + offered - in.size());
    at += offered - in.size();
    if (st == preamble_reader::status::need_more) FUZZ_CHECK(in.empty());
  }
  if (st != preamble_reader::status::need_more) {
    std::string_view more = stream;  // nothing more is taken once finished
    FUZZ_CHECK(r.feed(more) == st);
    FUZZ_CHECK(more.size() == stream.size());
  }
  if (st == preamble_reader::status::error) FUZZ_CHECK(!r.error().empty());
  return {st, r.value(), r.error(), at};
}

std::string error_kind(const std::string& e) { return e.substr(0, e.find('"')); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t n = std::min<std::size_t>(data[0] % 16, size - 1);
  std::vector<std::size_t> chunks;
  for (std::size_t i = 0; i < n; ++i) chunks.push_back(data[1 + i] % 16 + 1);
  if (chunks.empty()) chunks.push_back(1);
  const std::string_view stream(reinterpret_cast<const char*>(data + 1 + n), size - 1 - n);

  const outcome whole = run(stream, {});
  const outcome parts = run(stream, chunks);
  FUZZ_CHECK(whole.status == parts.status);
  if (whole.status == preamble_reader::status::done) {
    FUZZ_CHECK(whole.value == parts.value);
    FUZZ_CHECK(whole.consumed == parts.consumed);
    FUZZ_CHECK(encode_preamble(whole.value) == stream.substr(0, whole.consumed));
  } else if (whole.status == preamble_reader::status::error) {
    FUZZ_CHECK(error_kind(whole.error) == error_kind(parts.error));
  }
  return 0;
}
