// The PROXY protocol header (HAProxy's PROXY protocol, versions 1 and 2) that a load
// balancer sends first on a connection it forwards, naming the original client. A
// decoder in the DESIGN's sense: fed the bytes received so far, it says "need more",
// "done, the header is N bytes" or "invalid, because ...". It never looks past the
// header, so the caller can take exactly the header off the socket and leave the
// bokbok preamble behind it unread.
//
// Accepted: v1 ("PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n", "PROXY UNKNOWN ...\r\n", at
// most 107 bytes) and v2 (the 12-byte signature, version 2, command LOCAL or PROXY,
// families UNSPEC, INET and INET6 over STREAM; TLVs after the addresses are skipped).
// v2 UNIX addresses and DGRAM are refused. LOCAL, UNKNOWN and UNSPEC carry no client:
// the connection is the balancer's own (a health check) and keeps its real peer.
//
// Threads: pure functions, any thread.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace bokbok::transport {

// The most bytes a header may take here: a v1 line is at most 107 bytes; a v2 header
// is 16 bytes and its length field, which TLVs may make up to 64 KiB: past this bound
// it is refused instead of buffered.
inline constexpr std::size_t max_proxy_header = 1024;
static_assert(max_proxy_header >= 107 + 1 && max_proxy_header >= 16 + 216);

struct proxy_header {
  enum class state { need_more, done, invalid };
  state status = state::need_more;
  // done: how many bytes the header takes (what follows is the client's own).
  std::size_t length = 0;
  // done: the original client's address (sockaddr_in or sockaddr_in6) and its length;
  // none for LOCAL / UNKNOWN / UNSPEC.
  std::optional<sockaddr_storage> source;
  socklen_t source_len = 0;
  // invalid: why, for the log ("not a PROXY protocol header", "v1 line too long").
  std::string error;
};

// Decodes the header at the start of `bytes` (all received so far).
proxy_header parse_proxy_header(std::span<const std::uint8_t> bytes);

}  // namespace bokbok::transport
