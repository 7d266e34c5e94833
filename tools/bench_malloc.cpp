// `bokbok bench`, malloc settings: the bulk figure with glibc's malloc keeping big blocks.
//
// As it comes, glibc serves a block of 128 KiB or more with mmap and gives it back to
// the kernel when it is freed (page faults on the next one) until its dynamic threshold
// has risen past the sizes in use; the trim threshold likewise returns the top of the
// heap. A program that moves 1 MiB messages sees both. `--malloc keep` raises the two
// thresholds (mallopt, which also turns the dynamic one off) so big blocks stay in the
// heap; since that cannot be undone, a default run measures it in a second run of this
// program, started here with fork and exec, and prints that run's bulk lines.
#include "bench.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace bokbok::tools::bench {
namespace {

constexpr int mmap_threshold = 64 << 20;
constexpr int trim_threshold = 256 << 20;

// The CPUs this process could run on before set_placement() pinned its main thread:
// the second run chooses its own placement from them.
cpu_set_t& original_cpus() {
  static cpu_set_t set = [] {
    cpu_set_t s;
    CPU_ZERO(&s);
    if (::sched_getaffinity(0, sizeof s, &s) != 0) CPU_ZERO(&s);
    return s;
  }();
  return set;
}

}  // namespace

void remember_cpus() { (void)original_cpus(); }

void keep_big_blocks() {
  ::mallopt(M_MMAP_THRESHOLD, mmap_threshold);
  ::mallopt(M_TRIM_THRESHOLD, trim_threshold);
}

void run_bulk_with_big_blocks_kept(const settings& s, std::string_view t) {
  std::vector<std::string> args = {"bokbok", "bench", "--only", "bulk", "--malloc", "keep",
                                   "--transport", std::string(t)};
  if (!s.seconds_arg.empty()) args.insert(args.end(), {"--seconds", s.seconds_arg});
  if (!s.pin_arg.empty()) args.insert(args.end(), {"--pin", s.pin_arg});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0)
    throw check_failed(std::string("bulk with big blocks kept: pipe: ") + std::strerror(errno));
  std::fflush(stdout);
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(out[0]);
    ::close(out[1]);
    throw check_failed(std::string("bulk with big blocks kept: fork: ") + std::strerror(errno));
  }
  if (pid == 0) {  // only async-signal-safe calls until exec
    ::dup2(out[1], STDOUT_FILENO);
    ::sched_setaffinity(0, sizeof(cpu_set_t), &original_cpus());
    ::execv("/proc/self/exe", argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw check_failed("bulk with big blocks kept: the second run failed (status " +
                       std::to_string(status) + ")");
  // Its figure lines, as they are.
  std::size_t pos = 0;
  bool any = false;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    if (line.find("bulk-1MiB") != std::string_view::npos && line.starts_with(t)) {
      std::printf("%.*s\n", int(line.size()), line.data());
      any = true;
    }
    pos = end + 1;
  }
  std::fflush(stdout);
  if (!any) throw check_failed("bulk with big blocks kept: the second run printed no figure");
}

}  // namespace bokbok::tools::bench
