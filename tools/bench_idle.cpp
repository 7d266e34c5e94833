// `bokbok bench`, the memory of idle connections (unix): a bokbok::server in a child
// process (this program re-run as `bokbok bench --idle-server ADDRESS plain|key|raw`)
// while this process holds N connections to it, each opened, used for one tiny call and
// left idle. The figure is the growth of the child's resident memory (VmRSS, read from
// /proc) per connection, measured after one warm-up connection so that what is made
// once (threads, the loop's lent buffers, allocator arenas) is not counted. The raw
// baseline is the same child holding N accepted sockets and nothing else: what a
// connection costs a process that keeps no state for it (its descriptor table).
//
// The child stops when its stdin (a pipe from this process) reaches end of file.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench.hpp"

extern char** environ;

namespace bokbok::tools::bench {
namespace {

constexpr std::size_t idle_connections = 2'000;
constexpr std::size_t idle_connections_quick = 300;

// Not a secret: both processes of the bench use it, for key mode's figure only.
key bench_key() {
  std::array<unsigned char, key::size> bytes{};
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(i * 7 + 1);
  return key::from_bytes(bytes);
}

// The resident memory of `pid` in bytes (VmRSS), or -1.
long long resident_bytes(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return -1;
}

// The child, started with its stdin on a pipe; ended (stdin closed, then reaped) with
// the object.
class idle_server_child {
 public:
  idle_server_child(const std::string& name, std::string_view kind) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw check_failed("pipe: " + std::string(std::strerror(errno)));
    stdin_write_ = fds[1];
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[0], STDIN_FILENO);
    const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
    std::vector<std::string> argv = {self, "bench", "--idle-server", name, std::string(kind)};
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    int r = ::posix_spawn(&pid_, self.c_str(), &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[0]);
    if (r != 0) {
      ::close(stdin_write_);
      throw check_failed("spawning the idle server: " + std::string(std::strerror(r)));
    }
  }
  ~idle_server_child() {
    ::close(stdin_write_);  // its end of file: the child leaves
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  idle_server_child(const idle_server_child&) = delete;
  idle_server_child& operator=(const idle_server_child&) = delete;
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int stdin_write_ = -1;
};

// Blocks until stdin reaches end of file (the bench is done with this child).
void wait_for_stdin_end() {
  char c;
  for (;;) {
    ssize_t r = ::read(STDIN_FILENO, &c, 1);
    if (r == 0 || (r < 0 && errno != EINTR)) return;
  }
}

// The raw child: accepts and holds every connection, reading nothing.
int serve_raw_idle(const std::string& name) {
  socklen_t len = 0;
  sockaddr_un addr = abstract_address(name, len);
  const int l = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l < 0 || ::bind(l, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(l, 512) != 0)
    return 1;
  std::thread([l] {
    std::vector<int> held;
    for (;;) {
      int c = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
      if (c >= 0) held.push_back(c);
      else if (errno != EINTR && errno != ECONNABORTED) return;
    }
  }).detach();
  wait_for_stdin_end();
  return 0;
}

// Connects to the child, bounded: it may not be listening yet (it says nothing when it
// is, so this polls, as a client of a freshly started server would).
template <typename Fn>
auto when_up(Fn connect_once) -> decltype(connect_once()) {
  auto give_up = clock_type::now() + std::chrono::seconds(10);
  for (;;) {
    try {
      return connect_once();
    } catch (const std::exception&) {
      if (clock_type::now() > give_up) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling for a child's start
    }
  }
}

int raw_connect(const std::string& name) {
  socklen_t len = 0;
  sockaddr_un addr = abstract_address(name, len);
  int c = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c < 0 || ::connect(c, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    int err = errno;
    if (c >= 0) ::close(c);
    throw check_failed("raw connect: " + std::string(std::strerror(err)));
  }
  return c;
}

std::size_t connections_to_open(const settings& s) {
  const std::size_t want = s.figure_time.count() < 1 ? idle_connections_quick : idle_connections;
  rlimit r{};
  ::getrlimit(RLIMIT_NOFILE, &r);
  r.rlim_cur = r.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &r);  // the child inherits it
  ::getrlimit(RLIMIT_NOFILE, &r);
  const std::size_t room = r.rlim_cur > 200 ? std::size_t(r.rlim_cur - 200) : 0;
  if (room < 100) throw check_failed("idle memory: RLIMIT_NOFILE too low");
  return std::min(want, room);
}

double per_connection(long long before, long long after, std::size_t n) {
  if (before < 0 || after < 0) throw check_failed("idle memory: cannot read VmRSS");
  return double(std::max(after - before, 0LL)) / double(n);
}

double raw_idle_bytes(std::size_t n) {
  const std::string name = unique_name("idle-raw");
  idle_server_child child(name, "raw");
  std::vector<int> held;
  held.push_back(when_up([&] { return raw_connect(name); }));
  const long long before = resident_bytes(child.pid());
  for (std::size_t i = 0; i < n; ++i) held.push_back(raw_connect(name));
  // The child accepts on its own thread: wait (bounded) until it holds them all.
  auto give_up = clock_type::now() + std::chrono::seconds(10);
  auto open_in_child = [&] {
    std::size_t fds = 0;
    for ([[maybe_unused]] const auto& e :
         std::filesystem::directory_iterator("/proc/" + std::to_string(child.pid()) + "/fd"))
      ++fds;
    return fds;
  };
  while (open_in_child() < n + 1 && clock_type::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling another process
  const long long after = resident_bytes(child.pid());
  for (int fd : held) ::close(fd);
  return per_connection(before, after, n);
}

double bokbok_idle_bytes(std::size_t n, bool keys) {
  const std::string name = unique_name(keys ? "idle-key" : "idle-plain");
  idle_server_child child(name, keys ? "key" : "plain");
  options o;
  if (keys) {
    o.keys.user = "bench";
    o.keys.key = std::make_shared<const key>(bench_key());
  }
  const std::string address = "unix:@" + name;
  const message ping{"idle"};
  auto open_one = [&] {
    connection c = connect(address, o);
    if (c.request(ping) != ping) throw check_failed("idle memory: wrong answer");
    return c;
  };
  std::vector<connection> held;
  held.push_back(when_up(open_one));  // the warm-up: what is made once
  const long long before = resident_bytes(child.pid());
  for (std::size_t i = 0; i < n; ++i) held.push_back(open_one());
  const long long after = resident_bytes(child.pid());
  for (auto& c : held) c.abort();
  for (auto& c : held) c.wait_closed();
  return per_connection(before, after, n);
}

}  // namespace

int serve_idle_server(const std::string& name, std::string_view kind) {
  if (kind == "raw") return serve_raw_idle(name);
  if (kind != "plain" && kind != "key") throw usage_error("--idle-server wants plain, key or raw");
  server_options so;
  so.listen = {"unix:@" + name};
  so.max_connections = 100'000;
  so.on_request = [](connection&, message request) { return request; };
  if (kind == "key") {
    auto k = std::make_shared<const key>(bench_key());
    so.keys.key_for_user = [k](std::string_view user) -> std::optional<key> {
      if (user != "bench") return std::nullopt;
      return k->clone();
    };
  }
  server srv(so);
  srv.start();
  wait_for_stdin_end();
  srv.stop(std::chrono::seconds(2));
  srv.wait();
  return 0;
}

idle_memory measure_idle_memory(const settings& s) {
  idle_memory m;
  m.connections = connections_to_open(s);
  m.raw = raw_idle_bytes(m.connections);
  m.plain = bokbok_idle_bytes(m.connections, false);
  m.keyed = bokbok_idle_bytes(m.connections, true);
  return m;
}

}  // namespace bokbok::tools::bench
