// `bokbok ping ADDRESS` (tools/ping.cpp), the real tool against the real demo server,
// a dead address, a listener that never answers and one that speaks something else.
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "support/demo_process.hpp"
#include "support/logged_process.hpp"
#include "support/tool_run.hpp"

using namespace std::chrono_literals;
using bokbok_test::built_program;
using bokbok_test::logged_process;
using bokbok_test::temp_dir;

namespace {

struct outcome {
  int exit_status = -1;
  std::string output;  // stdout and stderr
  std::chrono::milliseconds took{};
};

outcome ping(const temp_dir& dir, std::vector<std::string> args) {
  static int n = 0;
  args.insert(args.begin(), {built_program("BOKBOK_TOOL"), "ping"});
  auto start = std::chrono::steady_clock::now();
  logged_process p(args, (dir.path / ("ping" + std::to_string(++n) + ".log")).string());
  int status = 0;
  REQUIRE(bokbok_test::settles([&] { return ::waitpid(p.pid, &status, WNOHANG) == p.pid; }, 20s));
  p.pid = -1;
  outcome o;
  o.took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  o.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  o.output = p.log();
  return o;
}

// A listening TCP socket on 127.0.0.1 and its address.
std::pair<int, std::string> tcp_listener() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  REQUIRE(::listen(fd, 16) == 0);
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  return {fd, "tcp:127.0.0.1:" + std::to_string(ntohs(sa.sin_port))};
}

}  // namespace

TEST_CASE("bokbok ping exits 0 when the server answers and 1 once it is gone") {
  temp_dir dir("ping");
  std::string address;
  {
    bokbok_test::listening_demo server({});
    address = server.address;
    auto o = ping(dir, {address});
    CHECK_MESSAGE(o.exit_status == 0, o.output);
    CHECK(o.output.find(address + " answered in ") != std::string::npos);
    o = ping(dir, {"--quiet", address});
    CHECK(o.exit_status == 0);
    CHECK(o.output.empty());
  }
  auto o = ping(dir, {"--timeout", "2", address});
  CHECK(o.exit_status == 1);
  CHECK_MESSAGE(o.output.find("bokbok ping: " + address + ": cannot connect") != std::string::npos,
                o.output);
}

TEST_CASE("bokbok ping fails within its timeout on a listener that never answers") {
  temp_dir dir("ping-mute");
  auto [fd, address] = tcp_listener();  // the kernel accepts; nobody speaks
  auto o = ping(dir, {"--timeout", "0.3", address});
  CHECK(o.exit_status == 1);
  CHECK_MESSAGE(o.output.find("timed out after 300 ms") != std::string::npos, o.output);
  CHECK(o.took < 10s);  // generous: bounded by the timeout, not by a heartbeat or a hang
  ::close(fd);
}

TEST_CASE("bokbok ping fails on a server that speaks something else") {
  temp_dir dir("ping-http");
  auto [fd, address] = tcp_listener();
  std::thread web([fd = fd] {
    int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;
    const char reply[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
    (void)::send(c, reply, sizeof reply - 1, MSG_NOSIGNAL);
    char buf[256];
    while (::recv(c, buf, sizeof buf, 0) > 0) {
    }
    ::close(c);
  });
  auto o = ping(dir, {"--timeout", "5", address});
  web.join();
  CHECK(o.exit_status == 1);
  CHECK_MESSAGE(o.output.find("does not speak bokbok") != std::string::npos, o.output);
  ::close(fd);
}

TEST_CASE("bokbok ping refuses bad usage with exit status 2") {
  temp_dir dir("ping-usage");
  CHECK(ping(dir, {}).exit_status == 2);
  CHECK(ping(dir, {"--timeout", "soon", "tcp:127.0.0.1:1"}).exit_status == 2);
  CHECK(ping(dir, {"nope:1"}).exit_status == 2);
  CHECK(ping(dir, {"tcp:127.0.0.1:1", "tcp:127.0.0.1:2"}).exit_status == 2);
  auto help = ping(dir, {"--help"});
  CHECK(help.exit_status == 0);
  CHECK(help.output.find("usage: bokbok ping") != std::string::npos);
}

TEST_CASE("call, list, describe and ping read --timeout and the key flags alike") {
  // tools/connect_flags.cpp: one parser for the four tools. A refused address: each
  // tool that accepts the flags goes on to fail connecting (call, list, describe: 3;
  // ping: 1), not with bad usage (2).
  const std::string dead = "tcp:127.0.0.1:1";
  auto with = [&](const std::string& tool, std::vector<std::string> flags) {
    std::vector<std::string> args{tool};
    args.insert(args.end(), flags.begin(), flags.end());
    args.push_back(dead);
    if (tool == "call") args.insert(args.end(), {"ping", "x"});
    if (tool == "describe") args.push_back("ping");
    bokbok_test::tool_spawn s;
    s.args = args;
    return bokbok_test::run_tool_process(s);
  };
  for (std::string tool : {"call", "list", "describe", "ping"}) {
    CAPTURE(tool);
    for (std::string bad : {"1e1", "-1", "0", "0.0001", "inf", "2s", "1000001"}) {
      CAPTURE(bad);
      auto r = with(tool, {"--timeout", bad});
      CHECK(r.status == 2);
      CHECK_MESSAGE(r.err.find("--timeout wants a number of seconds from 0.001 to 1000000, not '" +
                               bad + "'") != std::string::npos,
                    r.err);
    }
    auto good = with(tool, {"--timeout=0.5"});
    CHECK_MESSAGE(good.status == (tool == "ping" ? 1 : 3), good.err);
    if (tool == "ping") continue;  // no key mode
    auto half = with(tool, {"--user", "alice"});
    CHECK(half.status == 2);
    CHECK(half.err.find("key mode needs both --user NAME and --key-file FILE") != std::string::npos);
    auto missing = with(tool, {"--user", "alice", "--key-file", "/nonexistent/alice.key"});
    CHECK(missing.status == 2);
    CHECK_MESSAGE(missing.err.find(": bokbok: ") == std::string::npos, missing.err);
  }
}
