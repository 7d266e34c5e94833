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
#include "support/demo_process.hpp"
#include "support/settle.hpp"

using namespace std::chrono_literals;
using bokbok::message;

namespace {

using bokbok_test::demo_process;
using bokbok_test::temp_dir;

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
