// The PROXY protocol header decoder (src/transport/proxy_header.hpp): v1 and v2, what
// it takes, where it stops, and what it refuses.
#include <doctest/doctest.h>

#include <arpa/inet.h>

#include <cstdint>
#include <string>
#include <vector>

#include "transport/proxy_header.hpp"
#include "transport/sockaddr.hpp"

using namespace bokbok::transport;
using bytes = std::vector<std::uint8_t>;

namespace {

bytes of(const std::string& s) { return bytes(s.begin(), s.end()); }

std::string source_text(const proxy_header& h) {
  if (!h.source) return "none";
  return sockaddr_name(reinterpret_cast<const sockaddr*>(&*h.source), h.source_len);
}

const bytes v2_sig = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

// A v2 header: command (0 LOCAL, 1 PROXY), family/transport byte, then `body`.
bytes v2(std::uint8_t command, std::uint8_t fam, const bytes& body) {
  bytes b = v2_sig;
  b.push_back(0x20 | command);
  b.push_back(fam);
  b.push_back(std::uint8_t(body.size() >> 8));
  b.push_back(std::uint8_t(body.size() & 0xFF));
  b.insert(b.end(), body.begin(), body.end());
  return b;
}

// Every proper prefix of `h` needs more; the whole decodes.
void check_prefixes_need_more(const bytes& h) {
  for (std::size_t n = 0; n < h.size(); ++n) {
    auto r = parse_proxy_header(std::span(h.data(), n));
    INFO("prefix of " << n << " bytes: " << r.error);
    CHECK(r.status == proxy_header::state::need_more);
  }
}

}  // namespace

TEST_CASE("a v1 TCP4 line gives the client's address and ends at its CRLF") {
  bytes h = of("PROXY TCP4 203.0.113.7 192.0.2.1 56324 7000\r\n");
  bytes all = h;
  for (char c : std::string("\0\0bokbok", 8)) all.push_back(std::uint8_t(c));
  auto r = parse_proxy_header(all);
  REQUIRE(r.status == proxy_header::state::done);
  CHECK(r.length == h.size());
  CHECK(source_text(r) == "tcp:203.0.113.7:56324");
  check_prefixes_need_more(h);
}

TEST_CASE("a v1 TCP6 line gives an IPv6 client") {
  auto r = parse_proxy_header(of("PROXY TCP6 2001:db8::5 2001:db8::1 4000 7000\r\nrest"));
  REQUIRE(r.status == proxy_header::state::done);
  CHECK(r.length == std::string("PROXY TCP6 2001:db8::5 2001:db8::1 4000 7000\r\n").size());
  CHECK(source_text(r) == "tcp:[2001:db8::5]:4000");
}

TEST_CASE("a v1 UNKNOWN line names no client") {
  for (const char* line : {"PROXY UNKNOWN\r\n", "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"}) {
    auto r = parse_proxy_header(of(line));
    REQUIRE(r.status == proxy_header::state::done);
    CHECK(r.length == std::string(line).size());
    CHECK_FALSE(r.source);
  }
}

TEST_CASE("malformed v1 lines are refused") {
  for (const char* line : {"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", "PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n",
                           "PROXY TCP4 ::1 ::1 1 2\r\n", "PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n",
                           "PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n",
                           "PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",
                           "PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n",
                           "PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n",
                           "PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", "proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n"}) {
    auto r = parse_proxy_header(of(line));
    INFO(line);
    CHECK(r.status == proxy_header::state::invalid);
    CHECK_FALSE(r.error.empty());
  }
}

TEST_CASE("a v1 line with no CRLF within 107 bytes is refused, not waited for") {
  std::string line = "PROXY UNKNOWN " + std::string(92, 'x');
  CHECK(parse_proxy_header(of(line)).status == proxy_header::state::need_more);  // 106 bytes
  line += "x";
  CHECK(parse_proxy_header(of(line)).status == proxy_header::state::invalid);
}

TEST_CASE("a v2 PROXY header over IPv4 gives the client's address, TLVs skipped") {
  bytes body = {203, 0, 113, 7, 192, 0, 2, 1, 0xDC, 0x04, 0x1B, 0x58};
  bytes tlv = {0x04, 0x00, 0x03, 'a', 'b', 'c'};  // a NOOP TLV
  body.insert(body.end(), tlv.begin(), tlv.end());
  bytes h = v2(1, 0x11, body);
  bytes all = h;
  all.insert(all.end(), {0, 0, 'b', 'o', 'k'});
  auto r = parse_proxy_header(all);
  REQUIRE(r.status == proxy_header::state::done);
  CHECK(r.length == h.size());
  CHECK(source_text(r) == "tcp:203.0.113.7:56324");
  check_prefixes_need_more(h);
}

TEST_CASE("a v2 PROXY header over IPv6 gives the client's address") {
  bytes body(36, 0);
  in6_addr a;
  ::inet_pton(AF_INET6, "2001:db8::5", &a);
  std::copy(a.s6_addr, a.s6_addr + 16, body.begin());
  body[32] = 0x0F;
  body[33] = 0xA0;  // port 4000
  auto r = parse_proxy_header(v2(1, 0x21, body));
  REQUIRE(r.status == proxy_header::state::done);
  CHECK(r.length == 16 + 36);
  CHECK(source_text(r) == "tcp:[2001:db8::5]:4000");
}

TEST_CASE("a v2 LOCAL header (a balancer's health check) names no client") {
  auto r = parse_proxy_header(v2(0, 0x00, {}));
  REQUIRE(r.status == proxy_header::state::done);
  CHECK(r.length == 16);
  CHECK_FALSE(r.source);
  // LOCAL with addresses: skipped all the same.
  r = parse_proxy_header(v2(0, 0x11, bytes(12, 1)));
  REQUIRE(r.status == proxy_header::state::done);
  CHECK(r.length == 28);
  CHECK_FALSE(r.source);
}

TEST_CASE("truncated, oversized and garbage v2 headers are refused") {
  struct bad_case {
    const char* what;
    bytes b;
  };
  bytes wrong_version = v2(1, 0x11, bytes(12, 0));
  wrong_version[12] = 0x11;
  bytes wrong_sig = v2(1, 0x11, bytes(12, 0));
  wrong_sig[7] = 'X';
  bytes huge = v2_sig;
  huge.insert(huge.end(), {0x21, 0x11, 0xFF, 0xFF});
  for (const auto& c : {bad_case{"addresses cut short", v2(1, 0x11, bytes(8, 0))},
                        bad_case{"IPv6 cut short", v2(1, 0x21, bytes(20, 0))},
                        bad_case{"version 1", wrong_version},
                        bad_case{"command 2", v2(2, 0x11, bytes(12, 0))},
                        bad_case{"UNIX family", v2(1, 0x31, bytes(216, 0))},
                        bad_case{"DGRAM", v2(1, 0x12, bytes(12, 0))},
                        bad_case{"signature", wrong_sig},
                        bad_case{"64 KiB announced", huge},
                        bad_case{"a bokbok preamble", of(std::string("\0bokbok", 7))},
                        bad_case{"an HTTP request", of("GET / HTTP/1.1\r\n")}}) {
    INFO(c.what);
    auto r = parse_proxy_header(c.b);
    CHECK(r.status == proxy_header::state::invalid);
    CHECK_FALSE(r.error.empty());
  }
}
