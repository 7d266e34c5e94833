// `bokbok call`: sends one request to an address, prints the response, exits.
// The exit status says how it went (see help_text); call_output.cpp formats the answer.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <unistd.h>

#include <bokbok/bokbok.hpp>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <variant>

#include "call_input.hpp"
#include "call_output.hpp"
#include "call_stream.hpp"
#include "command.hpp"
#include "connect_flags.hpp"
#include "trace_option.hpp"

namespace bokbok::tools::call {
namespace {

constexpr std::string_view help_text =
    "usage: bokbok call [options] ADDRESS FIELD...\n"
    "\n"
    "Connects to ADDRESS, sends one request whose message is the FIELDs in order (by\n"
    "convention the first names the method), prints the response and exits.\n"
    "\n"
    "ADDRESS is one of\n"
    "  tcp:HOST:PORT           a TCP server (HOST a name, an IPv4 or a [v6] literal)\n"
    "  tcp:H1:P1,H2:P2,...     a list of TCP servers, the first that answers\n"
    "  unix:PATH, unix:@NAME   a UNIX socket file, or one in the abstract namespace\n"
    "  fd:R,W                  read fd R and write fd W, inherited from the caller\n"
    "  stdio                   stdin and stdout carry the protocol; the response is then\n"
    "                          printed on stderr\n"
    "  exec:COMMAND ARG...     a server started as a child, over its stdin/stdout (words\n"
    "                          split like sh without expansions; quote the address)\n"
    "  ssh:[USER@]HOST[:PORT] [SSH_OPTION...] [--] COMMAND ARG...\n"
    "                          COMMAND run on HOST by ssh in batch mode, over ssh's\n"
    "                          stdin/stdout\n"
    "\n"
    "output:\n"
    "  By default each field of the response is written as is (raw bytes), followed\n"
    "  by a newline. A field that contains a newline makes this output ambiguous: for\n"
    "  anything but simple text, use --json.\n"
    "  With --json the response is one line: a JSON array (RFC 8259) with one element\n"
    "  per field, in order. A field that is valid UTF-8 and contains no control\n"
    "  character (U+0000-U+001F, U+007F-U+009F) other than newline, tab and carriage\n"
    "  return is a JSON string: '\"' and '\\' are escaped, newline, tab and carriage\n"
    "  return are written \\n, \\t and \\r, and every other character as is (UTF-8).\n"
    "  Any other field is an object {\"base64\": \"...\"} holding its bytes in standard\n"
    "  base64 (RFC 4648, alphabet A-Z a-z 0-9 + /, with = padding). For example the\n"
    "  response (\"pong\", the bytes 00 ff) prints  [\"pong\", {\"base64\": \"AP8=\"}]\n"
    "  With --stream, each message the server streams is printed as it arrives, before\n"
    "  the response: its fields as the response's (each followed by a newline), or\n"
    "  with --json one line {\"stream\": [FIELD...]}.\n"
    "  Notifications the server sends during the call (before its answer) are\n"
    "  printed as they come: on stderr as 'bokbok call: notification: FIELD...'\n"
    "  (control bytes as \\xHH), or with --json on the output, one line each:\n"
    "  {\"notification\": [\"note\", \"waiting\"]}. The response line comes last.\n"
    "\n"
    "options (before or after ADDRESS, but before the first FIELD: option parsing\n"
    "stops there, so `call ADDRESS echo --json` sends \"--json\" as a field):\n"
    "  --json              print the response as one JSON array (see above); a remote\n"
    "                      error as one line {\"error\": {\"code\": N, \"name\": ...,\n"
    "                      \"message\": ...}} (exit status 1 still); a failure here\n"
    "                      the same with \"code\": null and the name connection_failed,\n"
    "                      authentication_failed or timed_out (exit 3, 4, 5); and each\n"
    "                      notification as {\"notification\": [FIELD...]}\n"
    "  --timeout SECONDS   the whole call, connecting included, must finish within\n"
    "                      SECONDS (a decimal number, e.g. 0.5), else exit status 5;\n"
    "                      sent as the call's deadline, which the handler sees\n"
    "  --echo              answer each request the server makes during the call with\n"
    "                      its own fields; without it such requests get the error\n"
    "                      no_such_method\n"
    "  --user NAME         key mode: authenticate as NAME (with --key-file); the\n"
    "                      connection is encrypted, and a plain server is refused\n"
    "  --key-file FILE     NAME's key (a file made by `bokbok keygen`, mode 0600)\n"
    "  -d, --data DATA     arguments as a JSON array, sent after the FIELDs (which\n"
    "                      then are just the method): DATA itself, @FILE or @- (standard\n"
    "                      input). Strings go as UTF-8, integers as decimal text,\n"
    "                      true/false as such, {\"base64\": \"...\"} as its bytes. If the\n"
    "                      server describes the method (bokbok.describe), they are\n"
    "                      checked against its parameter types first (exit 2)\n"
    "  --stream            open a stream call (PROTOCOL.md §12): the FIELDs are its\n"
    "                      opening message; the server's stream is printed as it\n"
    "                      comes (see output). Unless the server describes the\n"
    "                      method as stream:out (bokbok describe), the call streams\n"
    "                      standard input: one message per line, the line (without\n"
    "                      its newline) its one field; with --json each line is a\n"
    "                      JSON array as -d takes it. End of input ends the stream.\n"
    "                      Ctrl-C cancels the call (exit status 1). Not with\n"
    "                      --stdin-field; with an address that reads standard input\n"
    "                      nothing is streamed\n"
    "  --stdin-field       append one more field after the FIELDs: all of standard\n"
    "                      input, byte for byte (for large or binary payloads). Not\n"
    "                      with an address that reads standard input (stdio, inetd,\n"
    "                      fd:0,W)\n"
    "  --                  end of options: the next argument (after ADDRESS, if not\n"
    "                      given yet) is the first FIELD, even if it starts with '-'\n"
    "  -v, --trace         print every frame sent (>) and received (<) on stderr,\n"
    "                      decoded: type, call id, flags, fields (cut at 32 bytes)\n"
    "  --help              show this help\n"
    "\n"
    "exit status:\n"
    "  0  success: the response was printed\n"
    "  1  the call was answered with an error: stderr says\n"
    "     'bokbok call: remote error (CODE): MESSAGE', CODE being handler_failed\n"
    "     (the remote handler failed), no_such_method, busy, ...; or it was refused\n"
    "     before sending ('call refused (too_large): ...'); or a local I/O error\n"
    "     (reading standard input, writing the response)\n"
    "  2  bad usage, including a malformed ADDRESS, one that is for listening\n"
    "     (tcp:*:PORT), and an fd:R,W whose descriptors are not open\n"
    "  3  could not connect, or the connection failed before the answer came\n"
    "  4  authentication refused: key mode, unknown user or wrong key (the server does\n"
    "     not say which), or a server that does not accept this client\n"
    "     (not_authorized)\n"
    "  5  timed out (--timeout)\n"
    "\n"
    "examples:\n"
    "  bokbok call unix:/run/app.sock ping hello\n"
    "  bokbok call --json --timeout 2 tcp:127.0.0.1:7000 echo hi\n"
    "  bokbok call 'exec:bokbok-demo-server --stdio' ping hi\n"
    "  bokbok call 'ssh:admin@db1 bokbok bridge stdio unix:/run/app.sock' status\n"
    "  bokbok call --stdin-field tcp:127.0.0.1:7000 store -name- < photo.jpg\n"
    "  bokbok call -d '[2, 3]' 'exec:bokbok-demo-server --stdio' add\n"
    "  bokbok call --stream unix:/run/app.sock count 5\n"
    "  seq 10 | bokbok call --stream 'exec:bokbok-demo-server --stdio' sum\n";

enum exit_status : int {
  exit_ok = 0,
  exit_remote_error = 1,
  exit_transport = 3,
  exit_auth = 4,
  exit_timed_out = 5,
};

// --timeout (seconds; 0: none), --user, --key-file: connect_flags.
struct call_options : connect_flags {
  bool json = false;
  bool echo = false;
  bool stdin_field = false;
  bool stream = false;  // --stream
  bool trace = false;  // -v, --trace
  std::string address;
  message fields;
  std::optional<std::string> data;  // -d: JSON arguments, or @FILE / @-
};

bool takes_value(std::string_view option) {
  return option == "--timeout" || option == "--user" || option == "--key-file" ||
         option == "-d" || option == "--data";
}

// Options end at the first FIELD (the second argument that is not an option or an
// option's value), or at "--": `call ADDRESS echo --json` sends "--json" as a field.
std::size_t options_end(args_view args) {
  bool have_address = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "--") return i;
    if (arg.starts_with('-') && arg != "-") {
      if (takes_value(arg)) ++i;  // "--timeout 2"; "--timeout=2" is one argument
      continue;
    }
    if (have_address) return i;
    have_address = true;
  }
  return args.size();
}

call_options parse_args(args_view args) {
  call_options o;
  const std::size_t end_of_options = options_end(args);

  arg_reader reader(args.first(end_of_options));
  while (!reader.done()) {
    std::string_view arg = reader.next();
    if (arg == "--json") {
      reader.no_value();
      o.json = true;
    } else if (arg == "--echo") {
      reader.no_value();
      o.echo = true;
    } else if (is_trace_option(arg)) {
      reader.no_value();
      o.trace = true;
    } else if (arg == "--stream") {
      reader.no_value();
      o.stream = true;
    } else if (arg == "--stdin-field") {
      reader.no_value();
      o.stdin_field = true;
    } else if (o.take(arg, reader)) {
    } else if (arg == "-d" || arg == "--data") {
      o.data = std::string(reader.value());
    } else if (arg.starts_with('-') && arg != "-") {
      throw usage_error("unknown option '" + std::string(arg) +
                        "' (options go before the first FIELD; put -- before a first "
                        "FIELD that starts with '-')");
    } else {
      o.address = arg;  // the one non-option before the options end
    }
  }
  // After the options: "--" (dropped), then the address if it was not given yet, then
  // the FIELDs, verbatim.
  std::size_t i = end_of_options;
  if (i < args.size() && args[i] == "--") ++i;
  if (o.address.empty() && i < args.size()) o.address = args[i++];
  for (; i < args.size(); ++i) o.fields.emplace_back(args[i]);

  o.check();
  if (o.address.empty()) throw usage_error("no ADDRESS given");
  if (o.data && o.fields.empty())
    throw usage_error("-d needs a FIELD naming the method (the arguments follow it)");
  if (o.stream && o.stdin_field)
    throw usage_error("--stream reads standard input as the stream: not with --stdin-field");
  if (o.fields.empty() && !o.stdin_field)
    throw usage_error("no FIELD given (the first field names the method)");
  return o;
}

// fd:R,W names descriptors this process inherited; say so clearly if one is not open
// (connecting would otherwise fail obscurely, or take over the library's own fds once it
// has opened some under those numbers).
void check_fds_open(const address& a) {
  if (a.type() != address::kind::fd) return;
  for (int fd : {a.in_fd(), a.out_fd()})
    if (::fcntl(fd, F_GETFD) == -1)
      throw usage_error("fd " + std::to_string(fd) +
                        " is not open (fd:R,W uses descriptors inherited from the caller)");
}

std::string read_stdin_whole(std::size_t limit) {
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t r = ::read(STDIN_FILENO, buf, sizeof buf);
    if (r == 0) return data;
    if (r < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "reading standard input");
    }
    data.append(buf, std::size_t(r));
    if (data.size() > limit)
      throw std::runtime_error("standard input is larger than a message may be (" +
                               std::to_string(limit >> 20) + " MiB)");
  }
}

void write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t r = ::write(fd, bytes.data(), bytes.size());
    if (r < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "writing the response");
    }
    bytes.remove_prefix(std::size_t(r));
  }
}

// Under --json, where the output goes (-1: not JSON). Set once, before connecting.
int json_error_fd = -1;

// The JSON name of a failure on this side (no protocol code: "code" is null).
const char* local_failure_name(int status) {
  switch (status) {
    case exit_transport: return "connection_failed";
    case exit_auth: return "authentication_failed";
    case exit_timed_out: return "timed_out";
    default: return nullptr;
  }
}

// Says why on stderr and returns `status`. Under --json a failure on this side (exit 3,
// 4, 5) is also one JSON line on the output, as a remote error is (error_text).
int failure(int status, const std::string& why) {
  std::fprintf(stderr, "bokbok call: %s\n", why.c_str());
  if (const char* name = local_failure_name(status); name && json_error_fd >= 0) {
    std::string line = format_json_local_error(name, why);
    for (std::string_view rest = line; !rest.empty();) {
      ssize_t r = ::write(json_error_fd, rest.data(), rest.size());
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      rest.remove_prefix(std::size_t(r));
    }
  }
  return status;
}

std::string timed_out_text(double seconds) {
  char text[64];
  std::snprintf(text, sizeof text, "timed out after %g s", seconds);
  return text;
}

// The last resort behind --timeout: if the process is still alive last_resort_grace after the
// deadline (a library call that ignored its own timeout, or an exit that hangs), SIGALRM
// ends it with status 5. The normal paths never get here.
constexpr double last_resort_grace = 2.0;  // seconds
char alarm_text[96];
std::size_t alarm_text_size = 0;

extern "C" void on_alarm(int) {
  (void)!::write(STDERR_FILENO, alarm_text, alarm_text_size);
  ::_exit(exit_timed_out);
}

// Arms (or re-arms) the alarm to go off `seconds` from now.
void set_alarm(double seconds) {
  itimerval t{};
  t.it_value.tv_sec = static_cast<time_t>(seconds);
  t.it_value.tv_usec = static_cast<suseconds_t>((seconds - std::floor(seconds)) * 1e6);
  ::setitimer(ITIMER_REAL, &t, nullptr);
}

void arm_last_resort(double seconds) {
  int n = std::snprintf(alarm_text, sizeof alarm_text, "bokbok call: %s\n",
                        timed_out_text(seconds).c_str());
  alarm_text_size = n > 0 ? std::size_t(n) : 0;
  struct sigaction sa {};
  sa.sa_handler = on_alarm;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGALRM, &sa, nullptr);
  set_alarm(seconds + last_resort_grace);
}

// Where and how the call's output goes: the response, and meanwhile notifications
// and (with --json) errors.
struct printer {
  bool json = false;
  int out_fd = STDOUT_FILENO;
  // Writes `text` whole; errors are ignored (used where nobody could be told).
  void write_quietly(int fd, std::string_view text) const {
    while (!text.empty()) {
      ssize_t r = ::write(fd, text.data(), text.size());
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return;
      text.remove_prefix(std::size_t(r));
    }
  }
  void notification(const message& m) const {
    if (json)
      write_quietly(out_fd, format_json_notification(m));
    else
      write_quietly(STDERR_FILENO, "bokbok call: notification: " + format_notification_line(m));
  }
};

options connection_options(const call_options& o, const printer& out = {}) {
  options opts;
  // Handlers run on the event loop, so notifications are printed in the order they
  // came, all before the response (which completes on the same thread after them).
  opts.inline_handlers = true;
  opts.on_notify = [out](connection&, message m) { out.notification(m); };
  if (o.trace) trace_to_stderr(opts, "bokbok call");
  if (o.echo) {
    opts.on_request = [](connection&, message request) { return request; };
  } else {
    opts.on_request = [](connection&, message) -> message {
      throw remote_error(error_code::no_such_method,
                         "bokbok call does not answer requests; use --echo");
    };
  }
  o.apply_keys(opts);
  return opts;
}

using clock = std::chrono::steady_clock;

// The call's deadline, if --timeout was given.
struct deadline {
  std::optional<clock::time_point> at;
  double seconds = 0;
  bool passed() const { return at && clock::now() >= *at; }
};

// A connection failure: the cause, then where (the library's message usually names the
// address; else it is added at the end).
int transport_failure(const std::string& address, const char* what) {
  std::string why = without_prefix(what);
  // The library names it as it reads it (exec: words quoted its own way).
  std::string as_read = bokbok::address::parse(address).to_string();
  if (why.find(address) == std::string::npos && why.find(as_read) == std::string::npos)
    why += " (" + address + ")";
  return failure(exit_transport, why);
}

// Connects within the deadline; on failure returns the exit status instead.
std::variant<connection, int> open_connection(const std::string& address, options opts,
                                              const deadline& d) {
  if (d.at) {
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(*d.at - clock::now());
    opts.connect_timeout = std::max(ms, std::chrono::milliseconds(1));
  }
  try {
    return connect(address, opts);
  } catch (const address_error& e) {
    throw usage_error(without_prefix(e.what()));
  } catch (const authentication_error& e) {
    return failure(exit_auth, without_prefix(e.what()));
  } catch (const error& e) {
    if (d.passed()) return failure(exit_timed_out, timed_out_text(d.seconds));
    return transport_failure(address, e.what());
  }
}

// "handler_failed", ...; a code this side has no name for is shown by its number.
std::string code_text(error_code code) {
  std::string name = to_string(code);
  if (name != "unknown") return name;
  return "code " + std::to_string(static_cast<unsigned>(code));
}

// How long ending the connection gracefully may take once the answer is in (calls the
// server still makes to us may finish). Bounded again by --timeout's last resort.
constexpr auto close_grace = std::chrono::seconds(2);

// Ends the connection of one call as the call went: gracefully once it was answered
// (goaway, then close), at once if it is still pending. wait_closed: our last frames are
// out before the process exits, so the server sees a clean end, not a lost connection.
struct closer {
  connection& c;
  bool answered = false;
  ~closer() {
    if (answered)
      c.close(close_grace);
    else
      c.abort();
    c.wait_closed();
  }
};

// The error's whole text (message(), not what(), which ends at a NUL), with control
// bytes shown as \xHH and a backslash as \\ so the line stays one line; under --json
// also as JSON on the output.
std::string error_text(const printer& out, const call_error& e) {
  if (out.json)
    out.write_quietly(out.out_fd, format_json_error(static_cast<unsigned>(e.code()),
                                                    to_string(e.code()), e.message()));
  return escape_text(e.message());
}

// Sends the request (with the deadline, so the handler knows it: this_call::remaining())
// and waits for the answer within the deadline; on failure returns the exit status
// instead. Ends the connection either way: gracefully once the call is over (goaway, then
// close), at once if it is still pending.
std::variant<message, int> call_once(connection& conn, message request,
                                     const std::string& address, const deadline& d,
                                     const printer& out = {}) {
  bokbok::call_options copts;
  copts.deadline = d.at;
  std::future<message> answer = conn.request_async(std::move(request), copts);
  closer close_at_end{conn};
  if (d.at && answer.wait_until(*d.at) != std::future_status::ready)
    return failure(exit_timed_out, timed_out_text(d.seconds));
  close_at_end.answered = true;
  try {
    return answer.get();
  } catch (const remote_error& e) {
    return failure(exit_remote_error, "remote error (" + code_text(e.code()) + "): " + error_text(out, e));
  } catch (const call_error& e) {
    if (e.code() == error_code::deadline_exceeded && d.at)
      return failure(exit_timed_out, timed_out_text(d.seconds));
    return failure(exit_remote_error, "call refused (" + code_text(e.code()) + "): " + error_text(out, e));
  } catch (const authentication_error& e) {
    return failure(exit_auth, without_prefix(e.what()));
  } catch (const transport_error& e) {
    return transport_failure(address, e.what());
  }
}

// What bokbok.describe (PROTOCOL.md §11.2) says of a method: its parameters (name, type)
// and, for a stream method, its kind ("out", "in", "both"; the marker pair is not a
// parameter). nullopt when the server does not describe it (no introspection, no such
// method: the call itself will say).
struct described {
  std::vector<std::pair<std::string, std::string>> params;
  std::string stream;
};
std::optional<described> describe_method(connection& conn, const std::string& method,
                                         const deadline& d) {
  if (method.starts_with("bokbok.")) return std::nullopt;
  bokbok::call_options copts;
  copts.deadline = d.at;
  try {
    message a = conn.request({"bokbok.describe", method}, copts);
    if (a.size() < 4 || a.size() % 2 != 0) return std::nullopt;
    described out;
    for (std::size_t i = 4; i + 1 < a.size(); i += 2) out.params.emplace_back(a[i], a[i + 1]);
    if (!out.params.empty() && out.params.back().first.empty()) {
      const std::string& marker = out.params.back().second;
      if (marker.starts_with("stream:")) out.stream = marker.substr(7);
      out.params.pop_back();
    }
    return out;
  } catch (const remote_error&) {
    return std::nullopt;
  }
}

// -d's arguments as fields, checked against the method's signature when the server
// describes it; a server without introspection gets them as given.
message typed_arguments(const std::optional<described>& about, const std::string& method,
                        const std::vector<json_arg>& data_args) {
  return to_fields(data_args, about ? &about->params : nullptr, method);
}

// Ctrl-C during a stream call: SIGINT (and SIGTERM) are blocked in every thread (the
// library's threads, started later, inherit the mask) and a watcher thread takes them
// and cancels the call. Constructed before connecting; the destructor ends the watcher.
class interrupt_watch {
 public:
  interrupt_watch() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGUSR1);  // our own "stop watching"
    ::pthread_sigmask(SIG_BLOCK, &set_, nullptr);
    thread_ = std::thread([this] {
      for (;;) {
        int sig = 0;
        if (::sigwait(&set_, &sig) != 0 || sig == SIGUSR1) return;
        std::lock_guard lock(mutex_);
        interrupted_ = true;
        if (s_) s_->cancel();
      }
    });
  }
  ~interrupt_watch() {
    ::pthread_kill(thread_.native_handle(), SIGUSR1);
    thread_.join();
  }
  // The call to cancel on a signal (nullptr: none any more).
  void watch(stream* s) {
    std::lock_guard lock(mutex_);
    s_ = s;
    if (s_ && interrupted_) s_->cancel();
  }
  bool interrupted() {
    std::lock_guard lock(mutex_);
    return interrupted_;
  }

 private:
  sigset_t set_;
  std::mutex mutex_;
  stream* s_ = nullptr;
  bool interrupted_ = false;
  std::thread thread_;
};

// Like call_once, for a stream call (--stream): opens it, runs it (call_stream.hpp) and
// returns the final response or the exit status.
std::variant<message, int> stream_once(connection& conn, message request,
                                       const std::string& address, const deadline& d,
                                       const printer& out, bool send_input,
                                       interrupt_watch& interrupts) {
  closer close_at_end{conn};
  bokbok::call_options copts;
  copts.deadline = d.at;
  try {
    stream s = conn.open_stream(std::move(request), copts);
    interrupts.watch(&s);
    struct unwatch {
      interrupt_watch& w;
      ~unwatch() { w.watch(nullptr); }
    } unwatch_at_end{interrupts};
    message answer = run_stream(s, stream_io{out.json, out.out_fd, send_input}, d.at);
    close_at_end.answered = true;
    return answer;
  } catch (const remote_error& e) {
    close_at_end.answered = true;
    return failure(exit_remote_error, "remote error (" + code_text(e.code()) + "): " + error_text(out, e));
  } catch (const call_error& e) {
    if (e.code() == error_code::deadline_exceeded && d.at)
      return failure(exit_timed_out, timed_out_text(d.seconds));
    if (e.code() == error_code::cancelled && interrupts.interrupted())
      return failure(exit_remote_error, "interrupted: the call was cancelled");
    close_at_end.answered = true;
    return failure(exit_remote_error, "call refused (" + code_text(e.code()) + "): " + error_text(out, e));
  } catch (const authentication_error& e) {
    return failure(exit_auth, without_prefix(e.what()));
  } catch (const transport_error& e) {
    return transport_failure(address, e.what());
  }
}

int run(args_view args) {
  call_options o = parse_args(args);
  const address addr = [&] {
    try {
      return address::parse(o.address);
    } catch (const address_error& e) {
      throw usage_error(without_prefix(e.what()));
    }
  }();
  check_fds_open(addr);
  std::vector<json_arg> data_args;  // -d, read and parsed before connecting
  if (o.data) {
    if (*o.data == "@-" && (o.stdin_field || addr.reads_stdin()))
      throw usage_error("-d @- reads standard input, which " +
                        (o.stdin_field ? std::string("--stdin-field") : o.address) + " uses");
    data_args = parse_json_args(read_data(*o.data, options{}.max_message_size));
  }
  const std::size_t data_at = o.fields.size();
  if (o.stdin_field) {
    if (addr.reads_stdin())
      throw usage_error("--stdin-field cannot be used with " + o.address +
                        ", which reads standard input");
    o.fields.push_back(read_stdin_whole(options{}.max_message_size));
  }
  // With stdio, stdout carries the protocol.
  const int out_fd =
      addr.type() == address::kind::stdio ? STDERR_FILENO : STDOUT_FILENO;

  deadline d;
  if (o.timeout > 0) {
    d.seconds = o.timeout;
    d.at = clock::now() + std::chrono::duration_cast<clock::duration>(
                              std::chrono::duration<double>(o.timeout));
    arm_last_resort(o.timeout);
  }
  const printer out{o.json, out_fd};
  if (o.json) json_error_fd = out_fd;
  std::optional<interrupt_watch> interrupts;  // before connecting: see interrupt_watch
  if (o.stream) interrupts.emplace();
  auto conn = open_connection(o.address, connection_options(o, out), d);
  if (auto* status = std::get_if<int>(&conn)) return *status;
  std::optional<described> about;
  if (o.data || o.stream) about = describe_method(std::get<connection>(conn), o.fields[0], d);
  if (o.data) {
    message args = typed_arguments(about, o.fields[0], data_args);
    o.fields.insert(o.fields.begin() + std::ptrdiff_t(data_at),
                    std::make_move_iterator(args.begin()), std::make_move_iterator(args.end()));
  }
  const bool send_input = !addr.reads_stdin() && !(about && about->stream == "out");
  auto response =
      o.stream ? stream_once(std::get<connection>(conn), std::move(o.fields), o.address, d,
                             out, send_input, *interrupts)
               : call_once(std::get<connection>(conn), std::move(o.fields), o.address, d, out);
  if (auto* status = std::get_if<int>(&response)) return *status;

  // Printing may take as long as the reader of our output wants: not part of the call.
  if (d.at) set_alarm(0);
  const message& fields = std::get<message>(response);
  write_all(out_fd, o.json ? format_json(fields) : format_lines(fields));
  if (d.at) set_alarm(last_resort_grace);  // for the exit that follows
  return exit_ok;
}

}  // namespace
}  // namespace bokbok::tools::call

namespace bokbok::tools {

const command call_command = {
    "call",
    "send one request to an address and print the response",
    call::help_text,
    call::run,
    call::options_end,
};

}  // namespace bokbok::tools
