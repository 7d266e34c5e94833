// A connection opened with a reconnect_policy against a real demo server process on a
// UNIX socket, killed and restarted over and over: a call made right after each drop
// waits for the new connection instead of meeting the dead one.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "support/child_process.hpp"
#include "support/settle.hpp"
#include "transport/command_line.hpp"

using namespace std::chrono_literals;
using bokbok::message;
using bokbok_test::built_program;
using bokbok_test::child_process;
using bokbok_test::settles;

namespace {

std::unique_ptr<child_process> start_server(const std::string& address) {
  return std::make_unique<child_process>(
      std::vector<std::string>{built_program("BOKBOK_DEMO_SERVER"), "--listen", address});
}

std::string demo_address() {
  return "exec:" + bokbok::transport::shell_quote(built_program("BOKBOK_DEMO_SERVER")) +
         " --stdio";
}

}  // namespace

TEST_CASE("reconnect: after each of up to 200 server restarts, a call made at once waits for the new connection and succeeds") {
  auto dir = std::filesystem::temp_directory_path() /
             ("bokbok-reconnect-race-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  auto path = dir / "demo.sock";
  std::string address = "unix:" + path.string();
  auto server = start_server(address);
  REQUIRE(settles([&] {  // listening (the socket file comes a moment before)
    try {
      bokbok::connect(address).close();
      return true;
    } catch (const bokbok::transport_error&) {
      return false;
    }
  }));

  std::atomic<int> drops{0}, reconnects{0}, closes{0};
  bokbok::reconnect_policy policy;
  policy.initial_delay = 1ms;
  policy.max_delay = 20ms;
  policy.on_drop = [&](const std::string&) { ++drops; };
  policy.on_reconnect = [&] { ++reconnects; };
  bokbok::options o;
  o.on_close = [&](bokbok::connection&) { ++closes; };
  auto conn = bokbok::connect(address, o, policy);
  CHECK(conn.request({"ping", "first"}) == message{"pong", "first"});

  // Up to 200 restarts, within 60 s: an unoptimized ASan build (each restart starts an
  // instrumented server) or a busy machine gets through fewer, and every restart made
  // is checked. Each must be one drop and one reconnect.
  constexpr int max_rounds = 200;
  constexpr int min_rounds = 20;
  int rounds = 0;
  int failed = 0;
  std::string first_failure;
  auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < max_rounds && std::chrono::steady_clock::now() - started < 60s; ++i) {
    ++rounds;
    // The drop: the server dies (its socket is closed before waitpid returns) and a new
    // one starts; the call is made at once, while the old connection is still current
    // or just closed.
    kill(server->pid, SIGKILL);
    server->wait();
    std::filesystem::remove(path);
    server = start_server(address);
    bokbok::call_options within;
    within.timeout = 10s;
    std::string n = std::to_string(i);
    try {
      if (conn.request({"ping", n}, within) != message{"pong", n}) ++failed;
    } catch (const std::exception& e) {
      if (failed++ == 0) first_failure = e.what();
    }
  }
  INFO("first failure: " << first_failure);
  CHECK(rounds >= min_rounds);
  CHECK(failed == 0);
  CHECK(drops.load() == rounds);
  CHECK(settles([&] { return reconnects.load() == rounds; }));
  CHECK(closes == 0);
  conn.close();
  conn.wait_closed();
  CHECK(closes == 1);
  kill(server->pid, SIGTERM);
  server->wait();
  std::filesystem::remove_all(dir);
}

TEST_CASE("dropping the last handle of a reconnecting exec: connection closes it for good and reaps its child") {
  std::atomic<int> drops{0}, closes{0};
  bokbok::reconnect_policy policy;
  policy.on_drop = [&](const std::string&) { ++drops; };
  bokbok::options o;
  o.on_close = [&](bokbok::connection&) { ++closes; };
  int pid;
  {
    auto conn = bokbok::connect(demo_address(), o, policy);
    CHECK(conn.request({"ping", "x"}) == message{"pong", "x"});
    std::string peer = conn.peer_address();
    pid = std::stoi(peer.substr(peer.rfind("(pid ") + 5));
  }
  CHECK(settles([&] { return closes.load() == 1; }));
  CHECK(settles([&] { return kill(pid, 0) < 0 && errno == ESRCH; }));
  CHECK(drops == 0);  // closed, not dropped: no redial
}
