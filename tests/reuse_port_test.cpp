// server_options::reuse_port (the demo server's --reuse-port): several real server
// processes listen on one TCP port and the kernel gives each some of the clients.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "support/demo_process.hpp"
#include "support/logged_process.hpp"

using namespace std::chrono_literals;
using bokbok_test::built_program;
using bokbok_test::logged_process;
using bokbok_test::temp_dir;

TEST_CASE("three servers with reuse_port on one port each serve calls") {
  temp_dir dir("reuseport");
  std::string address = "tcp:127.0.0.1:" + std::to_string(bokbok_test::free_port());
  std::vector<std::unique_ptr<logged_process>> servers;
  for (int i = 0; i < 3; ++i) {
    servers.push_back(std::make_unique<logged_process>(
        std::vector<std::string>{built_program("BOKBOK_DEMO_SERVER"), "--listen", address,
                                 "--reuse-port"},
        (dir.path / ("s" + std::to_string(i) + ".log")).string()));
    INFO(servers.back()->text());
    REQUIRE(servers.back()->says("listening on " + address));
  }
  auto served_by_all = [&] {
    for (auto& s : servers)
      if (s->text().find("connection from") == std::string::npos) return false;
    return true;
  };
  // The kernel spreads connections by a hash of their addresses: within 300 clients
  // each of three servers gets one unless something is wrong (odds below 1e-50).
  int calls = 0;
  for (int i = 0; i < 300 && !served_by_all(); ++i) {
    auto c = bokbok::connect(address, {});
    CHECK(c.request({"ping", std::to_string(i)}) == bokbok::message{"pong", std::to_string(i)});
    ++calls;
    c.close();
    c.wait_closed();
  }
  // "connection from" is logged when the connection opens, before the call answers.
  CHECK_MESSAGE(served_by_all(), "after " << calls << " calls:\n"
                                          << servers[0]->text() << servers[1]->text()
                                          << servers[2]->text());
}

TEST_CASE("without reuse_port a second server cannot take the port") {
  temp_dir dir("noreuseport");
  std::string address = "tcp:127.0.0.1:" + std::to_string(bokbok_test::free_port());
  logged_process first({built_program("BOKBOK_DEMO_SERVER"), "--listen", address},
                       (dir.path / "first.log").string());
  REQUIRE(first.says("listening on " + address));
  logged_process second({built_program("BOKBOK_DEMO_SERVER"), "--listen", address, "--reuse-port"},
                        (dir.path / "second.log").string());
  CHECK(second.says("Address already in use"));
}
