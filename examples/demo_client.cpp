// bokbok-demo-client: starts bokbok-demo-server as a child process and calls every one
// of its methods over a pipe pair, printing what it sends and what comes back.
//
// What it shows
//   - opening a connection to a child process with an exec: address: bokbok spawns
//     `bokbok-demo-server --stdio`, talks over its stdin/stdout, and reaps it;
//   - blocking calls (connection::request) and what comes back: fields, which may hold
//     any bytes; a remote_error carrying the server's message and error code;
//   - answering the server's own calls with a request handler (the server calls us back
//     in the middle of our `callback` request, over the same connection);
//   - many threads calling at once over one connection;
//   - the server closing the connection, noticed through the close handler, and the
//     child's exit status (connection::child_status).
//
// How to run it
//   bokbok-demo-client                  (finds bokbok-demo-server next to itself)
//   bokbok-demo-client --server PATH    (or runs the server at PATH)
// It exits with status 0 when every answer was the expected one, 1 otherwise.
//
// The child's stderr stays ours (the exec: default), so its log lines show up here.
#include <bokbok/bokbok.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#ifndef BOKBOK_VERSION
#define BOKBOK_VERSION "unknown"
#endif

namespace {

constexpr std::string_view program = "bokbok-demo-client";
using clock_type = std::chrono::steady_clock;

// ---- printing ---------------------------------------------------------------------

std::mutex print_mutex;  // handler threads print too

void say(const std::string& line) {
  std::lock_guard lock(print_mutex);
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

// A field as a C string literal: "nul\0byte". Long fields are cut short.
std::string quote(std::string_view field) {
  constexpr std::size_t shown_max = 48;
  std::string out = "\"";
  for (std::size_t i = 0; i < field.size() && i < shown_max; ++i) {
    unsigned char c = static_cast<unsigned char>(field[i]);
    switch (c) {
      case '\0':
        out += "\\0";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          char hex[8];
          std::snprintf(hex, sizeof hex, "\\x%02x", c);
          out += hex;
        } else {
          out += char(c);
        }
    }
  }
  out += "\"";
  if (field.size() > shown_max) out += "...(" + std::to_string(field.size()) + " bytes)";
  return out;
}

// A message as a C++ braced list: {"pong", "hello"}.
std::string show(const bokbok::message& m) {
  std::string out = "{";
  for (std::size_t i = 0; i < m.size(); ++i) out += (i ? ", " : "") + quote(m[i]);
  return out + "}";
}

// Tallies the checks; every answer is checked, and printed with its verdict.
struct tally {
  int passed = 0;
  int failed = 0;

  void check(bool ok, const std::string& line, const std::string& why_not = "") {
    constexpr std::size_t column = 58;
    std::string out = line;
    if (out.size() < column) out.resize(column, ' ');
    out += ok ? "  ok" : "  FAILED";
    if (!ok && !why_not.empty()) out += ": " + why_not;
    say(out);
    ++(ok ? passed : failed);
  }
};

std::string default_server_path() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "bokbok-demo-server";
  return (self.parent_path() / "bokbok-demo-server").string();
}

// ---- the demo ---------------------------------------------------------------------

// Our request handler: the server calls us back with {"callback", I}.
struct callback_log {
  std::mutex mutex;
  std::vector<std::string> seen;
};

bokbok::message answer_server(callback_log& log, bokbok::message req) {
  if (req.size() == 2 && req[0] == "callback") {
    say("   <- server calls us back with " + show(req) + ", we answer {\"ok\"}");
    std::lock_guard lock(log.mutex);
    log.seen.push_back(req[1]);
    return {"ok"};
  }
  throw bokbok::remote_error(bokbok::error_code::no_such_method,
                             "the demo client only answers callback I");
}

void call_and_expect(tally& t, bokbok::connection& conn, const bokbok::message& req,
                     const bokbok::message& expected) {
  say("-> " + show(req));
  bokbok::message got = conn.request(req);
  t.check(got == expected, "<- " + show(got), "expected " + show(expected));
}

// A call that must fail with a remote error: `code`, and `text` as its message unless
// `text` is empty.
void expect_remote_error(tally& t, bokbok::connection& conn, const bokbok::message& req,
                         bokbok::error_code code, const std::string& text = "") {
  say("-> " + show(req));
  try {
    bokbok::message got = conn.request(req);
    t.check(false, "<- " + show(got), "expected a remote error");
  } catch (const bokbok::remote_error& e) {
    std::string seen = std::string("<- remote error (") + bokbok::to_string(e.code()) +
                       "): " + e.what();
    t.check(e.code() == code && (text.empty() || e.what() == text), seen,
            std::string("expected ") + bokbok::to_string(code) + " " + text);
  }
}

void demo_callback(tally& t, bokbok::connection& conn, callback_log& log) {
  call_and_expect(t, conn, {"callback", "3"}, {"did", "3"});
  std::lock_guard lock(log.mutex);
  bool in_order = log.seen == std::vector<std::string>{"1", "2", "3"};
  t.check(in_order, "   (we were called back 3 times, in order)",
          "saw " + std::to_string(log.seen.size()) + " callbacks");
}

void demo_sleep(tally& t, bokbok::connection& conn) {
  say("-> " + show({"sleep", "50"}));
  auto start = clock_type::now();
  bokbok::message got = conn.request({"sleep", "50"});
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - start);
  t.check(got == bokbok::message{"slept"} && ms.count() >= 50,
          "<- " + show(got) + " after " + std::to_string(ms.count()) + " ms",
          "expected {\"slept\"} after at least 50 ms");
}

void demo_blob(tally& t, bokbok::connection& conn) {
  constexpr std::size_t size = 1u << 20;
  say("-> " + show({"blob", std::to_string(size)}));
  bokbok::message got = conn.request({"blob", std::to_string(size)});
  bool ok = got.size() == 1 && got[0].size() == size;
  for (std::size_t i = 0; ok && i < size; ++i) ok = got[0][i] == char('a' + i % 26);
  std::string what = got.size() == 1
                         ? "one field of " + std::to_string(got[0].size()) + " bytes"
                         : std::to_string(got.size()) + " fields";
  t.check(ok,
          "<- " + what + " (" + quote(got.empty() ? "" : got[0].substr(0, 10)) + "...)",
          "expected one field of 1048576 bytes, 'a' + i % 26");
}

void demo_threads(tally& t, bokbok::connection& conn) {
  constexpr int threads = 4, per_thread = 25;
  say("-> " + std::to_string(per_thread) + " pings from each of " +
      std::to_string(threads) + " threads at once, on this one connection");
  std::atomic<int> good{0};
  std::vector<std::string> problems(threads);
  std::vector<std::thread> pool;
  for (int t_id = 0; t_id < threads; ++t_id) {
    pool.emplace_back([&, t_id] {
      try {
        for (int j = 0; j < per_thread; ++j) {
          std::string text =
              "thread " + std::to_string(t_id) + " ping " + std::to_string(j);
          if (conn.request({"ping", text}) == bokbok::message{"pong", text})
            ++good;
          else
            problems[t_id] = "a pong did not match its ping";
        }
      } catch (const std::exception& e) {
        problems[t_id] = e.what();
      }
    });
  }
  for (auto& th : pool) th.join();
  std::string why;
  for (auto& p : problems)
    if (!p.empty()) why = p;
  t.check(good == threads * per_thread,
          "<- " + std::to_string(good.load()) + " pongs, each matching its ping", why);
}

int run_demo(const std::string& server_path) {
  say(std::string(program) + " " + BOKBOK_VERSION);
  // exec: words are split like a shell's, without expansions; quote the path in case
  // it holds spaces ('...' keeps everything but a quote, which becomes '\'').
  std::string quoted = "'";
  for (char c : server_path) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  const std::string address = "exec:" + quoted + "' --stdio";
  say("connecting to " + address);

  callback_log log;
  std::promise<void> closed;
  auto closed_future = closed.get_future();
  bokbok::options opts;
  opts.on_request = [&log](bokbok::connection&, bokbok::message req) {
    return answer_server(log, std::move(req));
  };
  opts.on_close = [&closed](bokbok::connection&) { closed.set_value(); };

  tally t;
  std::optional<bokbok::connection> conn;
  try {
    // Spawns the child with its stdin and stdout on pipes and completes the handshake.
    conn = bokbok::connect(address, opts);
    say("connected to the server over its stdin/stdout (" + conn->peer_address() + ")\n");

    call_and_expect(t, *conn, {"ping", "hello"}, {"pong", "hello"});
    bokbok::message fields{"alpha", std::string("nul\0byte", 8), ""};
    bokbok::message echo_request{"echo"};
    echo_request.insert(echo_request.end(), fields.begin(), fields.end());
    call_and_expect(t, *conn, echo_request, fields);
    const std::string why = "something went wrong over there";
    expect_remote_error(t, *conn, {"fail", why}, bokbok::error_code::handler_failed, why);
    expect_remote_error(t, *conn, {"frobnicate"}, bokbok::error_code::no_such_method);
    demo_callback(t, *conn, log);
    demo_sleep(t, *conn);
    demo_blob(t, *conn);
    demo_threads(t, *conn);
    call_and_expect(t, *conn, {"shutdown-server!"}, {"ok"});

    // The server closes its end after answering; our close handler sees it.
    bool hung_up =
        closed_future.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
    t.check(hung_up,
            "   the server closed the connection (" +
                (hung_up ? conn->close_reason() : std::string("still open")) + ")",
            "it did not within 5 s");
  } catch (const bokbok::error& e) {
    t.check(false, std::string("!! ") + e.what());
  }
  if (conn) {
    conn->close();        // idempotent; the child reads end of file and exits
    conn->wait_closed();  // our close handler has run, and the child has been reaped
    auto status = conn->child_status();
    t.check(status && status->signal == 0 && status->code == 0,
            "   the server " + (status ? status->describe() : std::string("was not reaped")));
  }

  say("");
  if (t.failed == 0) {
    say("all " + std::to_string(t.passed) + " checks passed");
    return 0;
  }
  say(std::to_string(t.failed) + " of " + std::to_string(t.passed + t.failed) +
      " checks FAILED");
  return 1;
}

void print_help() {
  std::printf(
      "usage: %s [--server PATH]\n"
      "\n"
      "Starts bokbok-demo-server as a child process (an exec: address), calls each of\n"
      "its methods over the child's stdin/stdout and checks the answers. Exits 0 if all\n"
      "were as expected, else 1.\n"
      "\n"
      "options:\n"
      "  --server PATH   the server to run (default: bokbok-demo-server next to this\n"
      "                  program)\n"
      "  --help          show this help and exit\n"
      "  --version       show the version and exit\n",
      program.data());
}

int usage_error(const std::string& why) {
  std::fprintf(stderr, "%s: %s\ntry '%s --help'\n", program.data(), why.c_str(),
               program.data());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string server_path;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      print_help();
      return 0;
    }
    if (arg == "--version") {
      std::printf("%s %s\n", program.data(), BOKBOK_VERSION);
      return 0;
    }
    if (arg == "--server") {
      if (++i == argc) return usage_error("--server needs a PATH");
      server_path = argv[i];
      continue;
    }
    if (arg.starts_with("--server=")) {
      server_path = arg.substr(9);
      continue;
    }
    return usage_error("unknown argument '" + std::string(arg) + "'");
  }
  if (server_path.empty()) server_path = default_server_path();

  try {
    return run_demo(server_path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program.data(), e.what());
    return 1;
  }
}
