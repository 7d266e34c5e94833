// CPU placement for `bokbok bench --pin same|split`.
//
// Linux threads and forked processes inherit the CPU affinity of the thread that starts
// them. run() pins the main thread to the client CPU first, so the caller threads (and
// the watchdog) inherit it; each server-side thread or process is started inside a
// server_side_scope, which moves the starting thread to the server CPU for that moment:
//   - the raw echo peer thread, and the thread that opens the bokbok peer end;
//   - the spawned child (raw and bokbok), with every thread it will start.
// The in-process bokbok pair shares one event-loop thread ("bokbok-loop"): the public
// API gives connect_fds no loop of its own, so both ends' I/O runs on it. It is moved to
// the server CPU by pin_event_loops(); the handler threads ("bokbok-handler") are started
// by it (or by each other) and so land there too. With a child peer, this process's loop
// serves the client end only: it goes to the client CPU. So it does for the connects/s
// figure, where the clients use it and the server runs loops of its own.
//
// check_placement() reads Cpus_allowed_list of every thread of this process and of its
// child processes (/proc/.../task/*/status) and fails the run when one is not where its
// role says.
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>

#include "bench.hpp"
#include "command.hpp"

namespace bokbok::tools::bench {
namespace {

placement current;  // set once by run(), before any other thread starts
int loop_cpu = -1;  // where pin_event_loops() last put this process's loop threads

cpu_set_t one_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return set;
}

void set_thread_cpu(pid_t tid, int cpu, const char* what) {
  cpu_set_t set = one_cpu(cpu);
  if (::sched_setaffinity(tid, sizeof set, &set) != 0)
    throw std::system_error(errno, std::generic_category(),
                            std::string("pinning ") + what + " to CPU " + std::to_string(cpu));
}

std::vector<pid_t> list_numeric_dir(const std::string& path) {
  std::vector<pid_t> ids;
  DIR* d = ::opendir(path.c_str());
  if (!d) return ids;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long v = std::strtol(e->d_name, &end, 10);
    if (end != e->d_name && *end == '\0') ids.push_back(pid_t(v));
  }
  ::closedir(d);
  return ids;
}

std::string read_first_line(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

// The value of `key:` in a /proc status file, spaces trimmed; "" when absent.
std::string status_field(const std::string& path, std::string_view key) {
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.size() > key.size() && line.compare(0, key.size(), key) == 0 &&
        line[key.size()] == ':') {
      auto from = line.find_first_not_of(" \t", key.size() + 1);
      return from == std::string::npos ? "" : line.substr(from);
    }
  }
  return "";
}

std::vector<pid_t> child_processes() {
  std::vector<pid_t> kids;
  const std::string self = std::to_string(::getpid());
  for (pid_t p : list_numeric_dir("/proc"))
    if (status_field("/proc/" + std::to_string(p) + "/status", "PPid") == self)
      kids.push_back(p);
  return kids;
}

struct thread_seen {
  std::string name;     // comm
  std::string allowed;  // Cpus_allowed_list
  bool child = false;   // belongs to a child process
  bool main = false;    // this process's main thread
};

std::vector<thread_seen> threads_of(pid_t pid, bool child) {
  std::vector<thread_seen> out;
  const std::string base = "/proc/" + std::to_string(pid) + "/task/";
  for (pid_t tid : list_numeric_dir(base)) {
    const std::string dir = base + std::to_string(tid);
    thread_seen t;
    t.name = read_first_line(dir + "/comm");
    t.allowed = status_field(dir + "/status", "Cpus_allowed_list");
    t.child = child;
    t.main = !child && tid == pid;
    if (!t.allowed.empty()) out.push_back(std::move(t));  // gone meanwhile: skip
  }
  return out;
}

}  // namespace

placement choose_placement(pin_mode mode) {
  placement p;
  p.mode = mode;
  if (mode == pin_mode::none) return p;
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0)
    throw std::system_error(errno, std::generic_category(), "sched_getaffinity");
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  const std::size_t wanted = mode == pin_mode::split ? 2 : 1;
  if (cpus.size() < wanted)
    throw usage_error("--pin split needs 2 CPUs this process may run on; it may run on " +
                      std::to_string(cpus.size()));
  p.client_cpu = cpus[0];
  p.server_cpu = mode == pin_mode::split ? cpus[1] : cpus[0];
  return p;
}

void set_placement(const placement& p) {
  current = p;
  if (p.mode == pin_mode::none) return;
  try {
    set_thread_cpu(0, p.client_cpu, "the main thread");
  } catch (const std::system_error& e) {
    throw usage_error(std::string("--pin: ") + e.what());
  }
}

const placement& current_placement() { return current; }

std::string describe_placement() {
  const placement& p = current;
  switch (p.mode) {
    case pin_mode::none:
      return "placement left to the scheduler (no --pin)";
    case pin_mode::same:
      return "--pin same: every thread of both sides (and the child peer) on CPU " +
             std::to_string(p.client_cpu);
    case pin_mode::split:
      return "--pin split: client (callers) on CPU " + std::to_string(p.client_cpu) +
             ", server (echo peer thread, handler threads, child peer) on CPU " +
             std::to_string(p.server_cpu) +
             ";\nthe in-process bokbok pair shares one event-loop thread (the public API "
             "gives\nconnect_fds no loop of its own), placed on the server CPU (child: "
             "this process's\nloop serves the client end only, on the client CPU; so for connects/s, where the\n"
             "server has loops of its own)";
  }
  return "";
}

server_side_scope::server_side_scope() : active_(current.mode == pin_mode::split) {
  if (active_) set_thread_cpu(0, current.server_cpu, "a server-side thread");
}

server_side_scope::~server_side_scope() {
  if (!active_) return;
  cpu_set_t set = one_cpu(current.client_cpu);
  ::sched_setaffinity(0, sizeof set, &set);  // back to the client CPU; cannot fail here
}

void pin_this_thread_to_server() {
  if (current.mode != pin_mode::none) set_thread_cpu(0, current.server_cpu, "a server-side thread");
}

void pin_event_loops(bool shared_with_server) {
  if (current.mode == pin_mode::none) return;
  loop_cpu = shared_with_server ? current.server_cpu : current.client_cpu;
  const std::string base = "/proc/self/task/";
  for (pid_t tid : list_numeric_dir(base))
    if (read_first_line(base + std::to_string(tid) + "/comm") == "bokbok-loop")
      set_thread_cpu(tid, loop_cpu, "the event-loop thread");
}

std::string check_placement() {
  const placement& p = current;
  std::vector<thread_seen> all = threads_of(::getpid(), false);
  for (pid_t kid : child_processes()) {
    auto more = threads_of(kid, true);
    all.insert(all.end(), more.begin(), more.end());
  }
  const std::string client = std::to_string(p.client_cpu);
  const std::string server = std::to_string(p.server_cpu);
  // Per CPU list, the roles found there and how many of each.
  std::map<std::string, std::map<std::string, int>> by_cpu;
  std::string wrong;
  for (const thread_seen& t : all) {
    std::string role = t.child ? "child:" + t.name : t.main ? "main" : t.name;
    by_cpu[t.allowed][role]++;
    if (p.mode == pin_mode::none) continue;
    std::string want;
    if (!t.child && t.name == "bokbok-loop")
      want = std::to_string(loop_cpu);
    else if (t.child || t.name == "bokbok-handler" || t.name == "bench-peer")
      want = server;
    else if (t.main || t.name == "bench-caller")
      want = client;
    else if (t.allowed == client || t.allowed == server)
      continue;  // a helper thread (the bench watchdog): either CPU will do
    else
      want = client + " or " + server;
    if (t.allowed != want)
      wrong += " " + role + " may run on CPUs " + t.allowed + ", not " + want + ";";
  }
  if (!wrong.empty()) throw check_failed("placement:" + wrong);
  std::ostringstream out;
  bool first = true;
  for (const auto& [cpus, roles] : by_cpu) {
    out << (first ? "" : "; ") << "CPUs " << cpus << ":";
    first = false;
    for (const auto& [role, n] : roles) out << " " << role << (n > 1 ? " x" + std::to_string(n) : "");
  }
  return out.str();
}

void check_connect_placement() {
  const placement& p = current;
  if (p.mode == pin_mode::none) return;
  const std::string client = std::to_string(p.client_cpu);
  const std::string server = std::to_string(p.server_cpu);
  int loops_on_client = 0, loops_on_server = 0;
  std::string wrong;
  for (const thread_seen& t : threads_of(::getpid(), false)) {
    if (t.name == "bokbok-loop") {
      loops_on_client += t.allowed == client;
      loops_on_server += t.allowed == server;
      if (t.allowed != client && t.allowed != server)
        wrong += " bokbok-loop may run on CPUs " + t.allowed + ";";
    } else if (t.name == "bokbok-handler" && t.allowed != server) {
      wrong += " bokbok-handler may run on CPUs " + t.allowed + ", not " + server + ";";
    }
  }
  if (loops_on_client == 0) wrong += " no bokbok-loop serves the clients on CPU " + client + ";";
  if (loops_on_server == 0) wrong += " no bokbok-loop serves the server on CPU " + server + ";";
  if (!wrong.empty()) throw check_failed("placement of connects/s:" + wrong);
}

}  // namespace bokbok::tools::bench
