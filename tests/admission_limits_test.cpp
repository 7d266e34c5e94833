// Per-source admission limits (server_options::max_connections_per_source,
// max_new_connections_per_source, limit_local_sources; README "Limits and memory")
// against the real demo server on loopback TCP. The hostile source is 127.0.0.2 (its
// sockets bound there before connecting); the well-behaved client comes from 127.0.0.1
// and keeps connecting and calling throughout: it must never be refused.
#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/unique_fd.hpp"
#include "bokbok/bokbok.hpp"
#include "support/child_process.hpp"
#include "support/demo_process.hpp"
#include "support/logged_process.hpp"
#include "support/raw_socket.hpp"
#include "support/settle.hpp"
#include "wire/frame.hpp"
#include "wire/preamble.hpp"
#include "wire/settings.hpp"

using namespace std::chrono_literals;
namespace wire = bokbok::wire;
using bokbok::message;

namespace {

constexpr auto patience = 10s;

bool contains(const std::string& hay, std::string_view needle) {
  return hay.find(needle) != std::string::npos;
}

// The demo server (plain mode) on tcp:127.0.0.1:0 with `extra` flags, its log captured;
// `port` read from its "listening on" line. Killed when this goes.
struct logged_server {
  bokbok_test::logged_process proc;
  std::string address;
  int port = 0;
  logged_server(const bokbok_test::temp_dir& dir, std::vector<std::string> extra)
      : proc(args(extra), (dir.path / "server.log").string()) {
    const std::string mark = "listening on tcp:127.0.0.1:";
    REQUIRE(bokbok_test::settles([&] { return contains(log(), mark); }, patience));
    std::string text = log();
    port = std::stoi(text.substr(text.find(mark) + mark.size()));
    address = "tcp:127.0.0.1:" + std::to_string(port);
  }
  static std::vector<std::string> args(const std::vector<std::string>& extra) {
    std::vector<std::string> argv{bokbok_test::built_program("BOKBOK_DEMO_SERVER"), "--listen",
                                  "tcp:127.0.0.1:0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }
  std::string log() const { return proc.log(); }
};

// A TCP connection from 127.0.0.2 (the hostile source) to the server.
bokbok::base::unique_fd connect_from_other_source(int port) {
  bokbok::base::unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd);
  sockaddr_in from{};
  from.sin_family = AF_INET;
  from.sin_addr.s_addr = htonl(0x7f000002);
  REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&from), sizeof from) == 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<std::uint16_t>(port));
  to.sin_addr.s_addr = htonl(0x7f000001);
  REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) == 0);
  return fd;
}

// What the server's first record after its preamble says to a raw plain client:
// "hello" (served), "busy: <text>" (a refusal, PROTOCOL.md §8.1), or what else it was.
std::string first_answer(int fd) {
  std::string pre = bokbok_test::read_some(fd, 9, 5s);
  if (pre.size() < 9) return "<no preamble>";
  std::string rec = bokbok_test::read_record(fd, 5s);
  if (rec.size() < 2) return "<no record>";
  wire::frame_view f;
  std::string err;
  if (!wire::parse_frame(std::string_view(rec).substr(2), f, err)) return "<bad frame: " + err + ">";
  if (f.type == wire::frame_type::hello) return "hello";
  if (f.type == wire::frame_type::goaway) {
    auto [code, text] = wire::parse_code_payload(f.payload);
    return std::string(bokbok::to_string(static_cast<bokbok::error_code>(code))) + ": " +
           std::string(text);
  }
  return std::string("<") + std::string(wire::to_string(f.type)) + ">";
}

// The well-behaved client, from 127.0.0.1 (a source limited too, when local sources
// are): calls without pause, and every 200 ms hangs up and connects again, well within
// any rate limited here; until stopped.
struct good_client {
  std::atomic<bool> stop{false};
  std::atomic<int> calls{0}, connects{0}, failures{0};
  std::mutex mu;
  std::string last_error;
  std::thread t;
  explicit good_client(const std::string& address) {
    t = std::thread([this, address] {
      std::optional<bokbok::connection> c;
      auto connected_at = std::chrono::steady_clock::now();
      while (!stop) {
        try {
          if (!c || std::chrono::steady_clock::now() - connected_at >= 200ms) {
            if (c) c->close();
            c.reset();
            c.emplace(bokbok::connect(address));
            connected_at = std::chrono::steady_clock::now();
            ++connects;
          }
          if (c->request({"echo", "hi"}) == message{"hi"}) ++calls;
          else ++failures;
        } catch (const std::exception& e) {
          ++failures;
          c.reset();
          std::lock_guard lock(mu);
          last_error = e.what();
        }
      }
      if (c) c->close();
    });
  }
  // Waits until it has connected `n` more times (or failed).
  bool connects_again(int n) {
    int target = connects + n;
    return bokbok_test::settles([&] { return connects >= target || failures > 0; }, patience) &&
           failures == 0;
  }
  void finish() {
    stop = true;
    if (t.joinable()) t.join();
  }
  ~good_client() { finish(); }
};

}  // namespace

TEST_CASE("one source past its connections at once is refused busy, while another source keeps being served") {
  bokbok_test::temp_dir dir("sources");
  logged_server s(dir, {"--max-per-source", "5", "--new-per-source", "0", "--limit-local-sources"});
  good_client good(s.address);
  CHECK(good.connects_again(1));
  std::vector<bokbok::base::unique_fd> held;
  int served = 0, refused = 0;
  std::string refusal;
  for (int i = 0; i < 20; ++i) {
    auto fd = connect_from_other_source(s.port);
    std::string a = first_answer(fd.get());
    if (a == "hello") {
      ++served;
      held.push_back(std::move(fd));  // held open, silent
    } else if (a.starts_with("busy: ")) {
      ++refused;
      refusal = a;
    }
  }
  CHECK(served == 5);
  CHECK(refused == 15);
  CHECK(refusal == "busy: too many connections from 127.0.0.2: 5 at once (at most 5)");
  CHECK(good.connects_again(2));  // admitted while the other source is at its limit
  // Its slots come back when its connections end.
  held.clear();
  CHECK(bokbok_test::settles([&] {
    auto fd = connect_from_other_source(s.port);
    return first_answer(fd.get()) == "hello";
  }, patience));
  good.finish();
  MESSAGE("the good client called " << good.calls.load() << " times on " << good.connects.load()
                                    << " connections");
  CHECK(good.connects > 1);
  CHECK(good.calls > 0);
  CHECK(good.failures == 0);
  CHECK(good.last_error == "");
}

TEST_CASE("one source opening connections faster than its rate is refused busy, while another source keeps being served") {
  bokbok_test::temp_dir dir("sources");
  logged_server s(dir, {"--max-per-source", "0", "--new-per-source", "10", "--limit-local-sources"});
  good_client good(s.address);
  CHECK(good.connects_again(1));
  int served = 0, refused = 0;
  std::string refusal;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) {
    auto fd = connect_from_other_source(s.port);
    std::string a = first_answer(fd.get());
    if (a == "hello") ++served;
    else if (a.starts_with("busy: ")) {
      ++refused;
      refusal = a;
    }
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(good.connects_again(2));
  good.finish();
  MESSAGE(served << " served, " << refused << " refused in " << seconds << " s; the good client called "
                 << good.calls.load() << " times");
  // A burst of one second's worth (10), then 10 a second.
  CHECK(served >= 10);
  CHECK(served <= 10 + int(10 * seconds) + 1);
  CHECK(served + refused == 100);
  CHECK(refusal == "busy: too many new connections from 127.0.0.2 (at most 10 a second)");
  CHECK(good.connects > 1);
  CHECK(good.calls > 0);
  CHECK(good.failures == 0);
  CHECK(good.last_error == "");
}

TEST_CASE("loopback peers are not limited per source unless asked") {
  bokbok_test::temp_dir dir("sources");
  logged_server s(dir, {"--max-per-source", "5", "--new-per-source", "5"});
  std::vector<bokbok::base::unique_fd> held;
  int served = 0;
  for (int i = 0; i < 20; ++i) {
    auto fd = connect_from_other_source(s.port);
    served += first_answer(fd.get()) == "hello";
    held.push_back(std::move(fd));
  }
  CHECK(served == 20);
}
