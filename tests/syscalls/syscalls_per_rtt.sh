#!/usr/bin/env bash
# Syscalls per tiny round trip, on each backend, counted with `strace -c -f` (counts,
# not time). rtt_probe makes N tiny calls between two connections on a socketpair, the
# handler on a handler thread (inline with RTT_PROBE_INLINE=1); it runs twice, with N1
# and N2 calls, and the cost of one round trip is (calls(N2) - calls(N1)) / (N2 - N1): what starting, connecting
# and closing cost cancels out. Each backend is measured REPS times (default 3) and the
# median reported.
# Usage: syscalls_per_rtt.sh PROBE [MAX_RATIO]
#   Prints the figure for io_uring and epoll and their ratio, all system calls counted
#   (the issue's figure) and without futex. The futex share is the caller and handler
#   threads sleeping and waking, which depends on scheduling (under load the total ratio
#   was seen anywhere from 1.08 to 1.36), so what is asserted is the part the engine
#   decides: with MAX_RATIO, fails (exit 1) when epoll / io_uring without futex exceeds
#   it, or when epoll still calls epoll_ctl on a round trip (it registers an fd once).
#   Exit 77 (skipped) when strace is missing or cannot trace here.
set -euo pipefail
probe=${1:?usage: syscalls_per_rtt.sh PROBE [MAX_RATIO]}
max_ratio=${2:-}
n1=${N1:-200}
n2=${N2:-2200}

command -v strace >/dev/null || { echo "strace is not installed (tools/install-deps.sh)"; exit 77; }
strace -f -o /dev/null true 2>/dev/null || { echo "strace cannot trace here (ptrace refused)"; exit 77; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# run BACKEND REP N: one probe run of N calls under strace, its summary kept.
run() {
  BOKBOK_BACKEND=$1 strace -f -c -U calls,name -o "$tmp/$1-$2-$3" "$probe" "$3" ||
    { echo "rtt_probe failed on $1 with N=$3"; exit 1; }
}

# calls FILE [SYSCALL]: the system calls of a run, every thread included (all of them,
# or only SYSCALL's).
calls() { awk -v name="${2:-total}" '$2 == name { c = $1 } END { print c + 0 }' "$1"; }

# per_rtt BACKEND REP [SYSCALL]: one measurement (a pair of runs) of calls per round trip.
per_rtt() {
  local a b
  a=$(calls "$tmp/$1-$2-$n1" "${3:-}")
  b=$(calls "$tmp/$1-$2-$n2" "${3:-}")
  awk -v a="$a" -v b="$b" -v n="$((n2 - n1))" 'BEGIN { printf "%.2f", (b - a) / n }'
}

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# How often a waiting caller thread sleeps on a futex depends on scheduling, so each
# backend is measured `reps` times, interleaved, and the median taken.
reps=${REPS:-3}
declare -A all futex own ctl
for r in $(seq "$reps"); do
  for b in uring epoll; do
    run "$b" "$r" "$n1"
    run "$b" "$r" "$n2"
    t=$(per_rtt "$b" "$r")
    f=$(per_rtt "$b" "$r" futex)
    all[$b]+=" $t"
    futex[$b]+=" $f"
    own[$b]+=" $(awk -v t="$t" -v f="$f" 'BEGIN { printf "%.2f", t - f }')"
    ctl[$b]+=" $(per_rtt "$b" "$r" epoll_ctl)"
  done
done
uring=$(median ${all[uring]})
epoll=$(median ${all[epoll]})
ratio=$(awk -v e="$epoll" -v u="$uring" 'BEGIN { printf "%.2f", e / u }')
uring_own=$(median ${own[uring]})
epoll_own=$(median ${own[epoll]})
own_ratio=$(awk -v e="$epoll_own" -v u="$uring_own" 'BEGIN { printf "%.2f", e / u }')
epoll_ctl=$(median ${ctl[epoll]})
echo "syscalls per tiny round trip (median of $reps): io_uring $uring, epoll $epoll, epoll/io_uring $ratio"
echo "  without futex: io_uring $uring_own, epoll $epoll_own, epoll/io_uring $own_ratio; epoll_ctl on epoll: $epoll_ctl"
echo "  each measurement: io_uring${all[uring]}; epoll${all[epoll]}"
echo "  of which futex (the caller and handler threads waiting): io_uring${futex[uring]}; epoll${futex[epoll]}"
echo "(N = $n1 and $n2 calls; per backend, the breakdown of one run of $n2:)"
for b in uring epoll; do
  echo "--- $b"
  grep -v '^-' "$tmp/$b-1-$n2"
done
if [ -n "$max_ratio" ]; then
  if awk -v r="$own_ratio" -v m="$max_ratio" 'BEGIN { exit !(r > m) }'; then
    echo "FAIL: without futex, epoll makes $own_ratio times the system calls of io_uring per round trip (at most $max_ratio)"
    exit 1
  fi
  if awk -v c="$epoll_ctl" 'BEGIN { exit !(c > 0.1) }'; then
    echo "FAIL: epoll calls epoll_ctl $epoll_ctl times per round trip (an fd is registered once)"
    exit 1
  fi
fi
