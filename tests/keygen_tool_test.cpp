// `bokbok keygen`, the real binary (BOKBOK_TOOL): random keys, passphrase keys (stdin
// not a terminal), users-file lines, refusing to overwrite, usage errors. Every run is
// bounded in time and killed if it overstays.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "crypto/key_file.hpp"
#include "crypto/passphrase.hpp"
#include "support/child_process.hpp"

using namespace std::chrono_literals;

namespace {

struct outcome {
  int status = -1;  // exit status, or -1 if killed
  std::string out, err;
};

// Runs `bokbok ARGS...` with `input` on its stdin; at most 60 s (Argon2id at 256 MiB on a
// loaded machine under ASan can take several seconds).
outcome run_tool(const std::vector<std::string>& args, const std::string& input = "") {
  int in[2], out[2], err[2];
  REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  std::vector<std::string> argv{bokbok_test::built_program("BOKBOK_TOOL")};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  REQUIRE(rc == 0);
  // The input is small: it fits the pipe buffer, so writing it all at once cannot block.
  // A tool that refuses its arguments may exit before reading it: EPIPE then, not death.
  ::signal(SIGPIPE, SIG_IGN);
  const ssize_t wrote = ::write(in[1], input.data(), input.size());
  REQUIRE((wrote == static_cast<ssize_t>(input.size()) || (wrote < 0 && errno == EPIPE)));
  ::close(in[1]);
  outcome o;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    if (::poll(fds, 2, static_cast<int>(left.count())) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      char buf[4096];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? o.out : o.err).append(buf, static_cast<std::size_t>(n));
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  int status = 0;
  if (open_fds > 0) ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  o.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return o;
}

struct temp_dir {
  std::string path;
  temp_dir() {
    std::string t = std::filesystem::temp_directory_path().string() + "/bokbok-keygen-XXXXXX";
    REQUIRE(::mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("keygen FILE writes a new random key file with mode 0600") {
  temp_dir d;
  const auto a = run_tool({"keygen", d.path + "/a.key"});
  REQUIRE_MESSAGE(a.status == 0, a.err);
  const auto b = run_tool({"keygen", d.path + "/b.key"});
  REQUIRE(b.status == 0);
  struct stat st;
  REQUIRE(::stat((d.path + "/a.key").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  const auto ka = bokbok::crypto::load_key_file(d.path + "/a.key");
  const auto kb = bokbok::crypto::load_key_file(d.path + "/b.key");
  CHECK_FALSE(ka.equals(kb));
  CHECK(slurp(d.path + "/a.key").starts_with("bokbok-key-v1 "));
}

TEST_CASE("keygen refuses to replace a file unless --force") {
  temp_dir d;
  const std::string f = d.path + "/k";
  REQUIRE(run_tool({"keygen", f}).status == 0);
  const std::string before = slurp(f);
  const auto again = run_tool({"keygen", f});
  CHECK(again.status == 1);
  CHECK(again.err == "bokbok keygen: " + f + ": already exists; use --force to replace it\n");
  CHECK(slurp(f) == before);
  const auto forced = run_tool({"keygen", "--force", f});
  CHECK(forced.status == 0);
  CHECK(slurp(f) != before);
}

TEST_CASE("keygen --users-line prints the users-file line of the key it wrote") {
  temp_dir d;
  const std::string f = d.path + "/k";
  const auto r = run_tool({"keygen", "--users-line", "alice", f});
  REQUIRE(r.status == 0);
  const auto k = bokbok::crypto::load_key_file(f);
  CHECK(r.out == "alice " + bokbok::crypto::to_hex(k.bytes()) + "\n");
}

TEST_CASE("keygen --passphrase derives the same key as the library, from stdin") {
  temp_dir d;
  const std::string f = d.path + "/k";
  const auto r = run_tool({"keygen", "--passphrase", "--realm", "example.org", "--user", "alice",
                           "--users-line", "alice", f},
                          "correct horse battery staple\n");
  REQUIRE_MESSAGE(r.status == 0, r.err);
  const auto expected = bokbok::crypto::derive_passphrase_key("correct horse battery staple",
                                                              "example.org", "alice");
  CHECK(bokbok::crypto::load_key_file(f).equals(expected));
  CHECK(r.out == "alice " + bokbok::crypto::to_hex(expected.bytes()) + "\n");
}

TEST_CASE("keygen refuses an empty passphrase and bad usage") {
  temp_dir d;
  const auto empty = run_tool({"keygen", "--passphrase", "--realm", "r", "--user", "u",
                               d.path + "/k"},
                              "\n");
  CHECK(empty.status == 1);
  CHECK(empty.err == "bokbok keygen: the passphrase is empty\n");
  CHECK_FALSE(std::filesystem::exists(d.path + "/k"));
  const auto no_file = run_tool({"keygen"});
  CHECK(no_file.status == 2);
  CHECK(no_file.err.starts_with("bokbok keygen: needs a FILE"));
  const auto no_realm = run_tool({"keygen", "--passphrase", "--user", "u", d.path + "/k"});
  CHECK(no_realm.status == 2);
  CHECK(no_realm.err.starts_with("bokbok keygen: --passphrase needs --realm and --user"));
  const auto unknown = run_tool({"keygen", "--frobnicate", d.path + "/k"});
  CHECK(unknown.status == 2);
  const auto help = run_tool({"keygen", "--help"});
  CHECK(help.status == 0);
  CHECK(help.out.starts_with("usage: bokbok keygen"));
}

TEST_CASE("keygen --passphrase refuses a --users-line for another user than --user") {
  temp_dir d;
  // The key is derived for carol; a line naming dave could never authenticate.
  auto r = run_tool({"keygen", "--passphrase", "--realm", "r", "--user", "carol",
                     "--users-line", "dave", d.path + "/k"},
                    "secret\n");
  CHECK(r.status == 2);
  CHECK(r.out == "");  // no line that cannot work
  CHECK(r.err.find("--users-line dave does not match --user carol") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(d.path + "/k"));  // refused before deriving or writing

  // The same user is fine: its line is printed.
  auto ok = run_tool({"keygen", "--passphrase", "--realm", "r", "--user", "carol",
                      "--users-line", "carol"},
                     "secret\n");
  CHECK(ok.status == 0);
  CHECK(ok.out.starts_with("carol "));
}
