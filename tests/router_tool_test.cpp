// `bokbok list` and `bokbok describe`, the real binary (BOKBOK_TOOL), against the real
// demo server (BOKBOK_DEMO_SERVER) started by the tool itself over exec:. Every run is
// bounded in time and killed if it overstays.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "support/tool_run.hpp"
#include "support/child_process.hpp"
#include "support/demo_process.hpp"
#include "support/logged_process.hpp"

using namespace std::chrono_literals;

namespace {

using run_result = bokbok_test::tool_result;

// Runs `bokbok ARGS...` with `input` on its stdin; collects stdout and stderr.
run_result run_tool(const std::vector<std::string>& args, const std::string& input = "") {
  bokbok_test::tool_spawn s;
  s.args = args;
  s.input = input;
  s.limit = std::chrono::seconds(30);
  return bokbok_test::run_tool_process(s);
}

std::string demo_address() {
  return "exec:" + bokbok_test::built_program("BOKBOK_DEMO_SERVER") + " --stdio";
}

}  // namespace

TEST_CASE("bokbok list prints the demo server's methods with their descriptions") {
  auto r = run_tool({"list", demo_address()});
  CHECK(r.status == 0);
  CHECK(r.err.find("bokbok list:") == std::string::npos);  // the server logs there too
  CHECK(r.out.starts_with("ping              answers pong TEXT\n"
                          "echo              answers its argument fields, byte for byte\n"
                          "add               answers the sum of two integers\n"));
  CHECK(r.out.find("\nshutdown-server!  answers ok, then the server stops") != std::string::npos);
  CHECK(r.out.ends_with("\nbokbok.describe   a method's description, parameters, the protocol "
                        "version and features\n"));
}

TEST_CASE("bokbok list --json prints one JSON array of name and description objects") {
  auto r = run_tool({"list", "--json", demo_address()});
  CHECK(r.status == 0);
  CHECK(r.out.starts_with("[{\"name\": \"ping\", \"description\": \"answers pong TEXT\"}, "
                          "{\"name\": \"echo\", "));
  CHECK(r.out.ends_with("{\"name\": \"bokbok.list\", \"description\": \"the methods: name and "
                        "description of each\"}, {\"name\": \"bokbok.describe\", "
                        "\"description\": \"a method's description, parameters, the protocol "
                        "version and features\"}]\n"));
}

TEST_CASE("bokbok describe prints a method's signature, description, protocol and features") {
  auto r = run_tool({"describe", demo_address(), "add"});
  CHECK(r.status == 0);
  CHECK(r.out ==
        "add a:integer b:integer\n  answers the sum of two integers\n"
        "protocol 1, features deadline notify stream\n");
  auto echo = run_tool({"describe", "--json", demo_address(), "echo"});
  CHECK(echo.status == 0);
  CHECK(echo.out ==
        "{\"name\": \"echo\", \"description\": \"answers its argument fields, byte for byte\", "
        "\"parameters\": [{\"name\": \"field\", \"type\": \"list<bytes>\"}], \"protocol\": 1, "
        "\"features\": [\"deadline\", \"notify\", \"stream\"]}\n");
}

TEST_CASE("bokbok describe shows a stream method's kind, plain and --json") {
  auto r = run_tool({"describe", demo_address(), "count"});
  CHECK(r.status == 0);
  CHECK(r.out.starts_with("count n:integer stream:out\n"));
  auto j = run_tool({"describe", "--json", demo_address(), "tail"});
  CHECK(j.status == 0);
  CHECK(j.out.ends_with("\"features\": [\"deadline\", \"notify\", \"stream\"], \"stream\": \"both\"}\n"));
}

TEST_CASE("bokbok describe of an unknown method exits 1 with no_such_method") {
  auto r = run_tool({"describe", demo_address(), "nope"});
  CHECK(r.status == 1);
  CHECK(r.out == "");
  CHECK(r.err.find("\nbokbok describe: remote error (no_such_method): unknown method: 'nope'\n") !=
        std::string::npos);
}

TEST_CASE("bokbok list and describe refuse bad usage with exit status 2") {
  CHECK(run_tool({"list"}).status == 2);
  CHECK(run_tool({"describe", demo_address()}).status == 2);
  CHECK(run_tool({"list", "--bogus", demo_address()}).status == 2);
  CHECK(run_tool({"list", "nonsense"}).status == 2);
}

TEST_CASE("the demo server's arity and number errors are bad_arguments through bokbok call") {
  auto r = run_tool({"call", demo_address(), "sleep", "soon"});
  CHECK(r.status == 1);
  CHECK(r.err.find(
            "bokbok call: remote error (bad_arguments): sleep: argument 1 (ms) must be an "
            "integer (decimal, within 64-bit signed), got 'soon'\n") != std::string::npos);
  auto range = run_tool({"call", demo_address(), "sleep", "60001"});
  CHECK(range.err.find("sleep: 60001 is out of range (0 to 60000)") != std::string::npos);
  auto sum = run_tool({"call", demo_address(), "add", "2", "-5"});
  CHECK(sum.status == 0);
  CHECK(sum.out == "-3\n");
}

TEST_CASE("bokbok call -d sends JSON arguments typed by the server's description") {
  auto sum = run_tool({"call", "-d", "[2, -5]", demo_address(), "add"});
  CHECK(sum.status == 0);
  CHECK(sum.out == "-3\n");
  // A string where the signature wants an integer is said before anything is called.
  auto wrong = run_tool({"call", "-d", "[2, \"three\"]", demo_address(), "add"});
  CHECK(wrong.status == 2);
  CHECK(wrong.err.find("add: argument 2 (b) is integer, -d gave the string \"three\"") !=
        std::string::npos);
  auto count = run_tool({"call", "-d", "[2]", demo_address(), "add"});
  CHECK(count.status == 2);
  CHECK(count.err.find("add takes 2 arguments (a: integer, b: integer), -d gave 1") !=
        std::string::npos);
  // Binary fields as base64, strings with escapes, a list parameter's elements in a row.
  auto echo = run_tool({"call", "--json", "-d", R"(["a\nb", {"base64": "AP8="}, "\u00e9"])",
                        demo_address(), "echo"});
  CHECK(echo.status == 0);
  CHECK(echo.out == "[\"a\\nb\", {\"base64\": \"AP8=\"}, \"\xc3\xa9\"]\n");
  auto bad = run_tool({"call", "-d", "[1.5]", demo_address(), "echo"});
  CHECK(bad.status == 2);
  CHECK(bad.err.find("only integers") != std::string::npos);
}

TEST_CASE("bokbok call -d reads @FILE and @- (standard input)") {
  char path[] = "/tmp/bokbok-router-tool-XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  std::string json = "[40, 2]";
  REQUIRE(::write(fd, json.data(), json.size()) == ssize_t(json.size()));
  ::close(fd);
  auto from_file = run_tool({"call", "-d", std::string("@") + path, demo_address(), "add"});
  ::unlink(path);
  CHECK(from_file.status == 0);
  CHECK(from_file.out == "42\n");
  auto from_stdin = run_tool({"call", "-d", "@-", demo_address(), "add"}, "[\"7\", 8]");
  CHECK(from_stdin.status == 0);
  CHECK(from_stdin.out == "15\n");
  auto missing = run_tool({"call", "-d", "@/nonexistent/args.json", demo_address(), "add"});
  CHECK(missing.status == 2);
  auto no_method = run_tool({"call", "-d", "[1]", "--stdin-field", demo_address()}, "x");
  CHECK(no_method.status == 2);
  CHECK(no_method.err.find("-d needs a FIELD naming the method") != std::string::npos);
}

TEST_CASE("bokbok list, describe and call -d work over a UNIX socket as over exec:") {
  bokbok_test::listening_demo server({});
  auto listed = run_tool({"list", server.address});
  CHECK(listed.status == 0);
  CHECK(listed.out.starts_with("ping              answers pong TEXT\n"));
  auto described = run_tool({"describe", "--json", server.address, "sleep"});
  CHECK(described.status == 0);
  CHECK(described.out ==
        "{\"name\": \"sleep\", \"description\": \"answers slept after MS milliseconds (at most "
        "60000)\", \"parameters\": [{\"name\": \"ms\", \"type\": \"integer\"}], \"protocol\": 1, "
        "\"features\": [\"deadline\", \"notify\", \"stream\"]}\n");
  auto sum = run_tool({"call", "-d", "[20, 22]", server.address, "add"});
  CHECK(sum.status == 0);
  CHECK(sum.out == "42\n");
}

TEST_CASE("bokbok list, describe and typed calls work over TCP on loopback") {
  bokbok_test::temp_dir dir("router-tool-tcp");
  const std::string address = "tcp:127.0.0.1:" + std::to_string(bokbok_test::free_port());
  bokbok_test::logged_process server(
      {bokbok_test::built_program("BOKBOK_DEMO_SERVER"), "--listen", address},
      (dir.path / "server.log").string());
  REQUIRE(server.says("listening on " + address));
  auto listed = run_tool({"list", address});
  CHECK(listed.status == 0);
  CHECK(listed.out.find("\nadd ") != std::string::npos);
  auto described = run_tool({"describe", address, "add"});
  CHECK(described.status == 0);
  CHECK(described.out.starts_with("add a:integer b:integer\n"));
  auto sum = run_tool({"call", address, "add", "2", "3"});
  CHECK(sum.status == 0);
  CHECK(sum.out == "5\n");
  auto bad = run_tool({"call", "--json", address, "add", "2", "three"});
  CHECK(bad.status == 1);
  CHECK(bad.out.starts_with(R"({"error": {"code": 10, "name": "bad_arguments", "message": )"));
}

TEST_CASE("bokbok list and describe authenticate with --user and --key-file in key mode") {
  bokbok_test::temp_dir dir("router-keys");
  std::string key_file = (dir.path / "alice.key").string();
  auto made = run_tool({"keygen", "--users-line", "alice", key_file});
  REQUIRE(made.status == 0);
  std::string users = (dir.path / "users").string();
  std::ofstream(users) << made.out;
  ::chmod(users.c_str(), 0600);
  bokbok_test::listening_demo server({"--users", users});
  auto listed = run_tool({"list", "--user", "alice", "--key-file", key_file, server.address});
  CHECK(listed.status == 0);
  CHECK(listed.out.starts_with("ping              answers pong TEXT\n"));
  auto described =
      run_tool({"describe", "--user", "alice", "--key-file", key_file, server.address, "whoami"});
  CHECK(described.status == 0);
  CHECK(described.out.starts_with("whoami\n  answers user NAME"));
  auto half = run_tool({"list", "--user", "alice", server.address});
  CHECK(half.status == 2);
}
