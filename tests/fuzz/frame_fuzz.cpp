// libFuzzer target: arbitrary bytes as the record stream after the preamble, through
// record_reader, parse_frame, the hello check and the reassembler (PROTOCOL.md §3-§6).
//
// Input: byte 0 picks the chunk size used to feed the record reader; the rest is the
// stream. Properties checked: feeding in chunks gives the same records as feeding at once;
// every parsed frame re-encodes to its own bytes; a decoded hello re-encodes to the same
// settings; a reassembled message that decodes re-encodes to the same bytes (stream and
// reply_stream messages too); the reassembler never holds more than its limits allow. A
// first fragment's prefixes (deadline, fd count) parse as its flags announce, and the
// reassembler reports the same fd count; a credit payload re-encodes to itself. Reading
// records in place from each chunk (next(input, body)) gives the same records, holding at
// most one; a reassembler in decode mode (fragments decoded as they come) completes the
// same messages, fails only where reassembling the bytes would give an undecodable
// message, and may call a message too large early (it announces more than the limit
// holds) where the bytes never decode.
#include <cstddef>
#include <cstdint>
#include <string>
#include <set>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "wire/frame.hpp"
#include "wire/message_codec.hpp"
#include "wire/reassembly.hpp"
#include "wire/settings.hpp"

using namespace bokbok::wire;

namespace {

constexpr std::size_t limit = 512;  // small, so inputs reach the too-large paths
constexpr std::size_t max_open = 4;

struct split_result {
  std::vector<std::string> bodies;
  std::string error;
  std::size_t left = 0;
  bool operator==(const split_result&) const = default;
};

split_result split(std::string_view stream, std::size_t chunk) {
  split_result res;
  record_reader r;
  for (std::size_t at = 0; at < stream.size(); at += chunk) {
    r.feed(stream.substr(at, chunk));
    std::string_view body;
    for (;;) {
      const auto st = r.next(body);
      if (st == record_reader::status::need_more) break;
      if (st == record_reader::status::error) {
        FUZZ_CHECK(!r.error().empty());
        res.error = r.error();
        return res;
      }
      FUZZ_CHECK(!body.empty());
      res.bodies.emplace_back(body);
    }
    FUZZ_CHECK(r.buffered() <= record_header_size + max_record_body + chunk);
  }
  res.left = r.buffered();
  return res;
}

// The same, with records taken in place from each chunk (as the frame source does).
split_result split_in_place(std::string_view stream, std::size_t chunk) {
  split_result res;
  record_reader r;
  for (std::size_t at = 0; at < stream.size(); at += chunk) {
    const std::string read(stream.substr(at, chunk));  // this turn's read buffer
    std::string_view input = read;
    std::string_view body;
    for (;;) {
      const auto st = r.next(input, body);
      if (st == record_reader::status::need_more) break;
      if (st == record_reader::status::error) {
        FUZZ_CHECK(!r.error().empty());
        res.error = r.error();
        return res;
      }
      FUZZ_CHECK(!body.empty());
      res.bodies.emplace_back(body);
    }
    FUZZ_CHECK(input.empty());
    FUZZ_CHECK(r.buffered() < record_header_size + max_record_body);
  }
  res.left = r.buffered();
  return res;
}

// Decode mode against byte mode for the same frame (`st`, and `valid` when byte mode
// completed a message that decodes to `m`). False when decode mode ends the connection.
// `early`: messages decode mode called too large before byte mode did (skipped there).
bool check_decoding(reassembler& d, const frame_view& f, reassembler::status st, bool valid,
                    const bokbok::message& m, std::set<std::uint64_t>& early) {
  std::string_view whole;
  std::string error;
  const auto sd = d.add(f, whole, error);
  FUZZ_CHECK(d.open_messages() <= max_open);
  FUZZ_CHECK(d.buffered_bytes() <= max_open * (limit + limit / 4 * decoded_field_overhead));
  const std::uint64_t key = (std::uint64_t(f.type) << 32) | f.call_id;
  const bool last = !(f.flags & flag_more);
  if (early.count(key)) {
    FUZZ_CHECK(sd == reassembler::status::skipped);
    FUZZ_CHECK(!valid);  // what announced more than the limit never decodes within it
    if (last) early.erase(key);
    return true;
  }
  if (sd == reassembler::status::error) {
    FUZZ_CHECK(!error.empty());
    FUZZ_CHECK(!valid);
    return false;
  }
  if (sd == reassembler::status::too_large && st != reassembler::status::too_large) {
    FUZZ_CHECK(!valid);
    if (!last) early.insert(key);
    return true;
  }
  FUZZ_CHECK(sd == st);
  if (sd != reassembler::status::complete) return true;
  bokbok::message got;
  if (d.has_decoded()) {
    std::size_t cost = 0;
    got = d.take_decoded(cost);
  } else if (!decode_message(whole, got, error)) {
    FUZZ_CHECK(!valid);
    return false;
  }
  FUZZ_CHECK(valid);
  FUZZ_CHECK(got == m);
  return true;
}

// parse_first_prefix agrees with the flags parse_frame accepted (PROTOCOL.md §4.2 rules
// 7-8, §4.3 "Prefixes").
void check_prefix(const frame_view& f) {
  const first_prefix p = parse_first_prefix(f.flags, f.payload);
  if (f.flags & flag_continued) {
    FUZZ_CHECK(p.size == 0 && p.fd_count == 0 && p.deadline_ms == 0);
    return;
  }
  const std::size_t want = ((f.flags & flag_deadline) ? deadline_prefix_size : 0) +
                           ((f.flags & flag_fds) ? fds_prefix_size : 0);
  FUZZ_CHECK(p.size == want);
  FUZZ_CHECK(p.size <= f.payload.size());
  if (f.flags & flag_deadline) FUZZ_CHECK(p.deadline_ms == get_deadline_prefix(f.payload));
  if (f.flags & flag_fds) {
    FUZZ_CHECK(p.fd_count >= 1 && p.fd_count <= max_fds_per_message);
  } else {
    FUZZ_CHECK(p.fd_count == 0);
  }
  if (f.flags & flag_stream) FUZZ_CHECK(f.type == frame_type::request);
}

// Returns false when the connection would end here (a violation).
bool check_message_frame(reassembler& r, reassembler& d, const frame_view& f,
                         std::set<std::uint64_t>& early) {
  check_prefix(f);
  std::string out, error;
  const std::size_t open_before = r.open_messages();
  const auto st = r.add(f, out, error);
  if (!(f.flags & flag_continued) && st != reassembler::status::error)
    FUZZ_CHECK(r.first_fd_count() == parse_first_prefix(f.flags, f.payload).fd_count);
  FUZZ_CHECK(r.open_messages() <= max_open);
  FUZZ_CHECK(r.open_messages() <= open_before + 1);
  FUZZ_CHECK(r.buffered_bytes() <= max_open * limit);
  if (st == reassembler::status::error) {
    FUZZ_CHECK(!error.empty());
    return false;  // the same state in decode mode: not compared further
  }
  bokbok::message m;
  bool valid = false;
  if (st == reassembler::status::complete) {
    FUZZ_CHECK(out.size() <= limit);
    valid = decode_message(out, m, error);
    if (valid) {
      FUZZ_CHECK(encoded_size(m) == out.size());
      std::string again;
      encode_message(m, again);
      FUZZ_CHECK(again == out);
    }
  }
  const bool go_on = check_decoding(d, f, st, valid, m, early);
  return go_on && (st != reassembler::status::complete || valid);
}

// Returns false when the connection would end here (a violation).
bool check_frame(reassembler& r, reassembler& d, std::string_view body,
                 std::set<std::uint64_t>& early) {
  frame_view f;
  std::string error;
  if (!parse_frame(body, f, error)) {
    FUZZ_CHECK(!error.empty());
    return false;
  }
  std::string again;
  append_frame(again, f.type, f.flags, f.call_id, f.payload);
  FUZZ_CHECK(std::string_view(again).substr(record_header_size) == body);
  switch (f.type) {
    case frame_type::hello: {
      settings s, back;
      if (!decode_settings(f.payload, s, error)) return false;
      FUZZ_CHECK(decode_settings(encode_settings(s), back, error));
      FUZZ_CHECK(back == s);
      return true;
    }
    case frame_type::error:
    case frame_type::goaway: {
      const code_payload c = parse_code_payload(f.payload);
      FUZZ_CHECK(encode_code_payload(c.code, c.text) == f.payload);
      return true;
    }
    case frame_type::cancel:
      r.drop(frame_type::request, f.call_id);
      d.drop(frame_type::request, f.call_id);
      return true;
    case frame_type::request:
    case frame_type::response:
    case frame_type::notify:
    case frame_type::stream:
    case frame_type::reply_stream:
      FUZZ_CHECK(carries_message(f.type));
      return check_message_frame(r, d, f, early);
    case frame_type::credit:
    case frame_type::reply_credit:
      FUZZ_CHECK(f.payload.size() == credit_payload_size);
      FUZZ_CHECK(encode_credit_payload(parse_credit_payload(f.payload)) == f.payload);
      return true;
    case frame_type::stream_end:
      FUZZ_CHECK(f.payload.empty());
      return true;
    default:
      return true;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t chunk = data[0] == 0 ? 65536 : data[0];
  const std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);

  const split_result whole = split(stream, stream.size() ? stream.size() : 1);
  const split_result parts = split(stream, chunk);
  FUZZ_CHECK(whole == parts);
  FUZZ_CHECK(split_in_place(stream, chunk) == whole);

  reassembler r(limit, max_open);
  reassembler d(limit, max_open, true);
  std::set<std::uint64_t> early;
  for (const std::string& body : whole.bodies) {
    if (!check_frame(r, d, body, early)) break;
  }
  return 0;
}
