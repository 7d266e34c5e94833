// is_socket (src/base/is_socket.hpp): the one answer to "is this descriptor a socket",
// which the duplex stream, direct writes, bridge and the inetd/systemd hand-over share.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/is_socket.hpp"
#include "base/unique_fd.hpp"

using bokbok::base::is_socket;
using bokbok::base::unique_fd;

TEST_CASE("sockets of either kind are sockets, and pipes, files and ttys are not") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  unique_fd a(sv[0]), b(sv[1]);
  CHECK(is_socket(a.get()));
  unique_fd dgram(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  REQUIRE(dgram);
  CHECK(is_socket(dgram.get()));

  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  unique_fd r(p[0]), w(p[1]);
  CHECK_FALSE(is_socket(r.get()));
  CHECK_FALSE(is_socket(w.get()));
  unique_fd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  REQUIRE(null);
  CHECK_FALSE(is_socket(null.get()));
}

TEST_CASE("a descriptor that is not open is not a socket, and asking does not throw") {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  ::close(p[0]);
  ::close(p[1]);
  CHECK_FALSE(is_socket(p[0]));  // closed: EBADF is "no", not an exception
  CHECK_FALSE(is_socket(-1));
}
