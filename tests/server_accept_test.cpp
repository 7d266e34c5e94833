// bokbok::server's duties on its event loop (issue 11, item 3): accepting under load,
// clients beyond the connection limit waiting and refused ones lingering, and stop()
// from a handler thread, from the loop thread and by a stop signal, all with no thread
// but the server's loop thread and its handler pool's (counted by name in /proc).
#include <doctest/doctest.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "support/child_process.hpp"
#include "support/demo_process.hpp"
#include "support/settle.hpp"

using namespace std::chrono_literals;
using bokbok::message;

namespace {

using bokbok_test::raise_fd_limit;

using bokbok_test::other_thread_names;  // leaves out ThreadSanitizer's own thread

// Those of the names that are neither a loop thread nor a handler thread.
std::vector<std::string> strangers(const std::vector<std::string>& names) {
  std::vector<std::string> out;
  for (const auto& n : names)
    if (n != "bokbok-loop" && n != "bokbok-handler") out.push_back(n);
  return out;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

std::string this_thread_name() {
  char name[16] = {};
  pthread_getname_np(pthread_self(), name, sizeof name);
  return name;
}

bokbok::server_options echo_server() {
  bokbok::server_options o;
  o.listen = {"tcp:127.0.0.1:0"};
  o.on_request = [](bokbok::connection&, message m) { return m; };
  return o;
}

// Waits for the server to stop, at most `limit`; true if it did.
bool stops_within(bokbok::server& srv, std::chrono::milliseconds limit) {
  return bokbok_test::settles([&] { return srv.stopped(); }, limit, 2ms);
}

using bokbok_test::demo_process;
using bokbok_test::temp_dir;

}  // namespace

TEST_CASE("200 clients connecting at once are all served, by no thread but the loop's and the handlers'") {
  raise_fd_limit();
  auto o = echo_server();
  o.max_connections = 300;
  bokbok::server srv(o);
  srv.start();
  std::string address = srv.local_addresses().at(0);
  constexpr int clients = 200;
  std::atomic<int> served{0};
  std::vector<std::string> failures;
  std::mutex mu;
  std::promise<void> go;
  std::shared_future<void> start = go.get_future().share();
  std::vector<std::thread> ts;
  for (int i = 0; i < clients; ++i)
    ts.emplace_back([&, i] {
      start.wait();  // all at once
      try {
        auto c = bokbok::connect(address, {});
        if (c.request({"hello", std::to_string(i)}) == message{"hello", std::to_string(i)})
          ++served;
        c.close();
        c.wait_closed();
      } catch (const std::exception& e) {
        std::lock_guard lock(mu);
        failures.push_back(e.what());
      }
    });
  go.set_value();
  for (auto& t : ts) t.join();
  CHECK(served == clients);
  CHECK_MESSAGE(failures.empty(), joined(failures));
  // The clients' threads are gone; what is left is this thread, the server's loop and
  // handler threads, and the clients' default loop.
  auto names = other_thread_names(::getpid());
  MESSAGE("threads besides the main one: " << joined(names));
  CHECK_MESSAGE(strangers(names).empty(), "threads other than bokbok-loop and bokbok-handler: "
                                              << joined(strangers(names)));
}

TEST_CASE("beyond a low connection limit, refused clients are told why and let go, then a client gets in") {
  auto o = echo_server();
  o.max_connections = 1;
  o.connection_wait = 100ms;
  std::atomic<int> refused_logged{0};
  o.on_connection_error = [&](const std::string&, const std::string& why) {
    if (why.find("refused: busy") != std::string::npos) ++refused_logged;
  };
  bokbok::server srv(o);
  srv.start();
  std::string address = srv.local_addresses().at(0);
  std::optional<bokbok::connection> holder(bokbok::connect(address, {}));
  CHECK(holder->request({"first"}) == message{"first"});

  // Each refused client sent its preamble and hello, which the server never reads: it
  // lingers, reading until the client hangs up, so the refusal is not lost to a reset.
  constexpr int refused = 20;
  std::atomic<int> told{0};
  std::vector<std::string> other;
  std::mutex mu;
  std::vector<std::thread> ts;
  for (int i = 0; i < refused; ++i)
    ts.emplace_back([&] {
      try {
        auto c = bokbok::connect(address, {});
        std::lock_guard lock(mu);
        other.push_back("let in beyond the limit");
      } catch (const bokbok::transport_error& e) {
        std::string what = e.what();
        if (what.find("refused by the peer: busy") != std::string::npos &&
            what.find("connection limit of 1") != std::string::npos)
          ++told;
        else {
          std::lock_guard lock(mu);
          other.push_back(what);
        }
      }
    });
  for (auto& t : ts) t.join();
  CHECK(told == refused);
  CHECK_MESSAGE(other.empty(), joined(other));
  // Each was reported before it was told, so by the time its connect() threw.
  CHECK(refused_logged == refused);
  CHECK(holder->request({"still"}) == message{"still"});

  holder->close();
  holder->wait_closed();
  holder.reset();
  // The slot frees once the server has seen the close: a normal client then gets in.
  std::optional<bokbok::connection> next;
  REQUIRE(bokbok_test::settles([&] {
    try {
      next.emplace(bokbok::connect(address, {}));
      return true;
    } catch (const bokbok::transport_error&) {
      return false;
    }
  }));
  CHECK(next->request({"in"}) == message{"in"});
  auto names = other_thread_names(::getpid());
  CHECK_MESSAGE(strangers(names).empty(), "threads other than bokbok-loop and bokbok-handler: "
                                              << joined(strangers(names)));
  next->close();
}

TEST_CASE("stop() from a handler thread finishes within the grace, with no thread of its own") {
  auto o = echo_server();
  bokbok::server* self = nullptr;
  std::promise<std::string> handler_thread;
  std::promise<std::vector<std::string>> threads_while_stopping;
  o.on_request = [&](bokbok::connection&, message m) -> message {
    if (m.at(0) == "stop") {
      handler_thread.set_value(this_thread_name());
      self->stop(2s);
      // Stopping has begun, and waits for this call: no stopper thread helps it.
      threads_while_stopping.set_value(other_thread_names(::getpid()));
    }
    return m;
  };
  bokbok::server srv(o);
  self = &srv;
  srv.start();
  auto c = bokbok::connect(srv.local_addresses().at(0), {});
  auto started = std::chrono::steady_clock::now();
  CHECK(c.request({"stop"}) == message{"stop"});
  CHECK(handler_thread.get_future().get() == "bokbok-handler");
  CHECK(stops_within(srv, 3s));
  CHECK(std::chrono::steady_clock::now() - started < 2500ms);
  auto names = threads_while_stopping.get_future().get();
  CHECK_MESSAGE(strangers(names).empty(), "threads other than bokbok-loop and bokbok-handler: "
                                              << joined(strangers(names)));
  c.wait_closed();
}

TEST_CASE("stop() from the loop thread (an inline handler) finishes within the grace") {
  auto o = echo_server();
  o.inline_handlers = true;
  bokbok::server* self = nullptr;
  std::promise<std::string> handler_thread;
  o.on_request = [&](bokbok::connection&, message m) -> message {
    if (m.at(0) == "stop") {
      handler_thread.set_value(this_thread_name());
      self->stop(2s);  // must not wait for the loop it runs on
    }
    return m;
  };
  bokbok::server srv(o);
  self = &srv;
  srv.start();
  auto c = bokbok::connect(srv.local_addresses().at(0), {});
  auto started = std::chrono::steady_clock::now();
  CHECK(c.request({"stop"}) == message{"stop"});
  CHECK(handler_thread.get_future().get() == "bokbok-loop");
  CHECK(stops_within(srv, 3s));
  CHECK(std::chrono::steady_clock::now() - started < 2500ms);
  c.wait_closed();
  srv.wait();
}

TEST_CASE("the demo server runs on its loop and handler threads only, and a stop signal stops it within the grace") {
  temp_dir dir;
  auto sock = dir.path / "demo.sock";
  std::string address = "unix:" + sock.string();
  demo_process server({"--listen", address});
  // The socket file appears at bind(), a moment before listen(): retry until it listens.
  std::optional<bokbok::connection> conn;
  REQUIRE(bokbok_test::settles([&] {
    try {
      conn.emplace(bokbok::connect(address, {}));
      return true;
    } catch (const bokbok::transport_error&) {
      return false;
    }
  }));
  CHECK(conn->request({"ping", "x"}) == message{"pong", "x"});
  auto names = other_thread_names(server.pid);
  MESSAGE("demo server threads besides the main one: " << joined(names));
  CHECK(std::count(names.begin(), names.end(), "bokbok-loop") >= 1);
  CHECK_MESSAGE(strangers(names).empty(), "threads other than bokbok-loop and bokbok-handler: "
                                              << joined(strangers(names)));

  // The connection stays open and idle: told goaway, it closes, and the server is done
  // well within the demo server's grace (server_options::stop_signal_grace, 5 s).
  auto started = std::chrono::steady_clock::now();
  REQUIRE(::kill(server.pid, SIGTERM) == 0);
  auto status = server.exit_within(5s);
  REQUIRE(status.has_value());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  CHECK(std::chrono::steady_clock::now() - started < 5s);
  CHECK_FALSE(std::filesystem::exists(sock));
  conn->wait_closed();
}
