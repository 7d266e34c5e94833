// bokbok::open_byte_channel and child_handle (include/bokbok/byte_channel.hpp), through
// the public header only: real children, real sockets, real pipes.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>

#include "bokbok/bokbok.hpp"
#include "support/settle.hpp"

using namespace std::chrono_literals;
using bokbok::byte_channel;
using bokbok::open_byte_channel;

namespace {

void write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    REQUIRE(n > 0);
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

// Everything until end of file (the tests' peers always end).
std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) return out;
    REQUIRE(n > 0);
    out.append(buf, static_cast<std::size_t>(n));
  }
}

// wait(), bounded: fails the test instead of hanging when the child never ends.
bokbok::child_exit wait_bounded(const bokbok::child_handle& child) {
  auto f = std::async(std::launch::async, [child] { return child.wait(); });
  REQUIRE(f.wait_for(20s) == std::future_status::ready);
  return f.get();
}

// A listening socket on a fresh abstract UNIX name; closes on destruction.
struct unix_listener {
  int fd = -1;
  std::string name;
  unix_listener() {
    name = "bokbok-byte-channel-test-" + std::to_string(::getpid());
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path + 1, name.data(), name.size());
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), len) == 0);
    REQUIRE(::listen(fd, 4) == 0);
  }
  ~unix_listener() { ::close(fd); }
  int accept_one() const {
    int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
    REQUIRE(c >= 0);
    return c;
  }
};

}  // namespace

TEST_CASE("an exec: channel writes the child's stdin, reads its stdout, and reports its exit") {
  auto ch = open_byte_channel("exec:sh -c 'tr a-z A-Z; exit 3'");
  REQUIRE(ch.child());
  CHECK(ch.name() == "exec:sh -c 'tr a-z A-Z; exit 3' (pid " +
                         std::to_string(ch.child()->pid()) + ")");
  CHECK(ch.read_fd() != ch.write_fd());
  write_all(ch.write_fd(), "hello bytes\n");
  ch.close_write();  // tr reads end of file, writes its output and ends
  CHECK(ch.write_fd() == -1);
  CHECK(read_all(ch.read_fd()) == "HELLO BYTES\n");
  const bokbok::child_exit how = wait_bounded(*ch.child());
  CHECK(how.code == 3);
  CHECK(how.signal == 0);
  CHECK(how.pid == ch.child()->pid());
  REQUIRE(ch.child()->exit_status());
  CHECK(ch.child()->exit_status()->code == 3);
  CHECK(ch.child()->describe().find("exited with status 3") != std::string::npos);
}

TEST_CASE("an exec: channel in socketpair mode is one socket both ways to the child") {
  bokbok::channel_options o;
  o.child.socketpair = true;
  auto ch = open_byte_channel(bokbok::address::parse("exec:sh -c 'tr a-z A-Z; exit 3'"), o);
  REQUIRE(ch.child());
  CHECK(ch.read_fd() == ch.write_fd());
  struct stat st{};
  REQUIRE(::fstat(ch.read_fd(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  write_all(ch.write_fd(), "hello socket\n");
  ch.close_write();  // shuts our sending side: tr reads end of file
  CHECK(read_all(ch.read_fd()) == "HELLO SOCKET\n");
  CHECK(wait_bounded(*ch.child()).code == 3);
}

TEST_CASE("a child's stderr goes to channel_options' on_stderr") {
  std::mutex mu;
  std::string err;
  bokbok::channel_options o;
  o.child.on_stderr = [&](std::string_view chunk) {
    std::lock_guard lock(mu);
    err.append(chunk);
  };
  auto ch = open_byte_channel("exec:sh -c 'echo oops >&2'", o);
  CHECK(read_all(ch.read_fd()).empty());
  CHECK(wait_bounded(*ch.child()).code == 0);
  CHECK(bokbok_test::settles([&] {
    std::lock_guard lock(mu);
    return err == "oops\n";
  }));
}

TEST_CASE("closing an exec: channel releases its child: after the grace period it gets SIGTERM") {
  bokbok::channel_options o;
  o.child.grace = 100ms;
  // The child ignores its stdin ending, so only the release's signal ends it.
  auto ch = open_byte_channel("exec:sleep 60", o);
  const bokbok::child_handle child = *ch.child();
  CHECK_FALSE(child.exit_status());  // still running
  CHECK(child.describe().find("still running") != std::string::npos);
  ch.close();
  CHECK_FALSE(ch.is_open());
  const bokbok::child_exit how = wait_bounded(child);  // the handle outlives the channel
  CHECK(how.signal == SIGTERM);
  CHECK(how.code == -1);
}

TEST_CASE("address::exec quotes its words so that the child gets exactly them") {
  const auto a = bokbok::address::exec({"printf", "%s|%s", "it's a $HOME", "two  spaces"});
  auto ch = open_byte_channel(a);
  CHECK(read_all(ch.read_fd()) == "it's a $HOME|two  spaces");
  CHECK(wait_bounded(*ch.child()).code == 0);
}

TEST_CASE("a unix: channel is one socket both ways, and close_write() ends only our side") {
  unix_listener l;
  auto ch = open_byte_channel("unix:@" + l.name);
  CHECK(ch.read_fd() == ch.write_fd());
  CHECK_FALSE(ch.child());
  CHECK(ch.name() == "unix:@" + l.name);
  const int peer = l.accept_one();
  write_all(ch.write_fd(), "ping");
  ch.close_write();
  CHECK(read_all(peer) == "ping");  // end of file after our bytes
  write_all(peer, "pong");          // the other direction still works
  ::close(peer);
  CHECK(read_all(ch.read_fd()) == "pong");
}

TEST_CASE("a tcp: channel connects to a loopback listener") {
  const int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(lfd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(lfd, 1) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  auto ch = open_byte_channel("tcp:127.0.0.1:" + std::to_string(ntohs(a.sin_port)));
  const int peer = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  REQUIRE(peer >= 0);
  write_all(peer, "over tcp");
  ::close(peer);
  CHECK(read_all(ch.read_fd()) == "over tcp");
  ::close(lfd);
}

TEST_CASE("an fd: channel owns its descriptors; release_fds() hands them on unclosed") {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  {
    auto ch = open_byte_channel("fd:" + std::to_string(p[0]) + "," + std::to_string(p[1]));
    CHECK(ch.read_fd() == p[0]);
    CHECK(ch.write_fd() == p[1]);
    write_all(ch.write_fd(), "x");
    auto [in, out] = ch.release_fds();
    CHECK(in == p[0]);
    CHECK(out == p[1]);
    CHECK_FALSE(ch.is_open());
  }  // the channel went, the descriptors stay open
  CHECK(::fcntl(p[0], F_GETFD) >= 0);
  CHECK(::fcntl(p[1], F_GETFD) >= 0);
  {
    byte_channel owner(p[0], p[1], "pipe");
    CHECK(owner.name() == "pipe");
  }  // now they are closed
  CHECK(::fcntl(p[0], F_GETFD) == -1);
  CHECK(::fcntl(p[1], F_GETFD) == -1);
}

TEST_CASE("a channel that cannot be opened throws the error type that says why") {
  // Malformed, or for listening: the address is wrong.
  CHECK_THROWS_AS(open_byte_channel("nope:1"), bokbok::address_error);
  CHECK_THROWS_AS(open_byte_channel("inetd"), bokbok::address_error);
  CHECK_THROWS_AS(open_byte_channel("systemd"), bokbok::address_error);
  CHECK_THROWS_AS(open_byte_channel("tcp:*:80"), bokbok::address_error);
  // Well-formed but not reachable: the transport failed.
  CHECK_THROWS_AS(open_byte_channel("unix:/nonexistent/bokbok.sock"), bokbok::transport_error);
  CHECK_THROWS_AS(open_byte_channel("exec:/nonexistent/program"), bokbok::transport_error);
  // fd: with a descriptor that is not open: nothing is taken, the open one stays open.
  const int open_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(open_fd >= 0);
  try {
    open_byte_channel("fd:" + std::to_string(open_fd) + ",987");
    FAIL("opened an fd: channel over a descriptor that is not open");
  } catch (const bokbok::transport_error& e) {
    CHECK(std::string(e.what()).find("fd 987") != std::string::npos);
  }
  CHECK(::fcntl(open_fd, F_GETFD) >= 0);
  ::close(open_fd);
}
