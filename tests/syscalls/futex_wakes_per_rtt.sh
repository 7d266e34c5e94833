#!/usr/bin/env bash
# Wake-ups sent to nobody, per tiny round trip: FUTEX_WAKE calls that woke no thread
# (strace shows them returning 0), counted with `strace -ff` (counts, not time).
# rtt_probe makes N tiny calls between two connections on a socketpair, the handler on a
# handler thread, then inline (RTT_PROBE_INLINE=1); it runs with N1 and N2 calls, and a
# round trip's figure is (count(N2) - count(N1)) / (N2 - N1).
#
# Why: a thread woken from a glibc condition variable gets its mutex back marked
# contended, so its next unlock makes a FUTEX_WAKE whether or not anyone waits. Blocking
# callers and idle handler threads waited so, and every round trip paid one such call
# per thread woken: 2 with a handler thread, 1 inline. They now park on a futex word of
# their own (src/base/parking.hpp), which wakes only a sleeper.
#
# Everything runs on one CPU, so that the threads take turns at their system calls and
# the count does not hang on timing (a wake can still find its sleeper not yet asleep if
# the CPU is taken from it in between: rare, hence a bound above 0).
# Usage: futex_wakes_per_rtt.sh PROBE MAX   (fails, exit 1, when a mode exceeds MAX)
#   Exit 77 (skipped) when strace or taskset is missing or cannot run here.
set -euo pipefail
probe=${1:?usage: futex_wakes_per_rtt.sh PROBE MAX}
max=${2:?usage: futex_wakes_per_rtt.sh PROBE MAX}
n1=${N1:-200}
n2=${N2:-2200}

command -v strace >/dev/null || { echo "strace is not installed (tools/install-deps.sh)"; exit 77; }
command -v taskset >/dev/null || { echo "taskset is not installed"; exit 77; }
strace -f -o /dev/null true 2>/dev/null || { echo "strace cannot trace here (ptrace refused)"; exit 77; }
# The first CPU this process may run on.
cpu=$(awk '/^Cpus_allowed_list:/ { split($2, a, /[-,]/); print a[1] }' /proc/self/status)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# wasted MODE N: FUTEX_WAKE calls that woke nobody in one run of N calls (every thread).
wasted() {
  local dir="$tmp/$1-$2"
  mkdir "$dir"
  if [ "$1" = inline ]; then
    RTT_PROBE_INLINE=1 taskset -c "$cpu" strace -ff -qq -e trace=futex -o "$dir/t" "$probe" "$2" >/dev/null
  else
    taskset -c "$cpu" strace -ff -qq -e trace=futex -o "$dir/t" "$probe" "$2" >/dev/null
  fi || { echo "rtt_probe failed ($1, N=$2)"; exit 1; }
  cat "$dir"/t.* | grep -c 'FUTEX_WAKE.*= 0$' || true
}

status=0
for mode in pool inline; do
  a=$(wasted "$mode" "$n1")
  b=$(wasted "$mode" "$n2")
  per=$(awk -v a="$a" -v b="$b" -v n="$((n2 - n1))" 'BEGIN { printf "%.2f", (b - a) / n }')
  echo "$mode handler: $per wake-ups sent to nobody per round trip ($a in $n1 calls, $b in $n2; at most $max)"
  if awk -v p="$per" -v m="$max" 'BEGIN { exit !(p > m) }'; then
    echo "FAIL: $mode handler: $per futex wake-ups per round trip woke nobody (at most $max)"
    status=1
  fi
done
exit $status
