// libFuzzer target: the key-mode responder reading message 1 (src/crypto/key_handshake,
// PROTOCOL.md §9.4). Arbitrary bytes must never crash it, and every outcome must keep the
// protocol's promises.
//
// Input: byte 0 picks the mode (mod 3) and, in its high bits, a chunk size for feeding.
//   mode 0: the rest is the stream after the preambles, fed as is;
//   mode 1: a real message 1 from an initiator holding the right key: bytes 1-32 its
//           ephemeral private key, 33-34 a signed clock offset in seconds (big-endian),
//           35-36 the index of a byte to flip (beyond the end: none), from 37 on its
//           settings;
//   mode 2: as mode 1, but the message is forged with the right key around bytes 1-32
//           taken as the ephemeral *public* key (small-order points included).
// In mode 1 the stream goes on with the login (§9.6 "Login"): the initiator, having read
// the message 2 of a responder with a fixed ephemeral key, seals its first record ("L"
// and the settings bytes again) under the session keys; the byte to flip may fall there too.
// Properties: fed whole or in chunks, the same status; no Diffie-Hellman unless the tag
// verified; on done, message 2 has the right size and the settings arrived intact; on an
// error after a whole record, either nothing or a decoy of message 2's size was produced;
// a flipped byte never gives done; after done, bytes left are read as the first record:
// it opens (and the login is confirmed, once: the same message 1 again is a replay)
// exactly when it is the initiator's unaltered login record.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "crypto/key_handshake.hpp"
#include "fuzz_check.hpp"
#include "key_fixture.hpp"
#include "../support/forged_message1.hpp"

using namespace bokbok::crypto;
using namespace key_fixture;

namespace {

const std::string server_settings = "server settings";

std::array<unsigned char, 32> server_ephemeral() {
  std::array<unsigned char, 32> e;
  for (std::size_t i = 0; i < e.size(); ++i) e[i] = static_cast<unsigned char>(0x51 + 7 * i);
  return e;
}


struct outcome {
  handshake_status status;
  std::string out, error, settings;
  std::size_t left;
  bool logged_in = false;  // the first record after message 1 opened and confirm() agreed
  std::string login;       // what it held
};

outcome respond(std::string_view stream, std::size_t chunk) {
  replay_cache cache(4);
  key_responder r(psk().clone(), client_pre, server_pre, server_settings, cache,
                  {std::chrono::seconds(120), [] { return now_ms; }, "alice"});
  r.use_ephemeral_for_test(server_ephemeral());
  outcome o{handshake_status::need_more, {}, {}, {}, 0, false, {}};
  std::size_t at = 0;
  while (at < stream.size() && o.status == handshake_status::need_more) {
    std::string_view in = stream.substr(at, chunk);
    const std::size_t offered = in.size();
    o.status = r.feed(in, o.out);
    at += offered - in.size();
    if (o.status == handshake_status::need_more) FUZZ_CHECK(in.empty());
  }
  o.left = stream.size() - at;
  if (o.status == handshake_status::need_more) {
    FUZZ_CHECK(r.end_of_stream() == handshake_status::error);
    FUZZ_CHECK(!r.error().empty());
  }
  if (o.status == handshake_status::done) o.settings = r.peer_settings();
  o.error = r.error();
  if (o.status == handshake_status::done && o.left >= 2) {
    // The login: the first record (u16 length || body) under the session keys.
    std::string_view rest = stream.substr(at);
    const std::size_t len = (std::size_t(std::uint8_t(rest[0])) << 8) | std::uint8_t(rest[1]);
    auto ciphers = r.take_ciphers();
    if (rest.size() - 2 >= len && ciphers.receive.open(rest.substr(2, len), o.login)) {
      FUZZ_CHECK(r.confirm() == handshake_status::done);
      o.logged_in = true;
      // The same message 1 on another connection of this server is now a replay.
      key_responder again(psk().clone(), client_pre, server_pre, server_settings, cache,
                          {std::chrono::seconds(120), [] { return now_ms; }, "alice"});
      std::string_view m1 = stream.substr(0, at);
      std::string out;
      FUZZ_CHECK(again.feed(m1, out) == handshake_status::error);
    }
  }
  return o;
}

// The initiator's login record after a real message 1 (`m1`, from `ini`): message 2 from
// a responder with the fixed ephemeral key, then `proof` sealed. Empty if that fails.
std::string login_record(key_initiator& ini, const std::string& m1, const std::string& proof) {
  replay_cache cache(4);
  key_responder r(psk().clone(), client_pre, server_pre, server_settings, cache,
                  {std::chrono::seconds(120), [] { return now_ms; }, "alice"});
  r.use_ephemeral_for_test(server_ephemeral());
  std::string_view in = m1;
  std::string m2;
  if (r.feed(in, m2) != handshake_status::done) return {};
  std::string_view back = m2;
  FUZZ_CHECK(ini.feed(back) == handshake_status::done);
  std::string sealed;
  FUZZ_CHECK(ini.take_ciphers().send.seal(proof, sealed));
  return sealed;
}

// `m1_size`: where message 1 ends in what it returns (the login record follows).
std::string real_message1(const std::uint8_t* data, std::size_t size, bool forged,
                          std::size_t& m1_size) {
  std::array<unsigned char, 32> e{};
  std::memcpy(e.data(), data, 32);
  const auto offset_s = static_cast<std::int16_t>((data[32] << 8) | data[33]);
  const std::int64_t ts = now_ms + std::int64_t{offset_s} * 1000;
  const std::string settings(reinterpret_cast<const char*>(data + 36), size - 36);
  std::string m1;
  if (!forged) {
    key_initiator ini(psk(), client_pre, server_pre, settings, [ts] { return ts; });
    ini.use_ephemeral_for_test(e);
    if (ini.start(m1) != handshake_status::need_more) return {};
    m1_size = m1.size();
    return m1 + login_record(ini, m1, "L" + settings);  // a record is never empty
  }
  if (settings.size() > max_handshake_settings) return {};
  auto hand_made = bokbok_test::forged_message1(psk().bytes(), client_pre + server_pre, e, ts, settings);
  FUZZ_CHECK(hand_made.has_value());
  m1_size = hand_made->size();
  return *hand_made;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const int mode = data[0] % 3;
  const std::size_t chunk = (data[0] >> 2) + 1;
  std::string stream;
  bool flipped = false, flipped_m1 = false;  // a byte flipped; in message 1
  std::size_t m1_size = 0;
  if (mode == 0) {
    stream.assign(reinterpret_cast<const char*>(data + 1), size - 1);
  } else {
    if (size < 37) return 0;
    stream = real_message1(data + 1, size - 1, mode == 2, m1_size);
    if (stream.empty()) return 0;
    const std::size_t flip = (std::size_t{data[35]} << 8) | data[36];
    if (flip < stream.size()) {
      stream[flip] = static_cast<char>(stream[flip] ^ 0x01);
      flipped = true;
      flipped_m1 = flip < m1_size;
    }
  }
  const std::uint64_t dh_before = handshake_state::dh_count();
  const outcome whole = respond(stream, stream.size() + 1);
  const bool authenticated = handshake_state::dh_count() != dh_before;
  const outcome parts = respond(stream, chunk);
  FUZZ_CHECK(whole.status == parts.status);
  FUZZ_CHECK(whole.left == parts.left);
  FUZZ_CHECK(whole.out.size() == parts.out.size());
  if (whole.status == handshake_status::done) {
    FUZZ_CHECK(!flipped_m1);
    FUZZ_CHECK(whole.out.size() == 2 + message2_min_body + server_settings.size());
    FUZZ_CHECK(whole.settings == parts.settings);
  } else if (whole.status == handshake_status::error) {
    FUZZ_CHECK(!whole.error.empty());
    FUZZ_CHECK(whole.out.empty() || whole.out.size() == 2 + message2_min_body + server_settings.size());
    // The tag failed: no DH may have been computed for it.
    if (whole.error == authentication_failed) FUZZ_CHECK(!authenticated);
  }
  FUZZ_CHECK(whole.logged_in == parts.logged_in);
  FUZZ_CHECK(!whole.logged_in || whole.status == handshake_status::done);
  if (mode == 1 && !flipped_m1) {
    const auto offset_s = static_cast<std::int16_t>((data[33] << 8) | data[34]);
    const bool in_window = offset_s >= -120 && offset_s <= 120;
    FUZZ_CHECK((whole.status == handshake_status::done) == in_window);
    // In the window the login completes, and what it held arrived intact, unless a
    // byte of the login record was flipped.
    if (!flipped) FUZZ_CHECK(whole.logged_in == in_window);
    if (!flipped && in_window)
      FUZZ_CHECK(whole.login == "L" + std::string(reinterpret_cast<const char*>(data + 37), size - 37));
  }
  // Without the key's holder sealing it, no first record opens.
  if (mode != 1 || flipped) FUZZ_CHECK(!whole.logged_in);
  return 0;
}
