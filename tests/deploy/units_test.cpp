// The systemd units in inetd/: they parse (systemd-analyze verify, when available), name
// the right binary and mode, pair each socket with its service, and — run as systemd
// would run them, through systemd-socket-activate with the flags their [Socket] sections
// stand for — serve calls.
#include <doctest/doctest.h>

#include <filesystem>
#include <map>

#include "deploy_support.hpp"

using namespace deploy_test;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> unit_names = {
    "bokbok-demo.socket",
    "bokbok-demo.service",
    "bokbok-demo-accept.socket",
    "bokbok-demo-accept@.service",
};

// A unit file as section -> key -> values (a key may repeat, like ListenStream=).
using unit = std::map<std::string, std::map<std::string, std::vector<std::string>>>;

unit parse_unit(const std::string& text) {
  unit u;
  std::string section;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[') {
      REQUIRE_MESSAGE(line.back() == ']', "bad section line: " << line);
      section = line.substr(1, line.size() - 2);
      continue;
    }
    auto eq = line.find('=');
    REQUIRE_MESSAGE(eq != std::string::npos, "not key=value: " << line);
    REQUIRE_MESSAGE(!section.empty(), "key outside a section: " << line);
    u[section][line.substr(0, eq)].push_back(line.substr(eq + 1));
  }
  return u;
}

std::string one(const unit& u, const std::string& section, const std::string& key) {
  auto s = u.find(section);
  if (s == u.end()) return "(no [" + section + "])";
  auto k = s->second.find(key);
  if (k == s->second.end()) return "(no " + key + "=)";
  return k->second.back();
}

std::vector<std::string> all(const unit& u, const std::string& section, const std::string& key) {
  auto s = u.find(section);
  if (s == u.end()) return {};
  auto k = s->second.find(key);
  return k == s->second.end() ? std::vector<std::string>{} : k->second;
}

std::string source_template(const std::string& name) {
  return read_file(env_or_throw("BOKBOK_SOURCE_ROOT") + "/inetd/" + name + ".in");
}

std::string demo_server_dir() {
  return fs::path(env_or_throw("BOKBOK_DEMO_SERVER")).parent_path().string();
}

// The units with @bindir@ pointing at the built server, written into `dir`.
void write_units(const temp_dir& dir) {
  for (auto& name : unit_names) {
    std::string text = replace_all(source_template(name), "@bindir@", demo_server_dir());
    text = replace_all(text, "@docdir@", "/usr/share/doc/bokbok");
    write_file(dir / name, text);
  }
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::string socket_activate_path() {
  for (const char* p : {"/usr/bin/systemd-socket-activate", "/lib/systemd/systemd-socket-activate",
                        "/usr/lib/systemd/systemd-socket-activate"})
    if (::access(p, X_OK) == 0) return p;
  return "";
}

}  // namespace

TEST_SUITE("deploy") {

TEST_CASE("the units name the demo server, its mode, and each other") {
  auto sock = parse_unit(source_template("bokbok-demo.socket"));
  auto svc = parse_unit(source_template("bokbok-demo.service"));
  auto accept_sock = parse_unit(source_template("bokbok-demo-accept.socket"));
  auto accept_svc = parse_unit(source_template("bokbok-demo-accept@.service"));

  // Accept=no: one shared server for a TCP and a UNIX listener, both named.
  CHECK(one(sock, "Socket", "Accept") == "no");
  auto listens = all(sock, "Socket", "ListenStream");
  REQUIRE(listens.size() == 2);
  CHECK(listens[0].rfind("127.0.0.1:", 0) == 0);
  CHECK(listens[1].rfind("/run/", 0) == 0);
  CHECK(one(sock, "Socket", "FileDescriptorName") == "bokbok-demo");
  CHECK(one(sock, "Socket", "Service") == "bokbok-demo.service");
  CHECK(one(sock, "Install", "WantedBy") == "sockets.target");
  CHECK(one(svc, "Service", "Type") == "notify");
  CHECK(one(svc, "Service", "ExecStart") == "@bindir@/bokbok-demo-server --systemd");
  CHECK(one(svc, "Unit", "Requires") == "bokbok-demo.socket");

  // Accept=yes: systemd names the template after the socket, so the pair must be
  // bokbok-demo-accept.socket + bokbok-demo-accept@.service.
  CHECK(one(accept_sock, "Socket", "Accept") == "yes");
  CHECK(one(accept_sock, "Socket", "ListenStream").rfind("127.0.0.1:", 0) == 0);
  CHECK(one(accept_svc, "Service", "StandardInput") == "socket");
  CHECK(one(accept_svc, "Service", "ExecStart") == "@bindir@/bokbok-demo-server --inetd");
  // Logs must never go to the socket, which carries the protocol.
  CHECK(one(accept_svc, "Service", "StandardError") == "journal");
}

TEST_CASE("meson configured the units and entries with the installed server's path") {
  std::string dir = env_or_throw("BOKBOK_DEPLOY_DIR");
  std::string server = env_or_throw("BOKBOK_INSTALLED_BINDIR") + "/bokbok-demo-server";
  INFO("configured files in " << dir << " (is subdir('inetd') in the top-level meson.build?)");
  for (auto& name : unit_names) {
    INFO(name);
    REQUIRE(fs::exists(dir + "/" + name));
    auto u = parse_unit(read_file(dir + "/" + name));
    std::string exec = one(u, "Service", "ExecStart");
    if (exec.rfind("(no", 0) != 0) CHECK(split(exec).at(0) == server);
    CHECK(read_file(dir + "/" + name).find("@bindir@") == std::string::npos);
    CHECK(read_file(dir + "/" + name).find("@docdir@") == std::string::npos);
  }
  for (std::string name : {"bokbok-demo.inetd.conf", "bokbok-demo.xinetd"}) {
    INFO(name);
    REQUIRE(fs::exists(dir + "/" + name));
    std::string text = read_file(dir + "/" + name);
    CHECK(text.find("@bindir@") == std::string::npos);
    CHECK(text.find(server) != std::string::npos);
  }
}

TEST_CASE("systemd-analyze verify accepts the units") {
  const char* candidates[] = {"/usr/bin/systemd-analyze", "/bin/systemd-analyze"};
  std::string analyze;
  for (const char* c : candidates)
    if (::access(c, X_OK) == 0) analyze = c;
  if (analyze.empty()) {
    MESSAGE("systemd-analyze is not installed (Debian package systemd): not verifying the units");
    return;
  }
  temp_dir dir;
  write_units(dir);
  // Relative to the units' folder, so it finds the socket's service next to it.
  run_result r = run({"/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", dir.path.string(), analyze, "verify",
                      "./bokbok-demo.socket", "./bokbok-demo.service", "./bokbok-demo-accept.socket",
                      "./bokbok-demo-accept@.service"},
                     60s, {"SYSTEMD_LOG_LEVEL=notice"});
  INFO("systemd-analyze verify said:\n" << r.output);
  CHECK(r.ok());
  // It exits 0 on warnings such as an unknown key: any word from it is a finding.
  CHECK(r.output.find("bokbok-demo") == std::string::npos);
}

TEST_CASE("systemd-analyze verify catches a unit that names a missing server") {
  const char* analyze = "/usr/bin/systemd-analyze";
  if (::access(analyze, X_OK) != 0) {
    MESSAGE("systemd-analyze is not installed: skipped");
    return;
  }
  temp_dir dir;
  write_units(dir);
  write_file(dir / "bokbok-demo.service",
             replace_all(read_file(dir / "bokbok-demo.service"), "bokbok-demo-server --systemd",
                         "no-such-bokbok-server --systemd"));
  run_result r = run({"/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", dir.path.string(), analyze, "verify",
                      "./bokbok-demo.socket", "./bokbok-demo.service"});
  INFO(r.output);
  CHECK_FALSE(r.ok());
  CHECK(r.output.find("no-such-bokbok-server") != std::string::npos);
}

TEST_CASE("each socket unit, run as systemd-socket-activate flags with its service's ExecStart, serves calls") {
  std::string ssa = socket_activate_path();
  REQUIRE_MESSAGE(!ssa.empty(), "systemd-socket-activate not found (Debian package systemd)");
  struct pair {
    std::string socket, service;
  };
  for (auto [socket_name, service_name] :
       {pair{"bokbok-demo.socket", "bokbok-demo.service"},
        pair{"bokbok-demo-accept.socket", "bokbok-demo-accept@.service"}}) {
    CAPTURE(socket_name);
    auto sock = parse_unit(source_template(socket_name));
    auto svc = parse_unit(source_template(service_name));
    temp_dir dir;
    std::string last;
    bool served = false;
    for (int attempt = 0; attempt < 5 && !served; ++attempt) {
      unsigned short port = free_tcp_port();
      std::vector<std::string> argv = {ssa};
      std::string unix_path;
      for (auto& l : all(sock, "Socket", "ListenStream")) {
        if (l[0] == '/') {
          unix_path = dir / fs::path(l).filename().string();
          argv.insert(argv.end(), {"-l", unix_path});
        } else {
          argv.insert(argv.end(), {"-l", "127.0.0.1:" + std::to_string(port)});
        }
      }
      if (one(sock, "Socket", "Accept") == "yes") argv.push_back("--accept");
      if (one(svc, "Service", "StandardInput") == "socket") argv.push_back("--inetd");
      std::string fdname = one(sock, "Socket", "FileDescriptorName");
      if (fdname.rfind("(no", 0) != 0) argv.push_back("--fdname=" + fdname);
      auto exec = split(replace_all(one(svc, "Service", "ExecStart"), "@bindir@", demo_server_dir()));
      argv.insert(argv.end(), exec.begin(), exec.end());
      process p(argv);
      if (!p.wait_for_output("Listening on", all(sock, "Socket", "ListenStream").size())) {
        p.stop();
        last = p.report();
        if (last.find("in use") != std::string::npos) continue;
        break;
      }
      INFO(p.report());
      {
        auto c = client::tcp(port);
        CHECK(exercise(*c, socket_name) == "");
        if (!unix_path.empty()) {
          auto u = client::unix(unix_path);
          CHECK(exercise(*u, socket_name + " unix") == "");
        }
      }
      served = true;
    }
    CHECK_MESSAGE(served, "systemd-socket-activate did not start: " << last);
  }
}

}  // TEST_SUITE
