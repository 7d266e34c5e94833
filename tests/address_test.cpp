#include <doctest/doctest.h>

#include "bokbok/error.hpp"
#include "transport/address.hpp"

using namespace bokbok::transport;

TEST_CASE("fd pairs and stdio parse and print back the same") {
  auto a = parse_address("fd:3,4");
  REQUIRE(std::holds_alternative<fd_pair_address>(a));
  CHECK(std::get<fd_pair_address>(a).in_fd == 3);
  CHECK(std::get<fd_pair_address>(a).out_fd == 4);
  CHECK(to_string(a) == "fd:3,4");
  CHECK(std::holds_alternative<stdio_address>(parse_address("stdio")));
  CHECK(to_string(parse_address("fd:0,0")) == "fd:0,0");
}

TEST_CASE("a malformed address is refused with a message that quotes it") {
  for (const char* bad : {"", "fd:", "fd:3", "fd:3,", "fd:-1,2", "fd:a,b", "fd:3,4,5",
                          "fd:99999999999,1", "stdio2", "nope:1"}) {
    CAPTURE(bad);
    try {
      parse_address(bad);
      FAIL("accepted");
    } catch (const bokbok::address_error& e) {
      CHECK(std::string(e.what()).find(std::string("\"") + bad + "\"") != std::string::npos);
    }
  }
}

namespace {

// The message of the address_error that parsing `text` throws ("" if it parses).
std::string error_of(const std::string& text) {
  try {
    parse_address(text);
  } catch (const bokbok::address_error& e) {
    return e.what();
  }
  return {};
}

}  // namespace

TEST_CASE("every address form parses and prints back canonically") {
  for (const char* text : {"tcp:localhost:80", "tcp:127.0.0.1:7000", "tcp:[::1]:7000", "tcp:[::]:0",
                           "tcp:*:7000", "tcp:example.org:http", "tcp:my-host_1.lan:65535",
                           "tcp:[fe80::1%lo]:22", "unix:/run/app.sock", "unix:relative/app.sock",
                           "unix:@bokbok-test", "fd:3,4", "fd:5,5", "stdio", "inetd", "systemd"}) {
    std::string shown = text;
    CAPTURE(shown);
    CHECK(to_string(parse_address(text)) == text);
  }
}

TEST_CASE("tcp addresses keep the host without brackets and the port as written") {
  auto v6 = std::get<tcp_address>(parse_address("tcp:[::1]:7000"));
  CHECK(v6.host == "::1");
  CHECK(v6.port == "7000");
  auto any = std::get<tcp_address>(parse_address("tcp:*:0"));
  CHECK(any.host == "");
  CHECK(any.port == "0");
  auto named = std::get<tcp_address>(parse_address("tcp:localhost:ssh"));
  CHECK(named.host == "localhost");
  CHECK(named.port == "ssh");
  CHECK(std::get<tcp_address>(parse_address("tcp:[::]:80")).host == "::");
}

TEST_CASE("unix addresses tell a path from an abstract name") {
  auto path = std::get<unix_address>(parse_address("unix:/tmp/a.sock"));
  CHECK(path.path == "/tmp/a.sock");
  CHECK_FALSE(path.abstract);
  auto abstract = std::get<unix_address>(parse_address("unix:@name"));
  CHECK(abstract.path == "name");
  CHECK(abstract.abstract);
  CHECK(to_string(unix_address{"x", true}) == "unix:@x");
  CHECK(to_string(tcp_address{"", "9", {}}) == "tcp:*:9");
  CHECK(to_string(tcp_address{"::1", "9", {}}) == "tcp:[::1]:9");
}

TEST_CASE("each malformed socket address is refused with a message that quotes it and says why") {
  struct bad_case {
    const char* text;
    const char* says;
  };
  for (auto [text, says] : std::initializer_list<bad_case>{
           {"tcp:host", "the port is missing"},
           {"tcp:host:", "the port is missing"},
           {"tcp:", "the port is missing"},
           {"tcp::80", "the host is empty"},
           {"tcp:host:65536", "out of range"},
           {"tcp:host:99999999999", "out of range"},
           {"tcp:host:-1", "neither a port number nor a service name"},
           {"tcp:[::1:80", "not closed"},
           {"tcp:[::1]", "the port is missing"},
           {"tcp:[::1]80", "the port is missing"},
           {"tcp:[]:80", "empty"},
           {"tcp:[localhost]:80", "not an IPv6 address"},
           {"tcp:::1:80", "must be written in brackets"},
           {"tcp:fe80::1:80", "must be written in brackets"},
           {"tcp:bad host:80", "not a host name"},
           {"unix:", "the path is empty"},
           {"unix:@", "the abstract name after '@' is empty"},
           {"unix:/a-path-too-long-for-sockaddr_un/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.sock",
            "at most 107"},
           {"tcp:host:+80", "neither a port number nor a service name"},
           {"tcp:host:8 0", "neither a port number nor a service name"},
           {"udp:host:80", "unknown scheme \"udp:\""},
           {"http://x", "unknown scheme \"http:\""},
           {"tcp", "one of tcp:HOST:PORT"},
       }) {
    std::string shown = text;
    CAPTURE(shown);
    std::string m = error_of(text);
    CAPTURE(m);
    CHECK(m.find(std::string("bad address \"") + text + "\": expected ") != std::string::npos);
    CHECK(m.find(says) != std::string::npos);
  }
  CHECK(error_of("tcp:host")
            .find("expected tcp:HOST:PORT (HOST a name, an IPv4 address, "
                  "[IPv6] or *; PORT a number or service name)") != std::string::npos);
  CHECK(error_of("nope:1").find("unix:PATH, unix:@NAME, fd:R,W, stdio, inetd, systemd, exec:COMMAND or ssh:") !=
        std::string::npos);
}

TEST_CASE("port 0 and port 65535 are in range") {
  CHECK(error_of("tcp:127.0.0.1:0").empty());
  CHECK(error_of("tcp:127.0.0.1:65535").empty());
  CHECK(error_of("tcp:127.0.0.1:1").empty());
}

TEST_CASE("a tcp: list of addresses parses in order and prints back canonically") {
  auto a = std::get<tcp_address>(parse_address("tcp:10.0.0.1:7000,10.0.0.2:7000,[::1]:7001"));
  CHECK(a.host == "10.0.0.1");
  CHECK(a.port == "7000");
  REQUIRE(a.more.size() == 2);
  CHECK(a.more[0].host == "10.0.0.2");
  CHECK(a.more[0].port == "7000");
  CHECK(a.more[1].host == "::1");
  CHECK(a.more[1].port == "7001");
  CHECK(to_string(tcp_address(a)) == "tcp:10.0.0.1:7000,10.0.0.2:7000,[::1]:7001");
  // Entries may be written as full tcp: addresses; the canonical form drops the repeats.
  CHECK(to_string(parse_address("tcp:a.example:1,tcp:b.example:http")) ==
        "tcp:a.example:1,b.example:http");
  CHECK(to_string(parse_address("tcp:bokbok-headless.default.svc:7000")) ==
        "tcp:bokbok-headless.default.svc:7000");
  // The fd: pair keeps its comma: it is no list.
  CHECK(std::holds_alternative<fd_pair_address>(parse_address("fd:3,4")));
}

TEST_CASE("a malformed tcp: list is refused with a message that quotes the whole list and says which entry") {
  struct bad_list {
    const char* text;
    const char* why;
  };
  for (const bad_list& b : {bad_list{"tcp:a:1,", "entry 2 is empty"},
                           bad_list{"tcp:a:1,,b:2", "entry 2 is empty"},
                           bad_list{"tcp:,a:1", "entry 1 is empty"},
                           bad_list{"tcp:a:1,b", "entry 2 \"b\" is not HOST:PORT: the port is missing"},
                           bad_list{"tcp:a:1,::1:2", "entry 2 \"::1:2\" is not HOST:PORT: an IPv6 address must be written in brackets"},
                           bad_list{"tcp:a:1,b:99999", "entry 2 \"b:99999\" is not HOST:PORT: port 99999 is out of range"},
                           bad_list{"tcp:a:1,*:2", "entry 2 is *: every address is for listening"},
                           bad_list{"tcp:a:1,unix:/x", "entry 2 \"unix:/x\" is not HOST:PORT"}}) {
    // (no structured binding: clang cannot capture one in CAPTURE's lambda)
    const std::string text = b.text, why = b.why;
    CAPTURE(text);
    std::string m = error_of(text);
    CHECK(m.find(std::string("bad address \"") + text + "\"") != std::string::npos);
    CHECK(m.find("expected tcp:HOST:PORT,HOST:PORT,...") != std::string::npos);
    CHECK(m.find(why) != std::string::npos);
  }
  std::string many = "tcp:h:1";
  for (std::size_t i = 1; i < max_address_list; ++i) many += ",h:" + std::to_string(i + 1);
  CHECK(std::get<tcp_address>(parse_address(many)).more.size() == max_address_list - 1);
  CHECK(error_of(many + ",h:9").find("at most 64 addresses") != std::string::npos);
}
