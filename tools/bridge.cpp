// `bokbok bridge ADDRESS_A ADDRESS_B`: relays bytes both ways between two addresses
// until both directions have ended, passing each half-close on. Its main use is at the
// far end of an ssh pipe: `ssh host bokbok bridge stdio unix:/run/app.sock` reaches a
// server on that host's UNIX socket, which knows nothing of stdio. It relays bytes, not
// messages, so end-to-end encryption passes through untouched.
//
// One thread per direction, each a blocking copy loop (poll() on descriptors that are
// non-blocking). A direction that reads end of file ends the other side's write half
// (shutdown on a socket, close on a pipe); a read or write error ends the whole bridge.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

#include "bokbok/address.hpp"
#include "bokbok/byte_channel.hpp"
#include "bokbok/error.hpp"
#include "bridge_keys.hpp"
#include "command.hpp"
#include "trace_option.hpp"

namespace bokbok::tools {
namespace {

constexpr std::string_view help_text =
    "usage: bokbok bridge [--users FILE] [--user NAME --key-file FILE] ADDRESS_A ADDRESS_B\n"
    "\n"
    "Relays bytes both ways between two addresses until both directions have ended,\n"
    "passing half-closes on: when A ends its output, B's input is ended too (and the\n"
    "other way round). It relays bytes, not messages, so an encrypted connection passes\n"
    "through untouched.\n"
    "\n"
    "Addresses: stdio, fd:R,W, tcp:HOST:PORT, unix:PATH, unix:@NAME (connected to),\n"
    "exec:COMMAND... and ssh:HOST COMMAND... (started; the bridge waits for them to\n"
    "exit at the end, and fails with exit status 3 if one did not exit with 0).\n"
    "\n"
    "With keys it ends key mode on a side instead, speaking bokbok to both sides and\n"
    "passing each message on (requests and their answers or errors, notifications):\n"
    "  --users FILE       side A accepts key-mode clients, users of FILE (as\n"
    "                     bokbok-demo-server --users); B is reached in plain mode\n"
    "  --user NAME        side B is reached in key mode as NAME, with\n"
    "  --key-file FILE    NAME's key\n"
    "  -v, --trace        with keys: print every frame each side sends (>) and\n"
    "                     receives (<) on stderr, decoded, after 'bokbok bridge: A: '\n"
    "                     or 'B: '\n"
    "Both may be given (A and B then use different keys). Without them, key mode\n"
    "passes through the byte relay end to end, and the bridge needs no keys.\n"
    "\n"
    "Typical use, reaching a server on another host's UNIX socket: run\n"
    "  ssh HOST bokbok bridge stdio unix:/run/app.sock\n"
    "and speak bokbok over that ssh command's stdin and stdout.\n"
    "\n"
    "Exit status: 0 both directions ended cleanly; 2 bad usage; 3 an address could not\n"
    "be opened, or reading or writing failed; 4 (with keys) authentication refused.\n";

constexpr int exit_transport = 3;

// One side of the bridge: its channel (exec:, ssh: with the child), and its name for
// messages.
struct side {
  byte_channel channel;
  std::string name;
};

side open_side(std::string_view text) {
  const address a = address::parse(text);  // address_error: usage
  side s;
  s.name = a.to_string();
  if (a.type() == address::kind::inetd || a.type() == address::kind::systemd)
    throw usage_error("bridge connects to its addresses; " + s.name +
                      " is for servers that listen");
  if (a.type() == address::kind::fd)
    for (int fd : {a.in_fd(), a.out_fd()})
      if (fcntl(fd, F_GETFD) < 0)
        throw usage_error("fd " + std::to_string(fd) + " of " + s.name + " is not open");
  s.channel = open_byte_channel(a);  // tcp:, unix: within 10 s; tcp:*:PORT: address_error
  return s;
}

// Waits until `fd` is ready for `events`; false on a poll error.
bool wait_ready(int fd, short events) {
  pollfd p{fd, events, 0};
  int rc;
  do rc = ::poll(&p, 1, -1);
  while (rc < 0 && errno == EINTR);
  return rc > 0;
}

// Copies `from` to `to` until end of file (returns "") or an error (returns it). A
// destination that is gone (EPIPE, ECONNRESET) or a source reset by its peer ends the
// direction like end of file: the other end hung up, which is how bridged sessions end.
// SIGPIPE is ignored (run() does it), so a write to a closed pipe or socket returns EPIPE.
std::string pump(int from, int to) {
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::read(from, buf, sizeof buf);
    if (n == 0) return "";
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN && wait_ready(from, POLLIN)) continue;
      if (errno == ECONNRESET) return "";
      return std::string("read failed: ") + std::strerror(errno);
    }
    std::string_view left(buf, static_cast<std::size_t>(n));
    while (!left.empty()) {
      ssize_t w = ::write(to, left.data(), left.size());
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno == EAGAIN) {
        if (!wait_ready(to, POLLOUT)) return "poll failed";
        continue;
      }
      if (w < 0 && (errno == EPIPE || errno == ECONNRESET)) return "";
      if (w < 0) return std::string("write failed: ") + std::strerror(errno);
      left.remove_prefix(static_cast<std::size_t>(w));
    }
  }
}

int run(args_view args) {
  arg_reader reader(args);
  std::vector<std::string> addresses;
  bridge_keys keys;
  while (!reader.done()) {
    std::string_view a = reader.next();
    if (a == "--users")
      keys.users_file = reader.value();
    else if (a == "--user")
      keys.user = reader.value();
    else if (a == "--key-file")
      keys.key_file = reader.value();
    else if (is_trace_option(a))
      reader.no_value(), keys.trace = true;
    else if (a.starts_with("--"))
      throw usage_error("unknown option '" + std::string(a) + "'");
    else
      addresses.emplace_back(a);
  }
  if (addresses.size() != 2) throw usage_error("needs exactly two addresses, A and B");
  if (keys.user.empty() != keys.key_file.empty())
    throw usage_error("--user and --key-file go together");
  if (keys.trace && keys.users_file.empty() && keys.user.empty())
    throw usage_error("--trace needs keys (--users, --user): without them the bridge "
                      "relays bytes, not frames");
  if (!keys.users_file.empty() || !keys.user.empty()) {
    try {
      return run_key_bridge(addresses[0], addresses[1], keys);
    } catch (const address_error& e) {
      throw usage_error(e.what());
    } catch (const key_error& e) {
      throw usage_error(e.what());
    }
  }
  side a, b;
  try {
    a = open_side(addresses[0]);
    b = open_side(addresses[1]);
  } catch (const address_error& e) {
    throw usage_error(e.what());
  } catch (const transport_error& e) {
    std::fprintf(stderr, "bokbok bridge: %s\n", without_prefix(e.what()).c_str());
    return exit_transport;
  }
  ::signal(SIGPIPE, SIG_IGN);  // write errors come back as EPIPE
  std::atomic<bool> failed{false};
  // Each direction reads one channel and writes the other; close_write() (only by the
  // direction that writes) passes the end of file on.
  auto direction = [&](side& from, side& to) {
    std::string err = pump(from.channel.read_fd(), to.channel.write_fd());
    if (!err.empty()) {
      std::fprintf(stderr, "bokbok bridge: %s -> %s: %s\n", from.name.c_str(),
                   to.name.c_str(), err.c_str());
      failed = true;
      std::_Exit(exit_transport);  // the other direction may be blocked for good
    }
    to.channel.close_write();
  };
  std::thread a_to_b([&] { direction(a, b); });
  direction(b, a);
  a_to_b.join();
  for (side* s : {&a, &b}) {
    if (!s->channel.child()) continue;
    const child_handle child = *s->channel.child();
    s->channel.close();  // closes its pipes and releases the child
    const child_exit st = child.wait();
    if (st.code != 0 || st.signal != 0) {
      std::fprintf(stderr, "bokbok bridge: %s: %s\n", s->name.c_str(), st.describe().c_str());
      failed = true;
    }
  }
  return failed ? exit_transport : 0;
}

}  // namespace

const command bridge_command = {
    "bridge",
    "relay bytes both ways between two addresses (e.g. stdio and a UNIX socket)",
    help_text,
    run,
    nullptr,
};

}  // namespace bokbok::tools
