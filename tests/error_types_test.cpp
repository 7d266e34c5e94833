// Every error the public API throws is a bokbok::error (issue 10, items 14 and 15): API
// misuse and invalid options are usage_error, a system that refuses a resource is
// resource_error; keys.user without keys.key is refused, never a silent plain connection.
// Error texts keep their NUL bytes end to end (item 16), against the real demo server and
// the real `bokbok call`.
#include <doctest/doctest.h>
#include <pthread.h>
#include <signal.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bokbok/bokbok.hpp"
#include "support/child_process.hpp"
#include "support/key_users.hpp"

using namespace std::chrono_literals;
using namespace std::string_literals;
using bokbok::message;
using bokbok_test::built_program;
using bokbok_test::child_process;

namespace {

// Runs `f` and returns the dynamic type's verdict: "usage", "resource", "other bokbok",
// "std" or "none".
template <class F>
std::string thrown(F f) {
  try {
    f();
  } catch (const bokbok::usage_error&) {
    return "usage";
  } catch (const bokbok::resource_error&) {
    return "resource";
  } catch (const bokbok::error&) {
    return "other bokbok";
  } catch (const std::exception&) {
    return "std";
  }
  return "none";
}

bokbok::server_options echo_server() {
  bokbok::server_options o;
  o.listen = {"tcp:127.0.0.1:0"};
  o.on_request = [](bokbok::connection&, message m) { return m; };
  return o;
}

// Sets an environment variable for the scope.
struct scoped_env {
  std::string name;
  std::optional<std::string> old;
  scoped_env(const char* n, const char* v) : name(n) {
    if (const char* o = std::getenv(n)) old = o;
    ::setenv(n, v, 1);
  }
  ~scoped_env() {
    if (old)
      ::setenv(name.c_str(), old->c_str(), 1);
    else
      ::unsetenv(name.c_str());
  }
};

}  // namespace

TEST_CASE("invalid options are usage_error, a bokbok::error") {
  bokbok::options small;
  small.max_message_size = 1000;
  CHECK(thrown([&] { bokbok::connect_socketpair(small, {}); }) == "usage");
  bokbok::options huge;
  huge.max_message_size = std::size_t(1) << 33;
  CHECK(thrown([&] { bokbok::connect_socketpair({}, huge); }) == "usage");

  bokbok_test::alice_key keys;
  bokbok::options both;
  both.keys.user = "alice";
  both.keys.key = keys.alice;
  both.keys.key_for_user = keys.lookup();
  CHECK(thrown([&] { bokbok::connect_socketpair(both, {}); }) == "usage");
  bokbok::options no_user;
  no_user.keys.key = keys.alice;
  CHECK(thrown([&] { bokbok::connect_socketpair(no_user, {}); }) == "usage");

  auto server_small = echo_server();
  server_small.max_message_size = 1000;
  CHECK(thrown([&] { bokbok::server s(server_small); }) == "usage");
  auto server_key = echo_server();
  server_key.keys.key = keys.alice;
  CHECK(thrown([&] { bokbok::server s(server_key); }) == "usage");
  // Still catchable as std::exception, with its message.
  try {
    bokbok::connect_socketpair(small, {});
  } catch (const std::exception& e) {
    CHECK(std::string(e.what()).find("max_message_size") != std::string::npos);
  }
}

TEST_CASE("keys.user without keys.key is refused before connecting, never plain mode") {
  auto o = echo_server();
  std::atomic<int> opened{0};
  o.on_open = [&](bokbok::connection&) { ++opened; };
  bokbok::server srv(o);
  srv.start();
  const auto address = srv.local_addresses().at(0);
  bokbok::options half;
  half.keys.user = "alice";  // and no key
  CHECK(thrown([&] { bokbok::connect(address, half); }) == "usage");
  try {
    bokbok::connect(address, half);
  } catch (const bokbok::usage_error& e) {
    CHECK(std::string(e.what()).find("keys.key") != std::string::npos);
  }
  CHECK(thrown([&] { bokbok::connect(address, half, bokbok::reconnect_policy{}); }) == "usage");
  CHECK(thrown([&] { bokbok::connect_socketpair(half, {}); }) == "usage");
  // The server never saw those: the one connection it opens is the next, plain one.
  auto c = bokbok::connect(address, {});
  CHECK(c.request({"x"}) == message{"x"});
  CHECK(opened == 1);
  c.close();
  c.wait_closed();
}

TEST_CASE("server::start twice and a blocking call on the loop thread are usage_error") {
  bokbok::server srv(echo_server());
  srv.start();
  CHECK(thrown([&] { srv.start(); }) == "usage");

  auto c = bokbok::connect(srv.local_addresses().at(0), {});
  std::promise<std::string> verdict;
  c.request_async({"first"}, [&](std::exception_ptr, message) {
    verdict.set_value(thrown([&] { c.request({"nested"}); }));
  });
  auto f = verdict.get_future();
  REQUIRE(f.wait_for(10s) == std::future_status::ready);
  CHECK(f.get() == "usage");
  c.close();
  c.wait_closed();
}

TEST_CASE("a bad BOKBOK_BACKEND is usage_error, and the server is left unbound") {
  auto o = echo_server();
  o.listen = {"tcp:127.0.0.1:0"};
  bokbok::server srv(o);
  {
    scoped_env env("BOKBOK_BACKEND", "io_urinq");
    CHECK(thrown([&] { srv.start(); }) == "usage");
  }
  CHECK(srv.local_addresses().empty());
}

// A sanitizer's runtime needs descriptors of its own (UBSan's vptr check opens a pipe to
// probe memory), so with none left it reports our own objects as invalid: this case runs
// in plain builds only.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif

TEST_CASE("out of descriptors, server::start is resource_error and leaves nothing bound" *
          doctest::skip(sanitized)) {
  // In a child: RLIMIT_NOFILE leaves exactly one free descriptor, which the listener
  // takes; the server's own eventfd then fails. Exit 0: resource_error, as expected.
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::alarm(20);
    int highest = 0;
    if (DIR* d = ::opendir("/proc/self/fd")) {
      while (dirent* e = ::readdir(d)) highest = std::max(highest, std::atoi(e->d_name));
      ::closedir(d);
    }
    rlimit lim{rlim_t(highest + 1), rlim_t(highest + 1)};
    if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) ::_exit(10);
    int last = -1;
    for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) last = fd;
    if (last < 0) ::_exit(11);
    ::close(last);  // the one free descriptor
    bokbok::server_options o;
    o.listen = {"unix:@bokbok-error-types-" + std::to_string(::getpid())};
    bokbok::server srv(o);
    std::string got = thrown([&] { srv.start(); });
    if (got != "resource") ::_exit(12);
    // Nothing left bound: the descriptor is free again.
    int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ::_exit(fd >= 0 ? 0 : 13);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("an error text with NUL bytes arrives whole from the demo server") {
  child_process child({built_program("BOKBOK_DEMO_SERVER"), "--stdio"});
  int in = std::exchange(child.from_child, -1), out = std::exchange(child.to_child, -1);
  auto c = bokbok::connect_fds(in, out, {}, "demo-server");
  const std::string text = "oops \0 bytes\0"s;
  try {
    c.request({"fail", text});
    FAIL("no error");
  } catch (const bokbok::remote_error& e) {
    CHECK(e.code() == bokbok::error_code::handler_failed);
    CHECK(e.message() == text);
  }
  c.close();
  c.wait_closed();
}

TEST_CASE("a call_error thrown with NUL bytes reaches the caller whole, both ways") {
  bokbok::options server_side;
  server_side.on_request = [](bokbok::connection&, message m) -> message {
    throw bokbok::remote_error(bokbok::error_code::busy, m.at(0));
  };
  auto [a, b] = bokbok::connect_socketpair({}, server_side);
  const std::string text = "\0lead, mid\0dle, \xe2\x9c\x93 end"s;
  try {
    a.request({text});
    FAIL("no error");
  } catch (const bokbok::remote_error& e) {
    CHECK(e.code() == bokbok::error_code::busy);
    CHECK(e.message() == text);
  }
  a.abort();
  a.wait_closed();
  b.wait_closed();
}

TEST_CASE("bokbok call prints the demo server's whole error text, a NUL shown as \\x00") {
  const std::string tool = built_program("BOKBOK_TOOL");
  const std::string address = "exec:" + built_program("BOKBOK_DEMO_SERVER") + " --stdio";
  // The message, with its NUL, is the field --stdin-field reads from standard input.
  int input = ::memfd_create("fail-text", MFD_CLOEXEC);
  REQUIRE(input >= 0);
  const std::string text = "oops \0 bytes"s;
  REQUIRE(::write(input, text.data(), text.size()) == ssize_t(text.size()));
  REQUIRE(::lseek(input, 0, SEEK_SET) == 0);
  int err[2];
  REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(input, 0);
    ::dup2(err[1], 2);
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    const char* argv[] = {tool.c_str(), "call", "--stdin-field", address.c_str(), "fail",
                          nullptr};
    ::execv(tool.c_str(), const_cast<char**>(argv));
    ::_exit(127);
  }
  ::close(err[1]);
  ::close(input);
  std::string got;
  char buf[512];
  for (ssize_t n; (n = ::read(err[0], buf, sizeof buf)) > 0;) got.append(buf, std::size_t(n));
  ::close(err[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 1);
  // (The demo server's own log lines share this stderr.)
  CHECK(got.find("\nbokbok call: remote error (handler_failed): oops \\x00 bytes\n") !=
        std::string::npos);
}

TEST_CASE("a stop signal that cannot be waited for is usage_error, and nothing is bound") {
  auto o = echo_server();
  o.stop_signals = {SIGTERM, SIGKILL};
  bokbok::server srv(o);
  CHECK(thrown([&] { srv.start(); }) == "usage");
  CHECK(srv.local_addresses().empty());
  sigset_t now;
  pthread_sigmask(SIG_SETMASK, nullptr, &now);
  CHECK(!sigismember(&now, SIGTERM));  // the signal mask is as it was
}
