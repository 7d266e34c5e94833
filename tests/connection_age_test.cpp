// server_options::max_connection_age: a connection is ended gracefully (goaway) once it
// is that old, and a client with a reconnect_policy goes on, on a new connection.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "support/settle.hpp"

using namespace std::chrono_literals;
using bokbok::message;

namespace {

// An echo server whose connections end at `max_age` (none when zero), with a
// reconnecting client on it. It counts the connections it opened and, by the server's
// view of their peers, the client's connections that carried a call.
struct aging_server {
  std::atomic<int> opened{0};
  std::mutex mu;
  std::set<std::string> peers;
  std::atomic<int> drops{0};
  bokbok::server srv;
  bokbok::connection client;

  aging_server(std::chrono::milliseconds max_age, std::chrono::milliseconds reconnect_delay)
      : srv(options(max_age)), client(start_and_connect(reconnect_delay)) {}

  std::size_t connections() {
    std::lock_guard l(mu);
    return peers.size();
  }

 private:
  bokbok::server_options options(std::chrono::milliseconds max_age) {
    bokbok::server_options o;
    o.listen = {"tcp:127.0.0.1:0"};
    if (max_age.count() > 0) {
      o.max_connection_age = max_age;
      o.max_connection_age_grace = 5s;
    }
    o.on_open = [this](bokbok::connection&) { ++opened; };
    o.on_request = [this](bokbok::connection& c, message m) {
      std::lock_guard l(mu);
      peers.insert(c.peer_address());
      return m;
    };
    return o;
  }

  bokbok::connection start_and_connect(std::chrono::milliseconds reconnect_delay) {
    srv.start();
    bokbok::reconnect_policy p;
    p.initial_delay = reconnect_delay;
    p.on_drop = [this](const std::string&) { ++drops; };
    return bokbok::connect(srv.local_addresses().at(0), {}, p);
  }
};

}  // namespace

TEST_CASE("past the maximum connection age a reconnecting client lands on a new connection") {
  aging_server f(300ms, 10ms);
  auto& c = f.client;
  // Calls, with deadlines, until the client has been on three connections (at most
  // 2,000 calls and 30 s). Failures are counted and reported with why.
  std::vector<std::string> failures;
  int calls = 0;
  const auto end = std::chrono::steady_clock::now() + 30s;
  while (f.connections() < 3 && calls < 2000 && std::chrono::steady_clock::now() < end) {
    ++calls;
    bokbok::call_options co;
    co.deadline = std::chrono::steady_clock::now() + 5s;
    try {
      auto answer = c.request({"n", std::to_string(calls)}, co);
      CHECK(answer == message{"n", std::to_string(calls)});
    } catch (const std::exception& e) {
      failures.push_back(e.what());
    }
    std::this_thread::sleep_for(5ms);  // pacing the calls, not waiting for an outcome
  }
  CHECK_MESSAGE(f.connections() >= 3, calls << " calls, " << f.opened << " opened");
  CHECK(f.drops >= 2);
  std::string why;
  for (auto& e : failures) why += e + "\n";
  MESSAGE(failures.size() << " of " << calls << " calls failed\n" << why);
  // None fails: a call made after the goaway arrived and before the client had dialled
  // again waits for the new connection, and one the goaway refused unrun goes again.
  CHECK(failures.empty());
  c.close();
  c.wait_closed();
}

TEST_CASE("calls from several threads while the server keeps going away all succeed") {
  // Every 100 ms the server ends the client's connection with a goaway; four threads
  // call back to back with deadlines, so calls keep landing between a goaway and the
  // new connection, and just past the goaway's last id. None may fail: such a call
  // never ran, so the reconnecting connection holds it for the next connection (or
  // sends it again there). Bounded: 5 s or 12 connections, whichever comes first.
  aging_server f(100ms, 1ms);
  auto& c = f.client;
  std::atomic<int> calls{0};
  std::vector<std::string> failures;
  const auto end = std::chrono::steady_clock::now() + 5s;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20000 && f.connections() < 12 && std::chrono::steady_clock::now() < end;
           ++i) {
        ++calls;
        bokbok::call_options co;
        co.deadline = std::chrono::steady_clock::now() + 5s;
        message m{std::to_string(t), std::to_string(i)};
        try {
          auto answer = c.request(m, co);
          if (answer != m) {
            std::lock_guard l(f.mu);
            failures.push_back("a wrong answer");
          }
        } catch (const std::exception& e) {
          std::lock_guard l(f.mu);
          failures.push_back(e.what());
        }
      }
    });
  for (auto& th : threads) th.join();
  std::string why;
  for (auto& e : failures) why += e + "\n";
  MESSAGE(failures.size() << " of " << calls.load() << " calls failed, over " << f.connections()
                          << " connections\n" << why);
  CHECK(f.connections() >= 6);  // it went away and came back several times
  CHECK(failures.empty());
  c.close();
  c.wait_closed();
}

TEST_CASE("without a maximum age a connection stays") {
  aging_server f(0ms, 100ms);
  auto& c = f.client;
  for (int i = 0; i < 20; ++i) {
    CHECK(c.request({"n"}) == message{"n"});
    std::this_thread::sleep_for(20ms);  // spreading the calls over 400 ms, no outcome awaited
  }
  CHECK(f.opened == 1);
}
