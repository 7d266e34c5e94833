// `bokbok bridge stdio unix:PATH`, the real binary, between this process (over the
// bridge's stdin/stdout) and the demo server listening on a UNIX socket: the path
// `ssh HOST bokbok bridge stdio unix:...` takes, without the ssh.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "bokbok/bokbok.hpp"
#include "support/child_process.hpp"
#include "crypto/secret.hpp"
#include "transport/command_line.hpp"

using namespace std::chrono_literals;
using bokbok::message;
using bokbok_test::built_program;
using bokbok_test::child_process;

namespace {

// Connects to `address`, retrying while the server starts (bounded).
bokbok::connection connect_when_up(const std::string& address) {
  auto give_up = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    try {
      return bokbok::connect(address, {});
    } catch (const bokbok::transport_error&) {
      if (std::chrono::steady_clock::now() > give_up) throw;
      std::this_thread::sleep_for(10ms);  // the server is still binding its socket
    }
  }
}

}  // namespace

TEST_CASE("calls go both ways through bokbok bridge, and closing ends the bridge cleanly") {
  auto dir = std::filesystem::temp_directory_path() / ("bokbok-bridge-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string address = "unix:" + (dir / "demo.sock").string();
  child_process server({built_program("BOKBOK_DEMO_SERVER"), "--listen", address});
  connect_when_up(address).close();

  child_process bridge({built_program("BOKBOK_TOOL"), "bridge", "stdio", address});
  bokbok::options o;
  o.on_request = [](bokbok::connection&, message m) { return message{"client", m.at(1)}; };
  auto c = bokbok::connect_fds(std::exchange(bridge.from_child, -1),
                               std::exchange(bridge.to_child, -1), o, "bridge");
  CHECK(c.request({"ping", "through"}) == message{"pong", "through"});
  CHECK(c.request({"callback", "2"}) == message{"did", "2"});
  message binary = {"echo", std::string("\0\xff\n", 3), std::string(1 << 20, 'q')};
  CHECK(c.request(binary) == message(binary.begin() + 1, binary.end()));
  message blob = c.request({"blob", std::to_string(4 << 20)});
  REQUIRE(blob.size() == 1);
  CHECK(blob[0].size() == (4u << 20));
  c.close();
  c.wait_closed();
  int status = bridge.wait();  // both directions end: the bridge exits by itself
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);

  auto admin = connect_when_up(address);
  CHECK(admin.request({"shutdown-server!"}) == message{"ok"});
  admin.wait_closed();
  CHECK(WEXITSTATUS(server.wait()) == 0);
  std::filesystem::remove_all(dir);
}

TEST_CASE("bokbok bridge refuses bad usage and reports an address it cannot reach") {
  auto run = [](std::vector<std::string> args) {
    args.insert(args.begin(), built_program("BOKBOK_TOOL"));
    child_process p(args);
    close(std::exchange(p.to_child, -1));
    return p.wait();
  };
  CHECK(WEXITSTATUS(run({"bridge", "stdio"})) == 2);
  CHECK(WEXITSTATUS(run({"bridge", "stdio", "nope:1"})) == 2);
  CHECK(WEXITSTATUS(run({"bridge", "stdio", "unix:/nonexistent/bokbok.sock"})) == 3);
}

TEST_CASE("bokbok bridge starts an exec: side, relays to it, and waits for it to exit") {
  // The client reaches the bridge through exec: too: client -> bridge -> demo server.
  std::string server = bokbok::transport::shell_quote(built_program("BOKBOK_DEMO_SERVER"));
  std::string address = "exec:" + bokbok::transport::shell_quote(built_program("BOKBOK_TOOL")) +
                        " bridge stdio " +
                        bokbok::transport::shell_quote("exec:" + server + " --stdio");
  bokbok::options o;
  o.on_request = [](bokbok::connection&, message m) { return message{"client", m.at(1)}; };
  auto c = bokbok::connect(address, o);
  CHECK(c.request({"ping", "twice bridged"}) == message{"pong", "twice bridged"});
  CHECK(c.request({"callback", "2"}) == message{"did", "2"});
  c.close();
  c.wait_closed();
  REQUIRE(c.child_status());
  CHECK(c.child_status()->code == 0);  // the bridge: both directions ended, server exited 0
}

TEST_CASE("key mode passes through bokbok bridge untouched, end to end") {
  auto dir = std::filesystem::temp_directory_path() / ("bokbok-bridge-key-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  auto k = std::make_shared<const bokbok::key>(bokbok::key::generate());
  std::string users = (dir / "users").string();
  {
    std::string line = "alice " + bokbok::crypto::to_hex(k->bytes()) + "\n";
    int fd = ::open(users.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, line.data(), line.size()) == ssize_t(line.size()));
    ::close(fd);
  }
  std::string address = "unix:" + (dir / "demo.sock").string();
  child_process server({built_program("BOKBOK_DEMO_SERVER"), "--listen", address, "--users", users});
  bokbok::options o;
  o.keys.user = "alice";
  o.keys.key = k;
  // The server only speaks key mode: wait for it with a key-mode client.
  auto give_up = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    try {
      bokbok::connect(address, o).close();
      break;
    } catch (const bokbok::transport_error&) {
      REQUIRE(std::chrono::steady_clock::now() < give_up);
      std::this_thread::sleep_for(10ms);  // the server is still binding its socket
    }
  }
  // client (key mode) -> exec: bokbok bridge stdio unix:... -> server (key mode)
  auto c = bokbok::connect("exec:" + bokbok::transport::shell_quote(built_program("BOKBOK_TOOL")) +
                               " bridge stdio " + bokbok::transport::shell_quote(address),
                           o);
  CHECK(c.request({"whoami"}).at(1) == "alice");
  CHECK(c.request({"ping", "sealed"}) == message{"pong", "sealed"});
  CHECK(c.request({"shutdown-server!"}) == message{"ok"});
  c.wait_closed();
  CHECK(WEXITSTATUS(server.wait()) == 0);
  std::filesystem::remove_all(dir);
}

namespace {

// A users file and a key file for "alice", in `dir` (mode 0600).
struct alice_keys {
  std::shared_ptr<const bokbok::key> key = std::make_shared<const bokbok::key>(bokbok::key::generate());
  std::string users, key_file;
  explicit alice_keys(const std::filesystem::path& dir)
      : users((dir / "users").string()), key_file((dir / "alice.key").string()) {
    std::string line = "alice " + bokbok::crypto::to_hex(key->bytes()) + "\n";
    int fd = ::open(users.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, line.data(), line.size()) == ssize_t(line.size()));
    ::close(fd);
    key->save(key_file);
  }
};

std::string tool_exec(const std::vector<std::string>& args) {
  std::string a = "exec:" + bokbok::transport::shell_quote(built_program("BOKBOK_TOOL"));
  for (auto& w : args) a += " " + bokbok::transport::shell_quote(w);
  return a;
}

}  // namespace

TEST_CASE("bokbok bridge --users ends key mode: authenticated clients reach a plain server") {
  auto dir = std::filesystem::temp_directory_path() / ("bokbok-bridge-users-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  alice_keys k(dir);
  std::string address = "unix:" + (dir / "plain.sock").string();
  child_process server({built_program("BOKBOK_DEMO_SERVER"), "--listen", address});
  connect_when_up(address).close();

  bokbok::options o;
  o.keys.user = "alice";
  o.keys.key = k.key;
  std::atomic<int> callbacks{0};
  o.on_request = [&](bokbok::connection&, message m) -> message {
    ++callbacks;
    return {"ok", m.at(1)};
  };
  auto bridge = tool_exec({"bridge", "--users", k.users, "stdio", address});
  auto c = bokbok::connect(bridge, o);  // the same client with a wrong key is refused below
  CHECK(c.request({"ping", "through"}) == message{"pong", "through"});
  CHECK(c.request({"callback", "2"}) == message{"did", "2"});  // the server calls us back
  CHECK(callbacks == 2);
  try {
    c.request({"fail", "as asked"});
    FAIL("no error");
  } catch (const bokbok::remote_error& e) {
    CHECK(std::string(e.what()) == "as asked");  // the remote error crosses the bridge
  }
  c.close();
  c.wait_closed();
  REQUIRE(c.child_status());
  CHECK(c.child_status()->code == 0);

  bokbok::options wrong = o;
  wrong.keys.key = std::make_shared<const bokbok::key>(bokbok::key::generate());
  CHECK_THROWS_AS(bokbok::connect(bridge, wrong), bokbok::authentication_error);

  auto admin = connect_when_up(address);
  CHECK(admin.request({"shutdown-server!"}) == message{"ok"});
  admin.wait_closed();
  CHECK(WEXITSTATUS(server.wait()) == 0);
  std::filesystem::remove_all(dir);
}

TEST_CASE("bokbok bridge --user --key-file lets a plain client reach a key-mode server") {
  auto dir = std::filesystem::temp_directory_path() / ("bokbok-bridge-user-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  alice_keys k(dir);
  std::string address = "unix:" + (dir / "key.sock").string();
  child_process server({built_program("BOKBOK_DEMO_SERVER"), "--listen", address, "--users", k.users});
  auto c = [&] {  // the bridge exits 3 while the server is not listening yet: retry, bounded
    auto give_up = std::chrono::steady_clock::now() + 10s;
    for (;;) {
      try {
        return bokbok::connect(tool_exec({"bridge", "--user", "alice", "--key-file", k.key_file,
                                          "stdio", address}));
      } catch (const bokbok::transport_error&) {
        REQUIRE(std::chrono::steady_clock::now() < give_up);
        std::this_thread::sleep_for(10ms);  // the server is still binding its socket
      }
    }
  }();
  CHECK(c.request({"whoami"}).at(1) == "alice");  // the server saw alice's key
  CHECK(c.request({"shutdown-server!"}) == message{"ok"});
  c.wait_closed();
  CHECK(WEXITSTATUS(server.wait()) == 0);
  std::filesystem::remove_all(dir);
}
