// bokbok::address (include/bokbok/address.hpp): what a program can learn from an
// address before opening it, through the public header only.
#include <doctest/doctest.h>

#include <string>

#include "bokbok/bokbok.hpp"

using bokbok::address;
using kind = bokbok::address::kind;

TEST_CASE("address::parse tells each kind of address apart and prints it canonically") {
  struct row {
    const char* text;
    kind type;
    const char* canonical;
  };
  const row rows[] = {
      {"fd:3,4", kind::fd, "fd:3,4"},
      {"stdio", kind::stdio, "stdio"},
      {"tcp:127.0.0.1:80", kind::tcp, "tcp:127.0.0.1:80"},
      {"tcp:[::1]:80", kind::tcp, "tcp:[::1]:80"},
      {"tcp:a.example:1,tcp:[::1]:2", kind::tcp, "tcp:a.example:1,[::1]:2"},
      {"unix:/run/app.sock", kind::unix_socket, "unix:/run/app.sock"},
      {"unix:@name", kind::unix_socket, "unix:@name"},
      {"inetd", kind::inetd, "inetd"},
      {"systemd", kind::systemd, "systemd"},
      {"exec:app   --stdio", kind::exec, "exec:app --stdio"},
      {"ssh:alice@host:2222 app --stdio", kind::ssh, "ssh:alice@host:2222 app --stdio"},
  };
  for (const row& r : rows) {
    CAPTURE(r.text);
    const address a = address::parse(r.text);
    CHECK(a.type() == r.type);
    CHECK(a.to_string() == r.canonical);
    CHECK(address::parse(a.to_string()).to_string() == r.canonical);
  }
}

TEST_CASE("address::parse throws address_error quoting a malformed address") {
  for (const char* bad : {"nope:1", "tcp:host", "fd:3", "unix:", "exec:", "exec:'open"}) {
    CAPTURE(bad);
    try {
      address::parse(bad);
      FAIL("parsed");
    } catch (const bokbok::address_error& e) {
      CHECK(std::string(e.what()).find(bad) != std::string::npos);
    }
  }
}

TEST_CASE("connectable() is false only for what names sockets to listen on") {
  for (const char* yes : {"fd:3,4", "stdio", "tcp:localhost:80", "unix:@x", "exec:app",
                          "ssh:host app"})
    CHECK_MESSAGE(address::parse(yes).connectable(), yes);
  for (const char* no : {"inetd", "systemd", "tcp:*:80"})
    CHECK_FALSE_MESSAGE(address::parse(no).connectable(), no);
}

TEST_CASE("reads_stdin() is true for stdio, inetd and an fd: address reading fd 0") {
  CHECK(address::parse("stdio").reads_stdin());
  CHECK(address::parse("inetd").reads_stdin());
  CHECK(address::parse("fd:0,1").reads_stdin());
  CHECK_FALSE(address::parse("fd:3,0").reads_stdin());
  CHECK_FALSE(address::parse("unix:@x").reads_stdin());
  CHECK_FALSE(address::parse("exec:cat").reads_stdin());
}

TEST_CASE("in_fd() and out_fd() give an fd: address's descriptors, -1 for other kinds") {
  const address a = address::parse("fd:5,7");
  CHECK(a.in_fd() == 5);
  CHECK(a.out_fd() == 7);
  const address same = address::parse("fd:6,6");
  CHECK(same.in_fd() == 6);
  CHECK(same.out_fd() == 6);
  CHECK(address::parse("stdio").in_fd() == -1);
  CHECK(address::parse("stdio").out_fd() == -1);
}

TEST_CASE("address::exec builds an address whose words parse back unchanged") {
  const address a = address::exec({"/opt/my app/bin", "it's", "$HOME", "a\"b"});
  CHECK(a.type() == kind::exec);
  const address back = address::parse(a.to_string());
  CHECK(back.to_string() == a.to_string());
  CHECK(a.to_string() == "exec:'/opt/my app/bin' 'it'\\''s' '$HOME' 'a\"b'");
  CHECK_THROWS_AS(address::exec({}), bokbok::address_error);
}
