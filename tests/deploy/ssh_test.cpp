// ssh: addresses through a real OpenSSH server (Debian's openssh-server) on a loopback
// high port, with a throwaway host key and client key made here. Runs as root (CI does);
// as another user the test says why it cannot run and fails nothing.
//
// Covered: calls both ways over ssh, a 16 MiB blob, the remote server killed mid-call, a
// wrong port reported with ssh's own message, and `bokbok bridge stdio unix:...` run by
// ssh to reach a demo server listening on a UNIX socket.
#include <doctest/doctest.h>

#include "deploy_support.hpp"

using namespace deploy_test;
using bokbok::message;

namespace {

const char* sshd_program = "/usr/sbin/sshd";

// sshd on 127.0.0.1:port, and the client options that reach it with our key only.
struct sshd_fixture {
  temp_dir dir;
  unsigned short port = 0;
  std::unique_ptr<process> sshd;
  std::vector<std::string> client_options;

  sshd_fixture() {
    for (const char* key : {"host_key", "client_key"}) {
      auto r = run({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bokbok-test",
                    "-f", dir / key});
      REQUIRE_MESSAGE(r.ok(), r.output);
    }
    write_file(dir / "authorized_keys", read_file(dir / "client_key.pub"));
    // sshd's privilege separation directory (Debian's package makes it at boot).
    std::filesystem::create_directories("/run/sshd");
    for (int attempt = 0; attempt < 5 && !sshd; ++attempt) {
      port = free_tcp_port();
      write_file(dir / "sshd_config",
                 "Port " + std::to_string(port) + "\n"
                 "ListenAddress 127.0.0.1\n"
                 "HostKey " + dir / "host_key" + "\n"
                 "AuthorizedKeysFile " + dir / "authorized_keys" + "\n"
                 "PidFile none\n"
                 "PubkeyAuthentication yes\n"
                 "PasswordAuthentication no\n"
                 "KbdInteractiveAuthentication no\n"
                 "PermitRootLogin prohibit-password\n"
                 "StrictModes no\n"
                 "UsePAM no\n"
                 "LogLevel VERBOSE\n");
      auto p = std::make_unique<process>(
          std::vector<std::string>{sshd_program, "-D", "-e", "-f", dir / "sshd_config"});
      if (p->wait_for_output("Server listening on 127.0.0.1 port " + std::to_string(port)))
        sshd = std::move(p);
      else
        MESSAGE("sshd did not start on port " << port << ": " << p->output());
    }
    REQUIRE(sshd);
    write_file(dir / "known_hosts",
               "[127.0.0.1]:" + std::to_string(port) + " " + read_file(dir / "host_key.pub"));
    client_options = {"-F", "/dev/null", "-i", dir / "client_key", "-o", "IdentitiesOnly=yes",
                      "-o", "UserKnownHostsFile=" + dir / "known_hosts", "-o",
                      "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR"};
  }

  // ssh:USER@127.0.0.1:PORT [client options] -- COMMAND...
  std::string address(const std::vector<std::string>& command, unsigned short to_port = 0) const {
    std::string a = "ssh:" + current_user() + "@127.0.0.1:" + std::to_string(to_port ? to_port : port);
    for (auto& o : client_options) a += " " + bokbok_quote(o);
    a += " --";
    for (auto& w : command) a += " " + bokbok_quote(w);
    return a;
  }

  static std::string bokbok_quote(const std::string& w) {
    return "'" + replace_all(w, "'", "'\\''") + "'";
  }
};

bool can_run_sshd() {
  if (::geteuid() != 0) {
    MESSAGE("skipped: sshd on loopback needs root (for its privilege separation)");
    return false;
  }
  REQUIRE_MESSAGE(std::filesystem::exists(sshd_program),
                  "openssh-server is not installed (tools/install-deps.sh installs it)");
  return true;
}

std::string demo_server() { return env_or_throw("BOKBOK_DEMO_SERVER"); }

struct stderr_log {
  std::mutex mu;
  std::string text;
  std::condition_variable cv;
  std::function<void(std::string_view)> sink() {
    return [this](std::string_view s) {
      std::lock_guard lock(mu);
      text.append(s);
      cv.notify_all();
    };
  }
  // The pid the demo server logs when it starts serving: "(pid N)".
  int server_pid() {
    std::unique_lock lock(mu);
    const std::string mark = "serving one connection on stdin/stdout (pid ";
    REQUIRE(cv.wait_for(lock, 10s, [&] { return text.find(mark) != std::string::npos; }));
    return std::stoi(text.substr(text.find(mark) + mark.size()));
  }
};

}  // namespace

TEST_CASE("ssh: calls a demo server over a real sshd both ways, with a 16 MiB blob") {
  if (!can_run_sshd()) return;
  sshd_fixture f;
  std::atomic<int> callbacks{0};
  bokbok::options o;
  o.on_request = [&](bokbok::connection&, message m) -> message {
    ++callbacks;
    return {"ok", m.at(1)};
  };
  auto conn = bokbok::connect(f.address({demo_server(), "--stdio"}), o);
  CHECK(conn.peer_address().starts_with("ssh:"));
  CHECK(conn.request({"ping", "over ssh"}) == message{"pong", "over ssh"});
  CHECK(conn.request({"callback", "3"}) == message{"did", "3"});
  CHECK(callbacks == 3);
  message blob = conn.request({"blob", std::to_string(16 << 20)});
  REQUIRE(blob.size() == 1);
  CHECK(blob[0].size() == (16u << 20));
  std::string sent(16 << 20, 'x');
  for (std::size_t i = 0; i < sent.size(); i += 4093) sent[i] = char(i);
  CHECK(conn.request({"echo", sent}) == message{sent});
  conn.close();
  conn.wait_closed();
  REQUIRE(conn.child_status());
  CHECK(conn.child_status()->code == 0);  // ssh passes the remote server's exit status on
}

TEST_CASE("ssh: the remote server killed mid-call fails the pending calls") {
  if (!can_run_sshd()) return;
  sshd_fixture f;
  stderr_log log;
  bokbok::options o;
  o.child.on_stderr = log.sink();  // ssh relays the remote stderr: the server logs its pid
  std::atomic<int> closes{0};
  o.on_close = [&](bokbok::connection&) { ++closes; };
  auto conn = bokbok::connect(f.address({demo_server(), "--stdio"}), o);
  CHECK(conn.request({"ping", "1"}) == message{"pong", "1"});
  auto pending = conn.request_async({"sleep", "60000"});
  REQUIRE(::kill(log.server_pid(), SIGKILL) == 0);  // loopback: the "remote" is here
  REQUIRE(pending.wait_for(20s) == std::future_status::ready);
  CHECK_THROWS_AS(pending.get(), bokbok::transport_error);
  conn.wait_closed();
  CHECK(closes == 1);
  REQUIRE(conn.child_status());
  CHECK(conn.child_status()->code != 0);
}

TEST_CASE("ssh: a wrong port is a connection error carrying ssh's own message") {
  if (!can_run_sshd()) return;
  sshd_fixture f;
  unsigned short closed_port = free_tcp_port();
  bokbok::options o;
  o.child.on_stderr = [](std::string_view) {};  // keep the test output quiet
  try {
    bokbok::connect(f.address({demo_server(), "--stdio"}, closed_port), o);
    FAIL("connected");
  } catch (const bokbok::transport_error& e) {
    std::string what = e.what();
    INFO(what);
    CHECK(what.find("ssh failed, exit status 255") != std::string::npos);
    CHECK(what.find("Connection refused") != std::string::npos);
  }
}

TEST_CASE("ssh: bokbok bridge on the far side reaches a server on its UNIX socket") {
  if (!can_run_sshd()) return;
  sshd_fixture f;
  std::string sock = f.dir / "app.sock";
  process server({demo_server(), "--listen", "unix:" + sock});
  REQUIRE_MESSAGE(server.wait_for_output("listening on unix:" + sock), server.output());
  std::atomic<int> callbacks{0};
  bokbok::options o;
  o.on_request = [&](bokbok::connection&, message m) -> message {
    ++callbacks;
    return {"ok", m.at(1)};
  };
  auto conn = bokbok::connect(
      f.address({env_or_throw("BOKBOK_TOOL"), "bridge", "stdio", "unix:" + sock}), o);
  CHECK(conn.request({"ping", "bridged"}) == message{"pong", "bridged"});
  CHECK(conn.request({"callback", "2"}) == message{"did", "2"});
  CHECK(callbacks == 2);
  message blob = conn.request({"blob", std::to_string(4 << 20)});
  REQUIRE(blob.size() == 1);
  CHECK(blob[0].size() == (4u << 20));
  conn.close();
  conn.wait_closed();
  REQUIRE(conn.child_status());
  CHECK(conn.child_status()->code == 0);  // the bridge ended cleanly when we closed
}

TEST_CASE("bokbok call over ssh: prints the answer, exits 3 with ssh's message when unreachable") {
  if (!can_run_sshd()) return;
  sshd_fixture f;
  auto ok = bokbok_call(f.address({demo_server(), "--stdio"}), {"ping", "hi"});
  CHECK_MESSAGE(ok.exit_code() == 0, ok.err);
  CHECK(ok.out == "pong\nhi\n");
  auto bad = bokbok_call(f.address({demo_server(), "--stdio"}, free_tcp_port()), {"ping"});
  CHECK(bad.exit_code() == 3);
  CHECK(bad.err.find("Connection refused") != std::string::npos);
}
