// The frame trace and `bokbok call`'s notifications and JSON errors (issue 14): the
// library's options::trace on a real socketpair (plain and key mode), and the real
// `bokbok` tool (BOKBOK_TOOL) against the real demo server (BOKBOK_DEMO_SERVER), which it
// starts itself through an exec: address. Every child is bounded in time.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <bokbok/bokbok.hpp>

#include "support/tool_run.hpp"
#include "support/child_process.hpp"
#include "support/key_users.hpp"
#include "support/settle.hpp"

using namespace std::chrono_literals;

namespace {

using tool_run = bokbok_test::tool_result;

// Runs `bokbok ARGS...` with `env` ("NAME=VALUE") added to its environment and empty
// stdin; collects stdout and stderr; kills it if it takes over 20 s.
tool_run run_tool(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  bokbok_test::tool_spawn s;
  s.args = args;
  s.env = env;
  s.drop_env = {"BOKBOK_TRACE="};  // the tests say when they trace
  return bokbok_test::run_tool_process(s);
}

std::string demo_address() {
  return "exec:" + bokbok_test::built_program("BOKBOK_DEMO_SERVER") + " --stdio";
}

bool has_line(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

// The lines of `text` that start with `prefix`, without it.
std::vector<std::string> lines_with(const std::string& text, const std::string& prefix) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    if (line.starts_with(prefix)) out.push_back(line.substr(prefix.size()));
    pos = end + 1;
  }
  return out;
}

// Collects a connection's trace lines.
struct trace_log {
  std::mutex mu;
  std::vector<std::string> lines;
  std::function<void(std::string_view)> sink() {
    return [this](std::string_view line) {
      std::lock_guard lock(mu);
      lines.emplace_back(line);
    };
  }
  bool has(const std::string& line) {
    std::lock_guard lock(mu);
    for (auto& l : lines)
      if (l == line) return true;
    return false;
  }
};

}  // namespace

TEST_CASE("bokbok call --trace decodes the whole exchange, both ways, on stderr") {
  for (std::string flag : {"--trace", "-v"}) {
    CAPTURE(flag);
    tool_run r = run_tool({"call", flag, demo_address(), "echo", "hi", "there"});
    CHECK(r.status == 0);
    CHECK(r.out == "hi\nthere\n");
    std::vector<std::string> trace = lines_with(r.err, "bokbok call: ");
    // The two hellos cross: each side sends its own without waiting for the other's.
    if (trace.size() >= 2 && trace[0].starts_with("<")) std::swap(trace[0], trace[1]);
    const std::vector<std::string> expected = {
        "> hello id=0 flags=- max_message_size=67108864 heartbeat_ms=30000 "
        "max_concurrent_calls=0 features=0x7",
        "< hello id=0 flags=- max_message_size=67108864 heartbeat_ms=30000 "
        "max_concurrent_calls=0 features=0x7",
        R"(> request id=1 flags=- [3] "echo" "hi" "there")",
        R"(< response id=1 flags=- [2] "hi" "there")",
        R"(> goaway id=0 flags=- code=shutting_down(7) "it is closing the connection")",
        "> close id=0 flags=-",
        "< close id=0 flags=-",
    };
    CHECK(trace == expected);
  }
}

TEST_CASE("bokbok call traces nothing without --trace") {
  tool_run r = run_tool({"call", demo_address(), "echo", "--trace"});
  CHECK(r.status == 0);
  CHECK(r.out == "--trace\n");  // after the first FIELD it is data
  CHECK(lines_with(r.err, "bokbok call: ").empty());
}

TEST_CASE("BOKBOK_TRACE=1 traces a library user's connections on stderr, named by peer") {
  // The demo server inherits the variable: its own connection (to "stdio") is traced too.
  tool_run r = run_tool({"call", demo_address(), "ping", "x"}, {"BOKBOK_TRACE=1"});
  CHECK(r.status == 0);
  CHECK(r.out == "pong\nx\n");
  CHECK(has_line(r.err, R"(bokbok trace stdio: < request id=1 flags=- [2] "ping" "x")"));
  CHECK(has_line(r.err, R"(bokbok trace stdio: > response id=1 flags=- [2] "pong" "x")"));
  CHECK(r.err.find(R"(--stdio (pid )") != std::string::npos);
  CHECK(lines_with(r.err, "bokbok call: ").empty());
  tool_run off = run_tool({"call", demo_address(), "ping", "x"}, {"BOKBOK_TRACE=0"});
  CHECK(off.status == 0);
  CHECK(off.err.find("bokbok trace") == std::string::npos);
}

TEST_CASE("options::trace shows key mode's frames in plain, both sides") {
  bokbok_test::alice_key k;
  trace_log client_log, server_log;
  bokbok::options client, server;
  client.keys.user = "alice";
  client.keys.key = k.alice;
  client.trace = client_log.sink();
  server.keys.key_for_user = k.lookup();
  server.trace = server_log.sink();
  server.on_request = [](bokbok::connection&, bokbok::message m) { return m; };
  auto [a, b] = bokbok::connect_socketpair(client, server);
  CHECK(a.request({"echo", std::string("\x00\x01", 2)}) ==
        bokbok::message{"echo", std::string("\x00\x01", 2)});
  // The initiator's login ping (§9.6), then the call, decoded on both sides.
  CHECK(bokbok_test::settles([&] {
    return client_log.has(R"(> ping id=0 flags=- "")") &&
           client_log.has(R"(> request id=1 flags=- [2] "echo" "\x00\x01")") &&
           client_log.has(R"(< response id=1 flags=- [2] "echo" "\x00\x01")") &&
           server_log.has(R"(< request id=1 flags=- [2] "echo" "\x00\x01")") &&
           server_log.has(R"(> response id=1 flags=- [2] "echo" "\x00\x01")");
  }));
  // Key mode sends no hello frame: its settings travel in the handshake.
  CHECK_FALSE(client_log.has("> hello id=0 flags=- max_message_size=67108864 heartbeat_ms=30000 "
                             "max_concurrent_calls=0 features=0x3"));
  a.close();
  a.wait_closed();
  b.wait_closed();
}

TEST_CASE("server_options::trace traces the frames of the server's connections") {
  trace_log server_log;
  bokbok::server_options so;
  const std::string name = "unix:@bokbok-cli-trace-" + std::to_string(::getpid());
  so.listen = {name};
  so.on_request = [](bokbok::connection&, bokbok::message m) { return m; };
  so.trace = server_log.sink();
  bokbok::server srv(so);
  srv.start();
  {
    bokbok::connection c = bokbok::connect(name);
    CHECK(c.request({"a", "b"}) == bokbok::message{"a", "b"});
    c.close();
    c.wait_closed();
  }
  CHECK(bokbok_test::settles([&] {
    return server_log.has(R"(< request id=1 flags=- [2] "a" "b")") &&
           server_log.has(R"(> response id=1 flags=- [2] "a" "b")") &&
           server_log.has("< close id=0 flags=-");
  }));
  srv.stop();
  srv.wait();
}

TEST_CASE("bokbok bridge --trace shows the frames of its key-mode side in plain") {
  char dir_template[] = "/tmp/bokbok-cli-trace-XXXXXX";
  REQUIRE(::mkdtemp(dir_template) != nullptr);
  const std::string dir = dir_template, key_file = dir + "/alice.key", users = dir + "/users";
  tool_run made = run_tool({"keygen", "--users-line", "alice", key_file});
  REQUIRE(made.status == 0);
  {
    int fd = ::open(users.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, made.out.data(), made.out.size()) == ssize_t(made.out.size()));
    ::close(fd);
  }
  // The client speaks key mode to the bridge (side A), which speaks plain to the server.
  const std::string bridge = "exec:" + bokbok_test::built_program("BOKBOK_TOOL") +
                             " bridge --trace --users " + users + " stdio '" + demo_address() +
                             "'";
  tool_run r = run_tool({"call", "--user", "alice", "--key-file", key_file, bridge, "ping", "x"});
  CHECK(r.status == 0);
  CHECK(r.out == "pong\nx\n");
  CHECK(has_line(r.err, R"(bokbok bridge: A: < request id=1 flags=- [2] "ping" "x")"));
  CHECK(has_line(r.err, R"(bokbok bridge: A: > response id=1 flags=- [2] "pong" "x")"));
  CHECK(has_line(r.err, R"(bokbok bridge: B: > request id=1 flags=- [2] "ping" "x")"));
  CHECK(has_line(r.err, R"(bokbok bridge: B: < response id=1 flags=- [2] "pong" "x")"));
  ::unlink(key_file.c_str());
  ::unlink(users.c_str());
  ::rmdir(dir.c_str());
  // Without keys the bridge relays bytes: there are no frames to show.
  CHECK(run_tool({"bridge", "--trace", "stdio", "stdio"}).status == 2);
}

TEST_CASE("bokbok call --json prints a remote error as JSON and still exits 1") {
  tool_run r = run_tool({"call", "--json", demo_address(), "nosuch", "a"});
  CHECK(r.status == 1);
  CHECK(r.out ==
        R"({"error": {"code": 2, "name": "no_such_method", "message": "unknown method: 'nosuch'"}})"
        "\n");
  CHECK(has_line(r.err, "bokbok call: remote error (no_such_method): unknown method: 'nosuch'"));
  tool_run plain = run_tool({"call", demo_address(), "nosuch"});
  CHECK(plain.status == 1);
  CHECK(plain.out.empty());
}

TEST_CASE("bokbok call --json prints a failure on this side as JSON, code null, and its exit status") {
  tool_run gone = run_tool({"call", "--json", "unix:/nonexistent/bokbok-cli-test", "ping"});
  CHECK(gone.status == 3);
  CHECK_MESSAGE(gone.out.starts_with(R"({"error": {"code": null, "name": "connection_failed", "message": ")"),
                gone.out);
  CHECK_MESSAGE(gone.out.find("No such file or directory") != std::string::npos, gone.out);
  CHECK(gone.out.ends_with("\"}}\n"));
  CHECK(std::count(gone.out.begin(), gone.out.end(), '\n') == 1);
  tool_run slow = run_tool({"call", "--json", "--timeout", "0.3", demo_address(), "sleep", "5000"});
  CHECK(slow.status == 5);
  CHECK(slow.out == R"({"error": {"code": null, "name": "timed_out", "message": "timed out after 0.3 s"}})"
                    "\n");
  tool_run plain = run_tool({"call", "unix:/nonexistent/bokbok-cli-test", "ping"});
  CHECK(plain.status == 3);
  CHECK(plain.out.empty());
}

TEST_CASE("bokbok call --json prints notifications as JSON lines before the response") {
  tool_run r = run_tool({"call", "--json", demo_address(), "wait", "10"});
  CHECK(r.status == 0);
  CHECK(r.out == "{\"notification\": [\"note\", \"waiting\"]}\n[\"waited\"]\n");
  tool_run n = run_tool({"call", "--json", demo_address(), "notify-me", "caf\xc3\xa9\n"});
  CHECK(n.status == 0);
  CHECK(n.out == "{\"notification\": [\"note\", \"caf\xc3\xa9\\n\"]}\n[\"ok\"]\n");
}

TEST_CASE("bokbok call prints notifications on stderr in plain mode") {
  tool_run r = run_tool({"call", demo_address(), "notify-me", "hello\nthere"});
  CHECK(r.status == 0);
  CHECK(r.out == "ok\n");
  CHECK(has_line(r.err, R"(bokbok call: notification: note hello\x0athere)"));
}
