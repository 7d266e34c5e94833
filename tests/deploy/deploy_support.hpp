// Test support for the deployment tests: real programs (systemd-socket-activate, inetd,
// xinetd, the demo server, `bokbok call`) started as child processes, and real clients
// over loopback TCP and UNIX sockets. Every wait is bounded; nothing sleeps to hide a race
// (a readiness wait waits for the program to say it is ready, or for its pidfd).
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <bokbok/bokbok.hpp>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace deploy_test {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

inline std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

inline std::string env_or_throw(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) throw std::runtime_error(std::string(name) + " is not set (run through meson test)");
  return v;
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_file(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

inline std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  for (std::size_t at = 0; (at = s.find(from, at)) != std::string::npos; at += to.size())
    s.replace(at, from.size(), to);
  return s;
}

inline std::size_t count_of(std::string_view text, std::string_view what) {
  std::size_t n = 0;
  for (std::size_t at = 0; (at = text.find(what, at)) != std::string_view::npos; at += what.size())
    ++n;
  return n;
}

inline std::string current_user() {
  if (passwd* pw = ::getpwuid(::geteuid())) return pw->pw_name;
  throw std::runtime_error("no passwd entry for uid " + std::to_string(::geteuid()));
}

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it. Short, so a
// UNIX socket path inside it fits in sun_path.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/bokbok-deploy-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error(errno_text("mkdtemp"));
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// A loopback TCP port that was free a moment ago (bound to port 0, then closed). Another
// program may take it before ours binds it: callers retry a bounded number of times.
inline unsigned short free_tcp_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(errno_text("socket"));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) < 0) {
    ::close(fd);
    throw std::runtime_error(errno_text("bind 127.0.0.1:0"));
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

// Whether process `pid` holds a socket listening on 127.0.0.1:`port` (from /proc): proof
// that a superserver bound the port itself, since some (openbsd-inetd) say they added a
// service even when its bind failed.
inline bool listens_on(pid_t pid, unsigned short port) {
  std::ifstream tcp("/proc/net/tcp");
  char local[32];
  std::snprintf(local, sizeof local, "0100007F:%04X", port);
  std::vector<std::string> inodes;
  std::string line;
  std::getline(tcp, line);  // header
  while (std::getline(tcp, line)) {
    std::istringstream f(line);
    std::string slot, loc, rem, st, queues, timer, retr, uid, timeout, inode;
    f >> slot >> loc >> rem >> st >> queues >> timer >> retr >> uid >> timeout >> inode;
    if (loc == local && st == "0A") inodes.push_back("socket:[" + inode + "]");
  }
  if (inodes.empty()) return false;
  std::error_code ec;
  for (auto& fd : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    auto target = std::filesystem::read_symlink(fd.path(), ec);
    if (ec) continue;
    for (auto& i : inodes)
      if (target.string() == i) return true;
  }
  return false;
}

// The connected socket; throws with the errno text when the connection fails.
inline int connect_tcp(unsigned short port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(errno_text("socket"));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
    std::string why = errno_text("connect 127.0.0.1:" + std::to_string(port));
    ::close(fd);
    throw std::runtime_error(why);
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

inline int connect_unix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(errno_text("socket"));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) throw std::runtime_error("socket path too long: " + path);
  std::memcpy(a.sun_path, path.data(), path.size());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
    std::string why = errno_text("connect " + path);
    ::close(fd);
    throw std::runtime_error(why);
  }
  return fd;
}

// Waits for a process to exit without reaping it: true when it has, false after `limit`.
inline bool wait_pidfd(int pidfd, std::chrono::milliseconds limit) {
  pollfd p{pidfd, POLLIN, 0};
  auto deadline = clock::now() + limit;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    int r = ::poll(&p, 1, static_cast<int>(std::max<long long>(0, left.count())));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

inline std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + ::strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// A child process in its own process group, stdin from /dev/null, stdout and stderr into
// one pipe that a thread drains into output() (so the child never blocks on a full pipe,
// and a failing test can show what it said). Stopping signals the whole group: the
// program and any children it spawned (systemd-socket-activate --accept's servers).
class process {
 public:
  explicit process(std::vector<std::string> argv, std::vector<std::string> extra_env = {})
      : argv_(std::move(argv)) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) < 0) throw std::runtime_error(errno_text("pipe2"));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, out[1], 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    for (int s : {SIGPIPE, SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2})
      sigaddset(&defaults, s);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
    for (auto& e : extra_env) env.push_back(e);
    std::vector<char*> args, envp;
    for (auto& a : argv_) args.push_back(a.data());
    args.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    int rc = ::posix_spawn(&pid_, args[0], &fa, &attr, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    ::close(out[1]);
    if (rc != 0) {
      ::close(out[0]);
      throw std::runtime_error("cannot start " + argv_[0] + ": " + std::strerror(rc));
    }
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    if (pidfd_ < 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      ::close(out[0]);
      throw std::runtime_error(errno_text("pidfd_open"));
    }
    if (::pipe2(wake_, O_CLOEXEC) < 0) throw std::runtime_error(errno_text("pipe2"));
    out_ = out[0];
    reader_ = std::thread([this] { drain(); });
  }
  process(const process&) = delete;
  process& operator=(const process&) = delete;
  ~process() { stop(); }

  pid_t pid() const { return pid_; }
  std::string name() const { return argv_[0]; }

  std::string output() const {
    std::lock_guard lock(mutex_);
    return output_;
  }

  // Waits until `what` has appeared `times` times in the output. False when the program
  // exited first (and did not say it) or after `limit`.
  bool wait_for_output(std::string_view what, std::size_t times = 1,
                       std::chrono::milliseconds limit = 10s) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, limit, [&] {
      return count_of(output_, what) >= times || exited_ || eof_;
    }) && count_of(output_, what) >= times;
  }

  // Waits up to `limit` for the program to exit by itself; its wait status, or none.
  std::optional<int> wait_exit(std::chrono::milliseconds limit) {
    if (status_) return status_;
    if (!wait_pidfd(pidfd_, limit)) return std::nullopt;
    reap();
    return status_;
  }

  // Ends the program and its process group: SIGTERM, up to `grace` for it to exit, then
  // SIGKILL. Returns its wait status. Idempotent.
  int stop(std::chrono::milliseconds grace = 5s) {
    if (!status_) {
      ::kill(-pid_, SIGTERM);
      if (!wait_pidfd(pidfd_, grace)) ::kill(-pid_, SIGKILL);
      reap();
    }
    // Whatever is left of the group (children that ignored SIGTERM) goes too.
    ::kill(-pid_, SIGKILL);
    finish_reader();
    return *status_;
  }

  // What a failed test shows about this program.
  std::string report() const {
    std::string s = "---- " + argv_[0];
    for (std::size_t i = 1; i < argv_.size(); ++i) s += " " + argv_[i];
    s += "\n";
    if (status_) s += "(" + describe_status(*status_) + ")\n";
    return s + output() + "\n----";
  }

 private:
  void reap() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    status_ = status;
    std::lock_guard lock(mutex_);
    exited_ = true;
    changed_.notify_all();
  }

  void drain() {
    char buf[4096];
    bool watch_exit = true;
    for (;;) {
      pollfd p[3] = {{out_, POLLIN, 0}, {wake_[0], POLLIN, 0}, {pidfd_, POLLIN, 0}};
      int r = ::poll(p, watch_exit ? 3 : 2, -1);
      if (r < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (p[0].revents) {
        ssize_t n = ::read(out_, buf, sizeof buf);
        if (n > 0) {
          std::lock_guard lock(mutex_);
          output_.append(buf, static_cast<std::size_t>(n));
          changed_.notify_all();
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        break;  // EOF: every writer has gone
      }
      if (watch_exit && p[2].revents) {
        watch_exit = false;
        std::lock_guard lock(mutex_);
        exited_ = true;
        changed_.notify_all();
      }
      if (p[1].revents) break;
    }
    std::lock_guard lock(mutex_);
    eof_ = true;
    changed_.notify_all();
  }

  void finish_reader() {
    if (!reader_.joinable()) return;
    // The group is gone, so the pipe reaches EOF; anything outside the group still
    // holding it (it should not) cannot keep the test waiting past this bound.
    {
      std::unique_lock lock(mutex_);
      changed_.wait_for(lock, 2s, [&] { return eof_; });
    }
    (void)!::write(wake_[1], "x", 1);
    reader_.join();
    ::close(out_);
    ::close(wake_[0]);
    ::close(wake_[1]);
    ::close(pidfd_);
  }

  std::vector<std::string> argv_;
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int out_ = -1;
  int wake_[2] = {-1, -1};
  std::optional<int> status_;
  std::thread reader_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::string output_;
  bool exited_ = false;
  bool eof_ = false;
};

// Runs a program to completion (bounded by `limit`, then killed) and returns its wait
// status and output (stdout and stderr together, in order).
struct run_result {
  int status = -1;
  std::string output;
  bool ok() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
  int exit_code() const { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }
};

inline run_result run(std::vector<std::string> argv, std::chrono::milliseconds limit = 30s,
                      std::vector<std::string> extra_env = {}) {
  process p(std::move(argv), std::move(extra_env));
  run_result r;
  auto status = p.wait_exit(limit);
  r.status = status ? *status : p.stop(1s);
  p.stop();
  r.output = p.output();
  if (!status) r.output += "\n(killed: still running after " + std::to_string(limit.count()) + " ms)";
  return r;
}

// `bokbok call ADDRESS FIELD...` with its stdout alone, stderr separate.
struct call_result {
  int status = -1;
  std::string out;
  std::string err;
  int exit_code() const { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }
};

inline call_result bokbok_call(const std::string& address, std::vector<std::string> fields,
                               std::chrono::milliseconds limit = 20s) {
  temp_dir dir;
  std::string out = dir / "out", err = dir / "err";
  std::vector<std::string> argv = {env_or_throw("BOKBOK_TOOL"), "call", address};
  for (auto& f : fields) argv.push_back(std::move(f));
  // The shell only redirects; the tool's own exit status comes back unchanged.
  std::string cmd = "exec \"$0\" \"$@\" >'" + out + "' 2>'" + err + "'";
  std::vector<std::string> sh = {"/bin/sh", "-c", cmd};
  sh.insert(sh.end(), argv.begin(), argv.end());
  run_result r = run(sh, limit);
  call_result c;
  c.status = r.status;
  c.out = read_file(out);
  c.err = read_file(err) + r.output;
  return c;
}

// --- bokbok clients ---------------------------------------------------------------

// A client that answers the demo server's `callback I` requests with `called I`, and
// counts them.
// `hold`, when set, runs inside the callback handler before it answers: a test uses it to
// keep this client's call open inside the server while another client is served.
struct client_state {
  std::atomic<int> callbacks{0};
  std::function<void()> hold;
};

inline bokbok::options client_options(client_state& state) {
  bokbok::options o;
  o.on_request = [&state](bokbok::connection&, bokbok::message m) -> bokbok::message {
    if (m.size() == 2 && m[0] == "callback") {
      ++state.callbacks;
      if (state.hold) state.hold();
      return {"called", m[1]};
    }
    throw std::runtime_error("the test client has no method " + (m.empty() ? "" : m[0]));
  };
  o.connect_timeout = 10s;
  return o;
}

// A connected client: its own socket, opened here, handed to the library.
struct client {
  client_state state;
  std::optional<bokbok::connection> conn;

  static std::unique_ptr<client> over_fd(int fd, const std::string& peer) {
    auto c = std::make_unique<client>();
    c->conn.emplace(bokbok::connect_fds(fd, fd, client_options(c->state), peer));
    return c;
  }
  static std::unique_ptr<client> tcp(unsigned short port) {
    return over_fd(connect_tcp(port), "tcp:127.0.0.1:" + std::to_string(port));
  }
  static std::unique_ptr<client> unix(const std::string& path) {
    return over_fd(connect_unix(path), "unix:" + path);
  }
  bokbok::message call(bokbok::message m) { return conn->request(std::move(m)); }
  ~client() {
    if (conn) conn->close();
  }
};

// The demo server's methods, checked: "" when all went as they should, else what did not.
inline std::string exercise(client& c, const std::string& tag, int callbacks = 3) {
  std::string problems;
  auto expect = [&](const char* what, const bokbok::message& got, const bokbok::message& want) {
    if (got != want) {
      problems += std::string(what) + ": got [";
      for (auto& f : got) problems += "'" + f + "' ";
      problems += "]\n";
    }
  };
  try {
    expect("ping", c.call({"ping", tag}), {"pong", tag});
    expect("echo", c.call({"echo", tag, "", std::string("\0\xff", 2)}),
           {tag, "", std::string("\0\xff", 2)});
    int before = c.state.callbacks;
    expect("callback", c.call({"callback", std::to_string(callbacks)}),
           {"did", std::to_string(callbacks)});
    if (c.state.callbacks - before != callbacks)
      problems += "callback: the server called back " +
                  std::to_string(c.state.callbacks - before) + " times, not " +
                  std::to_string(callbacks) + "\n";
    try {
      c.call({"fail", "on purpose " + tag});
      problems += "fail: no error\n";
    } catch (const bokbok::remote_error& e) {
      if (std::string(e.what()).find("on purpose " + tag) == std::string::npos)
        problems += std::string("fail: wrong message: ") + e.what() + "\n";
    }
  } catch (const std::exception& e) {
    problems += std::string("call failed: ") + e.what() + "\n";
  }
  return problems;
}

// Two clients served at once, proved without timing: A's `callback 1` is held inside
// A's callback handler (so A's call stays open in the server) until B has run every
// method. A server that served one connection at a time could not answer B, and A's hold
// gives up after a bound. "" when all went well.
inline std::string two_at_once(client& a, client& b) {
  std::promise<void> entered, released;
  auto entered_f = entered.get_future();
  std::shared_future<void> released_f = released.get_future().share();
  std::atomic<bool> once{false};
  a.state.hold = [&, released_f] {
    if (!once.exchange(true)) entered.set_value();
    if (released_f.wait_for(15s) != std::future_status::ready)
      throw std::runtime_error("the other client was not served while this call was open");
  };
  auto a_call = a.conn->request_async({"callback", "1"});
  std::string problems;
  if (entered_f.wait_for(15s) != std::future_status::ready) {
    problems += "A's call never reached its callback\n";
  } else {
    std::string b_problems = exercise(b, "b-while-a-waits");
    if (!b_problems.empty()) problems += "B, while A's call was open: " + b_problems;
  }
  released.set_value();
  if (a_call.wait_for(20s) != std::future_status::ready) {
    problems += "A's call did not finish\n";
  } else {
    try {
      auto got = a_call.get();
      if (got != bokbok::message{"did", "1"}) problems += "A's callback 1: wrong answer\n";
    } catch (const std::exception& e) {
      problems += std::string("A's callback 1 failed: ") + e.what() + "\n";
    }
  }
  a.state.hold = nullptr;
  return problems;
}

// Runs `body(i)` on `n` threads at once (all started before any runs) and returns what
// each reported ("" for success), joined.
inline std::string in_parallel(int n, const std::function<std::string(int)>& body) {
  std::vector<std::string> results(static_cast<std::size_t>(n));
  std::mutex m;
  std::condition_variable cv;
  int ready = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      {
        std::unique_lock lock(m);
        ++ready;
        cv.notify_all();
        cv.wait(lock, [&] { return ready == n; });
      }
      try {
        results[static_cast<std::size_t>(i)] = body(i);
      } catch (const std::exception& e) {
        results[static_cast<std::size_t>(i)] = std::string("threw: ") + e.what();
      }
    });
  for (auto& t : threads) t.join();
  std::string all;
  for (int i = 0; i < n; ++i)
    if (!results[static_cast<std::size_t>(i)].empty())
      all += "client " + std::to_string(i) + ": " + results[static_cast<std::size_t>(i)] + "\n";
  return all;
}

}  // namespace deploy_test
