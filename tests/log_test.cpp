// The library's log (include/bokbok/log.hpp): the rate limiter on its own (time given,
// no waiting), the escaping, and the events a process-wide sink receives from real
// servers and connections on real sockets: a refused client, a protocol violation, a
// dropped late answer, a reconnect.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/log.hpp"
#include "base/log_limiter.hpp"
#include "base/unique_fd.hpp"
#include "bokbok/bokbok.hpp"
#include "bokbok/log.hpp"
#include "bokbok/server.hpp"
#include "support/demo_process.hpp"
#include "support/raw_peer.hpp"
#include "support/raw_socket.hpp"
#include "support/settle.hpp"
#include "wire/frame.hpp"
#include "wire/message_codec.hpp"
#include "wire/preamble.hpp"
#include "wire/settings.hpp"

using namespace std::chrono_literals;
using bokbok::log_level;
using bokbok::message;
using bokbok_test::settles;
namespace wire = bokbok::wire;

namespace {

bool contains(std::string_view hay, std::string_view needle) {
  return hay.find(needle) != std::string_view::npos;
}

// What the sink received, for the checks; installed for one test case.
struct captured_log {
  struct event {
    log_level level;
    std::string component, message;
  };
  std::mutex mu;
  std::vector<event> events;

  explicit captured_log(log_level min = log_level::debug) {
    bokbok::set_log_sink(
        [this](log_level l, std::string_view c, std::string_view m) {
          std::lock_guard lock(mu);
          events.push_back({l, std::string(c), std::string(m)});
        },
        min);
  }
  ~captured_log() { bokbok::set_log_sink(nullptr); }
  // The first event whose message contains all of `parts` (nullopt: none yet).
  std::optional<event> find(std::initializer_list<std::string_view> parts) {
    std::lock_guard lock(mu);
    for (const auto& e : events) {
      bool all = true;
      for (auto p : parts) all = all && contains(e.message, p);
      if (all) return e;
    }
    return std::nullopt;
  }
  std::string dump() {
    std::lock_guard lock(mu);
    std::string out;
    for (const auto& e : events)
      out += std::string(bokbok::to_string(e.level)) + " " + e.component + ": " + e.message + "\n";
    return out;
  }
};

using limiter = bokbok::base::log_limiter;
const auto t0 = limiter::clock::time_point{} + 1000s;

}  // namespace

TEST_CASE("log limiter: the first five of a cause are logged, the rest counted in one line at the window's end") {
  limiter lim;
  std::vector<limiter::line> due;
  int alone = 0;
  for (int i = 0; i < 1234; ++i)
    alone += lim.admit(log_level::warning, "server", "clients failed: wrong key", t0 + 1ms * i, due);
  CHECK(alone == 5);
  CHECK(due.empty());
  REQUIRE(lim.next_due());
  CHECK(*lim.next_due() == t0 + 10s);
  lim.flush(t0 + 9s, false, due);
  CHECK(due.empty());
  lim.flush(t0 + 10s, false, due);
  REQUIRE(due.size() == 1);
  CHECK(due[0].message == "1,229 more in the last 10 s (1,234 in all): clients failed: wrong key");
  CHECK(due[0].component == "server");
  CHECK(due[0].level == log_level::warning);
}

TEST_CASE("log limiter: while a flood goes on, each window is one count line; after a quiet window, events are logged again") {
  limiter lim;
  std::vector<limiter::line> due;
  int alone = 0;
  for (int i = 0; i < 10; ++i) alone += lim.admit(log_level::warning, "server", "c", t0 + 1s * i, due);
  CHECK(alone == 5);
  // The flood goes on in the next window: nothing one by one, the count line of the first.
  alone = 0;
  for (int i = 0; i < 10; ++i) alone += lim.admit(log_level::warning, "server", "c", t0 + 10s + 1s * i, due);
  CHECK(alone == 0);
  REQUIRE(due.size() == 1);
  CHECK(contains(due[0].message, "5 more in the last 10 s (10 in all)"));
  lim.flush(t0 + 20s, false, due);
  REQUIRE(due.size() == 2);
  CHECK(contains(due[1].message, "10 more in the last 10 s (10 in all)"));
  // A whole quiet window: the cause cools, and is logged one by one again.
  lim.flush(t0 + 31s, false, due);
  CHECK(!lim.next_due());
  CHECK(lim.admit(log_level::warning, "server", "c", t0 + 40s, due));
  CHECK(due.size() == 2);
}

TEST_CASE("log limiter: causes are counted apart, at most 64 of them, then as one") {
  limiter lim;
  std::vector<limiter::line> due;
  for (int i = 0; i < 200; ++i)
    for (int k = 0; k < 6; ++k) lim.admit(log_level::info, "x", "cause " + std::to_string(i), t0, due);
  lim.flush(t0, true, due);
  CHECK(due.size() == limiter::max_causes + 1);
  CHECK(contains(due.back().message, "other events") != contains(due.front().message, "other events"));
}

TEST_CASE("log_safe escapes control bytes and bytes beyond ASCII, and cuts") {
  CHECK(bokbok::log_safe("a\nb\r\t\x1b[31m\xe2\x80\xae") == "a\\nb\\r\\t\\x1b[31m\\xe2\\x80\\xae");
  CHECK(bokbok::log_safe(std::string(300, 'x'), 10) == "xxxxxxxxxx...");
  CHECK(bokbok::log_safe("plain \"text\" \\ stays") == "plain \"text\" \\ stays");
}

TEST_CASE("the level filters, a sink that throws loses only its line, and with no sink nothing is called") {
  std::vector<std::string> got;
  bokbok::set_log_sink(
      [&](log_level, std::string_view, std::string_view m) {
        got.emplace_back(m);
        if (m == "boom") throw std::runtime_error("sink failed");
      },
      log_level::info);
  bokbok::base::log(log_level::debug, "test", "below the level");
  bokbok::base::log(log_level::info, "test", "boom");
  bokbok::base::log(log_level::warning, "test", "after\nthe throw");
  CHECK(got == std::vector<std::string>{"boom", "after\\nthe throw"});
  bokbok::set_log_sink(nullptr);
  CHECK(!bokbok::base::log_on(log_level::error));
  bokbok::base::log(log_level::error, "test", "nobody hears this");
  CHECK(got.size() == 2);
}

TEST_CASE("the sink is told of a refused client, with the server's reason, at warning") {
  captured_log log;
  bokbok_test::temp_dir dir("log");
  std::string address = "unix:" + (dir.path / "s.sock").string();
  bokbok::server_options o;
  o.listen = {address};
  o.on_request = [](bokbok::connection&, message m) { return m; };
  o.authorize = [](const std::optional<bokbok::connection::credentials>&) { return false; };
  bokbok::server srv(o);
  srv.start();
  CHECK_THROWS_AS(bokbok::connect(address), bokbok::authentication_error);
  REQUIRE_MESSAGE(settles([&] { return log.find({"refused: not_authorized"}).has_value(); }),
                  log.dump());
  auto e = *log.find({"refused: not_authorized"});
  CHECK(e.level == log_level::warning);
  CHECK(e.component == "server");
  CHECK(contains(e.message, "may not use this server"));
}

TEST_CASE("the sink is told of a protocol violation on an open connection, with the peer's text escaped") {
  captured_log log;
  bokbok_test::temp_dir dir("log");
  std::string path = (dir.path / "s.sock").string();
  bokbok::server_options o;
  o.listen = {"unix:" + path};
  o.on_request = [](bokbok::connection&, message m) { return m; };
  bokbok::server srv(o);
  srv.start();
  bokbok::base::unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  REQUIRE(bokbok_test::write_all(fd.get(), bokbok_test::plain_greeting()));
  REQUIRE(settles([&] { return srv.connection_count() == 1; }));
  // The peer says we broke the protocol, with text meant to forge a log line.
  REQUIRE(bokbok_test::write_all(
      fd.get(), bokbok_test::frame_record(wire::frame_type::goaway, 0,
                       wire::encode_code_payload(std::uint16_t(bokbok::error_code::protocol),
                                                 "bad\n[server] forged line\x1b[2J"))));
  REQUIRE_MESSAGE(settles([&] { return log.find({"forged line"}).has_value(); }), log.dump());
  auto e = *log.find({"forged line"});
  CHECK(e.level == log_level::warning);
  CHECK(e.component == "connection");
  CHECK(contains(e.message, "protocol error"));
  CHECK(contains(e.message, "bad\\n[server] forged line\\x1b[2J"));
  CHECK(!contains(e.message, "\n"));
  CHECK(!contains(e.message, "\x1b"));
}

TEST_CASE("the sink is told, at debug, of an answer that came after its call's deadline") {
  captured_log log;
  auto caller_gave_up = std::make_shared<std::atomic<bool>>(false);
  bokbok::options slow;
  slow.on_request = [caller_gave_up](bokbok::connection&, message m) {
    // Answers only once the caller has given up (bounded), ignoring the cancel.
    settles([&] { return caller_gave_up->load(); });
    return m;
  };
  auto [client, server] = bokbok::connect_socketpair({}, slow);
  bokbok::call_options co;
  co.timeout = 50ms;
  CHECK_THROWS_AS(client.request({"x"}, co), bokbok::call_error);
  caller_gave_up->store(true);
  REQUIRE_MESSAGE(settles([&] { return log.find({"dropped an answer"}).has_value(); }),
                  log.dump());
  CHECK(log.find({"dropped an answer"})->level == log_level::debug);
}

TEST_CASE("the sink is told when a reconnecting connection loses its server and when it reconnects") {
  captured_log log;
  bokbok_test::temp_dir dir("log");
  std::string address = "unix:" + (dir.path / "s.sock").string();
  bokbok::server_options o;
  o.listen = {address};
  o.on_request = [](bokbok::connection&, message m) { return m; };
  auto first = std::make_unique<bokbok::server>(o);
  first->start();
  bokbok::reconnect_policy policy;
  policy.initial_delay = 10ms;
  policy.max_delay = 100ms;
  auto conn = bokbok::connect(address, {}, policy);
  CHECK(conn.request({"a"}) == message{"a"});
  first->stop(0ms);
  first->wait();
  first.reset();
  REQUIRE_MESSAGE(settles([&] { return log.find({"lost", "reconnecting"}).has_value(); }),
                  log.dump());
  CHECK(log.find({"lost", "reconnecting"})->component == "reconnect");
  bokbok::server second(o);
  second.start();
  REQUIRE_MESSAGE(settles([&] { return log.find({"reconnected to"}).has_value(); }), log.dump());
  CHECK(log.find({"reconnected to"})->level == log_level::info);
  CHECK(conn.request({"b"}) == message{"b"});
  conn.close();
}
