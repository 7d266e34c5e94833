// RPC connections between two ends in this process, over a socketpair and over a pair of
// pipes, on the backend BOKBOK_BACKEND names (tests/meson.build runs both).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <latch>
#include <mutex>
#include <thread>

#include "bokbok/bokbok.hpp"

using namespace std::chrono_literals;
using bokbok::message;

namespace {

enum class transport_kind { socketpair, pipes };

std::pair<bokbok::connection, bokbok::connection> make_pair(transport_kind kind, const bokbok::options& a,
                                                            const bokbok::options& b) {
  if (kind == transport_kind::socketpair) return bokbok::connect_socketpair(a, b);
  int ab[2], ba[2];
  REQUIRE(pipe2(ab, O_CLOEXEC) == 0);
  REQUIRE(pipe2(ba, O_CLOEXEC) == 0);
  auto second = std::async(std::launch::async,
                           [&] { return bokbok::connect_fds(ab[0], ba[1], b, "pipes-b"); });
  auto first = bokbok::connect_fds(ba[0], ab[1], a, "pipes-a");
  return {first, second.get()};
}

bokbok::options echo_options() {
  bokbok::options o;
  o.on_request = [](bokbok::connection&, message m) { return m; };
  return o;
}

// Runs `body` once per transport_kind kind, as a doctest subcase.
template <class F>
void for_each_link(F body) {
  SUBCASE("over a socketpair") { body(transport_kind::socketpair); }
  SUBCASE("over a pair of pipes") { body(transport_kind::pipes); }
}

}  // namespace

TEST_CASE("calls go both ways and binary fields arrive intact") {
  for_each_link([](transport_kind kind) {
    auto [a, b] = make_pair(kind, echo_options(), echo_options());
    message odd = {"echo", std::string("nul\0inside", 10), "", std::string(1, '\xff')};
    CHECK(a.request(odd) == odd);
    CHECK(b.request(odd) == odd);
    CHECK(a.request({}) == message{});
    CHECK(b.request({"ping"}) == message{"ping"});
    a.close();
    b.wait_closed();
  });
}

TEST_CASE("a handler's exception reaches the caller as a remote error with its message") {
  for_each_link([](transport_kind kind) {
    bokbok::options server;
    server.on_request = [](bokbok::connection&, message m) -> message {
      if (m.at(0) == "fail") throw std::runtime_error(m.at(1));
      throw bokbok::remote_error(bokbok::error_code::busy, "try later");
    };
    auto [client, srv] = make_pair(kind, {}, server);
    try {
      client.request({"fail", "disk on fire"});
      FAIL("no error");
    } catch (const bokbok::remote_error& e) {
      CHECK(e.code() == bokbok::error_code::handler_failed);
      CHECK(std::string(e.what()) == "disk on fire");
    }
    try {
      client.request({"other"});
      FAIL("no error");
    } catch (const bokbok::remote_error& e) {
      CHECK(e.code() == bokbok::error_code::busy);
      CHECK(std::string(e.what()) == "try later");
    }
    // No handler on the client side: the server's call is refused, not hung.
    try {
      srv.request({"hello"});
      FAIL("no error");
    } catch (const bokbok::remote_error& e) {
      CHECK(e.code() == bokbok::error_code::no_such_method);
    }
    client.close();
  });
}

TEST_CASE("a handler can call back the caller while it runs, deeper than its threads") {
  for_each_link([](transport_kind kind) {
    // Each side answers "down N" by calling the other side with "down N-1": a chain of
    // nested calls 20 deep, with only 2 handler threads a side.
    bokbok::options o;
    o.max_threads = 2;
    o.on_request = [](bokbok::connection& c, message m) -> message {
      int n = std::stoi(m.at(1));
      if (n == 0) return {"bottom"};
      message inner = c.request({"down", std::to_string(n - 1)});
      inner.push_back(std::to_string(n));
      return inner;
    };
    auto [a, b] = make_pair(kind, o, o);
    message r = a.request({"down", "20"});
    REQUIRE(r.size() == 21);
    CHECK(r.front() == "bottom");
    CHECK(r.back() == "20");
    a.close();
  });
}

TEST_CASE("past max_waiting_handlers a nested call fails busy instead of adding a thread") {
  for_each_link([](transport_kind kind) {
    // The same chain 20 deep, but each side lets only 3 handlers wait in nested calls:
    // the 4th nested call on a side fails at once, and the failure travels back up.
    bokbok::options o;
    o.max_threads = 2;
    o.max_waiting_handlers = 3;
    o.on_request = [](bokbok::connection& c, message m) -> message {
      int n = std::stoi(m.at(1));
      if (n == 0) return {"bottom"};
      message inner = c.request({"down", std::to_string(n - 1)});
      inner.push_back(std::to_string(n));
      return inner;
    };
    auto [a, b] = make_pair(kind, o, o);
    try {
      a.request({"down", "20"});
      FAIL("a chain past the bound was answered");
    } catch (const bokbok::remote_error& e) {
      CHECK(e.code() == bokbok::error_code::busy);
      CHECK(e.message().find("wait in nested calls") != std::string::npos);
    }
    // Within the bound the same connection still serves chains.
    CHECK(a.request({"down", "4"}).front() == "bottom");
    a.close();
  });
}

TEST_CASE("large messages of many field sizes go both ways intact") {
  // Fields written from the caller's own memory (16 KiB and more) beside copied ones.
  std::string seq(300000, '\0');
  for (std::size_t i = 0; i < seq.size(); ++i) seq[i] = static_cast<char>(i * 31 + i / 251);
  const message big{"mixed", seq.substr(0, 16 * 1024), "", seq.substr(5, 70000), "abc",
                    seq.substr(1, 200001), seq.substr(9, 16383)};
  for_each_link([&](transport_kind kind) {
    auto [a, b] = make_pair(kind, echo_options(), echo_options());
    for (int i = 0; i < 3; ++i) {
      CHECK(a.request(big) == big);
      CHECK(b.request(big) == big);
    }
    a.close();
    b.wait_closed();
  });
}

TEST_CASE("a big response does not hold back small calls made meanwhile") {
  for_each_link([](transport_kind kind) {
    bokbok::options server;
    server.on_request = [](bokbok::connection&, message m) -> message {
      if (m.at(0) == "blob") return {std::string(std::stoul(m.at(1)), 'x')};
      return {"pong", m.at(1)};
    };
    auto [client, srv] = make_pair(kind, {}, server);
    for (int round = 0; round < 3; ++round) {
      auto blob = client.request_async({"blob", std::to_string(8 << 20)});
      int pings_while_blob = 0;
      while (blob.wait_for(0s) != std::future_status::ready && pings_while_blob < 1000) {
        CHECK(client.request({"ping", std::to_string(pings_while_blob)}) ==
              message{"pong", std::to_string(pings_while_blob)});
        ++pings_while_blob;
      }
      message b = blob.get();
      REQUIRE(b.size() == 1);
      CHECK(b[0].size() == (8u << 20));
      CHECK(pings_while_blob > 0);
    }
    client.close();
  });
}

TEST_CASE("16 threads a side calling at once each get their own answers") {
  for_each_link([](transport_kind kind) {
    auto ends = make_pair(kind, echo_options(), echo_options());
    bokbok::connection a = ends.first, b = ends.second;
    constexpr int threads = 16, calls = 1000;
    std::atomic<int> wrong{0}, done{0};
    std::vector<std::thread> ts;
    for (int side = 0; side < 2; ++side)
      for (int t = 0; t < threads; ++t)
        ts.emplace_back([&, side, t, conn = side ? b : a]() mutable {
          for (int i = 0; i < calls; ++i) {
            message m = {"echo", std::to_string(side), std::to_string(t), std::to_string(i)};
            if (conn.request(m) != m) ++wrong;
            ++done;
          }
        });
    for (auto& t : ts) t.join();
    CHECK(wrong == 0);
    CHECK(done == 2 * threads * calls);
    a.close();
  });
}

TEST_CASE("aborting with calls pending fails all of them promptly and runs each close handler once") {
  for_each_link([](transport_kind kind) {
    std::latch release(1);
    std::atomic<int> started{0}, finished{0}, closes_a{0}, closes_b{0};
    bokbok::options server;
    server.on_request = [&](bokbok::connection&, message m) -> message {
      ++started;
      release.wait();
      ++finished;
      return m;
    };
    server.on_close = [&](bokbok::connection&) { ++closes_b; };
    bokbok::options client;
    client.on_close = [&](bokbok::connection&) { ++closes_a; };
    auto [a, b] = make_pair(kind, client, server);
    std::vector<std::future<message>> calls;
    for (int i = 0; i < 8; ++i) calls.push_back(a.request_async({"hold", std::to_string(i)}));
    while (started < 8) std::this_thread::yield();
    a.abort();
    for (auto& f : calls) {
      REQUIRE(f.wait_for(5s) == std::future_status::ready);
      CHECK_THROWS_AS(f.get(), bokbok::transport_error);
    }
    CHECK_THROWS_AS(a.request({"after"}), bokbok::transport_error);
    a.wait_closed();
    b.wait_closed();  // the peer saw our close frame
    CHECK(b.close_reason() == "closed by peer");
    release.count_down();  // the handlers finish; their answers are dropped quietly
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (finished < 8 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    CHECK(finished == 8);
    CHECK(closes_a == 1);
    CHECK(closes_b == 1);
  });
}

TEST_CASE("a request larger than the peer accepts fails before it is sent, and the connection lives on") {
  for_each_link([](transport_kind kind) {
    bokbok::options small = echo_options();
    small.max_message_size = 1 << 20;
    auto [a, b] = make_pair(kind, echo_options(), small);
    try {
      a.request({std::string(2 << 20, 'y')});
      FAIL("no error");
    } catch (const bokbok::call_error& e) {
      CHECK(e.code() == bokbok::error_code::too_large);
    }
    CHECK(a.request({"still", "here"}) == message{"still", "here"});
    // A response too big for the limit comes back as an error, not a broken transport_kind.
    bokbok::options big_answer;
    big_answer.on_request = [](bokbok::connection&, message) -> message {
      return {std::string(2 << 20, 'z')};
    };
    auto [c, d] = make_pair(kind, small, big_answer);
    try {
      c.request({"give"});
      FAIL("no error");
    } catch (const bokbok::remote_error& e) {
      CHECK(e.code() == bokbok::error_code::too_large);
    }
    CHECK_FALSE(c.closed());
    a.close();
    c.close();
  });
}

TEST_CASE("a peer that prints something else first is refused with the bytes it sent") {
  int p[2], q[2];
  REQUIRE(pipe2(p, O_CLOEXEC) == 0);
  REQUIRE(pipe2(q, O_CLOEXEC) == 0);
  std::string banner = "Welcome to host!\n";
  REQUIRE(write(p[1], banner.data(), banner.size()) == ssize_t(banner.size()));
  try {
    bokbok::connect_fds(p[0], q[1], {}, "banner-peer");
    FAIL("no error");
  } catch (const bokbok::protocol_error& e) {
    std::string what = e.what();
    CHECK(what.find("Welcome to host!\\n") != std::string::npos);
  }
  close(p[1]);
  close(q[0]);
}

TEST_CASE("a silent peer makes opening time out, and one that hangs up makes it fail") {
  int p[2], q[2];
  REQUIRE(pipe2(p, O_CLOEXEC) == 0);
  REQUIRE(pipe2(q, O_CLOEXEC) == 0);
  bokbok::options o;
  o.connect_timeout = 200ms;
  auto t0 = std::chrono::steady_clock::now();
  try {
    bokbok::connect_fds(p[0], q[1], o, "silent-peer");
    FAIL("no error");
  } catch (const bokbok::transport_error& e) {
    CHECK(std::string(e.what()).find("timed out") != std::string::npos);
  }
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
  close(p[1]);
  close(q[0]);

  REQUIRE(pipe2(p, O_CLOEXEC) == 0);
  REQUIRE(pipe2(q, O_CLOEXEC) == 0);
  close(p[1]);  // the peer is gone before it says anything
  try {
    bokbok::connect_fds(p[0], q[1], o, "gone-peer");
    FAIL("no error");
  } catch (const bokbok::transport_error& e) {
    CHECK(std::string(e.what()).find("before speaking") != std::string::npos);
  }
  close(q[0]);
}

TEST_CASE("a connection exposes its peer address, an empty user in plain mode, and user data") {
  auto [a, b] = bokbok::connect_socketpair(echo_options(), echo_options());
  CHECK(a.peer_address() == "socketpair");
  CHECK(a.user().empty());
  a.user_data() = 42;
  bokbok::connection copy = a;
  CHECK(std::any_cast<int>(copy.user_data()) == 42);
  a.close();
}

TEST_CASE("calls with different deadlines each end at their own, in any order of calling") {
  // The peer's handler holds every call until it is cancelled (the caller's deadline
  // sends a cancel), bounded by 10 s.
  bokbok::options peer;
  peer.on_request = [](bokbok::connection&, message m) -> message {
    std::mutex mu;
    std::condition_variable_any cv;
    std::unique_lock lock(mu);
    cv.wait_for(lock, bokbok::this_call::stop_token(), 10s, [] { return false; });
    return m;
  };
  auto [a, b] = bokbok::connect_socketpair({}, peer);
  auto call_with = [&a = a](std::chrono::milliseconds timeout) {
    bokbok::call_options o;
    o.timeout = timeout;
    return a.request_async({"hold"}, o);
  };
  auto start = std::chrono::steady_clock::now();
  auto late = call_with(1500ms);  // armed first
  auto early = call_with(100ms);  // earlier: the timer must move forward for it
  auto later = call_with(3000ms);
  auto ended_after = [&](std::future<message>& f) {
    REQUIRE(f.wait_for(10s) == std::future_status::ready);
    auto took = std::chrono::steady_clock::now() - start;
    try {
      f.get();
      FAIL("the call succeeded");
    } catch (const bokbok::call_error& e) {
      CHECK(e.code() == bokbok::error_code::deadline_exceeded);
    }
    return took;
  };
  auto t_early = ended_after(early);
  auto t_late = ended_after(late);
  auto t_later = ended_after(later);
  CHECK(t_early >= 100ms);
  CHECK(t_early < 1500ms);  // not held back to the first call's deadline
  CHECK(t_late >= 1500ms);
  CHECK(t_later >= 3000ms);
  a.close();
}
