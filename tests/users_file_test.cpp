// Users files (src/crypto/users_file.hpp): parsing, errors with line numbers and no key
// material, permissions, and the lookup callback.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "bokbok/key.hpp"
#include "crypto/users_file.hpp"

using namespace bokbok::crypto;

namespace {

const std::string hex_a = "1111111111111111111111111111111111111111111111111111111111111111";
const std::string hex_b = "abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd";

std::string parse_error(const std::string& text) {
  try {
    parse_users_file(text, "users");
  } catch (const bokbok::key_error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("a users file with comments and blank lines maps each user to a key") {
  const auto t = parse_users_file("# the users\n\nalice " + hex_a + "\n  \t\n\tbob\t" + hex_b +
                                      "  \r\n   # indented comment\n",
                                  "users");
  CHECK(t.size() == 2);
  REQUIRE(t.find("alice"));
  CHECK(to_hex(t.find("alice")->bytes()) == hex_a);
  CHECK(to_hex(t.find("bob")->bytes()) == hex_b);
  CHECK_FALSE(t.find("carol"));
  CHECK_FALSE(t.find("alic"));
  CHECK(parse_users_file("", "users").size() == 0);
  CHECK(parse_users_file("dave " + hex_a, "users").size() == 1);  // no final newline
}

TEST_CASE("a user listed twice fails with both line numbers") {
  CHECK(parse_error("alice " + hex_a + "\n# x\nbob " + hex_b + "\nalice " + hex_b + "\n") ==
        "users:4: user \"alice\" is listed twice (also on line 1)");
}

TEST_CASE("bad lines fail with their line number and never show the key") {
  CHECK(parse_error("\nalice\n") == "users:2: expected \"USER KEYHEX\" but the line has no key");
  CHECK(parse_error("alice " + hex_a.substr(0, 60) + "\n") ==
        "users:1: the key of user \"alice\" is not 64 hex digits");
  CHECK(parse_error("alice " + hex_a.substr(0, 63) + "z\n") ==
        "users:1: the key of user \"alice\" is not 64 hex digits");
  CHECK(parse_error("# ok\nalice " + hex_a + " extra\n") ==
        "users:2: expected \"USER KEYHEX\" but the line has more fields");
  CHECK(parse_error(std::string(256, 'u') + " " + hex_a + "\n") ==
        "users:1: user name of 256 bytes (at most 255)");
  for (const auto& text : {"alice " + hex_a + "0\n", "alice " + hex_b + " " + hex_a + "\n"}) {
    const std::string e = parse_error(text);
    CHECK(e.find(hex_a.substr(0, 8)) == std::string::npos);
    CHECK(e.find(hex_b.substr(0, 8)) == std::string::npos);
  }
}

TEST_CASE("a users file readable by group or others is refused, a private one loads") {
  std::string dir = std::filesystem::temp_directory_path().string() + "/bokbok-users-XXXXXX";
  REQUIRE(::mkdtemp(dir.data()) != nullptr);
  const std::string path = dir + "/users";
  {
    std::ofstream out(path);
    out << "alice " << hex_a << "\n";
  }
  REQUIRE(::chmod(path.c_str(), 0644) == 0);
  CHECK_THROWS_WITH_AS(load_users_file(path),
                       (path + ": permissions 0644 are too open: a users file must not be "
                               "accessible by group or others; run: chmod 600 " + path)
                           .c_str(),
                       bokbok::key_error);
  REQUIRE(::chmod(path.c_str(), 0600) == 0);
  const auto table = std::make_shared<const users_table>(load_users_file(path));
  const key_lookup lookup = lookup_in(table);
  REQUIRE(lookup("alice"));
  CHECK(to_hex(lookup("alice")->bytes()) == hex_a);
  CHECK_FALSE(lookup("bob"));
  std::filesystem::remove_all(dir);
}
