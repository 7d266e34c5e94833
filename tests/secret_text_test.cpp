// bokbok::secret_text, read_passphrase and key::users_line (include/bokbok/secret_text.hpp,
// key.hpp), through the public headers only: passphrases from real pipes and from a
// real pseudo-terminal.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>

#include "bokbok/bokbok.hpp"
#include "support/settle.hpp"

using bokbok::key_error;
using bokbok::read_passphrase;
using bokbok::secret_text;

namespace {

// A pipe whose write end already holds `input` and is closed: fd reads `input`, then EOF.
struct fed_pipe {
  int read_fd = -1;
  explicit fed_pipe(std::string_view input) {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    REQUIRE(input.size() < 65536);  // fits the pipe buffer: the write cannot block
    REQUIRE(::write(p[1], input.data(), input.size()) == static_cast<ssize_t>(input.size()));
    ::close(p[1]);
    read_fd = p[0];
  }
  ~fed_pipe() { ::close(read_fd); }
};

std::string what_of(std::string_view input) {
  fed_pipe in(input);
  try {
    read_passphrase(in.read_fd, "passphrase: ");
  } catch (const key_error& e) {
    return e.what();
  }
  return "(no error)";
}

// A pseudo-terminal: `slave` is a terminal for isatty(), `master` types into it.
struct pty {
  int master = -1, slave = -1;
  pty() {
    master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    REQUIRE(master >= 0);
    REQUIRE(::grantpt(master) == 0);
    REQUIRE(::unlockpt(master) == 0);
    slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
    REQUIRE(slave >= 0);
  }
  ~pty() {
    ::close(slave);
    if (master >= 0) ::close(master);
  }
  void type(std::string_view s) const {
    REQUIRE(::write(master, s.data(), s.size()) == static_cast<ssize_t>(s.size()));
  }
  // What the terminal echoed back so far (non-blocking read of the master).
  std::string echoed() const {
    std::string out;
    char buf[256];
    const int flags = ::fcntl(master, F_GETFL);
    ::fcntl(master, F_SETFL, flags | O_NONBLOCK);
    for (ssize_t n; (n = ::read(master, buf, sizeof buf)) > 0;)
      out.append(buf, static_cast<std::size_t>(n));
    ::fcntl(master, F_SETFL, flags);
    return out;
  }
  bool echo_on() const {
    termios t{};
    REQUIRE(::tcgetattr(slave, &t) == 0);
    return (t.c_lflag & ECHO) != 0;
  }
};

}  // namespace

TEST_CASE("read_passphrase reads one line from a pipe, without its line end, and no further") {
  fed_pipe in("correct horse\r\nnext line\n");
  const secret_text pass = read_passphrase(in.read_fd, "passphrase: ");
  CHECK(pass.view() == "correct horse");
  CHECK(pass.size() == 13);
  char rest[16] = {};
  CHECK(::read(in.read_fd, rest, sizeof rest) == 10);  // the next line is left unread
  CHECK(std::string(rest) == "next line\n");
}

TEST_CASE("read_passphrase takes a last line without a newline") {
  fed_pipe in("no newline");
  CHECK(read_passphrase(in.read_fd, "passphrase: ").view() == "no newline");
}

TEST_CASE("read_passphrase refuses an empty or an over-long passphrase with key_error") {
  CHECK(what_of("\n") == "the passphrase is empty");
  CHECK(what_of("") == "the passphrase is empty");
  const std::string longest(bokbok::max_passphrase_size, 'p');
  {
    fed_pipe in(longest + "\n");
    CHECK(read_passphrase(in.read_fd, "passphrase: ").view() == longest);
  }
  CHECK(what_of(longest + "p\n") == "the passphrase is longer than 1024 bytes");
  CHECK(what_of("x") == "(no error)");  // one byte is enough
}

// Runs read_passphrase(t.slave, "passphrase: ", "again: ") on another thread and types
// `first` and `second` only once each prompt is out and echo is off, so neither is
// flushed as typed-ahead input. The prompts go to stderr, caught here in a pipe.
std::future<secret_text> type_two_lines(pty& t, std::string first, std::string second) {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
  const int saved_stderr = ::dup(STDERR_FILENO);
  REQUIRE(saved_stderr >= 0);
  REQUIRE(::dup2(p[1], STDERR_FILENO) == STDERR_FILENO);
  auto result = std::async(std::launch::async,
                           [&t] { return read_passphrase(t.slave, "passphrase: ", "again: "); });
  std::string prompts;
  auto prompted = [&](std::string_view prompt) {
    return bokbok_test::settles([&] {
      char buf[64];
      for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) > 0;)
        prompts.append(buf, static_cast<std::size_t>(n));
      return prompts.find(prompt) != std::string::npos && !t.echo_on();
    });
  };
  const bool first_asked = prompted("passphrase: ");
  if (first_asked) t.type(first);
  const bool second_asked = first_asked && prompted("again: ");
  if (second_asked) t.type(second);
  ::dup2(saved_stderr, STDERR_FILENO);
  ::close(saved_stderr);
  ::close(p[0]);
  ::close(p[1]);
  if (!second_asked) {  // failing: hang up the terminal, so the reader ends (EIO)
    ::close(t.master);
    t.master = -1;
  }
  REQUIRE(result.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  REQUIRE(first_asked);
  REQUIRE(second_asked);
  return result;
}

TEST_CASE("read_passphrase on a terminal reads without echo, confirms, and restores echo") {
  pty t;
  REQUIRE(::isatty(t.slave));
  REQUIRE(t.echo_on());
  auto pass = type_two_lines(t, "hunter2\n", "hunter2\n").get();
  CHECK(pass.view() == "hunter2");
  CHECK(t.echoed().find("hunter2") == std::string::npos);  // never echoed
  CHECK(t.echo_on());                                        // echo is back
}

TEST_CASE("read_passphrase on a terminal refuses two passphrases that differ") {
  pty t;
  auto result = type_two_lines(t, "one\n", "two\n");
  try {
    result.get();
    FAIL("accepted two different passphrases");
  } catch (const key_error& e) {
    CHECK(std::string(e.what()) == "the two passphrases differ");
  }
  CHECK(t.echo_on());
}

TEST_CASE("secret_text compares by content, moves leave it empty") {
  secret_text a("same"), b("same"), c("diff"), d("longer");
  CHECK(a.equals(b));
  CHECK_FALSE(a.equals(c));
  CHECK_FALSE(a.equals(d));
  CHECK(secret_text().equals(secret_text("")));
  secret_text moved = std::move(a);
  CHECK(moved.view() == "same");
  CHECK(a.empty());  // NOLINT(bugprone-use-after-move): a moved-from text is empty
  CHECK(a.view().empty());
}

TEST_CASE("key::users_line gives a line that load_users reads back as the same key") {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("bokbok-secret-text-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string users = (dir / "users").string();
  const bokbok::key k = bokbok::key::generate();
  const secret_text line = k.users_line("alice");
  REQUIRE(line.size() == 5 + 1 + 64 + 1);
  CHECK(line.view().substr(0, 6) == "alice ");
  CHECK(line.view().back() == '\n');
  {
    std::ofstream f(users);
    f << line.view();
  }
  ::chmod(users.c_str(), 0600);
  const auto lookup = bokbok::load_users(users);
  const auto back = lookup("alice");
  REQUIRE(back);
  CHECK(sodium_memcmp(back->bytes().data(), k.bytes().data(), bokbok::key::size) == 0);
  std::filesystem::remove_all(dir);
}

TEST_CASE("key::users_line refuses a name a users file cannot hold") {
  const bokbok::key k = bokbok::key::generate();
  for (std::string bad : {std::string(), std::string("two words"), std::string("tab\tname"),
                          std::string("#comment"), std::string(256, 'u')}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(k.users_line(bad), key_error);
  }
  CHECK(k.users_line(std::string(255, 'u')).size() == 255 + 1 + 64 + 1);
}
