// bokbok-demo-server, the real program (BOKBOK_DEMO_SERVER): stopping on SIGTERM with
// calls in flight (server_options::stop_signals), and methods that call the caller back
// and must cope with any answer. Every child is bounded in time and killed if it overstays.
#include <doctest/doctest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bokbok/bokbok.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include "support/child_process.hpp"
#include "support/settle.hpp"

using namespace std::chrono_literals;
using bokbok::message;

namespace {

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::string t = std::filesystem::temp_directory_path().string() + "/bokbok-demo-XXXXXX";
    REQUIRE(::mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
};

// `bokbok-demo-server ARGS...`, its stdio inherited (its log shows in the test's output).
struct demo_process {
  pid_t pid = -1;
  explicit demo_process(const std::vector<std::string>& args) {
    std::vector<std::string> argv{bokbok_test::built_program("BOKBOK_DEMO_SERVER")};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    REQUIRE(::posix_spawn(&pid, cargv[0], nullptr, nullptr, cargv.data(), environ) == 0);
  }
  // Its wait status once it has exited within `limit`; nullopt (and killed) if not.
  std::optional<int> exit_within(std::chrono::milliseconds limit) {
    int status = 0;
    bool gone = bokbok_test::settles([&] { return ::waitpid(pid, &status, WNOHANG) == pid; },
                                     limit);
    if (!gone) return std::nullopt;
    pid = -1;
    return status;
  }
  ~demo_process() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

}  // namespace

TEST_CASE("the demo server stops on SIGTERM: the call in flight is answered, the socket file goes, exit 0") {
  temp_dir dir;
  auto sock = dir.path / "demo.sock";
  std::string address = "unix:" + sock.string();
  demo_process server({"--listen", address});
  REQUIRE(bokbok_test::settles([&] { return std::filesystem::exists(sock); }));

  std::promise<void> waiting;
  std::atomic<bool> told{false};
  bokbok::options o;
  o.on_notify = [&](bokbok::connection&, message m) {
    if (m == message{"note", "waiting"} && !told.exchange(true)) waiting.set_value();
  };
  // The socket file appears at bind(), a moment before listen(): retry until it listens.
  std::optional<bokbok::connection> connected;
  REQUIRE(bokbok_test::settles([&] {
    try {
      connected.emplace(bokbok::connect(address, o));
      return true;
    } catch (const bokbok::transport_error&) {
      return false;
    }
  }));
  auto& conn = *connected;
  // `wait 600` tells us once its handler runs, then takes 600 ms.
  auto started = std::chrono::steady_clock::now();
  auto answer = conn.request_async({"wait", "600"});
  REQUIRE(waiting.get_future().wait_for(10s) == std::future_status::ready);
  REQUIRE(::kill(server.pid, SIGTERM) == 0);

  REQUIRE(answer.wait_for(10s) == std::future_status::ready);
  CHECK(answer.get() == message{"waited"});  // the running call finished and was answered
  CHECK(std::chrono::steady_clock::now() - started >= 600ms);
  auto status = server.exit_within(10s);
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));                 // not killed by the signal (status 143)
  CHECK(WEXITSTATUS(*status) == 0);
  CHECK_FALSE(std::filesystem::exists(sock));  // the listener's socket file is removed
  // The server said goodbye: new calls on the connection are refused, not lost.
  CHECK_THROWS_AS(conn.request({"ping", "x"}), bokbok::error);
}

TEST_CASE("the demo server stops on SIGINT too, with no connection open") {
  temp_dir dir;
  auto sock = dir.path / "demo.sock";
  demo_process server({"--listen", "unix:" + sock.string()});
  REQUIRE(bokbok_test::settles([&] { return std::filesystem::exists(sock); }));
  REQUIRE(::kill(server.pid, SIGINT) == 0);
  auto status = server.exit_within(10s);
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  CHECK_FALSE(std::filesystem::exists(sock));
}

TEST_CASE("the demo server's overrun reports a caller whose deadline answer has no time") {
  bokbok::options o;
  // This caller answers `deadline` with one field, not `deadline TIME`.
  o.on_request = [](bokbok::connection&, message m) -> message {
    if (!m.empty() && m[0] == "deadline") return {"deadline"};
    return m;
  };
  std::string server = bokbok_test::built_program("BOKBOK_DEMO_SERVER");
  auto conn = bokbok::connect("exec:'" + server + "' --stdio", o);
  CHECK(conn.request({"overrun", "0"}) == message{"overran"});
  CHECK(conn.request({"last-report"}) ==
        message{"remaining none nested error: overrun: the caller answered `deadline` with "
                "1 field, expected `deadline TIME`"});
  conn.close();
  conn.wait_closed();
}
