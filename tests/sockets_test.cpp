// Sockets on loopback only: 127.0.0.1, ::1 and UNIX sockets (paths in a fresh temporary
// directory, abstract names with this process's pid in them).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <set>

#include "bokbok/error.hpp"
#include "support/proc_status.hpp"
#include "transport/sockets.hpp"

using namespace bokbok::transport;
using namespace std::chrono_literals;
using bokbok::transport_error;

namespace {

// A fresh directory under /tmp, removed with everything in it.
struct temp_dir {
  std::string path;
  temp_dir() {
    char tmpl[] = "/tmp/bokbok-sockets-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

std::vector<listener> listen_at(const std::string& text, listen_options o = {}) {
  return listen_on(parse_address(text), o);
}

connected_socket connect_to(const std::string& text, std::chrono::milliseconds t = 5s) {
  return connect_socket(parse_address(text), t);
}

// Accepts one connection, waiting up to five seconds for it.
connected_socket accept_one(const listener& l) {
  pollfd p{l.fd.get(), POLLIN, 0};
  REQUIRE(poll(&p, 1, 5000) == 1);
  auto c = accept_from(l);
  REQUIRE(c.has_value());
  return std::move(*c);
}

// Writes `text` on `from` and reads it back on `to`.
std::string pass(int from, int to, const std::string& text) {
  REQUIRE(write(from, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  std::string got(text.size(), '\0');
  std::size_t n = 0;
  while (n < got.size()) {
    ssize_t r = read(to, got.data() + n, got.size() - n);
    REQUIRE(r > 0);
    n += static_cast<std::size_t>(r);
  }
  return got;
}

bool blocking(int fd) { return (fcntl(fd, F_GETFL) & O_NONBLOCK) == 0; }
bool cloexec(int fd) { return (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0; }
bool nodelay(int fd) {
  int on = 0;
  socklen_t len = sizeof on;
  return getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len) == 0 && on != 0;
}

std::string port_of(const std::string& name) { return name.substr(name.rfind(':') + 1); }

// Connects to the one listener of `text`, checks both ends and that bytes pass.
void round_trip(const std::string& text, const std::string& name_prefix) {
  auto ls = listen_at(text);
  REQUIRE(ls.size() == 1);
  const listener& l = ls.front();
  CAPTURE(l.name);
  CHECK(l.name.rfind(name_prefix, 0) == 0);
  CHECK(port_of(l.name) != "0");
  CHECK_FALSE(blocking(l.fd.get()));
  CHECK(cloexec(l.fd.get()));
  CHECK(is_listening_socket(l.fd.get()));

  auto client = connect_to(l.name);
  auto server = accept_one(l);
  CHECK(client.peer == l.name);
  CHECK(peer_name(client.fd.get()) == l.name);
  CHECK(server.peer == peer_name(server.fd.get()));
  CHECK(server.peer.rfind(name_prefix, 0) == 0);
  for (int fd : {client.fd.get(), server.fd.get()}) {
    CHECK(blocking(fd));
    CHECK(cloexec(fd));
    CHECK(nodelay(fd));
    CHECK_FALSE(is_listening_socket(fd));
  }
  CHECK(pass(client.fd.get(), server.fd.get(), "ping") == "ping");
  CHECK(pass(server.fd.get(), client.fd.get(), "pong") == "pong");
  CHECK_FALSE(peer_credentials_of(server.fd.get()).has_value());
}

// The port of a loopback address nothing listens on (it was just free).
std::string free_port(const std::string& host) {
  auto ls = listen_at("tcp:" + host + ":0");
  return port_of(ls.front().name);
}

std::string connect_error(const std::string& text, std::chrono::milliseconds t = 5s) {
  try {
    connect_to(text, t);
  } catch (const bokbok::error& e) {  // transport_error; address_error for tcp:*
    return e.what();
  }
  return "(connected)";
}

std::string listen_error(const std::string& text, listen_options o = {}) {
  try {
    listen_at(text, o);
  } catch (const transport_error& e) {
    return e.what();
  }
  return "(listening)";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// Runs `body` in a forked child that has its own mount namespace with /etc/hosts
// replaced by `hosts`; returns "" when it returned, what it threw otherwise, or "skip"
// when this process may not make a mount namespace (not root).
std::string with_hosts_file(const std::string& hosts, const std::function<void()>& body) {
  temp_dir dir;
  std::ofstream(dir / "hosts") << hosts;
  int p[2];
  REQUIRE(pipe2(p, O_CLOEXEC) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::string verdict;
    if (unshare(CLONE_NEWNS) < 0 ||
        mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0 ||
        mount((dir / "hosts").c_str(), "/etc/hosts", nullptr, MS_BIND, nullptr) < 0) {
      verdict = "skip";
    } else {
      try {
        body();
      } catch (const std::exception& e) {
        verdict = std::string("failed: ") + e.what();
      }
    }
    (void)!write(p[1], verdict.data(), verdict.size());
    _exit(0);
  }
  close(p[1]);
  std::string verdict;
  char buf[512];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) verdict.append(buf, static_cast<std::size_t>(n));
  close(p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status)) verdict += " (child ended with status " + std::to_string(status) + ")";
  return verdict;
}

void expect(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what);
}

}  // namespace

TEST_CASE("a listener on tcp:127.0.0.1:0 gets a real port and exchanges bytes with a client") {
  round_trip("tcp:127.0.0.1:0", "tcp:127.0.0.1:");
}

TEST_CASE("a listener on tcp:[::1]:0 gets a real port and exchanges bytes with a client") {
  round_trip("tcp:[::1]:0", "tcp:[::1]:");
}

TEST_CASE("tcp:localhost:0 listens on every address localhost resolves to, on one port") {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  REQUIRE(getaddrinfo("localhost", "0", &hints, &res) == 0);
  std::set<std::string> expected;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    char host[NI_MAXHOST];
    REQUIRE(getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof host, nullptr, 0,
                        NI_NUMERICHOST) == 0);
    expected.insert(host);
  }
  freeaddrinfo(res);

  auto ls = listen_at("tcp:localhost:0");
  CHECK(ls.size() == expected.size());
  std::set<std::string> ports;
  for (auto& l : ls) {
    CAPTURE(l.name);
    ports.insert(port_of(l.name));
    auto client = connect_to(l.name);
    auto server = accept_one(l);
    CHECK(pass(client.fd.get(), server.fd.get(), "hello") == "hello");
  }
  REQUIRE(ports.size() == 1);
  CHECK(*ports.begin() != "0");
  auto client = connect_to("tcp:localhost:" + *ports.begin());
  CHECK(contains(client.peer, *ports.begin()));
}

TEST_CASE("tcp:*:0 is one dual-stack socket that accepts 127.0.0.1 and ::1 clients") {
  auto ls = listen_at("tcp:*:0");
  REQUIRE(ls.size() == 1);
  const listener& l = ls.front();
  CHECK(l.name.rfind("tcp:*:", 0) == 0);
  std::string port = port_of(l.name);
  CHECK(port != "0");

  auto v4 = connect_to("tcp:127.0.0.1:" + port);
  auto v4_server = accept_one(l);
  CHECK(v4_server.peer.rfind("tcp:127.0.0.1:", 0) == 0);  // not ::ffff:127.0.0.1
  CHECK(pass(v4.fd.get(), v4_server.fd.get(), "four") == "four");

  auto v6 = connect_to("tcp:[::1]:" + port);
  auto v6_server = accept_one(l);
  CHECK(v6_server.peer.rfind("tcp:[::1]:", 0) == 0);
  CHECK(pass(v6.fd.get(), v6_server.fd.get(), "six") == "six");
}

TEST_CASE("tcp:[::]:0 is the same dual-stack socket, named as written") {
  auto ls = listen_at("tcp:[::]:0");
  REQUIRE(ls.size() == 1);
  CHECK(ls.front().name.rfind("tcp:[::]:", 0) == 0);
  auto v4 = connect_to("tcp:127.0.0.1:" + port_of(ls.front().name));
  auto server = accept_one(ls.front());
  CHECK(pass(v4.fd.get(), server.fd.get(), "x") == "x");
}

TEST_CASE("a unix path listener exchanges bytes and knows its peer's credentials") {
  temp_dir dir;
  std::string path = dir / "app.sock";
  auto ls = listen_at("unix:" + path);
  REQUIRE(ls.size() == 1);
  const listener& l = ls.front();
  CHECK(l.name == "unix:" + path);
  CHECK(l.unix_path == path);
  CHECK_FALSE(blocking(l.fd.get()));
  CHECK(is_listening_socket(l.fd.get()));

  auto client = connect_to("unix:" + path);
  auto server = accept_one(l);
  CHECK(client.peer == "unix:" + path);
  CHECK(server.peer == "unix");  // the client did not bind a name
  CHECK(blocking(client.fd.get()));
  CHECK(blocking(server.fd.get()));
  CHECK(cloexec(server.fd.get()));
  CHECK(pass(client.fd.get(), server.fd.get(), "over unix") == "over unix");

  auto cred = peer_credentials_of(server.fd.get());
  REQUIRE(cred.has_value());
  CHECK(cred->uid == getuid());
  CHECK(cred->gid == getgid());
  CHECK(cred->pid == getpid());
  auto back = peer_credentials_of(client.fd.get());
  REQUIRE(back.has_value());
  CHECK(back->pid == getpid());
}

TEST_CASE("an abstract unix listener exchanges bytes and owns no file") {
  std::string name = "unix:@bokbok-sockets-test-" + std::to_string(getpid());
  auto ls = listen_at(name);
  REQUIRE(ls.size() == 1);
  CHECK(ls.front().name == name);
  CHECK(ls.front().unix_path.empty());
  auto client = connect_to(name);
  auto server = accept_one(ls.front());
  CHECK(client.peer == name);
  CHECK(peer_name(client.fd.get()) == name);
  CHECK(pass(server.fd.get(), client.fd.get(), "abstract") == "abstract");
  CHECK(peer_credentials_of(server.fd.get())->pid == getpid());
  CHECK(contains(listen_error(name), "the abstract name is in use"));
}

TEST_CASE("peer names and credentials of things that are not connected sockets are empty") {
  int p[2];
  REQUIRE(pipe(p) == 0);
  CHECK(peer_name(p[0]) == "");
  CHECK_FALSE(peer_credentials_of(p[0]).has_value());
  CHECK_FALSE(is_listening_socket(p[0]));
  close(p[0]);
  close(p[1]);
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(peer_name(sv[0]) == "unix");
  CHECK(peer_credentials_of(sv[0])->uid == getuid());
  close(sv[0]);
  close(sv[1]);
}

TEST_CASE("a refused connection names the address and the system error") {
  std::string port = free_port("127.0.0.1");
  CHECK(connect_error("tcp:127.0.0.1:" + port) ==
        "bokbok: cannot connect to tcp:127.0.0.1:" + port + ": Connection refused");
  std::string port6 = free_port("[::1]");
  CHECK(connect_error("tcp:[::1]:" + port6) ==
        "bokbok: cannot connect to tcp:[::1]:" + port6 + ": Connection refused");
  temp_dir dir;
  CHECK(connect_error("unix:" + dir / "none.sock") ==
        "bokbok: cannot connect to unix:" + dir / "none.sock" + ": No such file or directory");
  CHECK(connect_error("unix:@bokbok-nobody-" + std::to_string(getpid())) ==
        "bokbok: cannot connect to unix:@bokbok-nobody-" + std::to_string(getpid()) +
            ": Connection refused");
}

TEST_CASE("each address a name resolves to is tried, and the error lists every failure") {
  // "localhost" resolves to 127.0.0.1 (and ::1 where /etc/hosts says so): a port free on
  // 127.0.0.1 is refused on each.
  std::string port = free_port("127.0.0.1");
  std::string m = connect_error("tcp:localhost:" + port);
  CHECK(m.rfind("bokbok: cannot connect to tcp:localhost:" + port + ": ", 0) == 0);
  CHECK(contains(m, "Connection refused"));
}

TEST_CASE("connect and listen errors that are not the network's say what is wrong") {
  CHECK(contains(connect_error("tcp:*:80"), "* means every address"));
  CHECK(contains(connect_error("fd:3,4"), "only tcp: and unix: addresses"));
  CHECK(contains(connect_error("tcp:127.0.0.1:no-such-service-here"),
                 "cannot resolve \"127.0.0.1\" port \"no-such-service-here\""));
  CHECK(contains(listen_error("stdio"), "only tcp: and unix: addresses"));
  auto ls = listen_at("tcp:127.0.0.1:0");
  std::string taken = ls.front().name;
  CHECK(listen_error(taken) ==
        "bokbok: cannot listen on " + taken + ": bind: Address already in use");
}

TEST_CASE("a TCP connect to a listener whose queue is full gives up after the timeout") {
  listen_options o;
  o.backlog = 0;  // the kernel still queues one; then it drops SYNs
  auto ls = listen_at("tcp:127.0.0.1:0", o);
  std::vector<connected_socket> queued;
  std::string error;
  std::chrono::steady_clock::duration took{};
  for (int i = 0; i < 8 && error.empty(); ++i) {
    auto start = std::chrono::steady_clock::now();
    try {
      queued.push_back(connect_to(ls.front().name, 300ms));
    } catch (const transport_error& e) {
      error = e.what();
      took = std::chrono::steady_clock::now() - start;
    }
  }
  CAPTURE(queued.size());
  CHECK(error == "bokbok: cannot connect to " + ls.front().name + ": timed out after 300 ms");
  CHECK(took >= 290ms);
  CHECK(took < 2s);
}

TEST_CASE("a UNIX connect to a listener whose queue is full gives up after the timeout") {
  temp_dir dir;
  listen_options o;
  o.backlog = 0;
  std::string name = "unix:" + dir / "full.sock";
  auto ls = listen_at(name, o);
  std::vector<connected_socket> queued;
  std::string error;
  std::chrono::steady_clock::duration took{};
  for (int i = 0; i < 8 && error.empty(); ++i) {
    auto start = std::chrono::steady_clock::now();
    try {
      queued.push_back(connect_to(name, 200ms));
    } catch (const transport_error& e) {
      error = e.what();
      took = std::chrono::steady_clock::now() - start;
    }
  }
  CAPTURE(queued.size());
  CHECK(contains(error, "bokbok: cannot connect to " + name + ": timed out after 200 ms"));
  CHECK(took >= 190ms);
  CHECK(took < 2s);
  // Once the listener takes one from its queue, the next client gets in.
  accept_one(ls.front());
  CHECK_NOTHROW(connect_to(name, 200ms));
}

// A UNIX connect is tried non-blocking first; when the queue is full it waits, blocking,
// for up to the timeout (SO_SNDTIMEO), and must then hand back the socket as asked: the
// timeout cleared (a caller's blocking writes must not time out), blocking or not.
TEST_CASE("a UNIX connect that finds the queue full waits for room, and gets in when the listener takes a client") {
  temp_dir dir;
  listen_options o;
  o.backlog = 0;
  std::string name = "unix:" + dir / "wait.sock";
  auto ls = listen_at(name, o);
  std::vector<connected_socket> queued;
  for (int i = 0; i < 8; ++i) {  // until the queue is full
    try {
      queued.push_back(connect_to(name, 50ms));
    } catch (const transport_error&) {
      break;
    }
  }
  REQUIRE(queued.size() < 8);
  std::atomic<long> tid{0};
  auto waiting = std::async(std::launch::async, [&] {
    tid = static_cast<long>(::syscall(SYS_gettid));
    return connect_socket(parse_address(name), 10s, fd_mode::blocking);
  });
  REQUIRE(bokbok_test::wait_until_sleeping(tid, 10s));  // blocked in connect
  accept_one(ls.front());
  REQUIRE(waiting.wait_for(10s) == std::future_status::ready);
  connected_socket c = waiting.get();
  CHECK(c.kind.unix_stream());
  CHECK_FALSE(c.kind.nonblocking);
  CHECK((fcntl(c.fd.get(), F_GETFL) & O_NONBLOCK) == 0);
  timeval tv{1, 1};
  socklen_t len = sizeof tv;
  REQUIRE(getsockopt(c.fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, &len) == 0);
  CHECK(tv.tv_sec == 0);
  CHECK(tv.tv_usec == 0);
  // With room in the queue, a non-blocking one gets in at once, non-blocking.
  accept_one(ls.front());
  auto nb = connect_socket(parse_address(name), 10s, fd_mode::nonblocking);
  CHECK(nb.kind.unix_stream());
  CHECK(nb.kind.nonblocking);
  CHECK((fcntl(nb.fd.get(), F_GETFL) & O_NONBLOCK) != 0);
}

// The kind a connect or an accept states is what the kernel says of the socket.
TEST_CASE("connect_socket and accept_from state each socket's kind and mode truly") {
  for (std::string where : {std::string("tcp:127.0.0.1:0"), std::string("tcp:[::1]:0"),
                            "unix:@bokbok-kind-" + std::to_string(getpid())}) {
    CAPTURE(where);
    std::vector<listener> ls;
    try {
      ls = listen_at(where);
    } catch (const transport_error&) {
      continue;  // no IPv6 on this machine
    }
    const std::string name = ls.front().name;
    for (fd_mode mode : {fd_mode::blocking, fd_mode::nonblocking}) {
      auto c = connect_socket(parse_address(name), 5s, mode);
      pollfd p{ls.front().fd.get(), POLLIN, 0};
      REQUIRE(poll(&p, 1, 5000) == 1);
      auto a = accept_from(ls.front(), mode);
      REQUIRE(a.has_value());
      for (const connected_socket* s : {&c, &*a}) {
        const auto asked = bokbok::base::fd_kind::of(s->fd.get());
        CHECK(s->kind.socket == asked.socket);
        CHECK(s->kind.family == asked.family);
        CHECK(s->kind.stream == asked.stream);
        CHECK(s->kind.nonblocking == (mode == fd_mode::nonblocking));
        CHECK(((fcntl(s->fd.get(), F_GETFL) & O_NONBLOCK) != 0) == s->kind.nonblocking);
      }
      CHECK(a->peer_address_len > 0);
      CHECK(a->peer_address.ss_family == a->kind.family);
    }
  }
}

TEST_CASE("a stale unix socket file is replaced") {
  temp_dir dir;
  std::string path = dir / "stale.sock";
  {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strcpy(sa.sun_path, path.c_str());
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    close(fd);  // the file stays, nobody behind it
  }
  REQUIRE(std::filesystem::is_socket(path));
  auto ls = listen_at("unix:" + path);
  auto client = connect_to("unix:" + path);
  auto server = accept_one(ls.front());
  CHECK(pass(client.fd.get(), server.fd.get(), "fresh") == "fresh");
}

TEST_CASE("a live unix socket is not replaced, and the error says someone listens on it") {
  temp_dir dir;
  std::string path = dir / "live.sock";
  auto first = listen_at("unix:" + path);
  CHECK(listen_error("unix:" + path) ==
        "bokbok: cannot listen on unix:" + path + ": another process is listening on " + path);
  // The check connected to it: the live listener sees that as a connection closed at
  // once, with no bytes sent.
  auto probe = accept_one(first.front());
  char byte;
  CHECK(read(probe.fd.get(), &byte, 1) == 0);
  // The first listener still owns its file and still works.
  auto client = connect_to("unix:" + path);
  auto server = accept_one(first.front());
  CHECK(pass(client.fd.get(), server.fd.get(), "still") == "still");
}

TEST_CASE("a regular file at a unix path is not replaced") {
  temp_dir dir;
  std::string path = dir / "data";
  std::ofstream(path) << "precious";
  CHECK(listen_error("unix:" + path) == "bokbok: cannot listen on unix:" + path + ": " + path +
                                            " exists and is not a socket; not replacing it");
  std::ifstream in(path);
  std::string content;
  in >> content;
  CHECK(content == "precious");
}

TEST_CASE("unix_mode sets the permission bits of the socket file") {
  temp_dir dir;
  for (unsigned mode : {0600u, 0640u, 0666u}) {
    std::string path = dir / ("mode-" + std::to_string(mode) + ".sock");
    listen_options o;
    o.unix_mode = mode;
    auto ls = listen_at("unix:" + path, o);
    struct stat st;
    REQUIRE(stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == mode);
  }
}

TEST_CASE("a unix listener removes its own socket file, and not a replacement") {
  temp_dir dir;
  std::string path = dir / "own.sock";
  {
    auto ls = listen_at("unix:" + path);
    CHECK(std::filesystem::exists(path));
  }
  CHECK_FALSE(std::filesystem::exists(path));

  auto old_ls = listen_at("unix:" + path);
  std::filesystem::remove(path);  // someone removes it and starts another server there
  auto new_ls = listen_at("unix:" + path);
  old_ls.clear();
  CHECK(std::filesystem::is_socket(path));
  auto client = connect_to("unix:" + path);
  accept_one(new_ls.front());

  // Moving a listener hands the file over; the moved-from one leaves it alone.
  listener moved = std::move(new_ls.front());
  new_ls.clear();
  CHECK(std::filesystem::is_socket(path));
  listener other;
  other = std::move(moved);
  CHECK(std::filesystem::is_socket(path));
  other = listener();  // assigning over it removes its file
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("a name with an IPv4 and an IPv6 address gets a listener on each, on one port") {
  std::string verdict = with_hosts_file("127.0.0.1 bokbok-dual\n::1 bokbok-dual\n", [] {
    auto ls = listen_at("tcp:bokbok-dual:0");
    expect(ls.size() == 2, "two listeners, got " + std::to_string(ls.size()));
    std::set<std::string> names{ls[0].name, ls[1].name};
    std::string port = port_of(ls[0].name);
    expect(port != "0" && port_of(ls[1].name) == port,
           "one port: " + ls[0].name + " " + ls[1].name);
    expect(names.count("tcp:127.0.0.1:" + port) == 1 && names.count("tcp:[::1]:" + port) == 1,
           "both addresses: " + ls[0].name + " " + ls[1].name);
    for (auto& l : ls) {
      auto client = connect_to(l.name);
      auto server = accept_one(l);
      expect(pass(client.fd.get(), server.fd.get(), "dual") == "dual", "bytes over " + l.name);
    }
    // The first address that answers is used.
    auto client = connect_to("tcp:bokbok-dual:" + port);
    expect(names.count(client.peer) == 1, "connected to one of them: " + client.peer);
  });
  if (verdict == "skip") {
    MESSAGE("skipped: cannot make a mount namespace to provide a test /etc/hosts");
    return;
  }
  CHECK(verdict == "");
}

TEST_CASE("connecting to a name tries each address and lists every failure") {
  std::string verdict = with_hosts_file("127.0.0.1 bokbok-dual\n::1 bokbok-dual\n", [] {
    std::string port = free_port("127.0.0.1");
    std::string m = connect_error("tcp:bokbok-dual:" + port);
    expect(contains(m, "bokbok: cannot connect to tcp:bokbok-dual:" + port + ": "), m);
    expect(contains(m, "127.0.0.1:" + port + ": Connection refused"), m);
    expect(contains(m, "[::1]:" + port + ": Connection refused"), m);
    expect(contains(m, "; "), m);
    // A listener on the second address alone is still found.
    auto v4 = listen_at("tcp:127.0.0.1:" + port);
    auto client = connect_to("tcp:bokbok-dual:" + port);
    expect(client.peer == "tcp:127.0.0.1:" + port, "reached " + client.peer);
  });
  if (verdict == "skip") {
    MESSAGE("skipped: cannot make a mount namespace to provide a test /etc/hosts");
    return;
  }
  CHECK(verdict == "");
}
