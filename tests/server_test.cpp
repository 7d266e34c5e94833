// bokbok::server over real loopback sockets: TCP (IPv4, IPv6, a host name), UNIX path
// and abstract sockets; many clients; the connection limit; graceful stop; hooks; bad
// input at a listener.
#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <cstdio>
#include <malloc.h>
#include <cstring>

#include "bokbok/bokbok.hpp"
#include "support/process_temp_dir.hpp"
#include "support/demo_process.hpp"
#include "transport/sockets.hpp"

using namespace std::chrono_literals;
using bokbok::message;

namespace {

using bokbok_test::raise_fd_limit;

bokbok::server_options echo_server(std::vector<std::string> listen) {
  bokbok::server_options o;
  o.listen = std::move(listen);
  o.on_request = [](bokbok::connection& c, message m) -> message {
    if (!m.empty() && m[0] == "sleep") std::this_thread::sleep_for(std::chrono::milliseconds(std::stoi(m.at(1))));
    if (!m.empty() && m[0] == "back") return c.request({"called", "back"});
    if (!m.empty() && m[0] == "creds") {
      auto cr = c.peer_credentials();
      return {cr ? std::to_string(cr->uid) : "none", cr ? std::to_string(cr->pid) : "none"};
    }
    return m;
  };
  return o;
}

bokbok::options answering_client() {
  bokbok::options o;
  o.on_request = [](bokbok::connection&, message m) { return message{"client", m.at(0)}; };
  return o;
}

std::string temp_socket_path(const char* name) {
  return (bokbok_test::process_temp_dir("bokbok-test") / name).string();
}

// Collects what a server reports through on_connection_error.
struct connection_error_log {
  std::mutex mu;
  std::vector<std::string> logged;
  void attach(bokbok::server_options& o) {
    o.on_connection_error = [this](const std::string&, const std::string& why) {
      std::lock_guard lock(mu);
      logged.push_back(why);
    };
  }
  std::vector<std::string> lines() {
    std::lock_guard lock(mu);
    return logged;
  }
};

}  // namespace

TEST_CASE("a server answers calls both ways over every socket kind") {
  std::string path = temp_socket_path("both-ways.sock");
  std::string abstract = "unix:@bokbok-test-" + std::to_string(getpid());
  bokbok::server srv(echo_server({"tcp:127.0.0.1:0", "tcp:[::1]:0", "unix:" + path, abstract}));
  srv.start();
  auto bound = srv.local_addresses();
  REQUIRE(bound.size() == 4);
  std::vector<std::string> targets = bound;
  // A host name, resolved: the port of the IPv4 listener, reached as localhost.
  targets.push_back("tcp:localhost:" + bound[0].substr(bound[0].rfind(':') + 1));
  for (const auto& address : targets) {
    CAPTURE(address);
    auto c = bokbok::connect(address, answering_client());
    CHECK(c.request({"hello", "there"}) == message{"hello", "there"});
    CHECK(c.request({"back"}) == message{"client", "called"});
    c.close();
    c.wait_closed();
  }
  // SO_PEERCRED reaches the handler on UNIX sockets only.
  auto u = bokbok::connect("unix:" + path, {});
  CHECK(u.request({"creds"}) == message{std::to_string(getuid()), std::to_string(getpid())});
  u.close();
  auto t = bokbok::connect(bound[0], {});
  CHECK(t.request({"creds"}) == message{"none", "none"});
  t.close();
  srv.stop();
  srv.wait();
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("a tcp:*:PORT listener takes IPv4 and IPv6 clients") {
  bokbok::server srv(echo_server({"tcp:*:0"}));
  srv.start();
  auto bound = srv.local_addresses();
  REQUIRE(bound.size() == 1);
  std::string port = bound[0].substr(bound[0].rfind(':') + 1);
  for (std::string host : {"127.0.0.1", "[::1]"}) {
    auto c = bokbok::connect("tcp:" + host + ":" + port, {});
    CHECK(c.request({"x"}) == message{"x"});
    c.close();
  }
}

TEST_CASE("200 clients at once, each calling from two threads, all get their own answers") {
  raise_fd_limit();
  auto o = echo_server({"tcp:127.0.0.1:0"});
  o.max_connections = 300;
  bokbok::server srv(o);
  srv.start();
  std::string address = srv.local_addresses().at(0);
  constexpr int clients = 200, threads = 2, calls = 10;
  std::atomic<int> wrong{0}, errors{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < clients; ++i)
    ts.emplace_back([&, i] {
      try {
        auto c = bokbok::connect(address, {});
        std::vector<std::thread> inner;
        for (int t = 0; t < threads; ++t)
          inner.emplace_back([&, t] {
            for (int k = 0; k < calls; ++k) {
              message m = {std::to_string(i), std::to_string(t), std::to_string(k)};
              if (c.request(m) != m) ++wrong;
            }
          });
        for (auto& th : inner) th.join();
        c.close();
        c.wait_closed();
      } catch (const std::exception& e) {
        ++errors;
        MESSAGE(e.what());
      }
    });
  for (auto& t : ts) t.join();
  CHECK(errors == 0);
  CHECK(wrong == 0);
}

TEST_CASE("beyond the connection limit a client waits briefly, then is refused clearly") {
  auto o = echo_server({"tcp:127.0.0.1:0"});
  o.max_connections = 2;
  o.connection_wait = 300ms;
  connection_error_log log;
  log.attach(o);
  bokbok::server srv(o);
  srv.start();
  std::string address = srv.local_addresses().at(0);
  auto a = bokbok::connect(address, {});
  auto b = bokbok::connect(address, {});
  try {
    bokbok::connect(address, {});
    FAIL("a third client was let in");
  } catch (const bokbok::transport_error& e) {
    CHECK(std::string(e.what()).find("refused by the peer: busy") != std::string::npos);
  }
  // The others keep working.
  CHECK(a.request({"still"}) == message{"still"});
  CHECK(b.request({"here"}) == message{"here"});
  {
    auto logged = log.lines();
    REQUIRE(logged.size() == 1);
    CHECK(logged[0].find("refused") != std::string::npos);
  }
  // A slot that frees while a client waits lets it in.
  auto third = std::async(std::launch::async, [&] { return bokbok::connect(address, {}); });
  std::this_thread::yield();
  a.close();
  auto c = third.get();
  CHECK(c.request({"in"}) == message{"in"});
  c.close();
  b.close();
}

TEST_CASE("stop() lets running calls finish, then the listener is gone") {
  std::atomic<int> starts{0}, stops{0};
  auto o = echo_server({"tcp:127.0.0.1:0"});
  o.on_start = [&] { ++starts; };
  o.on_stop = [&] { ++stops; };
  bokbok::server srv(o);
  srv.start();
  CHECK(starts == 1);
  std::string address = srv.local_addresses().at(0);
  auto c = bokbok::connect(address, {});
  auto slow = c.request_async({"sleep", "300"});
  CHECK(c.request({"quick"}) == message{"quick"});  // the slow call is running now
  srv.stop(5s);
  CHECK(slow.get() == message{"sleep", "300"});
  srv.wait();
  CHECK(srv.stopped());
  CHECK(stops == 1);
  c.wait_closed();
  CHECK_THROWS_AS(bokbok::connect(address, {}), bokbok::transport_error);
}

TEST_CASE("the open handler runs before the connection's requests, and handler failures are reported") {
  auto o = echo_server({"tcp:127.0.0.1:0"});
  std::atomic<int> handler_errors{0};
  o.on_open = [](bokbok::connection& c) {
    std::this_thread::sleep_for(50ms);  // a slow open handler: requests must wait for it
    c.user_data() = std::string("opened");
  };
  o.on_request = [](bokbok::connection& c, message m) -> message {
    if (m.at(0) == "fail") throw std::runtime_error("no");
    return {std::any_cast<std::string>(c.user_data())};
  };
  o.on_handler_error = [&](bokbok::connection&, std::exception_ptr) { ++handler_errors; };
  bokbok::server srv(o);
  srv.start();
  auto c = bokbok::connect(srv.local_addresses().at(0), {});
  CHECK(c.request({"who"}) == message{"opened"});
  CHECK_THROWS_AS(c.request({"fail"}), bokbok::remote_error);
  CHECK(handler_errors == 1);
  c.close();
}

TEST_CASE("a connection counts until its on_close has returned, then not") {
  auto o = echo_server({"tcp:127.0.0.1:0"});
  bokbok::server* srv_ptr = nullptr;
  std::promise<std::size_t> in_close;
  o.on_close = [&](bokbok::connection&) { in_close.set_value(srv_ptr->connection_count()); };
  bokbok::server srv(o);
  srv_ptr = &srv;
  srv.start();
  auto c = bokbok::connect(srv.local_addresses().at(0), {});
  CHECK(c.request({"x"}) == message{"x"});
  CHECK(srv.connection_count() == 1);
  auto seen = in_close.get_future();
  c.close();
  REQUIRE(seen.wait_for(10s) == std::future_status::ready);
  CHECK(seen.get() == 1);
  const auto end = std::chrono::steady_clock::now() + 10s;
  while (srv.connection_count() != 0 && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(2ms);  // polling a condition, with a bound
  CHECK(srv.connection_count() == 0);
}

namespace {

// Thread ids of this process's threads named `name` (/proc/self/task/*/comm).
std::set<std::string> threads_named(const std::string& name) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream in(e.path() / "comm");
    std::string comm;
    if (std::getline(in, comm) && comm == name) out.insert(e.path().filename().string());
  }
  return out;
}

}  // namespace

// A server's own bookkeeping when a connection ends (its place, its count) runs where the
// user's close handler would: with none, on the loop thread. Each short-lived client used
// to wake a handler thread just for that.
TEST_CASE("a server without on_close starts no handler thread when its connections end") {
  auto o = echo_server({"unix:@bokbok-server-test-close-" + std::to_string(getpid())});
  o.inline_handlers = true;  // calls take no handler thread either
  bokbok::server srv(o);
  srv.start();
  const auto before = threads_named("bokbok-handler");
  for (int i = 0; i < 20; ++i) {
    auto c = bokbok::connect(srv.local_addresses().at(0), {});
    CHECK(c.request({"x", std::to_string(i)}) == message{"x", std::to_string(i)});
    c.close();
    c.wait_closed();
  }
  const auto end = std::chrono::steady_clock::now() + 10s;
  while (srv.connection_count() != 0 && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(2ms);  // polling a condition, with a bound
  CHECK(srv.connection_count() == 0);
  std::size_t started = 0;
  for (const auto& tid : threads_named("bokbok-handler")) started += before.count(tid) == 0;
  CHECK(started == 0);
  srv.stop();
}

TEST_CASE("garbage, silence and a half preamble at a listener end those connections only") {
  auto o = echo_server({"tcp:127.0.0.1:0"});
  o.handshake_timeout = 300ms;
  connection_error_log log;
  log.attach(o);
  bokbok::server srv(o);
  srv.start();
  std::string address = srv.local_addresses().at(0);
  auto good = bokbok::connect(address, {});
  auto addr = bokbok::transport::parse_address(address);
  auto raw = [&](std::string bytes, bool hang_up) {
    auto s = bokbok::transport::connect_socket(addr, 2s);
    if (!bytes.empty()) REQUIRE(write(s.fd.get(), bytes.data(), bytes.size()) == ssize_t(bytes.size()));
    if (hang_up) s.fd.reset();
    return s;
  };
  auto garbage = raw("GET / HTTP/1.0\r\n\r\n", false);
  auto half = raw("BOKB", true);
  auto silent = raw("", false);
  // Each ends with an error logged, while the good client keeps being served.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    CHECK(good.request({"alive"}) == message{"alive"});
    if (log.lines().size() >= 3 || std::chrono::steady_clock::now() > deadline) break;
  }
  auto logged = log.lines();
  REQUIRE(logged.size() == 3);
  std::string all = logged[0] + "\n" + logged[1] + "\n" + logged[2];
  CHECK(all.find("GET / HTTP/1.0") != std::string::npos);
  CHECK(all.find("timed out") != std::string::npos);
  CHECK(all.find("BOKB") != std::string::npos);
  good.close();
}

namespace {
// Bytes the allocator has handed out and not had back, in KiB: unlike the resident size,
// it does not count freed memory the allocator keeps for reuse. (Under ASan, whose
// allocator glibc cannot see, it reads 0, and ASan's own leak check stands in.)
long heap_in_use_kib() {
  struct mallinfo2 mi = mallinfo2();
  return static_cast<long>((mi.uordblks + mi.hblkhd) / 1024);
}
}  // namespace

TEST_CASE("a flood of clients sending garbage leaves memory flat and the server serving") {
  auto o = echo_server({"tcp:127.0.0.1:0"});
  std::atomic<int> failed{0};
  o.on_connection_error = [&](const std::string&, const std::string&) { ++failed; };
  bokbok::server srv(o);
  srv.start();
  std::string address = srv.local_addresses().at(0);
  auto addr = bokbok::transport::parse_address(address);
  auto flood = [&](int n) {
    std::string junk(4096, '\x17');
    for (int i = 0; i < n; ++i) {
      auto s = bokbok::transport::connect_socket(addr, 2s);
      (void)!write(s.fd.get(), junk.data(), junk.size());
    }
  };
  int before_failed = failed;
  flood(100);  // warm up: allocator pools, thread stacks
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (failed - before_failed < 100 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);  // waiting for the server to report, bounded
  long before = heap_in_use_kib();
  flood(500);
  while (failed - before_failed < 600 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  // Failed connections let go of their memory once their last frames are out or their
  // drain timer (2 s) fires: wait for that, bounded.
  long after = heap_in_use_kib();
  while (after - before >= 8 * 1024 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
    after = heap_in_use_kib();
  }
  CHECK(failed - before_failed == 600);
  MESSAGE("heap in use before " << before << " KiB, after 500 more bad clients " << after << " KiB");
  CHECK(after - before < 8 * 1024);  // each bad client held 4 KiB at most, briefly
  auto good = bokbok::connect(address, {});
  CHECK(good.request({"fine"}) == message{"fine"});
  CHECK(srv.connection_count() == 1);
  good.close();
}

TEST_CASE("under systemd the server says READY=1 and pings the watchdog") {
  std::string path = temp_socket_path("notify.sock");
  std::filesystem::remove(path);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  setenv("WATCHDOG_USEC", "200000", 1);
  {
    bokbok::server srv(echo_server({"tcp:127.0.0.1:0"}));
    srv.start();
    std::vector<std::string> got;
    char buf[256];
    while (got.size() < 3) {
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) { MESSAGE("recv: " << std::strerror(errno)); break; }  // SO_RCVTIMEO bounds the wait
      got.emplace_back(buf, n);
    }
    for (auto& g : got) MESSAGE("got " << g);
    REQUIRE(got.size() == 3);
    CHECK(got[0] == "READY=1");
    CHECK(got[1] == "WATCHDOG=1");
    CHECK(got[2] == "WATCHDOG=1");
  }
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  close(fd);
}
