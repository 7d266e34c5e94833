// The exec: and ssh: address grammar, the word splitting and quoting it uses (checked
// against a real /bin/sh), and the ssh command line built from an address.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bokbok/error.hpp"
#include "transport/address.hpp"
#include "transport/command_line.hpp"
#include "transport/ssh_command.hpp"

using namespace bokbok::transport;
using words = std::vector<std::string>;

namespace {

words split(std::string_view s) { return split_command(s, s); }

// What a real POSIX shell makes of `line`: its words, NUL-separated by printf.
words sh_words(const std::string& line) {
  std::string cmd = "sh -c " + shell_quote("printf '%s\\0' " + line);
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[4096];
  for (std::size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  REQUIRE(pclose(p) == 0);
  words w;
  for (std::size_t at = 0; at < out.size();) {
    auto nul = out.find('\0', at);
    w.push_back(out.substr(at, nul - at));
    at = nul + 1;
  }
  return w;
}

}  // namespace

TEST_CASE("command words split on blanks, with quotes and backslashes as documented") {
  CHECK(split("prog --stdio") == words{"prog", "--stdio"});
  CHECK(split("  prog \t a   b ") == words{"prog", "a", "b"});
  CHECK(split("'/opt/my app/server' --stdio") == words{"/opt/my app/server", "--stdio"});
  CHECK(split("echo \"a \\\"quoted\\\" \\$word\\\\\"") == words{"echo", "a \"quoted\" $word\\"});
  CHECK(split("echo \"\\n stays\"") == words{"echo", "\\n stays"});
  CHECK(split("a\\ b c") == words{"a b", "c"});
  CHECK(split("x '' \"\"") == words{"x", "", ""});
  CHECK(split("it's fine'") == words{"its fine"});
  CHECK(split("$HOME *.txt ~") == words{"$HOME", "*.txt", "~"});  // nothing expands
  CHECK(split("") == words{});
}

TEST_CASE("unterminated quotes and a trailing backslash are address errors") {
  CHECK_THROWS_WITH_AS(split("prog 'open"), doctest::Contains("' quote in the command is not closed"),
                       bokbok::address_error);
  CHECK_THROWS_WITH_AS(split("prog \"open"), doctest::Contains("\" quote in the command is not closed"),
                       bokbok::address_error);
  CHECK_THROWS_WITH_AS(split("prog \\"), doctest::Contains("lone backslash"), bokbok::address_error);
}

TEST_CASE("shell_quote output reads back unchanged through a real /bin/sh") {
  words tricky = {"plain", "with space", "it's", "\"dq\"", "$HOME", "`id`", "a\\b", "*", "",
                  "semi;colon", "new\nline", "tab\there", "-dash", "ünïcödé", "'", "''"};
  std::string line;
  for (auto& w : tricky) line += shell_quote(w) + " ";
  CHECK(sh_words(line) == tricky);
  CHECK(shell_join(tricky).find("$HOME") != std::string::npos);
  CHECK(shell_quote("safe/path-1.0:x=y@z") == "safe/path-1.0:x=y@z");
  CHECK(shell_quote("it's") == "'it'\\''s'");
}

TEST_CASE("exec: addresses parse into argv and print back") {
  auto a = parse_address("exec:/usr/bin/server --stdio 'a b'");
  auto* e = std::get_if<exec_address>(&a);
  REQUIRE(e);
  CHECK(e->argv == words{"/usr/bin/server", "--stdio", "a b"});
  CHECK(to_string(a) == "exec:/usr/bin/server --stdio 'a b'");
  CHECK(std::get<exec_address>(parse_address(to_string(a))).argv == e->argv);
  CHECK_THROWS_WITH_AS(parse_address("exec:"), doctest::Contains("the command is missing"),
                       bokbok::address_error);
  CHECK_THROWS_AS(parse_address("exec:   "), bokbok::address_error);
  CHECK_THROWS_AS(parse_address("exec:''"), bokbok::address_error);
}

TEST_CASE("ssh: addresses name user, host, port, ssh options and the remote command") {
  auto a = std::get<ssh_address>(parse_address("ssh:alice@example.org:2222 bokbok-demo-server --stdio"));
  CHECK(a.user == "alice");
  CHECK(a.host == "example.org");
  CHECK(a.port == "2222");
  CHECK(a.ssh_options.empty());
  CHECK(a.argv == words{"bokbok-demo-server", "--stdio"});

  auto b = std::get<ssh_address>(parse_address("ssh:[::1] -o Port=22 -i '/k ey' -4 -- app 'x y'"));
  CHECK(b.user.empty());
  CHECK(b.host == "::1");
  CHECK(b.port.empty());
  CHECK(b.ssh_options == words{"-o", "Port=22", "-i", "/k ey", "-4"});
  CHECK(b.argv == words{"app", "x y"});
  CHECK(to_string(parse_address("ssh:[::1]:22 app")) == "ssh:[::1]:22 app");

  auto c = std::get<ssh_address>(parse_address("ssh:host -o A=B app --flag"));
  CHECK(c.ssh_options == words{"-o", "A=B"});
  CHECK(c.argv == words{"app", "--flag"});

  CHECK_THROWS_WITH_AS(parse_address("ssh:host"), doctest::Contains("the remote command is missing"),
                       bokbok::address_error);
  CHECK_THROWS_WITH_AS(parse_address("ssh:host:99999 app"), doctest::Contains("1 to 65535"),
                       bokbok::address_error);
  CHECK_THROWS_WITH_AS(parse_address("ssh:-oProxyCommand=x app"), doctest::Contains("not a host"),
                       bokbok::address_error);
  CHECK_THROWS_WITH_AS(parse_address("ssh:@host app"), doctest::Contains("user before '@' is empty"),
                       bokbok::address_error);
  CHECK_THROWS_WITH_AS(parse_address("ssh:::1 app"), doctest::Contains("in brackets"),
                       bokbok::address_error);
  CHECK_THROWS_WITH_AS(parse_address("ssh:host -o"), doctest::Contains("needs a value"),
                       bokbok::address_error);
}

TEST_CASE("the ssh command line is batch mode, no tty, with the remote command quoted once") {
  auto a = std::get<ssh_address>(parse_address("ssh:bob@h:2200 -o X=Y -- srv 'two words' it\\'s"));
  unsetenv("BOKBOK_SSH");
  words argv = ssh_command(a, {"-F", "/dev/null"});
  CHECK(argv == words{"ssh", "-xT", "-o", "BatchMode=yes", "-p", "2200", "-l", "bob", "-F",
                      "/dev/null", "-o", "X=Y", "--", "h", "srv 'two words' 'it'\\''s'"});
  // The remote shell gets back exactly the words of the address.
  CHECK(sh_words(argv.back()) == words{"srv", "two words", "it's"});
  setenv("BOKBOK_SSH", "/opt/ssh", 1);
  CHECK(ssh_command(a, {}).front() == "/opt/ssh");
  unsetenv("BOKBOK_SSH");
}
