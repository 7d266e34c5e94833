// bokbok-demo-server: a small bokbok server that shows how to write request handlers.
//
// What it shows
//   - a bokbok::router dispatching on the first field (the method name), with typed
//     parameters it checks, and the introspection `bokbok list` / `describe` use;
//   - answering with a message, and failing with an exception, which the caller receives
//     as bokbok::remote_error (a plain std::exception becomes error_code::handler_failed,
//     a bokbok::remote_error keeps its own code);
//   - calling the caller back over the same connection, from inside a handler
//     (`callback`);
//   - serving exactly one connection on stdin/stdout, the way a child process spawned by
//     its client (or a service under inetd) does, and closing it on request;
//   - key mode (--users FILE): clients authenticate with per-user pre-shared keys and
//     the connection is encrypted; peer-credential checks on UNIX sockets (--allow-uid).
//   - the library's log (bokbok/log.hpp) routed to stderr with levels (--log-level):
//     refused clients, protocol violations, running out of descriptors, rate limited.
//
// How to run it
//   Its client normally starts it: bokbok-demo-client spawns
//   `bokbok-demo-server --stdio` and talks to it over a pipe pair. Run by hand, it waits
//   for a bokbok handshake on stdin. stdout carries the protocol, so it logs to stderr.
//
// Methods (each request is a list of fields; the first one names the method)
//   ping S            -> pong S
//   echo F...         -> F...              (the argument fields, byte for byte)
//   add A B           -> A+B               (integers, decimal)
//   fail MSG          -> remote error (handler_failed) whose message is MSG
//   fail-code N MSG   -> remote error with code N (0..65535, named or not) and message MSG
//   sleep MS          -> slept             (after MS milliseconds, at most 60000)
//   callback N        -> did N             (after calling the caller with `callback I`
//                                          for I = 1..N and waiting for each answer)
//   blob N            -> one field of N bytes, byte i being 'a' + i % 26 (N <= 1 GiB)
//   whoami            -> user NAME [uid N] (the authenticated user, "" in plain mode; the
//                                          peer's uid on a UNIX socket)
//   shutdown-server!  -> ok, then the server closes the connection and exits
// Robust calls (README "Robust calls"):
//   deadline          -> deadline MS | deadline none   (the time this handler has left)
//   nested-deadline   -> nested R       (R: what the caller's own `deadline` handler
//                                        answers when called back from here)
//   wait MS           -> waited         (notifies the caller `note waiting`, then waits
//                                        MS milliseconds or until the call is cancelled;
//                                        `last-report` then tells which)
//   overrun MS        -> overran        (sleeps MS ignoring cancels; then records its
//                                        time left and what a nested call to the caller's
//                                        `deadline` gave, for `last-report`)
//   last-report       -> the record of the last wait / overrun, once there is one
//                                        (waits up to 10 s for it)
//   notify-me TEXT    -> ok             (after notifying the caller with `note TEXT`)
//   notes             -> the notifications received so far, one field each
//   size F            -> size N         (N: the byte count of F)
// Stream methods (open them as stream calls: `bokbok call --stream`; demo_streams.hpp):
//   count N, tail, sum, produce BYTES CHUNK, cancel-after N
//   anything else     -> remote error (no_such_method)
// Notifications received are kept (up to 1000) for `notes`.
// A wrong number of arguments, a malformed number or one out of range is a bad_arguments
// remote error that says what was expected.
#include <bokbok/bokbok.hpp>
#include <bokbok/log.hpp>
#include "demo_streams.hpp"
#include <bokbok/router.hpp>
#include <bokbok/server.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <vector>
#include <cstring>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#ifndef BOKBOK_VERSION
#define BOKBOK_VERSION "unknown"
#endif

namespace {

constexpr std::string_view program = "bokbok-demo-server";
constexpr unsigned long long max_sleep_ms = 60'000;
constexpr unsigned long long max_callbacks = 1'000;
constexpr unsigned long long max_blob = 1ull << 30;  // 1 GiB

// How long the server waits, after answering shutdown-server!, for the client to hang
// up before it closes the connection itself. See on_shutdown() below.
constexpr std::chrono::milliseconds shutdown_grace{200};

void log(const std::string& line) {
  // One write per line, so lines from several handler threads do not interleave. What
  // peers sent (close reasons) is made printable and cut, so it cannot forge lines.
  std::string out = "[server] " + bokbok::log_safe(line, 1024) + "\n";
  (void)!::write(STDERR_FILENO, out.data(), out.size());
}

// A remote error with a readable message; the caller gets it as bokbok::remote_error.
[[noreturn]] void bad_request(const std::string& why) {
  throw bokbok::remote_error(bokbok::error_code::handler_failed, why);
}

[[noreturn]] void bad_arguments(const std::string& why) {
  throw bokbok::remote_error(bokbok::error_code::bad_arguments, why);
}

// Integer argument i, which must be in [0, max]: else bad_arguments naming it.
unsigned long long count(const bokbok::args& a, std::size_t i, const std::string& method,
                         unsigned long long max) {
  std::int64_t v = a.integer(i);
  if (v < 0 || static_cast<unsigned long long>(v) > max)
    bad_arguments(method + ": " + std::to_string(v) + " is out of range (0 to " +
                  std::to_string(max) + ")");
  return static_cast<unsigned long long>(v);
}

// Shared between the handlers, the close handler and main(); guarded by `mutex`.
struct server_state {
  std::mutex mutex;
  std::condition_variable changed;
  bool closed = false;
  std::thread closer;  // started by shutdown-server! in --stdio mode, joined by main()
  // Listening modes: stops the server (graceful: this handler's answer still goes out).
  std::function<void()> stop_server;
  std::vector<std::string> notes;  // notifications received
  std::optional<std::string> report;  // of the last wait / overrun
};

std::string remaining_text() {
  auto left = bokbok::this_call::remaining();
  if (left == std::chrono::milliseconds::max()) return "none";
  return std::to_string(left.count());
}

void set_report(server_state& state, std::string text) {
  std::lock_guard lock(state.mutex);
  state.report = std::move(text);
  state.changed.notify_all();
}

// Waits up to MS, or until the caller cancels (the handler's stop token).
bokbok::message on_wait(server_state& state, bokbok::connection& conn,
                        unsigned long long ms) {
  try {
    conn.notify({"note", "waiting"});  // so a caller knows when to cancel
  } catch (const bokbok::error&) {
    // A peer without notifications just is not told.
  }
  auto start = std::chrono::steady_clock::now();
  std::mutex mu;
  std::condition_variable_any cv;
  std::unique_lock lock(mu);
  std::stop_token stop = bokbok::this_call::stop_token();
  cv.wait_for(lock, stop, std::chrono::milliseconds(ms), [] { return false; });
  bool was_stopped = stop.stop_requested();
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  set_report(state, was_stopped ? "stopped after " + std::to_string(took.count()) + " ms"
                                : "not stopped");
  return {"waited"};
}

// Asks the caller's own `deadline` method (a nested call, which inherits this call's
// deadline) and returns the time it reports. An answer that is not `deadline TIME`
// throws std::runtime_error saying what came back (the caller of nested-deadline gets it
// as a handler_failed remote error).
std::string callers_deadline(bokbok::connection& conn, const std::string& method) {
  bokbok::message answer = conn.request({"deadline"});
  if (answer.size() < 2)
    throw std::runtime_error(method + ": the caller answered `deadline` with " +
                             std::to_string(answer.size()) + " field" +
                             (answer.size() == 1 ? "" : "s") + ", expected `deadline TIME`");
  return answer[1];
}

// Sleeps past the caller's deadline on purpose, then records what it sees.
bokbok::message on_overrun(server_state& state, bokbok::connection& conn,
                           unsigned long long ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  std::string nested;
  try {
    nested = callers_deadline(conn, "overrun");
  } catch (const bokbok::call_error& e) {
    nested = bokbok::to_string(e.code());
  } catch (const std::exception& e) {  // a bokbok::error, or an answer of the wrong shape
    nested = std::string("error: ") + e.what();
  }
  set_report(state, "remaining " + remaining_text() + " nested " + nested);
  return {"overran"};
}

// shutdown-server! must answer `ok` and then close the connection. Closing from inside
// the handler would be wrong: close() drops the answers of handlers still running, and
// this handler's answer is only sent after it returns. So the handler starts a "closer"
// thread and returns. The closer waits up to `shutdown_grace` for the connection to
// close by itself (a polite client hangs up as soon as it has its `ok`); if it is still
// open after that, the answer has long been written and the closer closes it. Either
// way serve_stdio() then returns and main() exits with status 0.
bokbok::message on_shutdown(server_state& state, bokbok::connection& conn) {
  if (state.stop_server) {
    log("shutdown-server! received: stopping the server");
    state.stop_server();  // returns at once; running calls, this one included, finish
    return {"ok"};
  }
  std::lock_guard lock(state.mutex);
  if (!state.closer.joinable()) {
    log("shutdown-server! received: closing once the answer is out");
    state.closer = std::thread([&state, conn]() mutable {
      std::unique_lock wait_lock(state.mutex);
      if (!state.changed.wait_for(wait_lock, shutdown_grace,
                                  [&] { return state.closed; })) {
        wait_lock.unlock();
        conn.close();
      }
    });
  }
  return {"ok"};
}

bokbok::message on_callback(bokbok::connection& conn, unsigned long long n) {
  for (unsigned long long i = 1; i <= n; ++i) {
    // A nested call on the same connection, made from a handler thread: allowed, and it
    // cannot deadlock (the connection's loop thread never runs handlers).
    try {
      conn.request({"callback", std::to_string(i)});
    } catch (const bokbok::remote_error& e) {
      bad_request("callback " + std::to_string(i) +
                  " failed on the caller's side: " + e.what());
    }
  }
  return {"did", std::to_string(n)};
}

bokbok::message on_blob(unsigned long long n) {
  std::string blob(n, '\0');
  for (std::size_t i = 0; i < blob.size(); ++i) blob[i] = char('a' + i % 26);
  bokbok::message out;  // not {std::move(blob)}: an initializer list would copy it
  out.push_back(std::move(blob));
  return out;
}

// The methods, registered with their signatures: the router checks arity and types
// (bad_arguments) and answers unknown methods (no_such_method) and the introspection
// methods (bokbok.list, bokbok.describe). --help lists the same table.
// File descriptors (README "File descriptors"; only over a UNIX socket or a socketpair,
// e.g. --stdio under exec: with child.socketpair).
void add_fd_methods(bokbok::router& r) {
  using bokbok::args;
  using bokbok::connection;
  using bokbok::message;
  r.add("write-fd", "writes TEXT to the one fd sent with the call; answers wrote N",
        {{"text", bokbok::param_type::bytes}}, [](connection&, args& a) -> message {
          bokbok::fd_list fds = bokbok::this_call::take_fds();
          if (fds.size() != 1)
            bad_arguments("write-fd: send one file descriptor with the call (got " +
                          std::to_string(fds.size()) + ")");
          std::string_view text = a.bytes(0);
          std::size_t done = 0;
          while (done < text.size()) {
            ssize_t n = ::write(fds[0].get(), text.data() + done, text.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) throw std::runtime_error(std::string("write-fd: ") + std::strerror(errno));
            done += static_cast<std::size_t>(n);
          }
          return {"wrote", std::to_string(done)};
        });
  r.add("listen-fd", "answers port N, with a TCP socket listening on 127.0.0.1:N attached", {},
        [](connection&, args&) -> message {
          bokbok::owned_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
          sockaddr_in addr{};
          addr.sin_family = AF_INET;
          addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
          socklen_t len = sizeof addr;
          if (!s || ::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
              ::listen(s.get(), 16) != 0 ||
              ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
            throw std::runtime_error(std::string("listen-fd: ") + std::strerror(errno));
          bokbok::fd_list out;
          out.push_back(std::move(s));
          bokbok::this_call::attach_fds(std::move(out));
          return {"port", std::to_string(ntohs(addr.sin_port))};
        });
  r.add("fd-count", "answers fds N open M: N fds came with the call (closed), M open here", {},
        [](connection&, args&) -> message {
          std::size_t got = bokbok::this_call::take_fds().size();
          std::size_t open = 0;
          if (DIR* d = ::opendir("/proc/self/fd")) {
            while (::readdir(d)) ++open;
            ::closedir(d);
            open -= 3;  // ".", ".." and the directory's own fd
          }
          return {"fds", std::to_string(got), "open", std::to_string(open)};
        });
}

bokbok::router make_router(server_state& state) {
  using bokbok::args;
  using bokbok::connection;
  using bokbok::message;
  constexpr auto bytes = bokbok::param_type::bytes;
  constexpr auto integer = bokbok::param_type::integer;
  bokbok::router r;
  r.add("ping", "answers pong TEXT", {{"text", bytes}},
        [](connection&, args& a) -> message { return {"pong", std::move(a.fields()[0])}; });
  r.add("echo", "answers its argument fields, byte for byte", {{"field", bytes, true}},
        [](connection&, args& a) -> message { return std::move(a.fields()); });
  r.add("add", "answers the sum of two integers", {{"a", integer}, {"b", integer}},
        [](connection&, args& a) -> message {
          std::int64_t sum = 0;
          if (__builtin_add_overflow(a.integer(0), a.integer(1), &sum))
            bad_arguments("add: the sum does not fit in 64 bits");
          return {std::to_string(sum)};
        });
  r.add("fail", "fails with handler_failed, message MSG", {{"msg", bytes}},
        [](connection&, args& a) -> message {
          // Any std::exception would do, but its what() ends at a NUL byte: a call_error
          // carries MSG whole, NULs included (the caller's remote_error::message()).
          throw bokbok::remote_error(bokbok::error_code::handler_failed, a.bytes(0));
        });
  r.add("fail-code", "fails with code N (0-65535), message MSG", {{"n", integer}, {"msg", bytes}},
        [](connection&, args& a) -> message {
          auto code = count(a, 0, "fail-code", 0xffff);
          throw bokbok::remote_error(static_cast<bokbok::error_code>(code), a.bytes(1));
        });
  r.add("sleep", "answers slept after MS milliseconds (at most 60000)", {{"ms", integer}},
        [](connection&, args& a) -> message {
          std::this_thread::sleep_for(std::chrono::milliseconds(count(a, 0, "sleep", max_sleep_ms)));
          return {"slept"};
        });
  r.add("callback", "answers did N after calling the caller `callback I`, I = 1..N",
        {{"n", integer}}, [](connection& conn, args& a) -> message {
          return on_callback(conn, count(a, 0, "callback", max_callbacks));
        });
  r.add("blob", "answers one field of N bytes 'abc...z' repeated (N <= 1 GiB)",
        {{"n", integer}},
        [](connection&, args& a) -> message { return on_blob(count(a, 0, "blob", max_blob)); });
  r.add("whoami", "answers user NAME [uid N] (key-mode user; uid on UNIX sockets)", {},
        [](connection& conn, args&) -> message {
          message out{"user", conn.user()};
          if (auto c = conn.peer_credentials()) out.insert(out.end(), {"uid", std::to_string(c->uid)});
          return out;
        });
  r.add("pid", "answers pid N, this server process's id (which backend answered)", {},
        [](connection&, args&) -> message { return {"pid", std::to_string(::getpid())}; });
  r.add("size", "answers size N, the byte count of F", {{"f", bytes}},
        [](connection&, args& a) -> message { return {"size", std::to_string(a.bytes(0).size())}; });
  add_fd_methods(r);
  r.add("deadline", "answers deadline MS | deadline none: the time this call has left", {},
        [](connection&, args&) -> message { return {"deadline", remaining_text()}; });
  r.add("nested-deadline", "answers nested R, R the caller's own `deadline` answer", {},
        [](connection& conn, args&) -> message {
          // A nested call inherits this call's deadline: the caller's handler sees it.
          return {"nested", callers_deadline(conn, "nested-deadline")};
        });
  r.add("wait", "notifies `note waiting`, waits MS ms or until cancelled; answers waited",
        {{"ms", integer}}, [&state](connection& conn, args& a) -> message {
          return on_wait(state, conn, count(a, 0, "wait", max_sleep_ms));
        });
  r.add("overrun", "sleeps MS ms ignoring cancels, calls `deadline`; answers overran",
        {{"ms", integer}}, [&state](connection& conn, args& a) -> message {
          return on_overrun(state, conn, count(a, 0, "overrun", max_sleep_ms));
        });
  r.add("last-report", "answers what the last wait / overrun saw (waits up to 10 s)", {},
        [&state](connection&, args&) -> message {
          std::unique_lock lock(state.mutex);
          state.changed.wait_for(lock, std::chrono::seconds(10),
                                 [&] { return state.report.has_value(); });
          if (!state.report) bad_request("last-report: nothing to report");
          return {*std::exchange(state.report, std::nullopt)};
        });
  r.add("notify-me", "answers ok after notifying the caller `note TEXT`", {{"text", bytes}},
        [](connection& conn, args& a) -> message {
          conn.notify({"note", a.bytes(0)});
          return {"ok"};
        });
  r.add("notes", "answers the notifications received so far, one field each", {},
        [&state](connection&, args&) -> message {
          std::lock_guard lock(state.mutex);
          return state.notes;
        });
  r.add("shutdown-server!", "answers ok, then the server stops (--stdio: closes and exits)", {},
        [&state](connection& conn, args&) -> message { return on_shutdown(state, conn); });
  demo::add_stream_methods(r);  // count, tail, sum, produce, cancel-after (demo_streams.hpp)
  return r;
}

// "  ping TEXT           answers pong TEXT", one line per method.
std::string methods_help() {
  server_state unused;
  std::string out;
  for (const auto& m : make_router(unused).methods()) {
    std::string usage = m.name;
    for (const auto& p : m.params) {
      usage += ' ';
      for (char c : p.name) usage += char(std::toupper(static_cast<unsigned char>(c)));
      if (p.list) usage += "...";
    }
    if (usage.size() < 20) usage.resize(20, ' ');
    out += "  " + usage + " " + m.description;
    if (m.stream) out += std::string(" [stream:") + bokbok::to_string(*m.stream) + "]";
    out += "\n";
  }
  return out;
}

void print_help() {
  std::printf(
      "usage: %s --stdio\n"
      "       %s --listen ADDRESS [--listen ADDRESS]... [options]\n"
      "       %s --inetd | --systemd   (or no mode: detected)\n"
      "\n"
      "A demo bokbok server (plain mode, or key mode with --users). With --stdio it\n"
      "serves one connection on\n"
      "stdin/stdout, as bokbok-demo-client starts it. With --listen it accepts\n"
      "connections until shutdown-server! or SIGTERM/SIGINT.\n"
      "\n"
      "modes:\n"
      "  --stdio             serve one connection on stdin/stdout, exit when it closes\n"
      "  --listen ADDRESS    listen on tcp:HOST:PORT, tcp:*:PORT, unix:PATH, unix:@NAME;\n"
      "                      repeatable\n"
      "  --proxy-listen ADDRESS  listen on a tcp: or unix: ADDRESS behind a load\n"
      "                      balancer: every connection begins with a PROXY protocol\n"
      "                      header (v1 or v2), whose client the log names; repeatable\n"
      "  --inetd             run under inetd/xinetd: the connection on fds 0/1 (nowait)\n"
      "                      or a listening socket on fd 0 (wait)\n"
      "  --systemd           take the sockets systemd passes (LISTEN_FDS): listeners\n"
      "                      (Accept=no) or one connection (Accept=yes)\n"
      "  With no mode, a process started by systemd or inetd detects it.\n"
      "\n"
      "options:\n"
      "  --max-connections N connections served at once (default 1024)\n"
      "  --max-concurrent N  handlers running at once per connection (default: no cap)\n"
      "  --max-queued N      requests waiting beyond that, then busy (default 1024)\n"
      "  --max-threads N     handler threads running at once (default 32; --stdio 16)\n"
      "  --max-waiting-handlers N  handler threads waiting in nested calls (callbacks)\n"
      "                      at once, then such a call fails busy (default 8 x threads)\n"
      "  --heartbeat MS      ping a silent peer every MS ms; drop it when it answers\n"
      "                      nothing for one more (default 30000; 0: never)\n"
      "  --record-timeout MS a record a client began must arrive whole within MS ms,\n"
      "                      else it is dropped (default 30000; 0: no bound)\n"
      "  --max-message-size N  the largest message accepted, in bytes\n"
      "  --max-receive-bytes N  bytes all connections may hold of what clients sent and\n"
      "                      no handler has taken yet (default 512 MiB; not --stdio)\n"
      "  --handshake-timeout MS  drop a client that has not finished the handshake (in\n"
      "                      key mode: logged in) within MS ms (default 10000)\n"
      "  --max-per-source N  connections at once from one source (an IP address; a\n"
      "                      UNIX peer's uid), then busy (default 64; 0: no limit)\n"
      "  --new-per-source N  new connections per second from one source, then busy\n"
      "                      (default 32; 0: no limit)\n"
      "  --limit-local-sources  apply those to loopback and UNIX peers too (default:\n"
      "                      local peers are not limited)\n"
      "  --max-per-user N    key mode: connections at once per user, then busy (default\n"
      "                      0: no limit)\n"
      "  --logins-per-user N key mode: logins per second per user, then busy (default\n"
      "                      0: no limit)\n"
      "  --proxy-trusted CIDR  accept PROXY headers only from this address or block\n"
      "                      (e.g. 10.0.0.0/8); repeatable (default: from anyone)\n"
      "  --max-connection-age MS  end a connection gracefully (goaway) once it is MS ms\n"
      "                      old, less up to a tenth (default 0: never)\n"
      "  --reuse-port        SO_REUSEPORT: several servers may listen on one TCP port\n"
      "                      and the kernel spreads clients among them\n"
      "  --unix-mode OCTAL   permission bits of unix:PATH socket files, e.g. 660\n"
      "  --users FILE        key mode: clients must authenticate as a user of FILE (one\n"
      "                      `USER KEYHEX` per line, see `bokbok keygen --help`); the\n"
      "                      connection is encrypted; plain clients are refused\n"
      "  --allow-uid UID     on UNIX sockets, accept only peers with this uid\n"
      "                      (SO_PEERCRED); repeatable\n"
      "  --log-level LEVEL   the library's log on stderr: debug, info (default),\n"
      "                      warning, error or off (refused clients, protocol\n"
      "                      violations: rate limited per cause)\n"
      "  --help              show this help and exit\n"
      "  --version           show the version and exit\n"
      "\n"
      "methods (a request's first field names the method; wrong arguments are a\n"
      "bad_arguments error, anything else no_such_method; `bokbok list` shows the same):\n"
      "%s"
      "\n"
      "Logs go to stderr; stdout is never written (under --stdio it is the protocol).\n",
      program.data(), program.data(), program.data(), methods_help().c_str());
}

int usage_error(const std::string& why) {
  std::fprintf(stderr, "%s: %s\ntry '%s --help'\n", program.data(), why.c_str(),
               program.data());
  return 2;
}

struct command_line {
  bool stdio = false;
  std::vector<std::string> listen;
  std::vector<std::string> proxy_listen, proxy_trusted;  // behind a load balancer
  bool reuse_port = false;
  unsigned max_connection_age_ms = 0;  // 0: no limit
  unsigned max_connections = 1024;
  std::optional<unsigned> unix_mode;
  std::string users_file;          // key mode
  std::vector<unsigned> allow_uids;  // peer-credential check
  unsigned max_concurrent = 0;
  std::size_t max_queued = 1024;
  unsigned max_threads = 0;           // 0: the library's default
  unsigned max_waiting_handlers = 0;  // 0: the library's default
  // The library's defaults unless given (--heartbeat, --record-timeout).
  unsigned heartbeat_ms =
      static_cast<unsigned>(bokbok::server_options{}.heartbeat_interval.count());
  unsigned record_timeout_ms =
      static_cast<unsigned>(bokbok::server_options{}.record_timeout.count());
  std::size_t max_message_size = 64u << 20;
  std::size_t max_receive_bytes = 512u << 20;
  unsigned handshake_timeout_ms = 10'000;
  std::optional<unsigned> max_per_source, new_per_source;  // server_options' defaults
  std::optional<unsigned> max_per_user, logins_per_user;
  bool limit_local_sources = false;
  std::optional<bokbok::log_level> log_level = bokbok::log_level::info;  // nullopt: off
};

// Returns an exit status to leave with, or -1 to go on.
int parse(int argc, char** argv, command_line& cl) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= argc) return std::nullopt;
      return std::string(argv[++i]);
    };
    if (arg == "--help" || arg == "-h") {
      print_help();
      return 0;
    } else if (arg == "--version") {
      std::printf("%s %s\n", program.data(), BOKBOK_VERSION);
      return 0;
    } else if (arg == "--stdio") {
      cl.stdio = true;
    } else if (arg == "--log-level") {
      auto v = value();
      if (v && *v == "off") {
        cl.log_level.reset();
        continue;
      }
      auto level = v ? bokbok::parse_log_level(*v) : std::nullopt;
      if (!level) return usage_error("--log-level needs debug, info, warning, error or off");
      cl.log_level = level;
    } else if (arg == "--inetd") {
      cl.listen.push_back("inetd");
    } else if (arg == "--systemd") {
      cl.listen.push_back("systemd");
    } else if (arg == "--listen") {
      auto v = value();
      if (!v) return usage_error("--listen needs an ADDRESS");
      cl.listen.push_back(*v);
    } else if (arg == "--proxy-listen") {
      auto v = value();
      if (!v) return usage_error("--proxy-listen needs an ADDRESS");
      cl.proxy_listen.push_back(*v);
    } else if (arg == "--proxy-trusted") {
      auto v = value();
      if (!v) return usage_error("--proxy-trusted needs an address or CIDR block");
      cl.proxy_trusted.push_back(*v);
    } else if (arg == "--reuse-port") {
      cl.reuse_port = true;
    } else if (arg == "--max-connections") {
      auto v = value();
      char* end = nullptr;
      unsigned long n = v ? std::strtoul(v->c_str(), &end, 10) : 0;
      if (!v || v->empty() || *end || n == 0 || n > 1000000)
        return usage_error("--max-connections needs a number from 1 to 1000000");
      cl.max_connections = static_cast<unsigned>(n);
    } else if (arg == "--users") {
      auto v = value();
      if (!v) return usage_error("--users needs a FILE");
      cl.users_file = *v;
    } else if (arg == "--allow-uid") {
      auto v = value();
      char* end = nullptr;
      unsigned long n = v ? std::strtoul(v->c_str(), &end, 10) : 0;
      if (!v || v->empty() || *end || n > 0xffffffffu)
        return usage_error("--allow-uid needs a numeric uid");
      cl.allow_uids.push_back(static_cast<unsigned>(n));
    } else if (arg == "--max-concurrent" || arg == "--max-queued" || arg == "--heartbeat" ||
               arg == "--record-timeout" || arg == "--max-message-size" ||
               arg == "--max-receive-bytes" || arg == "--max-threads" ||
               arg == "--max-waiting-handlers" || arg == "--handshake-timeout" ||
               arg == "--max-per-source" || arg == "--new-per-source" ||
               arg == "--max-per-user" || arg == "--logins-per-user" ||
               arg == "--max-connection-age") {
      auto v = value();
      char* end = nullptr;
      unsigned long long n = v ? std::strtoull(v->c_str(), &end, 10) : 0;
      if (!v || v->empty() || *end || n > 0xffffffffull)
        return usage_error(std::string(arg) + " needs a number");
      if (arg == "--max-concurrent") cl.max_concurrent = static_cast<unsigned>(n);
      if (arg == "--max-queued") cl.max_queued = n;
      if (arg == "--heartbeat") cl.heartbeat_ms = static_cast<unsigned>(n);
      if (arg == "--record-timeout") cl.record_timeout_ms = static_cast<unsigned>(n);
      if (arg == "--max-message-size") cl.max_message_size = n;
      if (arg == "--max-receive-bytes") cl.max_receive_bytes = n;
      if (arg == "--max-threads") cl.max_threads = static_cast<unsigned>(n);
      if (arg == "--max-waiting-handlers") cl.max_waiting_handlers = static_cast<unsigned>(n);
      if (arg == "--handshake-timeout") cl.handshake_timeout_ms = static_cast<unsigned>(n);
      if (arg == "--max-connection-age") cl.max_connection_age_ms = static_cast<unsigned>(n);
      if (arg == "--max-per-source") cl.max_per_source = static_cast<unsigned>(n);
      if (arg == "--new-per-source") cl.new_per_source = static_cast<unsigned>(n);
      if (arg == "--max-per-user") cl.max_per_user = static_cast<unsigned>(n);
      if (arg == "--logins-per-user") cl.logins_per_user = static_cast<unsigned>(n);
    } else if (arg == "--limit-local-sources") {
      cl.limit_local_sources = true;
    } else if (arg == "--unix-mode") {
      auto v = value();
      char* end = nullptr;
      unsigned long n = v ? std::strtoul(v->c_str(), &end, 8) : 0;
      if (!v || v->empty() || *end || n > 07777)
        return usage_error("--unix-mode needs octal permission bits, e.g. 660");
      cl.unix_mode = static_cast<unsigned>(n);
    } else {
      return usage_error("unknown argument '" + std::string(arg) + "'");
    }
  }
  if (cl.stdio && (!cl.listen.empty() || !cl.proxy_listen.empty()))
    return usage_error("--stdio serves stdin/stdout; it cannot be combined with listening");
  if (!cl.stdio && cl.listen.empty() && cl.proxy_listen.empty()) {
    std::string detected = bokbok::superserver_address();
    if (detected.empty())
      return usage_error("choose a mode: --stdio, --listen ADDRESS, --inetd or --systemd");
    cl.listen.push_back(detected);
  }
  return -1;
}

void keep_note(server_state& state, bokbok::message m) {
  std::lock_guard lock(state.mutex);
  if (state.notes.size() < 1000) state.notes.push_back(m.size() > 1 ? m[1] : "");
}

int serve_stdio_mode(server_state& state, const command_line& cl) {
  bokbok::options opts;
  opts.max_concurrent_calls = cl.max_concurrent;
  opts.max_queued_calls = cl.max_queued;
  if (cl.max_threads) opts.max_threads = cl.max_threads;
  opts.max_waiting_handlers = cl.max_waiting_handlers;
  opts.heartbeat_interval = std::chrono::milliseconds(cl.heartbeat_ms);
  opts.record_timeout = std::chrono::milliseconds(cl.record_timeout_ms);
  opts.max_message_size = cl.max_message_size;
  opts.on_notify = [&state](bokbok::connection&, bokbok::message m) { keep_note(state, std::move(m)); };
  if (!cl.users_file.empty()) opts.keys.key_for_user = bokbok::load_users(cl.users_file);
  opts.on_request = make_router(state).handler();
  opts.on_close = [&state](bokbok::connection&) {
    std::lock_guard lock(state.mutex);
    state.closed = true;
    state.changed.notify_all();
  };
  log("serving one connection on stdin/stdout (pid " + std::to_string(::getpid()) + ")");
  int status = 0;
  try {
    bokbok::serve_stdio(opts);
    log("connection closed; exiting");
  } catch (const bokbok::error& e) {
    log(std::string("error: ") + e.what());
    status = 1;
  }
  std::thread closer;
  {
    std::lock_guard lock(state.mutex);
    closer = std::move(state.closer);
  }
  if (closer.joinable()) closer.join();
  return status;
}

int serve_listening_mode(server_state& state, const command_line& cl) {
  bokbok::server_options o;
  o.listen = cl.listen;
  o.proxy_listen = cl.proxy_listen;
  o.proxy_trusted_sources = cl.proxy_trusted;
  o.reuse_port = cl.reuse_port;
  o.max_connection_age = std::chrono::milliseconds(cl.max_connection_age_ms);
  o.max_connections = cl.max_connections;
  o.unix_mode = cl.unix_mode;
  if (!cl.users_file.empty()) o.keys.key_for_user = bokbok::load_users(cl.users_file);
  if (!cl.allow_uids.empty())
    o.authorize = [uids = cl.allow_uids](const std::optional<bokbok::connection::credentials>& c) {
      return c && std::find(uids.begin(), uids.end(), c->uid) != uids.end();
    };
  o.max_concurrent_calls = cl.max_concurrent;
  o.max_queued_calls_per_connection = cl.max_queued;
  if (cl.max_threads) o.max_threads = cl.max_threads;
  o.max_waiting_handlers = cl.max_waiting_handlers;
  o.heartbeat_interval = std::chrono::milliseconds(cl.heartbeat_ms);
  o.record_timeout = std::chrono::milliseconds(cl.record_timeout_ms);
  o.max_message_size = cl.max_message_size;
  o.max_receive_bytes = cl.max_receive_bytes;
  o.handshake_timeout = std::chrono::milliseconds(cl.handshake_timeout_ms);
  if (cl.max_per_source) o.max_connections_per_source = *cl.max_per_source;
  if (cl.new_per_source) o.max_new_connections_per_source = *cl.new_per_source;
  o.limit_local_sources = cl.limit_local_sources;
  if (cl.max_per_user) o.max_connections_per_user = *cl.max_per_user;
  if (cl.logins_per_user) o.max_logins_per_user = *cl.logins_per_user;
  o.on_notify = [&state](bokbok::connection&, bokbok::message m) { keep_note(state, std::move(m)); };
  o.on_request = make_router(state).handler();
  // The login line: in key mode it names the user, who has proved its key by now. These
  // per-connection lines go through the library's log and its rate limit per cause, as
  // anyone who can connect can cause them at will: a flood of connections leaves a few
  // lines and a count per 10 s (none under --log-level off or warning).
  o.on_open = [](bokbok::connection& c) {
    bokbok::log_event(bokbok::log_level::info, "demo", "connections opened",
                      "connection from " + c.peer_address() +
                          (c.user().empty() ? "" : " logged in as \"" + c.user() + "\""));
  };
  o.on_close = [](bokbok::connection& c) {
    bokbok::log_event(bokbok::log_level::info, "demo", "connections closed",
                      "connection from " + c.peer_address() + " closed: " + c.close_reason());
  };
  // Clients that fail to open or are refused are logged by the library (main() routes
  // its log to stderr), rate limited per cause: no on_connection_error needed here.
  // SIGTERM / SIGINT drain and stop the server (no thread has started yet: see
  // server_options::stop_signals); the socket files are removed and main() returns 0.
  o.stop_signals = {SIGTERM, SIGINT};
  std::optional<bokbok::server> made;
  try {
    made.emplace(o);  // refuses a --proxy-trusted entry that does not parse
  } catch (const bokbok::error& e) {
    return usage_error(e.what());
  }
  bokbok::server& srv = *made;
  state.stop_server = [&srv] { srv.stop(); };
  try {
    srv.start();
  } catch (const bokbok::error& e) {
    log(std::string("cannot start: ") + e.what());
    return 1;
  }
  for (const auto& a : srv.local_addresses()) log("listening on " + a);
  srv.wait();
  log("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  command_line cl;
  if (int status = parse(argc, argv, cl); status >= 0) return status;
  // The library's own log (refused clients, protocol violations, ...) to stderr.
  if (cl.log_level) bokbok::set_log_sink(bokbok::log_to_stderr(std::string(program)), *cl.log_level);
  server_state state;
  try {
    return cl.stdio ? serve_stdio_mode(state, cl) : serve_listening_mode(state, cl);
  } catch (const bokbok::key_error& e) {  // a bad users file
    log(e.what());
    return 1;
  }
}
