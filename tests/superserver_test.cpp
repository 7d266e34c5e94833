// Superserver hand-overs, set up for real: the fds inetd and systemd would pass are put
// in place with dup2 in a fork()ed child (so this runner's own stdio and fds stay as
// they are), which reports back through a pipe. Loopback only.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>

#include "bokbok/error.hpp"
#include "transport/superserver.hpp"

using namespace bokbok::transport;

namespace {

constexpr int report_fd = 100;  // the child's end of the report pipe, clear of 0..5

// Runs `body` in a forked child. The child's verdict comes back: "" when `body`
// returned normally, else what it threw or the way the child ended.
std::string in_child(const std::function<void()>& body) {
  int p[2];
  REQUIRE(pipe2(p, O_CLOEXEC) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup3(p[1], report_fd, O_CLOEXEC);
    close(p[0]);
    close(p[1]);
    std::string verdict;
    try {
      body();
    } catch (const std::exception& e) {
      verdict = e.what();
      if (verdict.empty()) verdict = "exception";
    }
    if (!verdict.empty()) (void)!write(report_fd, verdict.data(), verdict.size());
    _exit(verdict.empty() ? 0 : 1);
  }
  close(p[1]);
  std::string verdict;
  char buf[512];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) verdict.append(buf, static_cast<std::size_t>(n));
  close(p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (verdict.empty() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
    verdict = "child ended with status " + std::to_string(status);
  return verdict;
}

// A check inside the child: throws, so the child reports `what`.
void expect(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what);
}

// Puts `fd` at `target` (not close-on-exec, as a superserver leaves it) and closes `fd`.
void place(int fd, int target) {
  if (fd == target) return;
  expect(dup2(fd, target) == target, "dup2");
  close(fd);
}

// Moves an fd out of the way of 0..5 first, so place() cannot clobber another.
int high(int fd) {
  int h = fcntl(fd, F_DUPFD, 20);
  close(fd);
  return h;
}

void stdin_from_dev_null() { place(open("/dev/null", O_RDONLY), 0); }

// A loopback TCP listener (blocking, as a superserver might pass it) and its port.
std::pair<int, int> tcp_listener() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  expect(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0, "bind");
  expect(listen(fd, 8) == 0, "listen");
  socklen_t len = sizeof sa;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  return {high(fd), ntohs(sa.sin_port)};
}

int tcp_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(static_cast<uint16_t>(port));
  expect(connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0, "connect");
  return high(fd);
}

std::string read_some(int fd) {
  pollfd p{fd, POLLIN, 0};
  expect(poll(&p, 1, 5000) == 1, "nothing to read");
  char buf[256];
  ssize_t n = read(fd, buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

bool cloexec(int fd) { return (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0; }
bool nonblocking(int fd) { return (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; }

// A datagram socket bound where sd_notify is to send.
struct notify_receiver {
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  explicit notify_receiver(const std::string& where) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, where.data(), where.size());
    if (where[0] == '@') sa.sun_path[0] = '\0';
    auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + where.size() +
                                      (where[0] == '@' ? 0 : 1));
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&sa), len) == 0);
  }
  ~notify_receiver() { close(fd); }
  std::string receive() {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 2000) != 1) return "(nothing)";
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    return n >= 0 ? std::string(buf, static_cast<std::size_t>(n)) : "(error)";
  }
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const bokbok::transport_error& e) {
    return e.what();
  }
  return "(no error)";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("systemd's sockets are taken, told apart, named, and its variables unset") {
  std::string verdict = in_child([] {
    stdin_from_dev_null();
    auto [lfd, port] = tcp_listener();
    int client = tcp_connect(port);
    int accepted = high(accept(lfd, nullptr, nullptr));
    int sv[2];
    expect(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    int pair_far = high(sv[1]);
    int pair_near = high(sv[0]);
    place(lfd, 3);
    place(accepted, 4);
    place(pair_near, 5);
    setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
    setenv("LISTEN_FDS", "3", 1);
    setenv("LISTEN_FDNAMES", "web:conn:pair", 1);
    expect(detect_superserver() == superserver::systemd, "detected as systemd");

    auto got = take_systemd_sockets();
    expect(!getenv("LISTEN_PID") && !getenv("LISTEN_FDS") && !getenv("LISTEN_FDNAMES"),
           "variables unset");
    expect(detect_superserver() == superserver::none, "detected as none afterwards");
    expect(got.listeners.size() == 1, "one listener");
    expect(got.connections.size() == 2, "two connections");
    const listener& l = got.listeners[0];
    expect(l.fd.get() == 3 && l.name == "systemd:web", "listener is fd 3, systemd:web: " + l.name);
    expect(l.unix_path.empty(), "systemd's socket file is not ours to remove");
    expect(cloexec(3) && nonblocking(3), "listener close-on-exec and non-blocking");
    auto& tcp = got.connections[0];
    expect(tcp.fd.get() == 4 && tcp.peer.rfind("tcp:127.0.0.1:", 0) == 0,
           "tcp connection is fd 4, named by its peer: " + tcp.peer);
    expect(cloexec(4), "connection close-on-exec");
    auto& pair = got.connections[1];
    expect(pair.fd.get() == 5 && pair.peer == "systemd:pair",
           "unnamed unix peer named from LISTEN_FDNAMES: " + pair.peer);

    expect(write(client, "over tcp", 8) == 8, "write");
    expect(read_some(4) == "over tcp", "bytes over the inherited tcp connection");
    expect(write(pair_far, "over unix", 9) == 9, "write");
    expect(read_some(5) == "over unix", "bytes over the inherited socketpair");
    int again = tcp_connect(port);
    pollfd p{3, POLLIN, 0};
    expect(poll(&p, 1, 5000) == 1, "listener readable");
    auto c = accept_from(l);
    expect(c.has_value(), "accepted from the inherited listener");
    expect(write(again, "x", 1) == 1 && read_some(c->fd.get()) == "x", "bytes after accept");
  });
  CHECK(verdict == "");
}

TEST_CASE("fds systemd does not name are called unknown") {
  std::string verdict = in_child([] {
    auto [lfd, port] = tcp_listener();
    (void)port;
    place(lfd, 3);
    setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
    setenv("LISTEN_FDS", "1", 1);
    unsetenv("LISTEN_FDNAMES");
    auto got = take_systemd_sockets();
    expect(got.listeners.size() == 1 && got.listeners[0].name == "systemd:unknown",
           "named systemd:unknown");
  });
  CHECK(verdict == "");
}

TEST_CASE("systemd variables meant for another process are refused, and unset") {
  std::string verdict = in_child([] {
    setenv("LISTEN_PID", std::to_string(getppid()).c_str(), 1);
    setenv("LISTEN_FDS", "1", 1);
    expect(detect_superserver() != superserver::systemd, "not systemd");
    std::string m = error_of([] { take_systemd_sockets(); });
    expect(contains(m, "LISTEN_PID=" + std::to_string(getppid()) + " names another process"),
           "error: " + m);
    expect(!getenv("LISTEN_PID") && !getenv("LISTEN_FDS"), "variables unset");
  });
  CHECK(verdict == "");
}

TEST_CASE("missing or malformed systemd variables and non-stream fds are errors") {
  std::string verdict = in_child([] {
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    std::string m = error_of([] { take_systemd_sockets(); });
    expect(contains(m, "LISTEN_PID and LISTEN_FDS are not set"), "absent: " + m);

    setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
    setenv("LISTEN_FDS", "two", 1);
    m = error_of([] { take_systemd_sockets(); });
    expect(contains(m, "LISTEN_FDS=\"two\" is not a number"), "not a number: " + m);

    int p[2];
    expect(pipe(p) == 0, "pipe");
    place(high(p[0]), 3);
    setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
    setenv("LISTEN_FDS", "1", 1);
    m = error_of([] { take_systemd_sockets(); });
    expect(contains(m, "fd 3 from systemd (\"unknown\") is not a stream socket"), "pipe: " + m);
    expect(fcntl(3, F_GETFD) >= 0, "fd 3 left open when refused");
  });
  CHECK(verdict == "");
}

TEST_CASE("under inetd nowait the connection is taken and stderr moved off the socket") {
  std::string verdict = in_child([] {
    int sv[2];
    expect(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    int far = high(sv[1]);
    int near = high(sv[0]);
    expect(dup2(near, 0) == 0 && dup2(near, 1) == 1 && dup2(near, 2) == 2, "dup2");
    close(near);
    expect(detect_superserver() == superserver::inetd, "detected as inetd");

    auto got = take_inetd_socket();
    expect(got.listeners.empty() && got.connections.size() == 1, "one connection");
    int c = got.connections[0].fd.get();
    expect(c > 2 && cloexec(c), "a private close-on-exec duplicate");
    expect(got.connections[0].peer == "inetd", "named inetd: " + got.connections[0].peer);

    // Nothing written to fds 1 or 2 can reach the peer now.
    expect(write(2, "LOG LINE\n", 9) == 9, "stderr still writable");
    expect(write(1, "STRAY\n", 6) == 6, "stdout still writable");
    char byte;
    expect(read(0, &byte, 1) == 0, "stdin reads /dev/null");
    expect(write(c, "DATA", 4) == 4, "write on the connection");
    fcntl(far, F_SETFL, O_NONBLOCK);
    std::string got_bytes = read_some(far);
    char extra[16];
    expect(got_bytes == "DATA" && read(far, extra, sizeof extra) < 0,
           "the peer got exactly DATA, got: " + got_bytes);
    expect(write(far, "back", 4) == 4 && read_some(c) == "back", "bytes from the peer");
    struct stat st;
    expect(fstat(2, &st) == 0 && S_ISCHR(st.st_mode), "stderr is /dev/null");
  });
  CHECK(verdict == "");
}

TEST_CASE("under systemd Accept=yes with StandardInput=socket the duplicate on fd 3 is closed") {
  std::string verdict = in_child([] {
    int sv[2];
    expect(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    int far = high(sv[1]);
    int near = high(sv[0]);
    expect(dup2(near, 0) == 0 && dup2(near, 1) == 1 && dup2(near, 3) == 3, "dup2");
    close(near);
    setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
    setenv("LISTEN_FDS", "1", 1);
    auto got = take_inetd_socket();
    expect(got.connections.size() == 1, "one connection");
    expect(fcntl(3, F_GETFD) < 0, "fd 3 closed");
    expect(std::getenv("LISTEN_PID") == nullptr && std::getenv("LISTEN_FDS") == nullptr,
           "variables unset");
    // Closing our connection now really ends it: the peer reads end of file.
    got.connections.clear();
    char byte;
    expect(read(far, &byte, 1) == 0, "the peer sees end of file");
  });
  CHECK(verdict == "");
}

TEST_CASE("under inetd wait fd 0 is a listener, and a stderr that is not a socket stays") {
  std::string verdict = in_child([] {
    auto [lfd, port] = tcp_listener();
    int p[2];
    expect(pipe(p) == 0, "pipe");
    place(high(p[1]), 2);
    place(lfd, 0);
    auto got = take_inetd_socket();
    expect(got.connections.empty() && got.listeners.size() == 1, "one listener");
    const listener& l = got.listeners[0];
    expect(l.name == "inetd" && l.fd.get() > 2, "listener named inetd");
    expect(nonblocking(l.fd.get()) && cloexec(l.fd.get()), "non-blocking, close-on-exec");
    struct stat st;
    expect(fstat(2, &st) == 0 && S_ISFIFO(st.st_mode), "stderr left alone");
    int client = tcp_connect(port);
    pollfd pf{l.fd.get(), POLLIN, 0};
    expect(poll(&pf, 1, 5000) == 1, "listener readable");
    auto c = accept_from(l);
    expect(c.has_value() && c->peer.rfind("tcp:127.0.0.1:", 0) == 0, "accepted");
    expect(write(client, "hi", 2) == 2 && read_some(c->fd.get()) == "hi", "bytes");
  });
  CHECK(verdict == "");
}

TEST_CASE("take_inetd_socket refuses an fd 0 that is not a socket") {
  std::string verdict = in_child([] {
    stdin_from_dev_null();
    expect(detect_superserver() == superserver::none, "detected as none");
    std::string m = error_of([] { take_inetd_socket(); });
    expect(contains(m, "fd 0 is not a socket"), "error: " + m);
  });
  CHECK(verdict == "");
}

TEST_CASE("sd_notify sends the state to a NOTIFY_SOCKET path") {
  char tmpl[] = "/tmp/bokbok-notify-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  std::string path = std::string(tmpl) + "/notify";
  {
    notify_receiver r(path);
    setenv("NOTIFY_SOCKET", path.c_str(), 1);
    CHECK(sd_notify("READY=1"));
    CHECK(r.receive() == "READY=1");
    CHECK(sd_notify("STATUS=serving\nWATCHDOG=1"));
    CHECK(r.receive() == "STATUS=serving\nWATCHDOG=1");
  }
  unlink(path.c_str());
  CHECK_FALSE(sd_notify("READY=1"));  // nobody there any more
  rmdir(tmpl);
  unsetenv("NOTIFY_SOCKET");
}

TEST_CASE("sd_notify sends the state to an abstract NOTIFY_SOCKET") {
  std::string name = "@bokbok-notify-" + std::to_string(getpid());
  notify_receiver r(name);
  setenv("NOTIFY_SOCKET", name.c_str(), 1);
  CHECK(sd_notify("READY=1"));
  CHECK(r.receive() == "READY=1");
  unsetenv("NOTIFY_SOCKET");
}

TEST_CASE("sd_notify does nothing without NOTIFY_SOCKET and fails on one it cannot use") {
  unsetenv("NOTIFY_SOCKET");
  CHECK(sd_notify("READY=1"));
  setenv("NOTIFY_SOCKET", "vsock:2:1234", 1);
  CHECK_FALSE(sd_notify("READY=1"));
  setenv("NOTIFY_SOCKET", "@", 1);
  CHECK_FALSE(sd_notify("READY=1"));
  unsetenv("NOTIFY_SOCKET");
}

TEST_CASE("watchdog_usec reads WATCHDOG_USEC when it is meant for this process") {
  unsetenv("WATCHDOG_PID");
  unsetenv("WATCHDOG_USEC");
  CHECK(watchdog_usec() == 0);
  setenv("WATCHDOG_USEC", "5000000", 1);
  CHECK(watchdog_usec() == 5000000);
  setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  CHECK(watchdog_usec() == 5000000);
  setenv("WATCHDOG_PID", std::to_string(getppid()).c_str(), 1);
  CHECK(watchdog_usec() == 0);
  unsetenv("WATCHDOG_PID");
  setenv("WATCHDOG_USEC", "soon", 1);
  CHECK(watchdog_usec() == 0);
  unsetenv("WATCHDOG_USEC");
}

TEST_CASE("detect_superserver tells systemd, inetd and neither apart") {
  std::string verdict = in_child([] {
    unsetenv("LISTEN_PID");
    stdin_from_dev_null();
    expect(detect_superserver() == superserver::none, "none");
    setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
    expect(detect_superserver() == superserver::systemd, "systemd");
    setenv("LISTEN_PID", std::to_string(getppid()).c_str(), 1);
    int sv[2];
    expect(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    place(high(sv[0]), 0);
    expect(detect_superserver() == superserver::inetd, "inetd");
  });
  CHECK(verdict == "");
}
