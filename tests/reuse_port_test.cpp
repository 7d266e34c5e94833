// server_options::reuse_port (the demo server's --reuse-port): several real server
// processes listen on one TCP port and the kernel gives each some of the clients.
#include <doctest/doctest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "support/demo_process.hpp"
#include "support/logged_process.hpp"

using namespace std::chrono_literals;
using bokbok_test::built_program;
using bokbok_test::logged_process;
using bokbok_test::temp_dir;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (auto at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}

// The template unit inetd/bokbok-demo-reuseport@.service.in with @bindir@ the built
// server's folder.
std::string template_unit() {
  std::string root = built_program("BOKBOK_SOURCE_ROOT");
  std::string text = read_file(root + "/inetd/bokbok-demo-reuseport@.service.in");
  REQUIRE(!text.empty());
  std::string bindir =
      std::filesystem::path(built_program("BOKBOK_DEMO_SERVER")).parent_path().string();
  return replace_all(text, "@bindir@", bindir);
}

// The words of the unit's ExecStart=, its port 7074 changed to `port`.
std::vector<std::string> exec_start(const std::string& unit, int port) {
  auto at = unit.find("\nExecStart=");
  REQUIRE(at != std::string::npos);
  at += 11;
  std::string line = unit.substr(at, unit.find('\n', at) - at);
  line = replace_all(line, ":7074", ":" + std::to_string(port));
  std::vector<std::string> words;
  std::istringstream in(line);
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

}  // namespace

TEST_CASE("three instances of the reuse-port template unit's command on one port each serve calls") {
  temp_dir dir("reuseport");
  int port = bokbok_test::free_port();
  std::string address = "tcp:127.0.0.1:" + std::to_string(port);
  auto command = exec_start(template_unit(), port);
  CHECK(command.at(0) == built_program("BOKBOK_DEMO_SERVER"));
  std::vector<std::unique_ptr<logged_process>> servers;
  for (int i = 0; i < 3; ++i) {
    servers.push_back(std::make_unique<logged_process>(
        command, (dir.path / ("s" + std::to_string(i) + ".log")).string()));
    INFO(servers.back()->log());
    REQUIRE(servers.back()->says("listening on " + address));
  }
  auto served_by_all = [&] {
    for (auto& s : servers)
      if (s->log().find("connection from") == std::string::npos) return false;
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
                                          << servers[0]->log() << servers[1]->log()
                                          << servers[2]->log());
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

TEST_CASE("systemd-analyze verify accepts the reuse-port template unit") {
  const char* analyze = "/usr/bin/systemd-analyze";
  if (::access(analyze, X_OK) != 0) {
    MESSAGE("systemd-analyze is not installed (Debian package systemd): not verifying");
    return;
  }
  temp_dir dir("reuseport-unit");
  std::string unit = replace_all(template_unit(), "@docdir@", "/usr/share/doc/bokbok");
  std::ofstream(dir.path / "bokbok-demo-reuseport@.service") << unit;
  // From the unit's folder, as units_test does; every finding names the unit.
  logged_process verify({"/usr/bin/env", "SYSTEMD_LOG_LEVEL=notice", "/bin/sh", "-c",
                         "cd \"$0\" && exec \"$@\"", dir.path.string(), analyze, "verify",
                         "./bokbok-demo-reuseport@.service"},
                        (dir.path / "verify.log").string());
  int status = 0;
  REQUIRE(bokbok_test::settles([&] { return ::waitpid(verify.pid, &status, WNOHANG) == verify.pid; }, 60s));
  verify.pid = -1;
  CHECK_MESSAGE((WIFEXITED(status) && WEXITSTATUS(status) == 0), verify.log());
  CHECK_MESSAGE(verify.log().find("bokbok-demo") == std::string::npos, verify.log());
}
