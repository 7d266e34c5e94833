// spinning: a blocking caller looks for its answer for a few microseconds before it
// parks, when another CPU can be making that answer.
//
// Why: when the peer runs on another CPU, a tiny call's answer comes back in about
// 30 µs, and waking a parked thread across CPUs costs about 20 µs more on these machines
// (a futex wake, an inter-processor interrupt, a context switch): the pool handler's
// round trip on two CPUs was 1.3 times raw's. A caller that spins until the answer is
// in takes it without that cost.
//
// Spinning only helps when the answer is being made elsewhere meanwhile, and costs a
// CPU while it lasts, so it is bounded four ways:
// - by time: `limit` (options::caller_spin; zero: never);
// - by CPUs: never on a machine with one CPU online (what it waits for needs that CPU;
//   asked once per process). A caller pinned to one CPU may still wait on a peer on
//   another, so its own affinity does not say; where both share one CPU the back-off
//   below makes the cost small;
// - by threads: only a caller that is the process's one blocked caller spins (with many
//   callers the CPUs have other work: 16 callers spinning in turn took the CPU their
//   requests needed, and cut their throughput by half);
// - by success: a thread whose spin ran out (the answer was slow, or made on this
//   very CPU) skips its next 1, 2, 4, ... up to 1024 waits' spinning; one that succeeds
//   spins again next time. So where spinning never pays (caller and peer sharing one
//   CPU) one call in a thousand spins: too few to show even in the 99th percentile.
//
// Use: a `spinning` object for the whole wait (it counts the blocked callers), then
// spin_until, then park. The CPU count is an argument (the machine's by default) so that
// a test can state the one-CPU rule on any machine.
//
// Threads: any thread, for itself (the back-off is per thread); spin_until never
// blocks and never throws.
#pragma once

#include <unistd.h>

#include <atomic>
#include <chrono>

namespace bokbok::base {

class spinning {
 public:
  // This thread is a blocked caller until the object goes. `cpus_online`: how many CPUs
  // the machine has online (asked once per process by default).
  explicit spinning(long cpus_online = machine_cpus_online()) noexcept
      : alone_(waiters().fetch_add(1, std::memory_order_relaxed) == 0),
        other_cpus_(cpus_online > 1) {}
  ~spinning() { waiters().fetch_sub(1, std::memory_order_relaxed); }
  spinning(const spinning&) = delete;
  spinning& operator=(const spinning&) = delete;

  // Spins until ready() is true or `limit` has passed, unless one of the bounds above
  // says not to (then returns at once). True when ready() was seen true.
  template <typename Ready>
  bool spin_until(Ready ready, std::chrono::nanoseconds limit) {
    if (limit <= std::chrono::nanoseconds::zero() || !alone_) return false;
    per_thread& me = mine();
    if (me.skip > 0) {
      --me.skip;
      return false;
    }
    if (!other_cpus_) return false;
    const auto end = std::chrono::steady_clock::now() + limit;
    bool seen = false;
    for (unsigned i = 0;; ++i) {
      if (ready()) {
        seen = true;
        break;
      }
      // The clock (a vDSO call) is read every 16 looks, and only while no other caller
      // has come to wait meanwhile; a pause between looks lets the sibling hyperthread
      // run and saves power.
      if ((i & 15) == 15 && (std::chrono::steady_clock::now() >= end ||
                             waiters().load(std::memory_order_relaxed) > 1))
        break;
      pause();
    }
    if (seen) {
      me.backoff = 0;
    } else {
      me.backoff = me.backoff == 0 ? 1 : (me.backoff >= max_skip ? max_skip : me.backoff * 2);
      me.skip = me.backoff;
    }
    return seen;
  }

 private:
  static constexpr unsigned max_skip = 1024;
  const bool alone_;       // no other caller waited when this one began
  const bool other_cpus_;  // another CPU may be making the answer meanwhile

  struct per_thread {
    unsigned skip = 0;     // waits left that do not spin (after a spin that ran out)
    unsigned backoff = 0;  // the last skip given
  };

  static per_thread& mine() {
    thread_local per_thread p;
    return p;
  }

  // Blocked callers of the process (in a spinning scope) at this moment.
  static std::atomic<unsigned>& waiters() {
    static std::atomic<unsigned> n{0};
    return n;
  }

  static long machine_cpus_online() {
    static const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    return n;
  }

  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }
};

}  // namespace bokbok::base
