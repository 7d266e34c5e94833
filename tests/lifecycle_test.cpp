// The lifetime edges of a client connection, against real children (the demo server as
// an exec: peer, small shell scripts) and a real server: what dropping the last handle
// does, what handlers' handle copies do not do, the accessors' value types, the peer a
// refused client is reported with, and a failing child not holding up its loop.
#include <doctest/doctest.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <mutex>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "bokbok/server.hpp"
#include "support/open_fds.hpp"
#include "support/child_process.hpp"
#include "support/settle.hpp"
#include "transport/command_line.hpp"

using namespace std::chrono_literals;
using bokbok::message;
using bokbok_test::settles;

namespace {

std::string demo_address() {
  return "exec:" +
         bokbok::transport::shell_quote(bokbok_test::built_program("BOKBOK_DEMO_SERVER")) +
         " --stdio";
}

// The pid in a peer address: "exec:... (pid 1234)".
int pid_in(const std::string& text) {
  auto at = text.rfind("(pid ");
  REQUIRE(at != std::string::npos);
  return std::stoi(text.substr(at + 5));
}

// True once `pid` has been reaped (not running, not a zombie).
bool gone(int pid) { return kill(pid, 0) < 0 && errno == ESRCH; }

using bokbok_test::open_fds;

// The descriptors open now that were not in `before`.
std::set<std::string> leaked(const std::set<std::string>& before) {
  std::set<std::string> now = open_fds(), extra;
  for (auto& fd : now)
    if (!before.count(fd)) extra.insert(fd);
  return extra;
}

std::string show(const std::set<std::string>& s) {
  std::string out;
  for (auto& x : s) out += x + "; ";
  return out;
}

// Starts the shared event loop (its descriptors are not a leak) with one closed connection.
void warm_up() {
  auto c = bokbok::connect(demo_address());
  c.close();
  c.wait_closed();
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("dropping the last handles of 20 exec: connections closes them, reaps the children and frees their descriptors") {
  warm_up();
  auto fds_before = open_fds();
  std::vector<int> pids;
  for (int i = 0; i < 20; ++i) {
    auto c = bokbok::connect(demo_address());
    CHECK(c.request({"ping", std::to_string(i)}) == message{"pong", std::to_string(i)});
    pids.push_back(pid_in(c.peer_address()));
  }  // each handle goes here, with nothing else holding the connection
  CHECK(settles([&] {
    for (int pid : pids)
      if (!gone(pid)) return false;
    return true;
  }));
  CHECK(settles([&] { return leaked(fds_before).empty(); }));
  INFO("left open: " << show(leaked(fds_before)));
  CHECK(leaked(fds_before).empty());
}

TEST_CASE("handle copies a handler kept, and one a response callback captured, do not keep a client connection open") {
  std::mutex mu;
  std::vector<bokbok::connection> kept;  // what the handler copied: borrowed handles
  bokbok::options o;
  o.on_request = [&](bokbok::connection& c, message m) {
    std::lock_guard lock(mu);
    kept.push_back(c);
    return m;
  };
  int pid;
  {
    auto c = bokbok::connect(demo_address(), o);
    pid = pid_in(c.peer_address());
    CHECK(c.request({"callback", "1"}) == message{"did", "1"});  // runs our handler once
    std::promise<message> answered;
    auto got = answered.get_future();
    // The callback holds a user handle until it has run.
    c.request_async({"ping", "x"}, [c, &answered](std::exception_ptr e, message m) {
      if (e)
        answered.set_exception(e);
      else
        answered.set_value(std::move(m));
    });
    REQUIRE(got.wait_for(10s) == std::future_status::ready);
    CHECK(got.get() == message{"pong", "x"});
  }
  CHECK(settles([&] { return gone(pid); }));
  std::lock_guard lock(mu);
  REQUIRE(kept.size() == 1);
  CHECK(settles([&] { return kept[0].closed(); }));
}

TEST_CASE("peer_address, user and child_status return values, not references into the connection") {
  using c = bokbok::connection;
  static_assert(std::is_same_v<decltype(std::declval<const c&>().peer_address()), std::string>);
  static_assert(std::is_same_v<decltype(std::declval<const c&>().user()), std::string>);
  static_assert(std::is_same_v<decltype(std::declval<const c&>().child_status()),
                               std::optional<bokbok::child_exit>>);
  auto conn = bokbok::connect(demo_address());
  std::string peer = conn.peer_address();
  CHECK(contains(peer, "(pid "));
  CHECK(conn.user().empty());
  conn.close();
  conn.wait_closed();
  auto status = conn.child_status();
  REQUIRE(status);
  CHECK(status->pid == pid_in(peer));
  CHECK(status->code == 0);
}

TEST_CASE("on_connection_error names the peer of a client refused as busy and as not authorized") {
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> logged;  // (peer, why)
  auto log_to = [&](bokbok::server_options& o) {
    o.on_connection_error = [&](const std::string& peer, const std::string& why) {
      std::lock_guard lock(mu);
      logged.emplace_back(peer, why);
    };
  };
  auto entries = [&] {
    std::lock_guard lock(mu);
    return logged;
  };
  bokbok::server_options o;
  o.listen = {"tcp:127.0.0.1:0"};
  o.on_request = [](bokbok::connection&, message m) { return m; };
  log_to(o);
  SUBCASE("busy") {
    o.max_connections = 1;
    o.connection_wait = 100ms;
    bokbok::server srv(o);
    srv.start();
    std::string address = srv.local_addresses().at(0);
    auto first = bokbok::connect(address);
    CHECK_THROWS_AS(bokbok::connect(address), bokbok::transport_error);
    REQUIRE(settles([&] { return entries().size() == 1; }));
    auto [peer, why] = entries().at(0);
    CHECK(contains(why, "busy"));
    CHECK(contains(peer, "tcp:127.0.0.1:"));
    first.close();
    srv.stop();
    srv.wait();
  }
  SUBCASE("not authorized") {
    o.authorize = [](const std::optional<bokbok::connection::credentials>&) { return false; };
    bokbok::server srv(o);
    srv.start();
    std::string address = srv.local_addresses().at(0);
    CHECK_THROWS_AS(bokbok::connect(address), bokbok::error);
    REQUIRE(settles([&] { return entries().size() == 1; }));
    auto [peer, why] = entries().at(0);
    CHECK(contains(why, "not_authorized"));
    CHECK(contains(peer, "tcp:127.0.0.1:"));
    srv.stop();
    srv.wait();
  }
}

TEST_CASE("while a failed child takes its time to exit, another connection on the same loop keeps answering") {
  // Both connections are on the shared loop of the connect functions.
  auto other = bokbok::connect(demo_address());
  CHECK(other.request({"ping", "0"}) == message{"pong", "0"});
  auto dir = std::filesystem::temp_directory_path() /
             ("bokbok-lifecycle-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string fifo = (dir / "release").string();
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  // The child closes its stdout at once (our side reads end of file before any preamble),
  // then lives until the test releases it through the fifo, and exits 7.
  std::string script = "exec >&-; read line < " + bokbok::transport::shell_quote(fifo) + "; exit 7";
  auto failing = std::async(std::launch::async, [&]() -> std::string {
    try {
      bokbok::connect("exec:sh -c " + bokbok::transport::shell_quote(script));
      return "connected";
    } catch (const bokbok::transport_error& e) {
      return e.what();
    }
  });
  // Once the fifo has a reader, the child has closed its stdout.
  int release = -1;
  REQUIRE(settles([&] {
    release = open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    return release >= 0;
  }));
  // The child is alive and will stay so until released: the other connection answers
  // meanwhile. (A loop thread blocked waiting for the child's status could not deliver
  // these answers until it gave up on the child.)
  for (int i = 1; i <= 5; ++i)
    CHECK(other.request({"ping", std::to_string(i)}) == message{"pong", std::to_string(i)});
  REQUIRE(::write(release, "go\n", 3) == 3);
  ::close(release);
  REQUIRE(failing.wait_for(10s) == std::future_status::ready);
  std::string why = failing.get();
  INFO(why);
  // The failure waited for the child, without holding up the loop: its status is there.
  CHECK(contains(why, "before speaking bokbok"));
  CHECK(contains(why, "exited with status 7"));
  other.close();
  other.wait_closed();
  std::filesystem::remove_all(dir);
}
