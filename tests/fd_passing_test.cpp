// File descriptors with messages (README "File descriptors", PROTOCOL.md §13), end to
// end: the real demo server as an exec: child over a socketpair and listening on a UNIX
// socket, in-process connections over socketpairs, TCP and pipes, key mode, and a raw
// peer that lies about its fds.
#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "bokbok/server.hpp"
#include "support/demo_process.hpp"
#include "support/key_users.hpp"
#include "support/open_fds.hpp"
#include "support/raw_peer.hpp"
#include "support/settle.hpp"
#include "transport/command_line.hpp"
#include "wire/frame.hpp"

using namespace std::chrono_literals;
using bokbok::fd_list;
using bokbok::message;
using bokbok::owned_fd;

namespace {

// Options with a 30 s timeout (a designated initializer would warn: the other members
// are left out).
bokbok::call_options within_30s() {
  bokbok::call_options o;
  o.timeout = std::chrono::seconds(30);
  return o;
}

std::string demo_command() {
  return "exec:" + bokbok::transport::shell_quote(bokbok_test::built_program("BOKBOK_DEMO_SERVER")) +
         " --stdio";
}

struct pipe_pair {
  owned_fd read, write;
  pipe_pair() {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    read.reset(p[0]);
    write.reset(p[1]);
  }
};

fd_list one(owned_fd fd) {
  fd_list l;
  l.push_back(std::move(fd));
  return l;
}

owned_fd dup_of(int fd) {
  owned_fd d(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  REQUIRE(d);
  return d;
}

// Reads exactly n bytes within a bound.
std::string read_n(int fd, std::size_t n) {
  std::string out;
  const auto end = std::chrono::steady_clock::now() + 10s;
  while (out.size() < n && std::chrono::steady_clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[256];
    ssize_t got = ::read(fd, buf, std::min(sizeof buf, n - out.size()));
    if (got <= 0) break;
    out.append(buf, std::size_t(got));
  }
  return out;
}

std::size_t fd_count_of(pid_t pid) {
  std::size_t n = 0;
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  if (DIR* d = ::opendir(dir.c_str())) {
    while (auto* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
  }
  return n;
}

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

bokbok::options socketpair_child() {
  bokbok::options o;
  o.child.socketpair = true;
  return o;
}

}  // namespace

TEST_CASE("a pipe's write end passed to an exec: demo server over a socketpair is written by the child") {
  auto c = bokbok::connect(demo_command(), socketpair_child());
  pipe_pair p;
  auto answer = c.request_with_fds({"write-fd", "hello through the socket"}, one(std::move(p.write)));
  CHECK(answer.fields == message{"wrote", "24"});
  CHECK(answer.fds.empty());
  CHECK(read_n(p.read.get(), 24) == "hello through the socket");
  c.close();
  c.wait_closed();
}

TEST_CASE("request_async_with_fds: several calls in flight each send theirs and get the response's") {
  auto c = bokbok::connect(demo_command(), socketpair_child());
  pipe_pair first, second;
  auto wrote1 = c.request_async_with_fds({"write-fd", "first"}, one(std::move(first.write)));
  auto listening = c.request_async_with_fds({"listen-fd"}, {});
  auto wrote2 = c.request_async_with_fds({"write-fd", "second"}, one(std::move(second.write)));
  auto refused = c.request_async_with_fds({"no-such-method"}, {});
  for (auto* f : {&wrote1, &listening, &wrote2, &refused})
    REQUIRE(f->wait_for(20s) == std::future_status::ready);
  bokbok::parcel a = wrote1.get(), l = listening.get(), b = wrote2.get();
  CHECK(a.fields == message{"wrote", "5"});
  CHECK(a.fds.empty());
  CHECK(read_n(first.read.get(), 5) == "first");
  CHECK(b.fields == message{"wrote", "6"});
  CHECK(read_n(second.read.get(), 6) == "second");
  // The listening socket came back with its answer, and is the one the answer names.
  REQUIRE(l.fields.size() == 2);
  REQUIRE(l.fds.size() == 1);
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(l.fds[0].get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  CHECK(ntohs(addr.sin_port) == std::stoi(l.fields[1]));
  CHECK_THROWS_AS(refused.get(), bokbok::remote_error);
  c.close();
  c.wait_closed();
}

TEST_CASE("request_async_with_fds over TCP throws usage_error before sending") {
  bokbok::server_options o;
  o.listen = {"tcp:127.0.0.1:0"};
  o.on_request = [](bokbok::connection&, message m) { return m; };
  bokbok::server s(o);
  s.start();
  auto c = bokbok::connect(s.local_addresses().at(0));
  pipe_pair p;
  CHECK_THROWS_AS(c.request_async_with_fds({"x"}, one(std::move(p.write))), bokbok::usage_error);
  auto plain = c.request_async_with_fds({"y"}, {});  // no fds: any transport
  REQUIRE(plain.wait_for(20s) == std::future_status::ready);
  CHECK(plain.get().fields == message{"y"});
}

TEST_CASE("the demo server child passes a listening socket back and the parent connects to it") {
  auto c = bokbok::connect(demo_command(), socketpair_child());
  auto answer = c.request_with_fds({"listen-fd"}, {});
  REQUIRE(answer.fields.size() == 2);
  REQUIRE(answer.fds.size() == 1);
  const int port = std::stoi(answer.fields[1]);
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(answer.fds[0].get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  CHECK(ntohs(addr.sin_port) == port);
  owned_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  owned_fd accepted(::accept4(answer.fds[0].get(), nullptr, nullptr, SOCK_CLOEXEC));
  REQUIRE(accepted);
  REQUIRE(::write(s.get(), "x", 1) == 1);
  CHECK(read_n(accepted.get(), 1) == "x");
  c.close();
  c.wait_closed();
}

TEST_CASE("10,000 messages with fds each way leave the open fd count where it started") {
  const auto before = bokbok_test::open_fds();
  {
    std::atomic<int> got{0};
    bokbok::options server;
    server.on_request = [&](bokbok::connection&, message m) {
      fd_list fds = bokbok::this_call::take_fds();
      got += int(fds.size());
      bokbok::this_call::attach_fds(std::move(fds));  // the same fds go back
      return m;
    };
    auto [client, srv] = bokbok::connect_socketpair({}, server);
    pipe_pair p;
    for (int i = 0; i < 10000; ++i) {
      fd_list fds;
      fds.push_back(dup_of(p.write.get()));
      if (i % 2) fds.push_back(dup_of(p.read.get()));
      auto answer = client.request_with_fds({"n", std::to_string(i)}, std::move(fds));
      REQUIRE(answer.fields == message{"n", std::to_string(i)});
      REQUIRE(answer.fds.size() == std::size_t(1 + i % 2));
    }
    CHECK(got == 15000);
    client.close();
    client.wait_closed();
    srv.wait_closed();
  }
  std::string left;
  CHECK(bokbok_test::settles([&] { return (left = bokbok_test::opened_since(before)).empty(); }));
  CHECK(left == "");
}

TEST_CASE("254 fds are refused with usage_error before anything is sent") {
  std::atomic<int> handled{0};
  bokbok::options server;
  server.on_request = [&](bokbok::connection&, message m) {
    ++handled;
    return m;
  };
  auto [client, srv] = bokbok::connect_socketpair({}, server);
  pipe_pair p;
  fd_list fds;
  for (int i = 0; i < 254; ++i) fds.push_back(dup_of(p.write.get()));
  CHECK_THROWS_AS(client.request_with_fds({"x"}, std::move(fds)), bokbok::usage_error);
  fd_list notes;
  for (int i = 0; i < 254; ++i) notes.push_back(dup_of(p.write.get()));
  CHECK_THROWS_AS(client.notify_with_fds({"x"}, std::move(notes)), bokbok::usage_error);
  CHECK(handled == 0);
  // 253 do go.
  fd_list most;
  for (int i = 0; i < 253; ++i) most.push_back(dup_of(p.write.get()));
  CHECK(client.request_with_fds({"ok"}, std::move(most)).fields == message{"ok"});
  CHECK(handled == 1);
}

TEST_CASE("fds over TCP fail with usage_error before sending and the connection keeps working") {
  std::atomic<int> handled{0};
  bokbok::server_options o;
  o.listen = {"tcp:127.0.0.1:0"};
  o.on_request = [&](bokbok::connection&, message m) {
    ++handled;
    return m;
  };
  bokbok::server s(o);
  s.start();
  const std::string address = s.local_addresses().at(0);
  auto c = bokbok::connect(address);
  pipe_pair p;
  std::string what;
  try {
    c.request_with_fds({"x"}, one(dup_of(p.write.get())));
  } catch (const bokbok::usage_error& e) {
    what = e.what();
  }
  INFO(what);
  CHECK(contains(what, "cannot carry file descriptors"));
  CHECK(contains(what, address.substr(0, 14)));
  CHECK_THROWS_AS(c.notify_with_fds({"x"}, one(dup_of(p.write.get()))), bokbok::usage_error);
  CHECK(handled == 0);
  CHECK(c.request({"still", "here"}) == message{"still", "here"});
  c.close();
  c.wait_closed();
}

TEST_CASE("fds over pipes (an exec: child without socketpair) fail with usage_error and the connection keeps working") {
  auto c = bokbok::connect(demo_command());
  pipe_pair p;
  CHECK_THROWS_AS(c.request_with_fds({"write-fd", "x"}, one(std::move(p.write))), bokbok::usage_error);
  CHECK(c.request({"ping", "x"}) == message{"pong", "x"});
  c.close();
  c.wait_closed();
}

TEST_CASE("fds that come with a refused or unhandled message are closed in the receiving process") {
  bokbok_test::listening_demo demo({"--max-message-size", "65536"});
  auto c = bokbok::connect(demo.address);
  CHECK(c.request({"ping", "x"}) == message{"pong", "x"});
  const std::size_t base = fd_count_of(demo.pid);
  pipe_pair p;
  auto three = [&] {
    fd_list fds;
    for (int i = 0; i < 3; ++i) fds.push_back(dup_of(p.write.get()));
    return fds;
  };
  // No such method: the router answers an error; the handler took no fds.
  CHECK_THROWS_AS(c.request_with_fds({"no-such-method"}, three()), bokbok::remote_error);
  // Too large: refused without a handler.
  CHECK_THROWS_AS(c.request_with_fds({std::string(100000, 'x')}, three()), bokbok::error);
  // A notification nobody takes the fds of.
  c.notify_with_fds({"note", "x"}, three());
  // Taken and counted by the handler: they came, and are closed there.
  CHECK(c.request_with_fds({"fd-count"}, three()).fields.at(1) == "3");
  CHECK(c.request({"ping", "y"}) == message{"pong", "y"});
  std::size_t now = 0;
  CHECK(bokbok_test::settles([&] { return (now = fd_count_of(demo.pid)) == base; }, 5s));
  CHECK(now == base);
}

TEST_CASE("a message whose fds pass max_received_fds is refused busy and its fds closed") {
  bokbok::options server;
  server.max_received_fds = 2;
  server.on_request = [&](bokbok::connection&, message m) { return m; };
  auto [client, srv] = bokbok::connect_socketpair({}, server);
  pipe_pair p;
  const auto before = bokbok_test::open_fds();
  {
    fd_list fds;
    for (int i = 0; i < 3; ++i) fds.push_back(dup_of(p.write.get()));
    try {
      client.request_with_fds({"x"}, std::move(fds));
      FAIL("not refused");
    } catch (const bokbok::remote_error& e) {
      CHECK(e.code() == bokbok::error_code::busy);
      CHECK(contains(e.what(), "max_received_fds"));
    }
  }
  fd_list two;
  for (int i = 0; i < 2; ++i) two.push_back(dup_of(p.write.get()));
  CHECK(client.request_with_fds({"y"}, std::move(two)).fields == message{"y"});
  std::string left;
  CHECK(bokbok_test::settles([&] { return (left = bokbok_test::opened_since(before)).empty(); }));
  CHECK(left == "");
}

TEST_CASE("key mode carries fds over a UNIX socket") {
  bokbok_test::temp_dir dir;
  bokbok_test::alice_key u;
  bokbok::server_options o;
  o.listen = {"unix:" + (dir.path / "s").string()};
  o.keys.key_for_user = u.lookup();
  o.on_request = [](bokbok::connection&, message m) {
    fd_list fds = bokbok::this_call::take_fds();
    // Its first 16 bytes at most: the pipe's buffer holds them, whoever reads when.
    const std::string head = m.at(0).substr(0, 16);
    for (auto& fd : fds) REQUIRE(::write(fd.get(), head.data(), head.size()) == ssize_t(head.size()));
    bokbok::this_call::attach_fds(std::move(fds));
    return message{std::to_string(m.at(0).size())};
  };
  bokbok::server s(o);
  s.start();
  bokbok::options co;
  co.keys.user = "alice";
  co.keys.key = u.alice;
  auto c = bokbok::connect(s.local_addresses().at(0), co);
  pipe_pair p;
  // Small and fragmented (several frames, each its own sealed record) messages alike.
  for (std::size_t size : {std::size_t(5), std::size_t(200000)}) {
    const std::string text(size, 'k');
    auto answer = c.request_with_fds({text}, one(dup_of(p.write.get())));
    CHECK(answer.fields == message{std::to_string(size)});
    CHECK(answer.fds.size() == 1);
    CHECK(read_n(p.read.get(), std::min<std::size_t>(size, 16)) == text.substr(0, 16));
  }
  c.close();
  c.wait_closed();
}

namespace {
// Sends `bytes` with `fd` attached (SCM_RIGHTS) on the raw peer's socket.
void send_with_fd(int sock, const std::string& bytes, int fd) {
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  REQUIRE(::sendmsg(sock, &msg, MSG_NOSIGNAL) == ssize_t(bytes.size()));
}
}  // namespace

TEST_CASE("the fds of a request cancelled while partly received are closed") {
  namespace wire = bokbok::wire;
  bokbok_test::listening_demo demo({});
  bokbok_test::raw_peer peer(demo.path);
  // Let the server settle on its descriptors: a whole ping first.
  REQUIRE(peer.send(bokbok_test::request_bytes(1, {"ping", "x"})));
  auto pong = peer.next_frame(10s);
  REQUIRE(pong);
  REQUIRE(pong->type == wire::frame_type::response);
  const std::size_t base = fd_count_of(demo.pid);
  // The first fragment of request 2 (more to come), declaring 1 fd, sent with it.
  std::string body;
  wire::encode_message(message{"ping", std::string(200000, 'x')}, body);
  std::string first(1, char(1));
  first += body.substr(0, wire::max_frame_payload - 1);
  std::string rec;
  wire::append_frame(rec, wire::frame_type::request, wire::flag_fds | wire::flag_more, 2, first);
  pipe_pair p;
  send_with_fd(peer.fd(), rec, p.write.get());
  CHECK(bokbok_test::settles([&] { return fd_count_of(demo.pid) == base + 1; }, 5s));
  REQUIRE(peer.send(bokbok_test::frame_record(wire::frame_type::cancel, 2, {})));
  // The server still answers, and holds the fd no more.
  REQUIRE(peer.send(bokbok_test::request_bytes(3, {"ping", "y"})));
  auto next = peer.next_frame(10s);
  REQUIRE(next);
  CHECK(next->call_id == 3);
  std::size_t now = 0;
  CHECK(bokbok_test::settles([&] { return (now = fd_count_of(demo.pid)) == base; }, 5s));
  CHECK(now == base);
}

TEST_CASE("a raw peer that declares more fds than it sent gets a protocol violation") {
  bokbok_test::listening_demo demo({});
  bokbok_test::raw_peer peer(demo.path);
  // A request {"ping", "x"} flagged FDS declaring 2 fds, sent with 1.
  std::string body;
  bokbok::wire::encode_message(message{"ping", "x"}, body);
  body.insert(0, 1, char(2));
  std::string rec;
  bokbok::wire::append_frame(rec, bokbok::wire::frame_type::request, bokbok::wire::flag_fds, 1, body);
  pipe_pair p;
  send_with_fd(peer.fd(), rec, p.write.get());
  auto f = peer.next_frame(10s);
  INFO(peer.error());
  REQUIRE(f);
  CHECK(f->type == bokbok::wire::frame_type::goaway);
  CHECK(contains(f->payload, "request on call 1 declares 2 fds, but 1 arrived"));
}

namespace {

// Threads making calls at once: the loop writes several messages with fds in one batch,
// so each message's fds must go at its own record's offset (plain and sealed) for every
// handler to get its own pipe.
void each_call_gets_its_own_fds(bool key_mode) {
  bokbok_test::temp_dir dir;
  bokbok_test::alice_key u;
  bokbok::server_options o;
  o.listen = {"unix:" + (dir.path / "s").string()};
  if (key_mode) o.keys.key_for_user = u.lookup();
  o.on_request = [](bokbok::connection&, message m) {
    fd_list fds = bokbok::this_call::take_fds();
    if (fds.size() != 1) return message{"fds", std::to_string(fds.size())};
    const std::string& tag = m.at(0);
    if (::write(fds[0].get(), tag.data(), tag.size()) != ssize_t(tag.size())) return message{"write failed"};
    return message{"ok"};
  };
  bokbok::server s(o);
  s.start();
  bokbok::options co;
  if (key_mode) {
    co.keys.user = "alice";
    co.keys.key = u.alice;
  }
  auto c = bokbok::connect(s.local_addresses().at(0), co);
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        pipe_pair p;
        // Some large enough to be cut into several frames.
        std::string tag = "t" + std::to_string(t) + "-" + std::to_string(i);
        message m{tag};
        if (i % 10 == 0) m.push_back(std::string(100000, 'z'));
        try {
          auto answer = c.request_with_fds(std::move(m), one(std::move(p.write)));
          if (answer.fields == message{"ok"} && read_n(p.read.get(), tag.size()) == tag) ++good;
        } catch (const bokbok::error&) {
          return;  // the connection failed: `good` falls short
        }
      }
    });
  for (auto& th : threads) th.join();
  CHECK(good == 400);
  c.close();
  c.wait_closed();
}

}  // namespace

TEST_CASE("concurrent calls each carry their own fds to their own handler") {
  each_call_gets_its_own_fds(false);
}

TEST_CASE("concurrent calls in key mode each carry their own fds to their own handler") {
  each_call_gets_its_own_fds(true);
}

TEST_CASE("a request with a deadline and fds carries both prefixes, and a notification's fds reach on_notify") {
  std::atomic<int> noted{0};
  bokbok::options server;
  server.on_request = [](bokbok::connection&, message m) {
    fd_list fds = bokbok::this_call::take_fds();
    CHECK(bokbok::this_call::deadline().has_value());
    return message{m.at(0), std::to_string(fds.size())};
  };
  server.on_notify = [&](bokbok::connection&, message m) {
    fd_list fds = bokbok::this_call::take_fds();
    if (fds.size() == 1 && ::write(fds[0].get(), m.at(0).data(), m.at(0).size()) == ssize_t(m.at(0).size()))
      ++noted;
  };
  auto [client, srv] = bokbok::connect_socketpair({}, server);
  pipe_pair p;
  bokbok::call_options opts;
  opts.timeout = 30s;
  fd_list two;
  two.push_back(dup_of(p.write.get()));
  two.push_back(dup_of(p.read.get()));
  CHECK(client.request_with_fds({"d"}, std::move(two), opts).fields == message{"d", "2"});
  client.notify_with_fds({"noted"}, one(dup_of(p.write.get())));
  CHECK(read_n(p.read.get(), 5) == "noted");
  CHECK(bokbok_test::settles([&] { return noted == 1; }, 5s));
}

TEST_CASE("stream messages carry fds both ways, each message its own, and none is left open") {
  const auto before = bokbok_test::open_fds();
  {
    // The handler writes each message's text into the pipe that came with it, and answers
    // on its own stream with a dup of that pipe's write end.
    bokbok::options server;
    server.on_request = [](bokbok::connection&, message) {
      auto st = bokbok::this_call::stream();
      int n = 0;
      while (auto m = st.read()) {
        fd_list fds = st.take_fds();
        REQUIRE(fds.size() == 1);
        const std::string& text = m->at(0);
        REQUIRE(::write(fds[0].get(), text.data(), text.size()) == ssize_t(text.size()));
        st.write({"back", text}, std::move(fds));
        ++n;
      }
      return message{std::to_string(n)};
    };
    auto [client, srv] = bokbok::connect_socketpair({}, server);
    auto st = client.open_stream({"pipes"}, within_30s());
    std::vector<pipe_pair> pipes(20);
    for (int i = 0; i < 20; ++i) {
      st.write({"m" + std::to_string(i)}, one(dup_of(pipes[i].write.get())));
      auto back = st.read();
      REQUIRE(back);
      CHECK(*back == message{"back", "m" + std::to_string(i)});
      fd_list got = st.take_fds();
      REQUIRE(got.size() == 1);
      CHECK(st.take_fds().empty());  // taken once
      // The fd that came back is a write end of this message's own pipe.
      REQUIRE(::write(got[0].get(), "!", 1) == 1);
      CHECK(read_n(pipes[i].read.get(), 3 + (i >= 10)) == "m" + std::to_string(i) + "!");
    }
    CHECK(st.finish() == message{"20"});
    client.close();
    client.wait_closed();
    srv.wait_closed();
  }
  std::string left;
  CHECK(bokbok_test::settles([&] { return (left = bokbok_test::opened_since(before)).empty(); }));
  CHECK(left == "");
}

TEST_CASE("a stream message with fds over TCP fails with usage_error before sending") {
  bokbok::server_options o;
  o.listen = {"tcp:127.0.0.1:0"};
  o.on_request = [](bokbok::connection&, message) {
    auto st = bokbok::this_call::stream();
    int n = 0;
    while (st.read()) ++n;
    return message{std::to_string(n)};
  };
  bokbok::server s(o);
  s.start();
  auto c = bokbok::connect(s.local_addresses().at(0));
  auto st = c.open_stream({"count"}, within_30s());
  pipe_pair p;
  CHECK_THROWS_AS(st.write({"x"}, one(dup_of(p.write.get()))), bokbok::usage_error);
  st.write({"y"});
  CHECK(st.finish() == message{"1"});  // only the message without fds went
  c.close();
  c.wait_closed();
}

TEST_CASE("this_call::attach_fds in a stream call's handler is a usage_error, not fds lost") {
  bokbok::options server;
  server.on_request = [](bokbok::connection&, message) {
    pipe_pair p;
    try {
      bokbok::this_call::attach_fds(one(std::move(p.write)));
    } catch (const bokbok::usage_error& e) {
      return message{"refused", e.what()};
    }
    return message{"attached"};
  };
  auto [client, srv] = bokbok::connect_socketpair({}, server);
  auto st = client.open_stream({"x"}, within_30s());
  message last = st.finish();
  REQUIRE(last.size() == 2);
  CHECK(last[0] == "refused");
  CHECK(contains(last[1], "stream::write"));
  // An ordinary call on the same connection still attaches them.
  CHECK(client.request_with_fds({"y"}, {}).fields == message{"attached"});
}

TEST_CASE("a stream message whose fds pass max_received_fds ends its call busy, its fds closed") {
  bokbok::options server;
  server.max_received_fds = 2;
  server.on_request = [](bokbok::connection&, message) {
    auto st = bokbok::this_call::stream();
    if (!st) return message{"plain"};
    int n = 0;
    while (st.read()) ++n;
    return message{std::to_string(n)};
  };
  auto [client, srv] = bokbok::connect_socketpair({}, server);
  pipe_pair p;
  const auto before = bokbok_test::open_fds();
  auto st = client.open_stream({"x"}, within_30s());
  st.write({"ok"}, one(dup_of(p.write.get())));
  fd_list three;
  for (int i = 0; i < 3; ++i) three.push_back(dup_of(p.write.get()));
  st.write({"too many"}, std::move(three));
  try {
    st.finish();
    FAIL("not refused");
  } catch (const bokbok::remote_error& e) {
    CHECK(e.code() == bokbok::error_code::busy);
    CHECK(contains(e.what(), "max_received_fds"));
  }
  std::string left;
  CHECK(bokbok_test::settles([&] { return (left = bokbok_test::opened_since(before)).empty(); }));
  CHECK(left == "");
  CHECK(client.request({"still"}) == message{"plain"});  // the connection goes on
}
