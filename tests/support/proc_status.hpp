// Test support: what /proc/PID/status says of a process (resident memory, threads), read
// once or sampled on a thread of its own for the highest value seen; whether a thread
// of this process sleeps.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace bokbok_test {

// The number after `field` ("VmRSS:", "VmHWM:", "Threads:") in /proc/PID/status: KiB for
// the Vm fields, a count for Threads. -1 when the process or the field is gone.
inline long proc_status(pid_t pid, const char* field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  const std::size_t n = std::strlen(field);
  while (std::getline(in, line))
    if (line.compare(0, n, field) == 0) return std::stol(line.substr(n));
  return -1;
}

// Until thread `tid` of this process (0: not known yet) is asleep (State S), per
// /proc/self/task; bounded by `limit`. For a test that must act once another thread
// blocks in a system call, without guessing how long that takes.
inline bool wait_until_sleeping(const std::atomic<long>& tid, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (const long t = tid.load(); t != 0) {
      std::ifstream status("/proc/self/task/" + std::to_string(t) + "/status");
      for (std::string line; std::getline(status, line);)
        if (line.starts_with("State:") && line.find('S') != std::string::npos) return true;
    }
    std::this_thread::yield();
  }
  return false;
}

// Threads of every process whose real uid is `uid`, from /proc/*/status: what the kernel
// counts against that user's RLIMIT_NPROC (processes that end meanwhile are skipped).
inline long threads_of_user(uid_t uid) {
  long total = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(e.path() / "status");
    std::string line;
    long threads = 0;
    bool theirs = false;
    while (std::getline(in, line)) {
      if (line.compare(0, 4, "Uid:") == 0) theirs = std::stoul(line.substr(4)) == uid;
      if (line.compare(0, 8, "Threads:") == 0) threads = std::stol(line.substr(8));
    }
    if (theirs) total += threads;
  }
  return total;
}

// Samples a process's VmRSS and Threads every few milliseconds, on a thread of its own,
// from construction until stop() (or destruction), keeping the highest of each. Reading
// the maxima is thread-safe.
class status_sampler {
 public:
  explicit status_sampler(pid_t pid) : pid_(pid) {
    sample();
    thread_ = std::thread([this] {
      // Bounded: a test stops it; 10 minutes of samples at most otherwise.
      for (int i = 0; !stop_ && i < 120'000; ++i) {
        sample();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));  // a sampling period
      }
    });
  }
  ~status_sampler() { stop(); }
  status_sampler(const status_sampler&) = delete;
  status_sampler& operator=(const status_sampler&) = delete;
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  long max_rss_kib() const { return rss_; }
  long max_threads() const { return threads_; }

 private:
  void sample() {
    long r = proc_status(pid_, "VmRSS:"), t = proc_status(pid_, "Threads:");
    rss_ = std::max(rss_.load(), r);
    threads_ = std::max(threads_.load(), t);
  }
  pid_t pid_;
  std::atomic<long> rss_{-1}, threads_{-1};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace bokbok_test
