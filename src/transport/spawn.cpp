// Starting a child process for exec: and ssh: with Boost.Process (v1; header-only in
// Boost 1.81).
//
// Descriptor hygiene. The child must get its three standard descriptors and nothing
// else of ours: not our sockets, not another connection's pipes, not the application's
// files. Boost 1.81's `limit_handles` would do that but also closes a redirected stdout
// (it closed fds 1 and 2 in our trial), so instead a small exec-setup step marks every
// descriptor above 2 close-on-exec in the child with close_range(CLOSE_RANGE_CLOEXEC)
// (Linux 5.11), falling back to fcntl on each descriptor below the soft RLIMIT_NOFILE
// (capped at 65536). Our pipes are created close-on-exec too, so a child spawned at the
// same moment by another thread (by any means) does not inherit them either.
//
// (glibc 2.36 declares pidfd_open without C linkage for C++, so it is called through
// syscall().)
//
// Socketpair mode (spawn_request::socketpair): one AF_UNIX stream socket is both the
// child's stdin and stdout instead of two pipes, so the connection can pass fds.
//
// The child also gets an empty signal mask: a mask is inherited across exec, and the
// spawning thread may block signals (bokbok's loop thread blocks SIGPIPE).
#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/exe.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/io.hpp>
#include <boost/process/pipe.hpp>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>

#include "bokbok/error.hpp"
#include "transport/child_process.hpp"
#include "transport/child_state.hpp"
#include "transport/ssh_command.hpp"

namespace bokbok::transport {

namespace bp = boost::process;

namespace {

// Runs in the child between fork and exec: only async-signal-safe calls. In socketpair
// mode `stdio_socket` (our child end, close-on-exec) becomes fd 0 and fd 1 (dup2 clears
// close-on-exec on the copies); Boost redirects neither then.
struct child_setup : bp::extend::handler {
  int stdio_socket = -1;
  template <class Executor>
  void on_exec_setup(Executor&) const {
    if (stdio_socket >= 0) {
      ::dup2(stdio_socket, 0);
      ::dup2(stdio_socket, 1);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) == 0) return;
    rlimit rl{};
    int top = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? int(rl.rlim_cur) : 65536;
    for (int fd = 3; fd < top; ++fd) fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
};

struct pipe_pair {
  base::unique_fd read, write;
};

pipe_pair make_pipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0)
    throw transport_error(std::string("bokbok: cannot make a pipe for a child: ") +
                          std::strerror(errno));
  return {base::unique_fd(p[0]), base::unique_fd(p[1])};
}

struct socket_pair {
  base::unique_fd ours, theirs;
};

socket_pair make_socketpair() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
    throw transport_error(std::string("bokbok: cannot make a socketpair for a child: ") +
                          std::strerror(errno));
  return {base::unique_fd(sv[0]), base::unique_fd(sv[1])};
}

base::unique_fd dup_cloexec(int fd) {
  int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (d < 0)
    throw transport_error(std::string("bokbok: cannot duplicate a pipe: ") + std::strerror(errno));
  return base::unique_fd(d);
}

bool is_executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

}  // namespace

std::string find_program(const std::string& name) {
  if (name.empty()) return {};
  if (name.find('/') != std::string::npos) return is_executable_file(name) ? name : "";
  const char* path = std::getenv("PATH");
  std::string_view dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    auto colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (is_executable_file(candidate)) return candidate;
    if (colon == std::string_view::npos) return {};
    dirs.remove_prefix(colon + 1);
  }
}

spawn_request spawn_request_for(const address& addr, const options::child_options& child) {
  spawn_request req;
  req.grace = child.grace;
  req.on_stderr = child.on_stderr;
  if (auto* e = std::get_if<exec_address>(&addr)) {
    req.argv = e->argv;
    req.socketpair = child.socketpair;
  } else {
    req.argv = ssh_command(std::get<ssh_address>(addr), child.ssh_options);
    req.keep_stderr_tail = true;  // ssh's own errors explain a failed connection
    req.is_ssh = true;
  }
  return req;
}

child_process::spawned child_process::spawn(spawn_request req, std::shared_ptr<io::loop> loop) {
  if (req.argv.empty()) throw transport_error("bokbok: no command to run");
  std::string exe = find_program(req.argv.front());
  if (exe.empty())
    throw transport_error("bokbok: cannot run \"" + req.argv.front() + "\": " +
                          (req.argv.front().find('/') != std::string::npos
                               ? "no such executable file"
                               : "not found on PATH"));
  bool capture = req.on_stderr || req.keep_stderr_tail;
  pipe_pair err;
  if (capture) err = make_pipe();
  std::vector<std::string> args(req.argv.begin() + 1, req.argv.end());
  std::error_code ec;
  bp::child c;
  spawned s;
  // Boost's pipe objects close what they hold: hand them duplicates, keep ours.
  auto err_pipe = [&] {
    return bp::pipe(dup_cloexec(err.read.get()).release(), dup_cloexec(err.write.get()).release());
  };
  if (req.socketpair) {
    socket_pair sp = make_socketpair();
    child_setup setup;
    setup.stdio_socket = sp.theirs.get();
    if (capture) {
      bp::pipe errp = err_pipe();
      c = bp::child(bp::exe = exe, bp::args = args, bp::std_err > errp, setup, ec);
    } else {
      c = bp::child(bp::exe = exe, bp::args = args, setup, ec);
    }
    s.from_child = std::move(sp.ours);  // read and written: to_child stays empty
  } else {
    auto to_child = make_pipe(), from_child = make_pipe();
    bp::pipe in(dup_cloexec(to_child.read.get()).release(), dup_cloexec(to_child.write.get()).release());
    bp::pipe out(dup_cloexec(from_child.read.get()).release(),
                 dup_cloexec(from_child.write.get()).release());
    if (capture) {
      bp::pipe errp = err_pipe();
      c = bp::child(bp::exe = exe, bp::args = args, bp::std_in < in, bp::std_out > out,
                    bp::std_err > errp, child_setup{}, ec);
    } else {
      c = bp::child(bp::exe = exe, bp::args = args, bp::std_in < in, bp::std_out > out,
                    child_setup{}, ec);
    }
    s.from_child = std::move(from_child.read);
    s.to_child = std::move(to_child.write);
  }
  if (ec)
    throw transport_error("bokbok: cannot run \"" + exe + "\": " + ec.message());
  int pid = c.id();
  c.detach();  // we reap it ourselves (child_process.cpp); its destructor must not kill it

  auto st = std::make_shared<state>();
  st->pid = pid;
  st->pidfd = base::unique_fd(int(syscall(SYS_pidfd_open, pid, 0u)));  // -1 (ENOSYS): the polling fallback
  st->grace = req.grace;
  st->on_stderr = std::move(req.on_stderr);
  st->keep_tail = req.keep_stderr_tail;
  st->is_ssh = req.is_ssh;
  if (capture) {
    st->stderr_pipe = std::move(err.read);
    // The loop reads it; only our end (its own open file description) is non-blocking.
    ::fcntl(st->stderr_pipe.get(), F_SETFL, ::fcntl(st->stderr_pipe.get(), F_GETFL) | O_NONBLOCK);
  }
  st->loop = loop;
  st->keep = st;
  // Watched from the loop's next turn (the child may exit before: its pidfd is readable
  // then, and the loop reaps it at once).
  loop->post([st] { st->start_watching(); });

  s.child = std::make_shared<child_process>(std::move(st));
  return s;
}

}  // namespace bokbok::transport
