// The outbox (src/rpc/outbox.hpp): whatever the interleaving, each message goes out as the
// very records wire::append_message_frames gives for it (the cut the protocol vectors
// test), and small records go first.
#include <doctest/doctest.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "rpc/outbox.hpp"
#include "wire/message_codec.hpp"
#include "wire/frame.hpp"

using namespace bokbok;
using namespace std::string_literals;

namespace {

// The bytes of every batch the outbox gives, in order, `max_bytes` at most per batch.
std::string drain(rpc::outbox& box, std::size_t max_bytes) {
  std::string out;
  for (int turns = 0; turns < 1000; ++turns) {
    rpc::batch b;
    if (!box.take_batch(b, max_bytes)) return out;
    std::size_t bytes = 0;
    for (const iovec& v : b.iov) {
      out.append(static_cast<const char*>(v.iov_base), v.iov_len);
      bytes += v.iov_len;
    }
    CHECK(bytes == b.bytes);
  }
  FAIL("the outbox never ran dry");
  return out;
}

// Splits `bytes` into whole records (header included), keyed by the frame's type and id.
std::map<std::pair<int, std::uint32_t>, std::string> records_by_message(std::string_view bytes,
                                                                       std::string& first) {
  std::map<std::pair<int, std::uint32_t>, std::string> by;
  while (!bytes.empty()) {
    REQUIRE(bytes.size() >= wire::record_header_size);
    const std::size_t len = (std::size_t(std::uint8_t(bytes[0])) << 8) | std::uint8_t(bytes[1]);
    REQUIRE(bytes.size() >= wire::record_header_size + len);
    const std::string_view record = bytes.substr(0, wire::record_header_size + len);
    wire::frame_view f;
    std::string error;
    REQUIRE_MESSAGE(wire::parse_frame(record.substr(wire::record_header_size), f, error), error);
    if (first.empty()) first = record;
    by[{int(f.type), f.call_id}].append(record);
    bytes.remove_prefix(record.size());
  }
  return by;
}

std::string pattern(std::size_t n, char seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 13);
  return s;
}

}  // namespace

TEST_CASE("large messages leave the outbox as the records append_message_frames cuts, interleaved") {
  const std::size_t m = wire::max_frame_payload;
  const std::string headroom(10, '?');  // bytes before `start`, never sent
  const std::string response = pattern(3 * m + 7, 'a');
  std::string deadline_request;
  wire::put_deadline_prefix(deadline_request, 250);
  deadline_request += pattern(2 * m, 'k');
  const std::string ping = [] {
    std::string r;
    wire::append_frame(r, wire::frame_type::ping, 0, 0, "12345678");
    return r;
  }();

  rpc::outbox box;
  box.push_message(wire::frame_type::response, 7, headroom + response, headroom.size());
  box.push_message(wire::frame_type::request, 8, headroom + deadline_request, headroom.size(),
                   wire::flag_deadline);
  box.push_message(wire::frame_type::notify, 9, pattern(100, 'n'));  // one frame: small
  box.push_record_bytes(ping);
  const std::size_t queued = box.queued_bytes();

  // Batches of about two frames each, so the two large messages take turns.
  const std::string sent = drain(box, 2 * m);
  CHECK(box.empty());
  CHECK(box.queued_bytes() == 0);

  std::string first;
  auto by = records_by_message(sent, first);
  std::string expected_response, expected_request, expected_notify, expected_ping;
  wire::append_message_frames(expected_response, wire::frame_type::response, 7, response);
  wire::append_message_frames(expected_request, wire::frame_type::request, 8, deadline_request,
                              wire::flag_deadline);
  wire::append_message_frames(expected_notify, wire::frame_type::notify, 9, pattern(100, 'n'));
  CHECK(by[{int(wire::frame_type::response), 7}] == expected_response);
  CHECK(by[{int(wire::frame_type::request), 8}] == expected_request);
  CHECK(by[{int(wire::frame_type::notify), 9}] == expected_notify);
  CHECK(by[{int(wire::frame_type::ping), 0}] == ping);
  CHECK(first == expected_notify);  // small records go out first, in order
  CHECK(sent.size() == expected_response.size() + expected_request.size() +
                           expected_notify.size() + ping.size());
  CHECK(queued == response.size() + deadline_request.size() + expected_notify.size() +
                      ping.size());
}

TEST_CASE("a gathered message leaves as the records cut from its encoding, its large fields written from their own memory") {
  const std::size_t m = wire::max_frame_payload;
  // Fields in place (16 KiB and more) between copied ones; one crosses several frames,
  // one ends the message, and frame edges fall inside and between them.
  const message msg{"echo", pattern(20000, 'a'), "x", pattern(3 * m + 5, 'b'), "",
                    pattern(m - 3, 'c'), pattern(17000, 'd')};
  message given = msg;
  std::vector<std::pair<const char*, std::size_t>> fields;  // where the big ones live
  for (const auto& f : given)
    if (f.size() >= 16000) fields.push_back({f.data(), f.size()});
  std::string prefix;
  wire::put_deadline_prefix(prefix, 99);
  wire::gathered_message g;
  g.bytes = std::string(10, '?') + prefix;  // unused room, then the deadline prefix
  wire::encode_gathered(std::move(given), g, 16000);
  REQUIRE(g.in_place.size() == fields.size());

  rpc::outbox box;
  box.push_message(wire::frame_type::request, 4, std::move(g), 10, wire::flag_deadline);
  box.push_message(wire::frame_type::response, 5, pattern(2 * m, 'r'));  // interleaved
  std::string sent;
  std::size_t from_fields = 0;  // bytes whose iovec pointed into a field's own memory
  for (int turns = 0; turns < 1000; ++turns) {
    rpc::batch b;
    if (!box.take_batch(b, 2 * m)) break;
    REQUIRE(b.frame_iovs.size() == b.headers.size());
    std::size_t iovs = b.small.empty() ? 0 : 1;
    for (auto n : b.frame_iovs) iovs += 1 + n;
    CHECK(iovs == b.iov.size());
    for (const iovec& v : b.iov) {
      sent.append(static_cast<const char*>(v.iov_base), v.iov_len);
      const char* p = static_cast<const char*>(v.iov_base);
      for (auto [at, n] : fields)
        if (p >= at && p + v.iov_len <= at + n) from_fields += v.iov_len;
    }
  }
  CHECK(box.empty());
  CHECK(box.queued_bytes() == 0);
  std::string first, expected, encoded = prefix;
  wire::encode_message(msg, encoded);
  wire::append_message_frames(expected, wire::frame_type::request, 4, encoded, wire::flag_deadline);
  auto by = records_by_message(sent, first);
  CHECK(by[{int(wire::frame_type::request), 4}] == expected);
  std::string expected_response;
  wire::append_message_frames(expected_response, wire::frame_type::response, 5, pattern(2 * m, 'r'));
  CHECK(by[{int(wire::frame_type::response), 5}] == expected_response);
  std::size_t big = 0;
  for (auto [at, n] : fields) big += n;
  CHECK(from_fields == big);  // every byte of the large fields, none copied
}
