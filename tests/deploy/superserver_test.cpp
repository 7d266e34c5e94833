// bokbok-demo-server under the real inetd superservers Debian ships, openbsd-inetd and
// xinetd, each run from the entry this project ships (inetd/bokbok-demo.inetd.conf.in,
// inetd/bokbok-demo.xinetd.in) with only the port, the user and the server's path changed
// for the test. The packages are unpacked into the build tree, never installed, and run in
// the foreground on a loopback high port.
#include <doctest/doctest.h>
#include <sys/prctl.h>

#include <filesystem>
#include <map>
#include <regex>
#include <set>

#include "deploy_support.hpp"

using namespace deploy_test;
namespace fs = std::filesystem;

namespace {

// The unpacked package's root; fails the test, saying why, when it cannot be had.
std::string unpacked(const std::string& package) {
  std::string script = env_or_throw("BOKBOK_SOURCE_ROOT") + "/tests/deploy/unpack-deb.sh";
  std::string dest = env_or_throw("BOKBOK_DEPLOY_WORK") + "/" + package;
  run_result r = run({"/bin/bash", script, package, dest}, 120s);
  INFO(r.output);
  REQUIRE_MESSAGE(r.ok(), "cannot unpack the Debian package " << package
                                                             << " (run tools/install-deps.sh, which "
                                                                "caches it in /var/cache/bokbok-test)");
  std::string root = r.output;
  while (!root.empty() && (root.back() == '\n' || root.back() == ' ')) root.pop_back();
  root = root.substr(root.rfind('\n') + 1);
  REQUIRE(fs::is_directory(root));
  return root;
}

std::string demo_server_dir() {
  return fs::path(env_or_throw("BOKBOK_DEMO_SERVER")).parent_path().string();
}

std::string template_text(const std::string& name) {
  return read_file(env_or_throw("BOKBOK_SOURCE_ROOT") + "/inetd/" + name);
}

// The orphans a superserver leaves when it dies come to this process, so a server that
// never exits can be found and ended rather than outlive the test.
struct subreaper {
  subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 1); }
  // Ends the listed servers that are still running (and are this process's children
  // now); returns the pids it had to end.
  static std::vector<pid_t> end_leftovers(const std::set<pid_t>& servers) {
    std::vector<pid_t> left;
    for (pid_t pid : servers) {
      int st = 0;
      if (::waitpid(pid, &st, WNOHANG) == 0) {  // ours, and still running
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &st, 0);
        left.push_back(pid);
      }
    }
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    return left;
  }
};

std::set<pid_t> pids_after(const std::string& text, const std::string& regex) {
  std::set<pid_t> pids;
  std::regex re(regex);
  for (std::sregex_iterator it(text.begin(), text.end(), re), end; it != end; ++it)
    pids.insert(static_cast<pid_t>(std::stol((*it)[1].str())));
  return pids;
}

// One superserver under test: how to start it on a port, what it says when it listens,
// and what it says when a server it started exits with status 0.
struct superserver {
  std::string name;
  std::function<std::vector<std::string>(unsigned short port, const temp_dir& dir)> command;
  std::string ready;
  std::string clean_exit;
  std::string server_pid_regex;  // finds the pids of the servers it started
};

struct running {
  unsigned short port = 0;
  std::unique_ptr<process> proc;
};

running start(const superserver& s, const temp_dir& dir) {
  std::string last;
  for (int attempt = 0; attempt < 5; ++attempt) {
    running r;
    r.port = free_tcp_port();
    r.proc = std::make_unique<process>(s.command(r.port, dir));
    bool said_ready = r.proc->wait_for_output(s.ready);
    // It must hold the port itself: the port may have been taken since we picked it.
    bool bound = said_ready && listens_on(r.proc->pid(), r.port);
    if (bound) return r;
    r.proc->stop();
    last = r.proc->report();
    if (said_ready) continue;  // started, but without the port: try another one
    if (last.find("in use") == std::string::npos) break;
  }
  if (last.find("error while loading shared libraries") != std::string::npos)
    last += "\n(a library it needs is missing: tools/install-deps.sh installs them)";
  FAIL(s.name << " did not start listening:\n" << last);
  return {};
}

// Several clients one after the other, `bokbok call`, then four open at once, all making
// calls at the same time. Returns the number of connections made.
int serve_the_clients(running& r, const std::string& label) {
  INFO(r.proc->report());
  int connections = 0;
  for (int i = 0; i < 3; ++i) {
    auto c = client::tcp(r.port);
    ++connections;
    CHECK(exercise(*c, label + "-" + std::to_string(i)) == "");
  }
  {
    call_result c = bokbok_call("tcp:127.0.0.1:" + std::to_string(r.port), {"ping", label});
    ++connections;
    INFO("bokbok call: stdout:\n" << c.out << "\nstderr:\n" << c.err);
    CHECK(c.exit_code() == 0);
    CHECK(c.out == "pong\n" + label + "\n");
    call_result cb = bokbok_call("tcp:127.0.0.1:" + std::to_string(r.port), {"--echo", "callback", "2"});
    ++connections;
    INFO("bokbok call --echo callback 2: stdout:\n" << cb.out << "\nstderr:\n" << cb.err);
    CHECK(cb.exit_code() == 0);
    CHECK(cb.out == "did\n2\n");
  }
  {
    std::vector<std::unique_ptr<client>> four;
    for (int i = 0; i < 4; ++i) four.push_back(client::tcp(r.port));
    connections += 4;
    CHECK(in_parallel(4, [&](int i) {
            return exercise(*four[static_cast<std::size_t>(i)], label + "-parallel-" + std::to_string(i), 5);
          }) == "");
    CHECK(two_at_once(*four[0], *four[1]) == "");
  }
  return connections;
}

// nowait: each connection had its own server, and each exited with status 0 after its
// client hung up; then the superserver is stopped and nothing it started is left.
void run_nowait(const superserver& s) {
  subreaper reaper;
  temp_dir dir;
  running r = start(s, dir);
  int n = serve_the_clients(r, s.name);
  bool all = r.proc->wait_for_output(s.clean_exit, static_cast<std::size_t>(n), 15s);
  r.proc->stop();
  INFO(r.proc->report());
  CHECK_MESSAGE(all, "expected " << n << " servers to exit with status 0 after their client closed");
  auto servers = pids_after(r.proc->output(), s.server_pid_regex);
  CHECK(servers.size() == static_cast<std::size_t>(n));
  auto left = subreaper::end_leftovers(servers);
  CHECK_MESSAGE(left.empty(), left.size() << " servers were still running after their clients closed");
}

// wait: the superserver hands the listening socket to one server, which accepts every
// connection itself until shutdown-server! stops it (status 0).
void run_wait(const superserver& s) {
  subreaper reaper;
  temp_dir dir;
  running r = start(s, dir);
  serve_the_clients(r, s.name + "-wait");
  {
    auto c = client::tcp(r.port);
    CHECK(c->call({"shutdown-server!"}) == bokbok::message{"ok"});
  }
  bool exited = r.proc->wait_for_output(s.clean_exit, 1, 15s);
  r.proc->stop();
  INFO(r.proc->report());
  CHECK_MESSAGE(exited, "the wait-mode server did not exit with status 0 after shutdown-server!");
  auto servers = pids_after(r.proc->output(), s.server_pid_regex);
  CHECK(servers.size() == 1);
  auto left = subreaper::end_leftovers(servers);
  CHECK(left.empty());
}

// --- openbsd-inetd --------------------------------------------------------------------

std::vector<std::string> inetd_fields(const std::string& conf) {
  std::istringstream in(conf);
  std::string line;
  std::vector<std::string> fields;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    REQUIRE_MESSAGE(fields.empty(), "bokbok-demo.inetd.conf has more than one entry");
    std::istringstream words(line);
    for (std::string w; words >> w;) fields.push_back(w);
  }
  return fields;
}

// /run/inetd.pid: openbsd-inetd writes it even in debug mode (and removes it when SIGTERM
// ends it). Once our inetd is gone, put back what was there if that names a live process
// (a real inetd), else leave no file. A file naming a live process (a concurrent run's
// inetd) is left alone.
struct pidfile_guard {
  static constexpr const char* path = "/run/inetd.pid";
  std::optional<std::string> before;
  static bool names_live_process(const std::string& text) {
    try {
      long pid = std::stol(text);
      return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
    } catch (...) {
      return false;
    }
  }
  pidfile_guard() {
    if (fs::exists(path)) before = read_file(path);
  }
  ~pidfile_guard() {
    std::error_code ec;
    try {
      // (inetd removes the file itself when SIGTERM ends it.)
      if (fs::exists(path) && names_live_process(read_file(path))) return;
      if (before && names_live_process(*before))
        write_file(path, *before);
      else
        fs::remove(path, ec);
    } catch (...) {
    }
  }
};

superserver openbsd_inetd(const std::string& wait) {
  std::string inetd = unpacked("openbsd-inetd") + "/usr/sbin/inetd";
  auto fields = inetd_fields(template_text("bokbok-demo.inetd.conf.in"));
  superserver s;
  s.name = "openbsd-inetd";
  s.command = [inetd, fields, wait](unsigned short port, const temp_dir& dir) {
    auto f = fields;
    f[0] = "127.0.0.1:" + std::to_string(port);
    f[3] = wait;
    f[4] = current_user();
    f[5] = replace_all(f[5], "@bindir@", demo_server_dir());
    std::string line;
    for (auto& w : f) line += w + " ";
    std::string conf = dir / "inetd.conf";
    write_file(conf, line + "\n");
    return std::vector<std::string>{inetd, "-d", conf};
  };
  s.ready = "ADD: 127.0.0.1:";
  s.clean_exit = "reaped, status 0";
  s.server_pid_regex = "(\\d+) execv ";
  return s;
}

}  // namespace

TEST_SUITE("deploy") {

TEST_CASE("bokbok-demo.inetd.conf is a nowait stream entry for the demo server on loopback") {
  auto f = inetd_fields(template_text("bokbok-demo.inetd.conf.in"));
  REQUIRE(f.size() == 8);
  CHECK(f[0].rfind("127.0.0.1:", 0) == 0);
  CHECK(f[1] == "stream");
  CHECK(f[2] == "tcp");
  CHECK(f[3] == "nowait");
  CHECK(f[5] == "@bindir@/bokbok-demo-server");
  CHECK(f[6] == "bokbok-demo-server");
  CHECK(f[7] == "--inetd");
}

TEST_CASE("openbsd-inetd (nowait) runs one demo server per connection from bokbok-demo.inetd.conf") {
  pidfile_guard pidfile;
  run_nowait(openbsd_inetd("nowait"));
}

TEST_CASE("openbsd-inetd (wait) hands the demo server its listening socket") {
  pidfile_guard pidfile;
  run_wait(openbsd_inetd("wait"));
}

}  // TEST_SUITE

// --- xinetd ---------------------------------------------------------------------------

namespace {

// The `key = value` (or `key += value`) lines of the service, in order.
std::vector<std::pair<std::string, std::string>> xinetd_attributes(const std::string& conf) {
  std::vector<std::pair<std::string, std::string>> out;
  std::istringstream in(conf);
  std::regex re("^\\s*([a-z_]+)\\s*(\\+?=)\\s*(.*?)\\s*$");
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_match(line, m, re)) out.emplace_back(m[1].str() + " " + m[2].str(), m[3].str());
  }
  return out;
}

std::string xinetd_value(const std::vector<std::pair<std::string, std::string>>& attrs,
                         const std::string& key) {
  for (auto& [k, v] : attrs)
    if (k == key + " =") return v;
  return "(missing)";
}

superserver xinetd(const std::string& wait) {
  std::string bin = unpacked("xinetd") + "/usr/sbin/xinetd";
  std::string tmpl = template_text("bokbok-demo.xinetd.in");
  superserver s;
  s.name = "xinetd";
  s.command = [bin, tmpl, wait](unsigned short port, const temp_dir& dir) {
    std::string conf = replace_all(tmpl, "@bindir@", demo_server_dir());
    conf = std::regex_replace(conf, std::regex("(\\n\\s*port\\s*=\\s*)\\d+"), "$01" + std::to_string(port));
    conf = std::regex_replace(conf, std::regex("(\\n\\s*user\\s*=\\s*)\\S+"), "$01" + current_user());
    conf = std::regex_replace(conf, std::regex("(\\n\\s*wait\\s*=\\s*)\\S+"), "$01" + wait);
    // Log to our pipe rather than syslog; the entry itself is used as shipped.
    conf = "defaults\n{\n    log_type = FILE /dev/stderr\n}\n" + conf;
    std::string path = dir / "xinetd.conf";
    write_file(path, conf);
    return std::vector<std::string>{bin, "-dontfork", "-filelog", "/dev/stderr", "-f", path};
  };
  s.ready = "Started working:";  // then "1 available service", or 0 when bind failed
  s.clean_exit = "EXIT: bokbok-demo status=0";
  s.server_pid_regex = "START: bokbok-demo pid=(\\d+)";
  return s;
}

}  // namespace

TEST_SUITE("deploy") {

TEST_CASE("bokbok-demo.xinetd is an unlisted nowait service for the demo server on loopback") {
  auto a = xinetd_attributes(template_text("bokbok-demo.xinetd.in"));
  CHECK(xinetd_value(a, "type") == "UNLISTED");
  CHECK(xinetd_value(a, "socket_type") == "stream");
  CHECK(xinetd_value(a, "protocol") == "tcp");
  CHECK(xinetd_value(a, "bind") == "127.0.0.1");
  CHECK(xinetd_value(a, "wait") == "no");
  CHECK(xinetd_value(a, "server") == "@bindir@/bokbok-demo-server");
  CHECK(xinetd_value(a, "server_args") == "--inetd");
  CHECK(std::stoi(xinetd_value(a, "port")) > 1024);
}

TEST_CASE("xinetd (wait = no) runs one demo server per connection from bokbok-demo.xinetd") {
  run_nowait(xinetd("no"));
}

TEST_CASE("xinetd (wait = yes) hands the demo server its listening socket") {
  run_wait(xinetd("yes"));
}

}  // TEST_SUITE
