// PROXY protocol on server listeners (server_options::proxy_listen,
// proxy_trusted_sources): a real bokbok::server, real TCP sockets on loopback, and a
// bokbok client speaking over a socket that first wrote the header, as a balancer does.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "support/settle.hpp"

using namespace std::chrono_literals;
using bokbok::message;

namespace {

// What the server saw: peers opened, and failures reported.
struct seen {
  std::mutex mu;
  std::vector<std::string> opened, failed;
  std::vector<std::string> get_opened() {
    std::lock_guard l(mu);
    return opened;
  }
  std::vector<std::string> get_failed() {
    std::lock_guard l(mu);
    return failed;
  }
};

bokbok::server_options proxy_server(seen& s) {
  bokbok::server_options o;
  o.proxy_listen = {"tcp:127.0.0.1:0"};
  o.listen = {"tcp:127.0.0.1:0"};
  o.handshake_timeout = 2s;
  o.on_request = [](bokbok::connection& c, message) { return message{c.peer_address()}; };
  o.on_open = [&s](bokbok::connection& c) {
    std::lock_guard l(s.mu);
    s.opened.push_back(c.peer_address());
  };
  o.on_connection_error = [&s](const std::string& peer, const std::string& why) {
    std::lock_guard l(s.mu);
    s.failed.push_back(peer + ": " + why);
  };
  return o;
}

// A TCP socket connected to "tcp:127.0.0.1:PORT".
int tcp_to(const std::string& address) {
  auto port = std::stoi(address.substr(address.rfind(':') + 1));
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(std::uint16_t(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  return fd;
}

void send_all(int fd, const std::vector<std::uint8_t>& b) {
  REQUIRE(::send(fd, b.data(), b.size(), MSG_NOSIGNAL) == ssize_t(b.size()));
}

std::vector<std::uint8_t> v1(const std::string& line) { return {line.begin(), line.end()}; }

// A v2 PROXY header naming IPv4 client a.b.c.d:port, with one TLV to skip.
std::vector<std::uint8_t> v2_ipv4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d,
                                  std::uint16_t port) {
  std::vector<std::uint8_t> h = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49,
                                 0x54, 0x0A, 0x21, 0x11, 0x00, 12 + 5};
  h.insert(h.end(), {a, b, c, d, 127, 0, 0, 1, std::uint8_t(port >> 8), std::uint8_t(port), 0x1B,
                     0x58});
  h.insert(h.end(), {0x04, 0x00, 0x02, 'h', 'i'});
  return h;
}

// A client connection over a socket that has sent `header` first.
bokbok::connection connect_with(const std::string& address, const std::vector<std::uint8_t>& header) {
  int fd = tcp_to(address);
  send_all(fd, header);
  bokbok::options o;
  o.connect_timeout = 5s;
  return bokbok::connect("fd:" + std::to_string(fd) + "," + std::to_string(fd), o);
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : " | ") + x;
  return s;
}

bool any_contains(const std::vector<std::string>& v, const std::string& part) {
  for (const auto& x : v)
    if (x.find(part) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("behind a v2 or v1 PROXY header the server sees the client the header names, via the balancer") {
  seen s;
  bokbok::server srv(proxy_server(s));
  srv.start();
  std::string proxied = srv.local_addresses().at(0);

  auto c = connect_with(proxied, v2_ipv4(203, 0, 113, 7, 56324));
  auto answer = c.request({"who"});
  REQUIRE(answer.size() == 1);
  CHECK(answer[0].starts_with("tcp:203.0.113.7:56324 via tcp:127.0.0.1:"));
  c.close();

  auto c1 = connect_with(proxied, v1("PROXY TCP6 2001:db8::5 2001:db8::1 4000 7000\r\n"));
  answer = c1.request({"who"});
  REQUIRE(answer.size() == 1);
  CHECK(answer[0].starts_with("tcp:[2001:db8::5]:4000 via tcp:127.0.0.1:"));
  c1.close();

  // A health check's LOCAL header: the balancer's own connection.
  auto c2 = connect_with(proxied, {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49,
                                   0x54, 0x0A, 0x20, 0x00, 0x00, 0x00});
  answer = c2.request({"who"});
  REQUIRE(answer.size() == 1);
  CHECK(answer[0].starts_with("tcp:127.0.0.1:"));
  CHECK(answer[0].find("via") == std::string::npos);
  c2.close();
  auto opened = s.get_opened();
  CHECK(opened.size() == 3);
  CHECK_MESSAGE(s.get_failed().empty(), joined(s.get_failed()));
}

TEST_CASE("a PROXY listener refuses a client without a header, and a plain listener refuses a header") {
  seen s;
  bokbok::server srv(proxy_server(s));
  srv.start();
  std::string proxied = srv.local_addresses().at(0), plain = srv.local_addresses().at(1);
  bokbok::options o;
  o.connect_timeout = 5s;
  CHECK_THROWS_AS(bokbok::connect(proxied, o), bokbok::error);
  REQUIRE(bokbok_test::settles([&] { return any_contains(s.get_failed(), "not a PROXY protocol header"); }, 5s));
  // The client may finish its side of the handshake before the server has refused it;
  // either way it gets no answer, and the server reports a bad preamble.
  CHECK_THROWS_AS(connect_with(plain, v2_ipv4(203, 0, 113, 7, 1)).request({"who"}), bokbok::error);
  REQUIRE(bokbok_test::settles([&] { return s.get_failed().size() >= 2; }, 5s));
  // The plain listener saw the header as a bad preamble, not as a client's address.
  CHECK_FALSE(any_contains(s.get_opened(), "203.0.113.7"));
  CHECK(s.get_opened().empty());
  // Still served normally.
  auto c = bokbok::connect(plain, o);
  CHECK(c.request({"who"}).at(0).starts_with("tcp:127.0.0.1:"));
}

TEST_CASE("a header cut short or never finished is dropped within the handshake timeout") {
  seen s;
  auto o = proxy_server(s);
  o.handshake_timeout = 300ms;
  bokbok::server srv(o);
  srv.start();
  std::string proxied = srv.local_addresses().at(0);
  int fd = tcp_to(proxied);
  send_all(fd, v1("PROXY TCP4 203.0.113.7 127.0.0.1 5"));  // and nothing more
  REQUIRE(bokbok_test::settles([&] { return any_contains(s.get_failed(), "no whole PROXY protocol header"); }, 5s));
  char byte;
  CHECK(::recv(fd, &byte, 1, 0) <= 0);  // closed by the server
  ::close(fd);
  CHECK(s.get_opened().empty());
}

TEST_CASE("only trusted sources may send the header") {
  seen s;
  auto o = proxy_server(s);
  o.proxy_trusted_sources = {"10.0.0.0/8", "fd00::/8"};
  bokbok::server srv(o);
  srv.start();
  std::string proxied = srv.local_addresses().at(0);
  CHECK_THROWS_AS(connect_with(proxied, v2_ipv4(203, 0, 113, 7, 1)), bokbok::error);
  REQUIRE(bokbok_test::settles([&] { return any_contains(s.get_failed(), "proxy_trusted_sources"); }, 5s));
  CHECK(s.get_opened().empty());

  seen s2;
  auto o2 = proxy_server(s2);
  o2.proxy_trusted_sources = {"10.0.0.0/8", "127.0.0.0/8"};
  bokbok::server srv2(o2);
  srv2.start();
  auto c = connect_with(srv2.local_addresses().at(0), v2_ipv4(203, 0, 113, 7, 1));
  CHECK(c.request({"who"}).at(0).starts_with("tcp:203.0.113.7:1 via"));

  bokbok::server_options bad;
  bad.proxy_trusted_sources = {"10.0.0.0/33"};
  CHECK_THROWS_AS(bokbok::server{bad}, bokbok::usage_error);
}

TEST_CASE("per-source limits count the client the header names, not the balancer") {
  seen s;
  auto o = proxy_server(s);
  o.max_connections_per_source = 1;
  bokbok::server srv(o);
  srv.start();
  std::string proxied = srv.local_addresses().at(0);
  auto a = connect_with(proxied, v2_ipv4(203, 0, 113, 7, 1000));
  auto b = connect_with(proxied, v2_ipv4(203, 0, 113, 8, 1000));  // another client: served
  CHECK(b.request({"who"}).at(0).starts_with("tcp:203.0.113.8:1000"));
  // The same client again, through the same balancer: over its limit.
  CHECK_THROWS_AS(connect_with(proxied, v2_ipv4(203, 0, 113, 7, 1001)), bokbok::error);
  REQUIRE(bokbok_test::settles([&] { return any_contains(s.get_failed(), "203.0.113.7"); }, 5s));
}

TEST_CASE("on a unix: PROXY listener the balancer's credentials are not presented as the client's") {
  // authorize and the handler record the credentials they are given; the client's
  // socket is a real UNIX socket of this process, so SO_PEERCRED names this uid: the
  // balancer's, when a header names a client behind it.
  std::mutex mu;
  std::vector<std::optional<bokbok::connection::credentials>> authorized;
  bokbok::server_options o;
  const std::string name = "bokbok-proxy-creds-" + std::to_string(::getpid());
  o.proxy_listen = {"unix:@" + name};
  o.handshake_timeout = 2s;
  o.authorize = [&](const std::optional<bokbok::connection::credentials>& c) {
    std::lock_guard l(mu);
    authorized.push_back(c);
    return true;
  };
  o.on_request = [](bokbok::connection& c, message) {
    auto cr = c.peer_credentials();
    return message{cr ? "uid " + std::to_string(cr->uid) : "none"};
  };
  bokbok::server srv(o);
  srv.start();
  auto unix_with = [&](const std::vector<std::uint8_t>& header) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path + 1, name.data(), name.size());
    const auto len = socklen_t(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), len) == 0);
    send_all(fd, header);
    bokbok::options co;
    co.connect_timeout = 5s;
    return bokbok::connect("fd:" + std::to_string(fd) + "," + std::to_string(fd), co);
  };

  // A client behind the balancer: no credentials, for authorize or the connection.
  auto c = unix_with(v2_ipv4(203, 0, 113, 7, 56324));
  CHECK(c.request({"creds"}).at(0) == "none");
  c.close();
  // The balancer's own health check (LOCAL): its credentials are the peer's.
  auto h = unix_with({0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
                      0x20, 0x00, 0x00, 0x00});
  CHECK(h.request({"creds"}).at(0) == "uid " + std::to_string(::getuid()));
  h.close();
  std::lock_guard l(mu);
  REQUIRE(authorized.size() == 2);
  CHECK_FALSE(authorized[0].has_value());
  REQUIRE(authorized[1].has_value());
  CHECK(authorized[1]->uid == ::getuid());
}
