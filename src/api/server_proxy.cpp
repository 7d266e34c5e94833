// The server's side of the PROXY protocol (server_proxy.hpp).
//
// A header is read without ever taking a byte past it: each time the socket is
// readable, what is there is peeked at and decoded together with what was taken
// before; when the header is whole, exactly its remaining bytes are taken; when it is
// not, everything peeked belongs to it and is taken (so a partial header does not keep
// the socket readable and the loop spinning). The bokbok preamble behind it stays in
// the socket for the handshake.
#include "api/server_proxy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "bokbok/error.hpp"
#include "rpc/loop_watch.hpp"
#include "transport/proxy_header.hpp"
#include "transport/sockaddr.hpp"

namespace bokbok::detail {

namespace {

// `sa` as 16 bytes, IPv4 mapped into IPv6; false for other families.
bool as_ipv6(const sockaddr* sa, std::array<std::uint8_t, 16>& out) {
  if (sa->sa_family == AF_INET6) {
    std::memcpy(out.data(), &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, 16);
    return true;
  }
  if (sa->sa_family != AF_INET) return false;
  out.fill(0);
  out[10] = out[11] = 0xFF;
  std::memcpy(out.data() + 12, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, 4);
  return true;
}

}  // namespace

std::optional<connection::credentials> client_credentials(const transport::connected_socket& sock) {
  if (sock.proxied_source_len != 0) return std::nullopt;
  return transport::peer_credentials_of(sock);
}

proxy_sources::proxy_sources(const std::vector<std::string>& entries) {
  for (const auto& e : entries) {
    auto bad = [&] {
      return usage_error("bokbok: server_options::proxy_trusted_sources: \"" + e +
                         "\" is not an IP address or CIDR block");
    };
    auto slash = e.find('/');
    std::string host = e.substr(0, slash);
    block b;
    unsigned max_bits;
    in_addr a4;
    if (::inet_pton(AF_INET, host.c_str(), &a4) == 1) {
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_addr = a4;
      as_ipv6(reinterpret_cast<const sockaddr*>(&sa), b.addr);
      max_bits = 32;
    } else if (::inet_pton(AF_INET6, host.c_str(), b.addr.data()) == 1) {
      max_bits = 128;
    } else {
      throw bad();
    }
    unsigned bits = max_bits;
    if (slash != std::string::npos) {
      std::string n = e.substr(slash + 1);
      if (n.empty() || n.size() > 3 || n.find_first_not_of("0123456789") != std::string::npos)
        throw bad();
      bits = unsigned(std::stoul(n));
      if (bits > max_bits) throw bad();
    }
    b.bits = bits + (128 - max_bits);
    blocks_.push_back(b);
  }
}

bool proxy_sources::allows(const sockaddr* sa) const {
  if (blocks_.empty()) return true;
  std::array<std::uint8_t, 16> a;
  if (!as_ipv6(sa, a)) return false;
  for (const auto& b : blocks_) {
    bool in = true;
    for (unsigned bit = 0; bit < b.bits && in; ++bit) {
      std::uint8_t mask = std::uint8_t(0x80 >> (bit % 8));
      in = (a[bit / 8] & mask) == (b.addr[bit / 8] & mask);
    }
    if (in) return true;
  }
  return false;
}

using socket_watch = rpc::loop_watch<transport::connected_socket>;

struct proxy_reads::pending {
  socket_watch* watch = nullptr;
  std::vector<std::uint8_t> taken;  // the header's bytes read so far
  std::optional<io::timer_id> timer;
};

proxy_reads::proxy_reads(std::shared_ptr<io::loop> loop, std::chrono::milliseconds timeout,
                         done_fn done, failed_fn failed)
    : loop_(std::move(loop)), timeout_(timeout), done_(std::move(done)), failed_(std::move(failed)) {}

proxy_reads::~proxy_reads() { close_all(); }

void proxy_reads::start(transport::connected_socket sock) {
  auto* p = new pending;
  reads_.insert(p);
  int fd = sock.fd.get();
  p->watch = socket_watch::make(loop_, std::move(sock), fd,
                                [this, p](socket_watch&, int events) { ready(*p, events); });
  p->timer = loop_->add_timer(io::clock::now() + timeout_, [this, p] {
    std::string peer = p->watch->owned().peer;
    p->timer.reset();
    finish(*p);
    failed_(peer, "no whole PROXY protocol header within " + std::to_string(timeout_.count()) +
                      " ms");
  });
  p->watch->arm();
}

// Closes p's watch (and socket, unless taken) and forgets p.
void proxy_reads::finish(pending& p) {
  if (p.timer) loop_->cancel_timer(*p.timer);
  p.watch->close();
  reads_.erase(&p);
  delete &p;
}

void proxy_reads::close_all() {
  while (!reads_.empty()) finish(**reads_.begin());
}

void proxy_reads::ready(pending& p, int events) {
  transport::connected_socket& sock = p.watch->owned();
  auto fail = [&](const std::string& why) {
    std::string peer = sock.peer;
    finish(p);
    failed_(peer, "PROXY protocol: " + why);
  };
  if (events < 0) return fail(std::string("cannot wait for the header: ") + std::strerror(-events));
  std::vector<std::uint8_t> buf(p.taken);
  buf.resize(transport::max_proxy_header);
  ssize_t n = ::recv(sock.fd.get(), buf.data() + p.taken.size(), buf.size() - p.taken.size(),
                     MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return fail("the connection closed before a whole header");
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return p.watch->arm();
    return fail(std::string("recv: ") + std::strerror(errno));
  }
  buf.resize(p.taken.size() + std::size_t(n));
  auto h = transport::parse_proxy_header(buf);
  if (h.status == transport::proxy_header::state::invalid) return fail(h.error);
  // Take what belongs to the header: all of it when done, all peeked when not.
  std::size_t take = h.status == transport::proxy_header::state::done ? h.length - p.taken.size()
                                                                       : std::size_t(n);
  if (take > 0 && ::recv(sock.fd.get(), buf.data() + p.taken.size(), take, MSG_DONTWAIT) !=
                      ssize_t(take))
    return fail("the header could not be taken off the socket");
  p.taken.assign(buf.begin(), buf.begin() + p.taken.size() + take);
  if (h.status == transport::proxy_header::state::need_more) {
    if (p.taken.size() >= transport::max_proxy_header)
      return fail("no whole header within " + std::to_string(transport::max_proxy_header) + " bytes");
    return p.watch->arm();
  }
  // The socket goes to done_ once the watch has let the descriptor go (the loop forgets
  // the number before the connection registers it afresh).
  auto out = std::make_shared<transport::connected_socket>(std::move(sock));
  if (h.source) {
    out->peer = transport::sockaddr_name(reinterpret_cast<const sockaddr*>(&*h.source),
                                         h.source_len) +
                " via " + out->peer;
    out->proxied_source = *h.source;
    out->proxied_source_len = h.source_len;
  }
  if (p.timer) loop_->cancel_timer(*p.timer);
  p.watch->close([done = done_, out] { done(std::move(*out)); });
  reads_.erase(&p);
  delete &p;
}

}  // namespace bokbok::detail
