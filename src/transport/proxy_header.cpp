// PROXY protocol header decoding (proxy_header.hpp), after HAProxy's specification
// (doc/proxy-protocol.txt): §2.1 the human-readable v1 line, §2.2 the binary v2 header.
#include "transport/proxy_header.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string_view>

namespace bokbok::transport {

namespace {

constexpr std::size_t v1_max_line = 107;  // "PROXY TCP6 <39> <39> 65535 65535\r\n"
constexpr std::array<std::uint8_t, 12> v2_signature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                       0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr std::size_t v2_fixed = 16;  // signature, version/command, family, length
constexpr std::string_view v1_prefix = "PROXY ";

proxy_header invalid(std::string why) {
  proxy_header h;
  h.status = proxy_header::state::invalid;
  h.error = std::move(why);
  return h;
}

proxy_header done(std::size_t length) {
  proxy_header h;
  h.status = proxy_header::state::done;
  h.length = length;
  return h;
}

// Whether `bytes` (shorter than `whole`, or not) agree with the start of `whole`.
bool agrees_with(std::span<const std::uint8_t> bytes, std::span<const std::uint8_t> whole) {
  std::size_t n = std::min(bytes.size(), whole.size());
  return std::equal(bytes.begin(), bytes.begin() + n, whole.begin());
}

// A v1 port: 1 to 5 decimal digits, at most 65535.
std::optional<std::uint16_t> v1_port(std::string_view s) {
  if (s.empty() || s.size() > 5) return std::nullopt;
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + unsigned(c - '0');
  }
  if (v > 65535) return std::nullopt;
  return std::uint16_t(v);
}

// The v1 line without its CRLF, after "PROXY ".
proxy_header parse_v1_fields(std::string_view rest, std::size_t length) {
  if (rest.starts_with("UNKNOWN")) return done(length);  // the rest is ignored (§2.1)
  bool v4 = rest.starts_with("TCP4 "), v6 = rest.starts_with("TCP6 ");
  if (!v4 && !v6) return invalid("v1: protocol is not TCP4, TCP6 or UNKNOWN");
  rest.remove_prefix(5);
  std::array<std::string_view, 4> f;  // source, destination, source port, destination port
  for (std::size_t i = 0; i < f.size(); ++i) {
    auto sp = rest.find(' ');
    if ((i + 1 < f.size()) != (sp != std::string_view::npos))
      return invalid("v1: expected four fields separated by single spaces");
    f[i] = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp + 1);
  }
  auto port = v1_port(f[2]);
  if (!port || !v1_port(f[3])) return invalid("v1: a port is not a number from 0 to 65535");
  std::string src(f[0]), dst(f[1]);
  proxy_header h = done(length);
  sockaddr_storage ss{};
  if (v4) {
    auto* sa = reinterpret_cast<sockaddr_in*>(&ss);
    in_addr other;
    if (::inet_pton(AF_INET, src.c_str(), &sa->sin_addr) != 1 ||
        ::inet_pton(AF_INET, dst.c_str(), &other) != 1)
      return invalid("v1: TCP4 with an address that is not IPv4");
    sa->sin_family = AF_INET;
    sa->sin_port = htons(*port);
    h.source_len = sizeof(sockaddr_in);
  } else {
    auto* sa = reinterpret_cast<sockaddr_in6*>(&ss);
    in6_addr other;
    if (::inet_pton(AF_INET6, src.c_str(), &sa->sin6_addr) != 1 ||
        ::inet_pton(AF_INET6, dst.c_str(), &other) != 1)
      return invalid("v1: TCP6 with an address that is not IPv6");
    sa->sin6_family = AF_INET6;
    sa->sin6_port = htons(*port);
    h.source_len = sizeof(sockaddr_in6);
  }
  h.source = ss;
  return h;
}

proxy_header parse_v1(std::span<const std::uint8_t> bytes) {
  std::string_view text(reinterpret_cast<const char*>(bytes.data()),
                        std::min(bytes.size(), v1_max_line));
  auto end = text.find("\r\n");
  if (end == std::string_view::npos) {
    if (text.find('\n') != std::string_view::npos) return invalid("v1: a bare LF in the line");
    if (bytes.size() >= v1_max_line) return invalid("v1: no CRLF within 107 bytes");
    return {};
  }
  return parse_v1_fields(text.substr(v1_prefix.size(), end - v1_prefix.size()), end + 2);
}

proxy_header parse_v2(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < v2_fixed) return {};
  std::uint8_t version = bytes[12] >> 4, command = bytes[12] & 0x0F;
  std::uint8_t family = bytes[13] >> 4, transport = bytes[13] & 0x0F;
  std::size_t length = v2_fixed + ((std::size_t(bytes[14]) << 8) | bytes[15]);
  if (version != 2) return invalid("v2: version " + std::to_string(version) + " is not 2");
  if (command > 1) return invalid("v2: command " + std::to_string(command) + " is not LOCAL or PROXY");
  if (length > max_proxy_header)
    return invalid("v2: header of " + std::to_string(length) + " bytes is over the " +
                   std::to_string(max_proxy_header) + " accepted");
  if (bytes.size() < length) return {};
  proxy_header h = done(length);
  if (command == 0 || family == 0) return h;  // LOCAL, or UNSPEC: the real peer stands
  if (transport != 1) return invalid("v2: transport is not STREAM");
  const std::uint8_t* a = bytes.data() + v2_fixed;
  sockaddr_storage ss{};
  if (family == 1) {  // INET: src 4, dst 4, src port 2, dst port 2
    if (length < v2_fixed + 12) return invalid("v2: INET addresses cut short");
    auto* sa = reinterpret_cast<sockaddr_in*>(&ss);
    sa->sin_family = AF_INET;
    std::memcpy(&sa->sin_addr, a, 4);
    std::memcpy(&sa->sin_port, a + 8, 2);  // both in network order
    h.source_len = sizeof(sockaddr_in);
  } else if (family == 2) {  // INET6: src 16, dst 16, src port 2, dst port 2
    if (length < v2_fixed + 36) return invalid("v2: INET6 addresses cut short");
    auto* sa = reinterpret_cast<sockaddr_in6*>(&ss);
    sa->sin6_family = AF_INET6;
    std::memcpy(&sa->sin6_addr, a, 16);
    std::memcpy(&sa->sin6_port, a + 32, 2);
    h.source_len = sizeof(sockaddr_in6);
  } else {
    return invalid("v2: address family " + std::to_string(family) + " is not INET or INET6");
  }
  h.source = ss;  // TLVs, if any, are skipped with the rest of `length`
  return h;
}

}  // namespace

proxy_header parse_proxy_header(std::span<const std::uint8_t> bytes) {
  if (bytes.empty()) return {};
  if (bytes[0] == v2_signature[0]) {
    if (!agrees_with(bytes, v2_signature)) return invalid("not a PROXY protocol header");
    return parse_v2(bytes);
  }
  auto prefix = std::span(reinterpret_cast<const std::uint8_t*>(v1_prefix.data()), v1_prefix.size());
  if (!agrees_with(bytes, prefix)) return invalid("not a PROXY protocol header");
  if (bytes.size() < v1_prefix.size()) return {};
  return parse_v1(bytes);
}

}  // namespace bokbok::transport
