// `bokbok call`, the real binary (BOKBOK_TOOL), against bokbok-demo-server --stdio
// (BOKBOK_DEMO_SERVER) spawned as a child over a pipe pair. The `bokbok call` child
// inherits our ends of the pipes and reaches the server with the address fd:R,W.
// Every child is bounded in time and killed if it overstays.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <bokbok/bokbok.hpp>
#include <sys/socket.h>

#include <filesystem>
#include <future>
#include <mutex>

#include "support/tool_run.hpp"
#include "support/child_process.hpp"
#include "support/relay.hpp"
#include "support/settle.hpp"
#include "wire/frame.hpp"

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr auto run_limit = 20s;  // no single `bokbok call` may take longer

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// The demo server on the far end of two pipes; `read_fd`/`write_fd` are our ends, for a
// `bokbok call` child to inherit.
struct demo_server {
  pid_t pid = -1;
  int read_fd = -1;   // the server's stdout
  int write_fd = -1;  // the server's stdin

  demo_server() {
    int to_server[2], from_server[2];
    REQUIRE(::pipe2(to_server, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(from_server, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to_server[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from_server[1], 1);
    std::string path = bokbok_test::built_program("BOKBOK_DEMO_SERVER");
    char* argv[] = {path.data(), const_cast<char*>("--stdio"), nullptr};
    int rc = ::posix_spawn(&pid, path.c_str(), &fa, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(to_server[0]);
    ::close(from_server[1]);
    read_fd = from_server[0];
    write_fd = to_server[1];
    REQUIRE(rc == 0);
  }
  demo_server(const demo_server&) = delete;
  demo_server& operator=(const demo_server&) = delete;

  std::string address() const {
    return "fd:" + std::to_string(read_fd) + "," + std::to_string(write_fd);
  }

  ~demo_server() {
    close_fd(read_fd);
    close_fd(write_fd);
    // With its pipes closed the server exits by itself; give it a moment, then insist.
    auto deadline = clock_type::now() + 5s;
    int status;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (clock_type::now() >= deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
  }
};

using run_result = bokbok_test::tool_result;

// Runs `bokbok ARGS...` with `inherit` (fds passed to it, closed here afterwards),
// `input` on its stdin and `env` ("NAME=VALUE") added to its environment; collects
// stdout and stderr.
run_result run_tool(const std::vector<std::string>& args, std::vector<int*> inherit = {},
                    const std::string& input = "", const std::vector<std::string>& env = {}) {
  bokbok_test::tool_spawn s;
  s.args = args;
  s.input = input;
  s.env = env;
  s.inherit = std::move(inherit);
  s.limit = std::chrono::duration_cast<std::chrono::milliseconds>(run_limit);
  return bokbok_test::run_tool_process(s);
}

// `bokbok call [options] ADDRESS FIELD...` against a fresh demo server.
run_result call_demo(const std::vector<std::string>& options,
                     const std::vector<std::string>& fields, const std::string& input = "") {
  demo_server server;
  std::vector<std::string> args = {"call"};
  args.insert(args.end(), options.begin(), options.end());
  args.push_back(server.address());
  args.insert(args.end(), fields.begin(), fields.end());
  return run_tool(args, {&server.read_fd, &server.write_fd}, input);
}

}  // namespace

TEST_CASE("bokbok call prints each field of the response on its own line") {
  auto r = call_demo({}, {"ping", "hi"});
  CHECK(r.status == 0);
  CHECK(r.out == "pong\nhi\n");
  CHECK(r.err == "");
}

TEST_CASE("bokbok call --json prints text as strings and other bytes as base64") {
  auto r = call_demo({"--json"}, {"echo", "a\"b\\c\n\t", "\xff\xfe", "\x01", "", "h\xc3\xa9"});
  CHECK(r.status == 0);
  CHECK(r.out ==
        "[\"a\\\"b\\\\c\\n\\t\", {\"base64\": \"//4=\"}, {\"base64\": \"AQ==\"}, \"\", "
        "\"h\xc3\xa9\"]\n");
}

TEST_CASE("bokbok call --stdin-field sends standard input as one binary-safe field") {
  auto r = call_demo({"--json", "--stdin-field"}, {"echo", "x"}, std::string("\0\1\2", 3));
  CHECK(r.status == 0);
  CHECK(r.out == "[\"x\", {\"base64\": \"AAEC\"}]\n");
}

TEST_CASE("bokbok call takes FIELDs that start with '-' after --") {
  auto r = call_demo({}, {"--", "echo", "--json", "-x", "--help"});
  CHECK(r.status == 0);
  CHECK(r.out == "--json\n-x\n--help\n");
}

TEST_CASE("bokbok call exits 1 with the remote message when the handler fails") {
  auto r = call_demo({}, {"fail", "boom"});
  CHECK(r.status == 1);
  CHECK(r.out == "");
  CHECK(r.err == "bokbok call: remote error (handler_failed): boom\n");
}

TEST_CASE("bokbok call exits 2 for bad usage and malformed addresses") {
  auto none = run_tool({"call"});
  CHECK(none.status == 2);
  CHECK(none.err.find("no ADDRESS given") != std::string::npos);
  auto no_field = run_tool({"call", "fd:3,4"});
  CHECK(no_field.status == 2);
  auto bad = run_tool({"call", "nonsense", "ping", "x"});
  CHECK(bad.status == 2);
  CHECK(bad.err.find("bad address \"nonsense\"") != std::string::npos);
  auto bad_fd = run_tool({"call", "fd:x,y", "ping", "x"});
  CHECK(bad_fd.status == 2);
  auto not_open = run_tool({"call", "fd:900,901", "ping", "x"});
  CHECK(not_open.status == 2);
  CHECK(not_open.err.find("fd 900 is not open") != std::string::npos);
  auto bad_option = run_tool({"call", "-x", "fd:3,4", "echo"});
  CHECK(bad_option.status == 2);
  auto stdin_twice = run_tool({"call", "--stdin-field", "stdio", "echo"});
  CHECK(stdin_twice.status == 2);
  auto bad_timeout = run_tool({"call", "--timeout", "soon", "fd:3,4", "ping", "x"});
  CHECK(bad_timeout.status == 2);
}

TEST_CASE("bokbok call exits 3 when the peer is gone") {
  int a[2], b[2];
  REQUIRE(::pipe2(a, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(b, O_CLOEXEC) == 0);
  ::close(a[1]);  // reading a[0] sees EOF at once
  ::close(b[0]);  // writing b[1] fails with EPIPE
  std::string addr = "fd:" + std::to_string(a[0]) + "," + std::to_string(b[1]);
  auto r = run_tool({"call", addr, "ping", "x"}, {&a[0], &b[1]});
  CHECK(r.status == 3);
  CHECK(r.err.starts_with("bokbok call: "));
}

TEST_CASE("bokbok call --timeout gives up on a slow answer with exit 5, promptly") {
  auto r = call_demo({"--timeout", "0.3"}, {"sleep", "5000"});
  CHECK(r.status == 5);
  CHECK(r.err == "bokbok call: timed out after 0.3 s\n");
  CHECK(r.took < 3s);
}

TEST_CASE("bokbok call --timeout covers a peer that never completes the handshake") {
  int a[2], b[2];
  REQUIRE(::pipe2(a, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(b, O_CLOEXEC) == 0);
  // We keep a[1] and b[0] open but never write: the handshake waits forever.
  std::string addr = "fd:" + std::to_string(a[0]) + "," + std::to_string(b[1]);
  auto r = run_tool({"call", "--timeout", "0.3", addr, "ping", "x"}, {&a[0], &b[1]});
  CHECK(r.status == 5);
  CHECK(r.err == "bokbok call: timed out after 0.3 s\n");
  CHECK(r.took < 3s);
  ::close(a[1]);
  ::close(b[0]);
}

TEST_CASE("bokbok call --echo answers the server's callbacks with their own fields") {
  auto r = call_demo({"--echo"}, {"callback", "2"});
  CHECK(r.status == 0);
  CHECK(r.out == "did\n2\n");
}

TEST_CASE("bokbok call without --echo refuses the server's callbacks") {
  auto r = call_demo({}, {"callback", "2"});
  CHECK(r.status == 1);
  CHECK(r.err.starts_with("bokbok call: remote error (handler_failed): callback 1 failed"));
  CHECK(r.err.find("bokbok call does not answer requests; use --echo") != std::string::npos);
}

TEST_CASE("bokbok help call documents the JSON form and the exit statuses") {
  auto r = run_tool({"help", "call"});
  CHECK(r.status == 0);
  CHECK(r.out.find("{\"base64\": \"...\"}") != std::string::npos);
  CHECK(r.out.find("5  timed out") != std::string::npos);
}

TEST_CASE("bokbok call exec:... starts the server itself and reports a failing child") {
  std::string server = bokbok_test::built_program("BOKBOK_DEMO_SERVER");
  auto r = run_tool({"call", "exec:'" + server + "' --stdio", "ping", "hi"});
  CHECK(r.status == 0);
  CHECK(r.out == "pong\nhi\n");
  CHECK(r.err.find("[server] serving one connection") != std::string::npos);  // its stderr

  auto bad = run_tool({"call", "exec:sh -c 'echo oops >&2; exit 7'", "ping"});
  CHECK(bad.status == 3);
  CHECK(bad.err.find("oops") != std::string::npos);
  CHECK(bad.err.find("exited with status 7") != std::string::npos);
}

TEST_CASE("bokbok call --timeout is sent as the call's deadline, which the handler sees") {
  auto r = call_demo({"--timeout", "5"}, {"deadline"});
  REQUIRE(r.status == 0);
  REQUIRE(r.out.starts_with("deadline\n"));
  long left = std::stol(r.out.substr(9));
  CHECK(left > 0);
  CHECK(left <= 5000);  // without a deadline the handler sees "none"
  auto none = call_demo({}, {"deadline"});
  CHECK(none.out == "deadline\nnone\n");
}

TEST_CASE("bokbok call prints the number of an error code it has no name for") {
  auto r = call_demo({}, {"fail-code", "77", "oops"});
  CHECK(r.status == 1);
  CHECK(r.err == "bokbok call: remote error (code 77): oops\n");
  auto named = call_demo({}, {"fail-code", "3", "full"});
  CHECK(named.err == "bokbok call: remote error (busy): full\n");
}

TEST_CASE("bokbok call ends with goaway then close, and the server sees a clean end") {
  // The tool reaches a real bokbok connection through a relay that records the wire.
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  bokbok_test::relay wire(sv[0]);
  std::mutex mu;
  std::string reason;
  bool closed = false;
  bokbok::options o;
  o.on_request = [](bokbok::connection&, bokbok::message m) { return m; };
  o.on_close = [&](bokbok::connection& c) {
    std::lock_guard lock(mu);
    reason = c.close_reason();
    closed = true;
  };
  auto serving = std::async(std::launch::async,
                            [&] { return bokbok::connect_fds(sv[1], sv[1], o, "relay"); });
  int cfd = wire.client_fd();
  std::string address = "fd:" + std::to_string(cfd) + "," + std::to_string(cfd);
  auto r = run_tool({"call", address, "ping", "x"}, {&cfd});
  CHECK(r.status == 0);
  CHECK(r.out == "ping\nx\n");
  auto server_side = serving.get();
  REQUIRE(bokbok_test::settles([&] {
    std::lock_guard lock(mu);
    return closed;
  }));

  // What the tool sent after its request: goaway, then close (not a bare close).
  std::vector<std::string> sent;
  auto units = wire.units(bokbok_test::direction::to_server);
  for (std::size_t i = 1; i < units.size(); ++i) {  // unit 0 is the preamble
    bokbok::wire::frame_view f;
    std::string error;
    REQUIRE(bokbok::wire::parse_frame(std::string_view(units[i]).substr(2), f, error));
    sent.push_back(bokbok::wire::to_string(f.type));
  }
  INFO("frames sent: " << [&] {
    std::string all;
    for (auto& t : sent) all += t + " ";
    return all;
  }());
  REQUIRE(sent.size() >= 2);
  CHECK(sent[sent.size() - 2] == "goaway");
  CHECK(sent.back() == "close");
  std::lock_guard lock(mu);
  CHECK((reason == "the peer is shutting down: it is closing the connection" ||
         reason == "closed by peer"));  // clean either way, never "connection lost"
}

TEST_CASE("the demo server's nested-deadline and overrun say so when the caller's answer is short") {
  // --echo answers `deadline` with the one field "deadline": no time in it.
  auto r = call_demo({"--echo"}, {"nested-deadline"});
  CHECK(r.status == 1);
  CHECK(r.err ==
        "bokbok call: remote error (handler_failed): nested-deadline: the caller answered "
        "`deadline` with 1 field, expected `deadline TIME`\n");
  CHECK(r.err.find("range_check") == std::string::npos);
}

TEST_CASE("bokbok call exits 2 for a tcp:*:PORT address, which is for listening") {
  auto r = run_tool({"call", "tcp:*:7000", "ping", "x"});
  CHECK(r.status == 2);
  CHECK(r.err.find("* means every address, for listening") != std::string::npos);
  CHECK(r.err.find("try 'bokbok help call'") != std::string::npos);
}

TEST_CASE("bokbok call stops parsing options at the first FIELD") {
  auto r = call_demo({"--json"}, {"echo", "--json", "-x", "--help", "--timeout"});
  CHECK(r.status == 0);
  CHECK(r.out == "[\"--json\", \"-x\", \"--help\", \"--timeout\"]\n");
  // Options may still come between ADDRESS and the first FIELD.
  demo_server server;
  auto between = run_tool({"call", server.address(), "--json", "ping", "--echo"},
                          {&server.read_fd, &server.write_fd});
  CHECK(between.status == 0);
  CHECK(between.out == "[\"pong\", \"--echo\"]\n");
  auto help = run_tool({"help", "call"});
  CHECK(help.out.find("option parsing\nstops there") != std::string::npos);
}

TEST_CASE("bokbok call names the cause of an ssh failure first and the address once") {
  // A stand-in for ssh that fails the way ssh does for an unknown host.
  auto dir = std::filesystem::temp_directory_path() /
             ("bokbok-call-ssh-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto fake_ssh = dir / "ssh";
  {
    std::FILE* f = std::fopen(fake_ssh.c_str(), "w");
    REQUIRE(f);
    std::fputs("#!/bin/sh\necho 'ssh: Could not resolve hostname nowhere: Name or service "
               "not known' >&2\nexit 255\n",
               f);
    std::fclose(f);
  }
  std::filesystem::permissions(fake_ssh, std::filesystem::perms::owner_all);
  auto r = run_tool({"call", "ssh:nowhere serve-it", "ping", "x"}, {}, "",
                    {"BOKBOK_SSH=" + fake_ssh.string()});
  std::filesystem::remove_all(dir);
  CHECK(r.status == 3);
  auto at = r.err.find("bokbok call: ");
  REQUIRE(at != std::string::npos);
  std::string line = r.err.substr(at, r.err.find('\n', at) - at);
  INFO(line);
  CHECK(line.starts_with(
      "bokbok call: ssh failed, exit status 255: ssh: Could not resolve hostname nowhere"));
  auto first = line.find("ssh:nowhere serve-it");
  REQUIRE(first != std::string::npos);
  CHECK(line.find("ssh:nowhere serve-it", first + 1) == std::string::npos);  // once
}

TEST_CASE("bokbok bridge exits 2 for a tcp:*:PORT address too, and prefixes its message once") {
  auto r = run_tool({"bridge", "stdio", "tcp:*:7000"});
  CHECK(r.status == 2);
  CHECK(r.err.starts_with("bokbok bridge: cannot connect to tcp:*:7000: * means every address"));
}

// --- bokbok call --stream (PROTOCOL.md §12) against the demo server's stream methods.

TEST_CASE("bokbok call --stream prints a server's stream line by line, then the response") {
  auto r = call_demo({"--stream"}, {"count", "5"});
  CHECK(r.status == 0);
  CHECK(r.out == "1\n2\n3\n4\n5\n5\n");
  CHECK(r.err == "");
}

TEST_CASE("bokbok call --stream --json prints one {\"stream\": [...]} line per message") {
  auto r = call_demo({"--stream", "--json"}, {"count", "3"});
  CHECK(r.status == 0);
  CHECK(r.out ==
        "{\"stream\": [\"1\"]}\n{\"stream\": [\"2\"]}\n{\"stream\": [\"3\"]}\n[\"3\"]\n");
}

TEST_CASE("bokbok call --stream sends standard input one line per message: sum") {
  std::string input;
  long long expected = 0;
  for (int i = -50; i <= 1000; ++i) {
    input += std::to_string(i) + "\n";
    expected += i;
  }
  input += "7";  // a last line without a newline is a message too
  expected += 7;
  auto r = call_demo({"--stream"}, {"sum"}, input);
  CHECK(r.status == 0);
  CHECK(r.out == std::to_string(expected) + "\n");
  auto bad = call_demo({"--stream"}, {"sum"}, "1\ntwo\n");
  CHECK(bad.status == 1);
  CHECK(bad.err.find("remote error (bad_arguments): sum: message 2 holds 'two'") !=
        std::string::npos);
}

TEST_CASE("bokbok call --stream echoes standard input through tail, plain and --json") {
  auto r = call_demo({"--stream"}, {"tail"}, "alpha\nbeta gamma\n\nomega\n");
  CHECK(r.status == 0);
  CHECK(r.out == "alpha\nbeta gamma\n\nomega\n4\n");
  auto j = call_demo({"--stream", "--json"}, {"tail"},
                     "[\"a\", 2, true, {\"base64\": \"AP8=\"}]\n\n[]\n");
  CHECK(j.status == 0);
  CHECK(j.out ==
        "{\"stream\": [\"a\", \"2\", \"true\", {\"base64\": \"AP8=\"}]}\n{\"stream\": []}\n"
        "[\"2\"]\n");
  auto bad = call_demo({"--stream", "--json"}, {"tail"}, "[\"ok\"]\nnot json\n");
  CHECK(bad.status == 2);
}

namespace {

// `bokbok call ARGS...` against `server`, its stdin a pipe we hold open (`stdin_w`) and
// its stdout a pipe we read (`out`): for calls that must not depend on end of input, or
// that a signal interrupts. Killed if it is still running when this goes.
struct live_call {
  pid_t pid = -1;
  int out = -1, stdin_w = -1, stdin_r = -1;  // stdin_r: our copy of its stdin's read end
  live_call(demo_server& server, std::vector<std::string> args) {
    int o[2], i[2];
    REQUIRE(::pipe2(o, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(i, O_CLOEXEC) == 0);
    for (int fd : {server.read_fd, server.write_fd}) REQUIRE(::fcntl(fd, F_SETFD, 0) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, i[0], 0);
    posix_spawn_file_actions_adddup2(&fa, o[1], 1);
    std::string tool = bokbok_test::built_program("BOKBOK_TOOL");
    args.insert(args.begin(), tool);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int rc = ::posix_spawn(&pid, tool.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(o[1]);
    stdin_r = i[0];
    close_fd(server.read_fd);  // the tool has them now
    close_fd(server.write_fd);
    out = o[0];
    stdin_w = i[1];
    REQUIRE(rc == 0);
  }
  ~live_call() {
    close_fd(out);
    close_fd(stdin_w);
    close_fd(stdin_r);
    if (pid > 0 && ::waitpid(pid, nullptr, WNOHANG) == 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  // Reads stdout until its end or `deadline`; `on_data` sees everything read so far.
  template <class F>
  std::string read_all(clock_type::time_point deadline, F on_data) {
    std::string got;
    for (;;) {
      pollfd p{out, POLLIN, 0};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
      if (left.count() <= 0 || ::poll(&p, 1, int(left.count())) <= 0) break;
      char buf[65536];
      ssize_t n = ::read(out, buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, std::size_t(n));
      on_data(got);
    }
    return got;
  }
  // Its exit status, or nullopt if it did not exit by `deadline` (or died of a signal).
  std::optional<int> exit_status(clock_type::time_point deadline) {
    while (clock_type::now() < deadline) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        if (!WIFEXITED(status)) return std::nullopt;
        return WEXITSTATUS(status);
      }
      std::this_thread::sleep_for(10ms);
    }
    return std::nullopt;
  }
};

}  // namespace

TEST_CASE("bokbok call --stream of a stream:out method leaves standard input alone") {
  demo_server server;
  live_call call(server, {"call", "--stream", server.address(), "count", "3000"});
  REQUIRE(::write(call.stdin_w, "left alone\n", 11) == 11);  // and stdin stays open
  const auto deadline = clock_type::now() + 20s;
  std::string got = call.read_all(deadline, [](const std::string&) {});
  CHECK(got.starts_with("1\n2\n3\n"));
  CHECK(got.ends_with("\n3000\n3000\n"));
  CHECK(call.exit_status(deadline) == 0);
  // describe said stream:out: the tool read nothing of its input.
  REQUIRE(::fcntl(call.stdin_r, F_SETFL, O_NONBLOCK) == 0);
  char buf[64];
  CHECK(::read(call.stdin_r, buf, sizeof buf) == 11);
}

TEST_CASE("bokbok call without --stream, to a stream method, says to use --stream") {
  auto r = call_demo({}, {"count", "3"});
  CHECK(r.status == 1);
  CHECK(r.err.find("remote error (bad_arguments): count is a stream method: open it as a "
                   "stream (bokbok call --stream)") != std::string::npos);
  auto plain = call_demo({"--stream"}, {"ping", "x"});
  CHECK(plain.status == 1);
  CHECK(plain.err.find("ping is not a stream method") != std::string::npos);
}

TEST_CASE("bokbok call --stream: Ctrl-C cancels the call and exits 1 promptly") {
  demo_server server;
  live_call call(server, {"call", "--stream", server.address(), "count", "1000000000"});
  // Once the stream is flowing, interrupt it; then read to the end (bounded).
  bool interrupted = false;
  const auto deadline = clock_type::now() + 20s;
  std::string got = call.read_all(deadline, [&](const std::string& so_far) {
    if (!interrupted && so_far.size() > 1000) {
      REQUIRE(::kill(call.pid, SIGINT) == 0);
      interrupted = true;
    }
  });
  REQUIRE(interrupted);
  CHECK(call.exit_status(deadline) == 1);  // exited by itself, not killed by SIGINT
  CHECK(got.starts_with("1\n2\n3\n"));
}

TEST_CASE("bokbok call --stream --timeout ends an endless stream with exit 5, promptly") {
  const auto start = clock_type::now();
  auto r = call_demo({"--stream", "--json", "--timeout", "0.5"}, {"count", "1000000000"});
  CHECK(r.status == 5);
  CHECK(r.out.starts_with("{\"stream\": [\"1\"]}\n{\"stream\": [\"2\"]}\n"));
  // The call's own deadline ended it (not the last-resort alarm, which says no JSON).
  CHECK(r.out.ends_with("{\"error\": {\"code\": null, \"name\": \"timed_out\", "
                        "\"message\": \"timed out after 0.5 s\"}}\n"));
  CHECK(clock_type::now() - start < 10s);
}
