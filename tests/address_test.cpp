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
