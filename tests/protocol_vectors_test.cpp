// Checks the normative spec against the code: the test vectors of PROTOCOL.md §10 are
// encoded and decoded both ways, and the tables of frame types (§4.1), settings (§6.1)
// and error codes (§7) are compared with the headers. The file is read from
// $BOKBOK_SOURCE_ROOT/src/wire/PROTOCOL.md.
#include <doctest/doctest.h>

#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "bokbok/error.hpp"
#include "protocol_vectors.hpp"
#include "wire/frame.hpp"
#include "wire/message_codec.hpp"
#include "wire/preamble.hpp"
#include "wire/reassembly.hpp"
#include "wire/settings.hpp"

using namespace bokbok;
using namespace bokbok::wire;
using namespace protocol_vectors;

namespace {

// ---- decoding pipelines -----------------------------------------------------------

struct preamble_result {
  preamble_reader::status status;
  preamble value;
  std::string error;
  std::size_t left;  // bytes not consumed
};

preamble_result read_preamble(std::string_view bytes, std::size_t chunk) {
  preamble_reader r;
  auto st = preamble_reader::status::need_more;
  std::size_t consumed = 0;
  for (std::size_t at = 0; at < bytes.size() && st == preamble_reader::status::need_more;
       at += chunk) {
    std::string_view in = bytes.substr(at, chunk);
    const std::size_t offered = in.size();
    st = r.feed(in);
    consumed += offered - in.size();
  }
  return {st, r.value(), r.error(), bytes.size() - consumed};
}

// A message as reassembled, with what its first fragment's prefixes said (§4.3).
struct received {
  frame_type type;
  std::uint32_t call_id;
  message fields;
  std::optional<std::uint32_t> deadline_ms;
  unsigned fd_count;
};

struct stream_result {
  std::string error;
  std::vector<received> messages;
  std::vector<settings> hellos;
};

// Feeds records through the checks a receiver applies (§10 `frames`), first error wins.
stream_result read_records(std::string_view bytes, std::size_t chunk) {
  stream_result res;
  record_reader reader;
  reassembler reasm(settings{}.max_message_size, max_partial_messages);
  unsigned fd_count = 0;
  for (std::size_t at = 0; at < bytes.size() && res.error.empty(); at += chunk) {
    reader.feed(bytes.substr(at, chunk));
    std::string_view body;
    for (;;) {
      const auto st = reader.next(body);
      if (st == record_reader::status::need_more) break;
      if (st == record_reader::status::error) {
        res.error = reader.error();
        return res;
      }
      frame_view f;
      if (!parse_frame(body, f, res.error)) return res;
      if (f.type == frame_type::hello) {
        settings s;
        if (!decode_settings(f.payload, s, res.error)) return res;
        res.hellos.push_back(s);
      } else if (carries_message(f.type)) {
        std::string bytes_out;
        const auto r = reasm.add(f, bytes_out, res.error);
        // The fd count is the first fragment's: read it right after that add().
        if (!(f.flags & flag_continued)) fd_count = reasm.first_fd_count();
        if (r == reassembler::status::error) return res;
        if (r == reassembler::status::too_large) {
          res.error = "message too large";
          return res;
        }
        if (r == reassembler::status::complete) {
          message m;
          if (!decode_message(bytes_out, m, res.error)) return res;
          res.messages.push_back({f.type, f.call_id, std::move(m), reasm.deadline_ms(), fd_count});
        }
      }
    }
  }
  if (res.error.empty() && reader.buffered() != 0) res.error = "truncated record";
  return res;
}

// ---- checks by `what` -----------------------------------------------------------------

void check_preamble(const vector& v, const std::string& bytes) {
  const auto whole = read_preamble(bytes, bytes.size());
  const auto drip = read_preamble(bytes, 1);
  if (v.invalid()) {
    CHECK(whole.status == preamble_reader::status::error);
    CHECK(drip.status == preamble_reader::status::error);
    CHECK_MESSAGE(whole.error.find(v.at("error")) != std::string::npos,
                  "error was: " << whole.error);
    // Fed a byte at a time it fails at the same byte (§2.2): the same words, quoting
    // only the bytes up to that one.
    const auto words = [](const std::string& e) { return e.substr(0, e.find('"')); };
    CHECK(words(drip.error) == words(whole.error));
    return;
  }
  preamble p;
  p.version = static_cast<std::uint8_t>(std::stoul(v.at("version")));
  p.mode = v.at("mode") == "plain" ? mode::plain
           : v.at("mode") == "key" ? mode::key
                                   : throw std::runtime_error("bad mode " + v.at("mode"));
  p.user = parse_quoted(v.at("user"));
  if (!v.decode_only()) CHECK(encode_preamble(p) == bytes);
  for (const auto& r : {whole, drip}) {
    CHECK(r.status == preamble_reader::status::done);
    CHECK(r.value == p);
    CHECK(r.left == 0);
  }
}

void check_settings(const vector& v, const std::string& bytes) {
  settings s;
  std::string error;
  if (v.invalid()) {
    CHECK_FALSE(decode_settings(bytes, s, error));
    CHECK_MESSAGE(error.find(v.at("error")) != std::string::npos, "error was: " << error);
    return;
  }
  const settings want = parse_settings(v.at("settings"));
  if (!v.decode_only()) CHECK(encode_settings(want) == bytes);
  REQUIRE_MESSAGE(decode_settings(bytes, s, error), error);
  CHECK(s == want);
}

void check_message(const vector& v, const std::string& bytes) {
  message m;
  std::string error;
  if (v.invalid()) {
    CHECK_FALSE(decode_message(bytes, m, error));
    CHECK_MESSAGE(error.find(v.at("error")) != std::string::npos, "error was: " << error);
    return;
  }
  const message want = parse_message(v.at("message"));
  std::string enc;
  encode_message(want, enc);
  if (!v.decode_only()) {
    CHECK(enc == bytes);
    CHECK(encoded_size(want) == bytes.size());
  }
  REQUIRE_MESSAGE(decode_message(bytes, m, error), error);
  CHECK(m == want);
}

// The prefixes (§4.3) a vector's `deadline` and `fds` keys describe, in wire order.
std::string described_prefix(const vector& v) {
  std::string out;
  if (v.has("deadline"))
    put_deadline_prefix(out, static_cast<std::uint32_t>(std::stoul(v.at("deadline"))));
  if (v.has("fds")) out.push_back(static_cast<char>(std::stoul(v.at("fds"))));
  return out;
}

// `messages=N bytes=N`.
credit_grant parse_credit(const std::string& text) {
  credit_grant g;
  std::istringstream in(text);
  if (std::string tok; !(in >> tok) || tok.rfind("messages=", 0) != 0)
    throw std::runtime_error("bad credit " + text);
  else
    g.messages = static_cast<std::uint32_t>(std::stoul(tok.substr(9)));
  if (std::string tok; !(in >> tok) || tok.rfind("bytes=", 0) != 0)
    throw std::runtime_error("bad credit " + text);
  else
    g.bytes = static_cast<std::uint32_t>(std::stoul(tok.substr(6)));
  return g;
}

// The payload a `frame` vector describes, and a check of a decoded payload against it.
std::string described_payload(const vector& v) {
  if (v.has("payload")) return parse_hex(v.at("payload"));
  if (v.has("message")) {
    std::string out = described_prefix(v);
    encode_message(parse_message(v.at("message")), out);
    return out;
  }
  if (v.has("credit")) return encode_credit_payload(parse_credit(v.at("credit")));
  if (v.has("settings")) return encode_settings(parse_settings(v.at("settings")));
  if (v.has("code"))
    return encode_code_payload(static_cast<std::uint16_t>(std::stoul(v.at("code"))),
                               parse_quoted(v.at("text")));
  throw std::runtime_error("a frame vector needs payload, message, settings or code");
}

void check_decoded_payload(const vector& v, std::uint8_t flags, std::string_view payload) {
  std::string error;
  if (v.has("payload")) {
    CHECK(payload == parse_hex(v.at("payload")));
  } else if (v.has("message")) {
    const first_prefix prefix = parse_first_prefix(flags, payload);
    CHECK(prefix.deadline_ms == (v.has("deadline") ? std::stoul(v.at("deadline")) : 0));
    CHECK(prefix.fd_count == (v.has("fds") ? std::stoul(v.at("fds")) : 0));
    payload.remove_prefix(prefix.size);
    message m;
    REQUIRE_MESSAGE(decode_message(payload, m, error), error);
    CHECK(m == parse_message(v.at("message")));
  } else if (v.has("settings")) {
    settings s;
    REQUIRE_MESSAGE(decode_settings(payload, s, error), error);
    CHECK(s == parse_settings(v.at("settings")));
  } else if (v.has("credit")) {
    const credit_grant got = parse_credit_payload(payload);
    const credit_grant want = parse_credit(v.at("credit"));
    CHECK(got.messages == want.messages);
    CHECK(got.bytes == want.bytes);
  } else {
    const code_payload c = parse_code_payload(payload);
    CHECK(c.code == std::stoul(v.at("code")));
    CHECK(c.text == parse_quoted(v.at("text")));
  }
}

void check_frame(const vector& v, const std::string& bytes) {
  REQUIRE_FALSE_MESSAGE(v.invalid(), "invalid records are written as `what: frames`");
  const frame_type type = parse_type(v.at("type"));
  const auto flags = static_cast<std::uint8_t>(std::stoul(v.at("flags"), nullptr, 16));
  const auto id = static_cast<std::uint32_t>(std::stoul(v.at("call-id")));
  if (!v.decode_only()) {
    std::string enc;
    append_frame(enc, type, flags, id, described_payload(v));
    CHECK(enc == bytes);
    const frame_header_bytes h = encode_frame_header(type, flags, id, enc.size() - 8);
    CHECK(std::string_view(reinterpret_cast<const char*>(h.bytes), 8) ==
          std::string_view(bytes).substr(0, 8));
  }
  for (std::size_t chunk : {bytes.size(), std::size_t{1}}) {
    CAPTURE(chunk);
    record_reader reader;
    std::string_view body;
    auto st = record_reader::status::need_more;
    for (std::size_t at = 0; at < bytes.size(); at += chunk) {
      REQUIRE(st == record_reader::status::need_more);
      reader.feed(std::string_view(bytes).substr(at, chunk));
      st = reader.next(body);
    }
    REQUIRE(st == record_reader::status::record);
    frame_view f;
    std::string error;
    REQUIRE_MESSAGE(parse_frame(body, f, error), error);
    CHECK(f.type == type);
    CHECK(f.flags == flags);
    CHECK(f.call_id == id);
    check_decoded_payload(v, flags, f.payload);
    std::string_view rest;
    CHECK(reader.next(rest) == record_reader::status::need_more);
    CHECK(reader.buffered() == 0);
  }
}

void check_frames(const vector& v, const std::string& bytes) {
  const auto whole = read_records(bytes, bytes.size());
  const auto drip = read_records(bytes, 1);
  if (v.invalid()) {
    CHECK_MESSAGE(whole.error.find(v.at("error")) != std::string::npos,
                  "error was: " << whole.error);
    CHECK(drip.error == whole.error);
    return;
  }
  const frame_type type = parse_type(v.at("type"));
  const auto id = static_cast<std::uint32_t>(std::stoul(v.at("call-id")));
  const message want = parse_message(v.at("message"));
  // The first fragment's flags (deadline, stream, fds) with their prefixes.
  const auto first_flags =
      v.has("flags") ? static_cast<std::uint8_t>(std::stoul(v.at("flags"), nullptr, 16))
                     : std::uint8_t{0};
  if (!v.decode_only()) {
    std::string msg = described_prefix(v), enc;
    encode_message(want, msg);
    append_message_frames(enc, type, id, msg, first_flags);
    CHECK(enc == bytes);
  }
  for (const auto& r : {whole, drip}) {
    REQUIRE_MESSAGE(r.error.empty(), r.error);
    REQUIRE(r.messages.size() == 1);
    const received& got = r.messages[0];
    CHECK(got.type == type);
    CHECK(got.call_id == id);
    CHECK(got.fields == want);
    if (v.has("deadline")) {
      CHECK(got.deadline_ms == std::optional<std::uint32_t>(std::stoul(v.at("deadline"))));
    }
    CHECK(got.fd_count == (v.has("fds") ? std::stoul(v.at("fds")) : 0));
  }
}

void check_vector(const vector& v) {
  const std::string bytes = parse_hex(v.hex);
  const std::string& what = v.at("what");
  if (what == "preamble") check_preamble(v, bytes);
  else if (what == "settings") check_settings(v, bytes);
  else if (what == "message") check_message(v, bytes);
  else if (what == "frame") check_frame(v, bytes);
  else if (what == "frames") check_frames(v, bytes);
  else FAIL("unknown `what: " << what << "`");
}

// Rows "| N | `name` | ..." of the part of the spec between `heading` and the next
// heading of the same level.
std::vector<std::pair<unsigned, std::string>> table_rows(const std::string& spec,
                                                         const std::string& heading) {
  std::vector<std::pair<unsigned, std::string>> rows;
  const auto lines = lines_of(spec);
  const std::string level = heading.substr(0, heading.find(' ') + 1);
  bool inside = false;
  for (const auto& line : lines) {
    if (line.rfind(heading, 0) == 0) {
      inside = true;
      continue;
    }
    if (inside && line.rfind(level, 0) == 0) break;
    if (!inside || line.rfind("| ", 0) != 0) continue;
    std::istringstream in(line.substr(2));
    unsigned n;
    std::string bar, name;
    if (!(in >> n >> bar >> name) || bar != "|" || name.size() < 3 || name.front() != '`' ||
        name.back() != '`')
      continue;
    rows.emplace_back(n, name.substr(1, name.size() - 2));
  }
  return rows;
}

}  // namespace

TEST_CASE("PROTOCOL.md holds every test vector the protocol needs, each well formed") {
  const auto& vs = spec_vectors();
  std::set<std::string> names;
  std::size_t invalid = 0;
  for (const auto& v : vs) {
    CAPTURE(v.line);
    REQUIRE(v.has("name"));
    CHECK_MESSAGE(names.insert(v.name()).second, "duplicate vector " << v.name());
    CHECK(v.has("what"));
    CHECK(v.has("about"));
    CHECK_FALSE(v.hex.empty());
    invalid += v.invalid();
  }
  for (const char* required :
       {"preamble-plain", "preamble-banner", "preamble-version-2", "settings-defaults",
        "settings-repeated-id", "frame-hello", "frame-request", "frame-response",
        "frame-error", "frame-cancel", "frame-ping", "frame-pong", "frame-goaway",
        "frame-close", "frames-fragmented-request", "invalid-record-length-0",
        "invalid-frame-type", "invalid-flags", "invalid-unknown-continuation",
        "invalid-restarted-message", "invalid-message-count", "message-empty",
        "frame-request-deadline", "frame-notify", "frames-deadline-request",
        "invalid-deadline-on-response", "invalid-deadline-continued", "invalid-deadline-short",
        "invalid-notify-id-0", "frame-request-stream-deadline", "frame-request-deadline-fds",
        "frame-notify-fds", "frame-stream-first-fragment", "frame-reply-stream-continued",
        "frame-stream-end", "frame-credit", "frame-reply-credit", "frames-stream-message",
        "frames-reply-stream-fragmented", "frames-request-deadline-fds", "frames-stream-request",
        "invalid-stream-on-response", "invalid-stream-continued", "invalid-fds-count-0",
        "invalid-fds-count-254", "invalid-fds-continued", "invalid-fds-on-credit",
        "invalid-fds-short", "invalid-stream-end-payload", "invalid-credit-short",
        "invalid-stream-id-0", "invalid-more-on-reply-credit",
        "invalid-restarted-stream-message"}) {
    CHECK_MESSAGE(names.count(required), "PROTOCOL.md lacks vector " << required);
  }
  CHECK(invalid >= 10);
}

TEST_CASE("every test vector in PROTOCOL.md encodes and decodes as it says") {
  for (const auto& v : spec_vectors()) {
    INFO("vector " << v.name() << " (PROTOCOL.md line " << v.line << ")");
    try {
      check_vector(v);
    } catch (const std::exception& e) {
      FAIL_CHECK("malformed vector: " << e.what());
    }
  }
}

TEST_CASE("the frame type table in PROTOCOL.md matches frame.hpp") {
  const auto rows = table_rows(read_spec(), "### 4.1");
  REQUIRE(rows.size() == 15);
  for (const auto& row : rows) {
    CAPTURE(row.first);
    CHECK(to_string(static_cast<frame_type>(row.first)) == row.second);
  }
}

TEST_CASE("the settings table in PROTOCOL.md matches settings.hpp, defaults included") {
  const auto rows = table_rows(read_spec(), "### 6.1");
  REQUIRE(rows.size() == std::size(setting_descs));
  for (std::size_t i = 0; i < rows.size(); ++i) {
    CHECK(rows[i].first == static_cast<unsigned>(setting_descs[i].id));
    CHECK(rows[i].second == setting_descs[i].name);
  }
  const settings defaults = parse_settings(
      "max_message_size=67108864 heartbeat_ms=0 max_concurrent_calls=0 features=0");
  CHECK(defaults == settings{});
  // The documented defaults, row by row (the last column starts with the value).
  const std::string spec = read_spec();
  for (const auto& d : setting_descs) {
    const std::string cell = std::string("| `") + d.name + "` |";
    const auto at = spec.find(cell);
    REQUIRE(at != std::string::npos);
    const auto eol = spec.find('\n', at);
    const std::string row = spec.substr(at, eol - at);
    const auto last = row.rfind("| ", row.size() - 2);
    const unsigned long documented = std::stoul(row.substr(last + 2));
    CHECK_MESSAGE(documented == settings{}.*d.member, d.name);
  }
}

TEST_CASE("the error code table in PROTOCOL.md matches error.hpp") {
  const auto rows = table_rows(read_spec(), "## 7.");
  REQUIRE(rows.size() == 10);
  for (const auto& row : rows) {
    CAPTURE(row.first);
    CHECK(to_string(static_cast<error_code>(row.first)) == row.second);
  }
  CHECK(std::string(to_string(static_cast<error_code>(0))) == "unknown");
  CHECK(std::string(to_string(static_cast<error_code>(11))) == "unknown");
}
