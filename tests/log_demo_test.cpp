// The library's log as the real demo server writes it on stderr (--log-level), under
// attack: a wrong-key flood gives a bounded number of lines with the count; attacker
// text (user names, a peer's error text) comes out escaped; running out of file
// descriptors is one line per episode while a client retries, and the server serves
// again afterwards; under --stdio no log line reaches stdout (the protocol). And the
// `bokbok` CLI routes the same log to its stderr (bokbok bridge, protocol on stdout).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "base/unique_fd.hpp"
#include "bokbok/key.hpp"
#include "support/child_process.hpp"
#include "support/demo_process.hpp"
#include "support/raw_peer.hpp"
#include "support/raw_socket.hpp"
#include "support/settle.hpp"
#include "wire/frame.hpp"
#include "wire/message_codec.hpp"
#include "wire/preamble.hpp"
#include "wire/settings.hpp"

using namespace std::chrono_literals;
using bokbok::message;
using bokbok_test::settles;
namespace wire = bokbok::wire;

namespace {

bool contains(std::string_view hay, std::string_view needle) {
  return hay.find(needle) != std::string_view::npos;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// The demo server with its stderr in a file (and, for --stdio, its stdin and stdout on
// pipes to us), optionally with a low RLIMIT_NOFILE; killed when this goes.
struct logged_demo {
  pid_t pid = -1;
  std::string err_path;
  int to_child = -1, from_child = -1;

  logged_demo(const std::filesystem::path& dir, const std::vector<std::string>& args,
              rlim_t nofile = 0, bool piped = false, const char* program = "BOKBOK_DEMO_SERVER") {
    err_path = (dir / (std::string(program) + ".stderr")).string();
    std::vector<std::string> argv{bokbok_test::built_program(program)};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(err >= 0);
    int in[2] = {-1, -1}, out[2] = {-1, -1};
    if (piped) REQUIRE((::pipe2(in, O_CLOEXEC) == 0 && ::pipe2(out, O_CLOEXEC) == 0));
    pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {  // only async-signal-safe calls until exec
      if (nofile) {
        rlimit r{nofile, nofile};
        ::setrlimit(RLIMIT_NOFILE, &r);
      }
      if (piped) {
        ::dup2(in[0], 0);
        ::dup2(out[1], 1);
      }
      ::dup2(err, 2);
      ::execve(cargv[0], cargv.data(), environ);
      ::_exit(127);
    }
    ::close(err);
    if (piped) {
      ::close(in[0]);
      ::close(out[1]);
      to_child = in[1];
      from_child = out[0];
    }
  }
  ~logged_demo() {
    if (to_child >= 0) ::close(to_child);
    if (from_child >= 0) ::close(from_child);
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  // Stops it with SIGTERM (the server then writes what its log still counts) and waits.
  bool stop() {
    ::kill(pid, SIGTERM);
    return exited();
  }
  bool exited() {
    int status = 0;
    if (!settles([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, 20s)) return false;
    pid = -1;
    return true;
  }
  std::string err() const {
    std::ifstream f(err_path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
};

// Waits until a plain client can connect to `address` and be answered.
bool serving(const std::string& address, const bokbok::options& o = {}) {
  return settles(
      [&] {
        try {
          auto c = bokbok::connect(address, o);
          bool ok = c.request({"ping", "x"}) == message{"pong", "x"};
          c.close();
          return ok;
        } catch (const bokbok::error&) {
          return false;
        }
      },
      20s, 20ms);
}

// A users file holding alice.
std::shared_ptr<const bokbok::key> write_users(const std::string& path) {
  auto k = std::make_shared<const bokbok::key>(bokbok::key::generate());
  std::ofstream(path) << std::string(k->users_line("alice").view());
  ::chmod(path.c_str(), 0600);
  return k;
}

std::size_t plain_preamble_size() { return wire::encode_preamble({}).size(); }

std::string protocol_goaway(std::string_view text) {
  return bokbok_test::frame_record(wire::frame_type::goaway, 0,
                wire::encode_code_payload(std::uint16_t(bokbok::error_code::protocol), text));
}

}  // namespace

TEST_CASE("under --stdio the library's log goes to stderr, and stdout carries only the protocol") {
  bokbok_test::temp_dir dir("log-stdio");
  logged_demo demo(dir.path, {"--stdio", "--log-level", "debug"}, 0, /*piped=*/true);
  REQUIRE(bokbok_test::write_pipe(demo.to_child, bokbok_test::plain_greeting()));
  // Read the server's preamble, then tell it it broke the protocol.
  std::string got = bokbok_test::read_some(demo.from_child, plain_preamble_size(), 10s);
  REQUIRE(got.size() == plain_preamble_size());
  REQUIRE(bokbok_test::write_pipe(demo.to_child, protocol_goaway("stdio-violation-marker")));
  // All the server writes on stdout until it exits.
  REQUIRE(demo.exited());
  for (std::string more; (more = bokbok_test::read_some(demo.from_child, 1 << 16, 2s)).size();) got += more;
  std::string err = demo.err();
  INFO(err);
  CHECK(contains(err, "bokbok-demo-server: warning: connection: "));
  CHECK(contains(err, "stdio-violation-marker"));
  // stdout: the preamble, then whole frames (hello, close), none of them log text.
  CHECK(!contains(got, "stdio-violation-marker"));
  CHECK(!contains(got, "warning"));
  wire::record_reader rr;
  rr.feed(std::string_view(got).substr(plain_preamble_size()));
  std::string_view body;
  int frames = 0;
  while (rr.next(body) == wire::record_reader::status::record) {
    wire::frame_view f;
    std::string why;
    CHECK_MESSAGE(wire::parse_frame(body, f, why), why);
    ++frames;
  }
  CHECK(frames >= 1);
}

TEST_CASE("a wrong-key flood of 300 handshakes gives a bounded number of log lines that count them all") {
  constexpr int flood = 300;
  bokbok_test::temp_dir dir("log-flood");
  std::string users = (dir.path / "users").string();
  auto alice = write_users(users);
  std::string address = "unix:" + (dir.path / "s.sock").string();
  logged_demo demo(dir.path, {"--listen", address, "--users", users});
  bokbok::options good;
  good.keys.user = "alice";
  good.keys.key = alice;
  REQUIRE(serving(address, good));
  bokbok::options bad;
  bad.keys.user = "alice";
  bad.keys.key = std::make_shared<const bokbok::key>(bokbok::key::generate());
  auto began = std::chrono::steady_clock::now();
  for (int i = 0; i < flood; ++i)
    CHECK_THROWS_AS(bokbok::connect(address, bad), bokbok::authentication_error);
  auto took = std::chrono::steady_clock::now() - began;
  REQUIRE(demo.stop());
  std::string err = demo.err();
  INFO(err);
  // Lines one by one, and count lines "N more in the last S s (M in all): ...".
  std::regex count_line(R"(: ([0-9,]+) more in the last [0-9]+ s \(([0-9,]+) in all\): )");
  long long alone = 0, more = 0, count_lines = 0;
  for (const auto& l : lines_of(err)) {
    if (!contains(l, "wrong key")) continue;
    std::smatch m;
    if (std::regex_search(l, m, count_line)) {
      std::string n = m[1];
      std::erase(n, ',');
      more += std::stoll(n);
      ++count_lines;
    } else {
      ++alone;
    }
  }
  CHECK(alone + more == flood);
  CHECK(count_lines >= 1);
  // At most 5 one by one, then one count line per 10 s window the flood lasted.
  auto windows = std::chrono::duration_cast<std::chrono::seconds>(took).count() / 10 + 2;
  CHECK(alone <= 5);
  CHECK(count_lines <= windows);
  // And nothing else per client: the whole log is a handful of lines.
  CHECK(lines_of(err).size() <= std::size_t(5 + windows + 6));
}

TEST_CASE("attacker text in the demo server's log comes out escaped: a user name, a peer's error text") {
  bokbok_test::temp_dir dir("log-escape");
  std::string users = (dir.path / "users").string();
  write_users(users);
  std::string path = (dir.path / "s.sock").string();
  logged_demo demo(dir.path, {"--listen", "unix:" + path, "--users", users});
  // A key-mode client whose user name would forge a line and colour the terminal.
  bokbok::options evil;
  evil.keys.user = "evil\n[server] connection from root\x1b[31m";
  evil.keys.key = std::make_shared<const bokbok::key>(bokbok::key::generate());
  REQUIRE(settles(
      [&] {
        try {
          bokbok::connect("unix:" + path, evil).close();
        } catch (const bokbok::authentication_error&) {
          return true;
        } catch (const bokbok::error&) {
        }
        return false;
      },
      20s, 20ms));
  REQUIRE(demo.stop());
  std::string err = demo.err();
  INFO(err);
  CHECK(contains(err, "evil\\n[server] connection from root\\x1b[31m"));
  CHECK(!contains(err, "\x1b"));
  for (const auto& l : lines_of(err)) CHECK(!l.starts_with("[server] connection from root"));
}

TEST_CASE("a peer's protocol-error text cannot forge lines in the demo server's log") {
  bokbok_test::temp_dir dir("log-peer-text");
  std::string path = (dir.path / "s.sock").string();
  logged_demo demo(dir.path, {"--listen", "unix:" + path});
  REQUIRE(serving("unix:" + path));
  bokbok::base::unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  REQUIRE(bokbok_test::write_all(fd.get(), bokbok_test::plain_greeting()));
  REQUIRE(bokbok_test::read_some(fd.get(), plain_preamble_size(), 10s).size() == plain_preamble_size());
  REQUIRE(bokbok_test::write_all(
      fd.get(), protocol_goaway("oops\n[server] stopped\x1b[2J" + std::string(5000, 'A'))));
  REQUIRE(settles([&] { return contains(demo.err(), "oops"); }, 20s));
  REQUIRE(demo.stop());
  std::string err = demo.err();
  INFO(err);
  CHECK(contains(err, "oops\\n[server] stopped\\x1b[2J"));
  CHECK(!contains(err, "\x1b"));
  CHECK(!contains(err, std::string(2000, 'A')));  // cut
  int stopped = 0;
  for (const auto& l : lines_of(err)) stopped += l == "[server] stopped";
  CHECK(stopped == 1);  // the server's own line at its end, and no forged one
}

TEST_CASE("a server out of file descriptors logs one line for the episode while a client retries, and serves again") {
  bokbok_test::raise_fd_limit();
  bokbok_test::temp_dir dir("log-fds");
  std::string address = "unix:" + (dir.path / "s.sock").string();
  logged_demo demo(dir.path, {"--listen", address}, /*nofile=*/64);
  REQUIRE(serving(address));
  // Fill the server's descriptors with idle connections, until one is not served and
  // the server says why.
  bokbok::options quick;
  quick.connect_timeout = 2s;
  std::vector<bokbok::connection> held;
  bool full = false;
  for (int i = 0; i < 120 && !full; ++i) {
    try {
      held.push_back(bokbok::connect(address, quick));
    } catch (const bokbok::error&) {
      full = contains(demo.err(), "out of file descriptors");
    }
  }
  REQUIRE(full);
  // A client retries for a while (each attempt waits in the backlog, and gives up).
  bokbok::options brief;
  brief.connect_timeout = 300ms;
  int refused = 0;
  for (int i = 0; i < 6; ++i) {
    try {
      bokbok::connect(address, brief).close();
    } catch (const bokbok::error&) {
      ++refused;
    }
  }
  CHECK(refused == 6);
  // Descriptors come back: the server accepts and serves again.
  for (auto& c : held) c.close();
  held.clear();
  CHECK(serving(address));
  REQUIRE(demo.stop());
  std::string err = demo.err();
  INFO(err);
  int episode = 0, again = 0, no_files = 0;
  for (const auto& l : lines_of(err)) {
    episode += contains(l, "out of file descriptors");
    again += contains(l, "accepting clients on") && contains(l, " again");
    no_files += contains(l, "Too many open files");
  }
  CHECK(episode == 1);
  CHECK(again == 1);
  // The episode's line and, at most, the one client told it is refused for it.
  CHECK(no_files <= 2);
}

TEST_CASE("bokbok (the CLI) logs the library's warnings to stderr, never to the protocol on its stdout") {
  bokbok_test::temp_dir dir("log-cli");
  std::string users = (dir.path / "users").string();
  auto alice = write_users(users);
  std::string key_file = (dir.path / "alice.key").string();
  alice->save(key_file);
  std::string address = "unix:" + (dir.path / "s.sock").string();
  logged_demo server(dir.path, {"--listen", address, "--users", users});
  bokbok::options good;
  good.keys.user = "alice";
  good.keys.key = alice;
  REQUIRE(serving(address, good));
  // The bridge speaks plain bokbok on its stdio (side A), key mode to the server (B).
  logged_demo bridge(dir.path, {"bridge", "--user", "alice", "--key-file", key_file, "stdio", address},
                     0, /*piped=*/true, "BOKBOK_TOOL");
  REQUIRE(bokbok_test::write_pipe(bridge.to_child, bokbok_test::plain_greeting()));
  std::string got = bokbok_test::read_some(bridge.from_child, plain_preamble_size(), 10s);
  REQUIRE(got.size() == plain_preamble_size());
  REQUIRE(bokbok_test::write_pipe(bridge.to_child, protocol_goaway("cli-violation-marker\x1b")));
  REQUIRE(settles([&] { return contains(bridge.err(), "cli-violation-marker"); }, 20s));
  for (std::string more; (more = bokbok_test::read_some(bridge.from_child, 1 << 16, 1s)).size();) got += more;
  std::string err = bridge.err();
  INFO(err);
  CHECK(contains(err, "bokbok bridge: warning: connection: "));
  CHECK(contains(err, "cli-violation-marker\\x1b"));
  CHECK(!contains(got, "cli-violation-marker"));
}

TEST_CASE("a flood of connections leaves a bounded number of the demo server's per-connection lines, with counts of the rest") {
  constexpr int flood = 100;
  bokbok_test::temp_dir dir("log-conn-flood");
  std::string address = "unix:" + (dir.path / "s.sock").string();
  logged_demo demo(dir.path, {"--listen", address});
  REQUIRE(serving(address));
  auto began = std::chrono::steady_clock::now();
  for (int i = 0; i < flood; ++i) {
    auto c = bokbok::connect(address, {});
    CHECK(c.request({"ping", "x"}) == message{"pong", "x"});
    c.close();
    c.wait_closed();
  }
  auto took = std::chrono::steady_clock::now() - began;
  REQUIRE(demo.stop());
  std::string err = demo.err();
  INFO(err);
  std::regex count_line(R"(: ([0-9,]+) more in the last [0-9]+ s \(([0-9,]+) in all\): connections (opened|closed))");
  long long alone[2] = {0, 0}, more[2] = {0, 0}, count_lines = 0;
  for (const auto& l : lines_of(err)) {
    std::smatch m;
    if (std::regex_search(l, m, count_line)) {
      std::string n = m[1];
      std::erase(n, ',');
      more[m[3] == "closed"] += std::stoll(n);
      ++count_lines;
    } else if (contains(l, "connection from ")) {
      ++alone[contains(l, " closed: ")];
    }
  }
  // Every connection is in the log, one by one or counted: at least the flood's, and
  // at most 5 of each kind one by one, then a count line per kind per 10 s window.
  auto windows = std::chrono::duration_cast<std::chrono::seconds>(took).count() / 10 + 2;
  for (int k : {0, 1}) {
    CHECK(alone[k] + more[k] >= flood);
    CHECK(alone[k] <= 5);
  }
  CHECK(count_lines >= 2);
  CHECK(count_lines <= 2 * windows);
  CHECK(lines_of(err).size() <= std::size_t(10 + 2 * windows + 6));
}
