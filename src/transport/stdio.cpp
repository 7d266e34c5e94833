#include "transport/stdio.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "bokbok/error.hpp"

namespace bokbok::transport {

namespace {
[[noreturn]] void fail(const char* what) {
  throw transport_error(std::string("bokbok: cannot take over stdio: ") + what + ": " +
                        std::strerror(errno));
}
}  // namespace

std::pair<base::unique_fd, base::unique_fd> take_stdio() {
  base::unique_fd in(fcntl(0, F_DUPFD_CLOEXEC, 3));
  if (!in) fail("stdin");
  base::unique_fd out(fcntl(1, F_DUPFD_CLOEXEC, 3));
  if (!out) fail("stdout");
  base::unique_fd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null) fail("/dev/null");
  if (dup2(null.get(), 0) < 0) fail("stdin");
  // stdout now goes where stderr goes; with no stderr, to /dev/null.
  if (fcntl(2, F_GETFD) >= 0) {
    if (dup2(2, 1) < 0) fail("stdout");
  } else {
    base::unique_fd sink(open("/dev/null", O_WRONLY | O_CLOEXEC));
    if (!sink || dup2(sink.get(), 1) < 0) fail("stdout");
  }
  return {std::move(in), std::move(out)};
}

}  // namespace bokbok::transport
