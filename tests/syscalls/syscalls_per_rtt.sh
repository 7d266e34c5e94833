#!/usr/bin/env bash
# Syscalls per tiny round trip, on each backend, counted with `strace -c -f` (counts,
# not time). rtt_probe makes N tiny calls between two connections on a socketpair, the
# handler on a handler thread (inline with RTT_PROBE_INLINE=1); it runs twice, with N1 and N2 calls, and the cost
# of one round trip is (calls(N2) - calls(N1)) / (N2 - N1): what starting, connecting
# and closing cost cancels out.
# Usage: syscalls_per_rtt.sh PROBE [MAX_RATIO]
#   Prints the figure for io_uring and epoll and their ratio; with MAX_RATIO, fails
#   (exit 1) when epoll / io_uring exceeds it. Exit 77 (skipped) when strace is missing
#   or cannot trace here.
set -euo pipefail
probe=${1:?usage: syscalls_per_rtt.sh PROBE [MAX_RATIO]}
max_ratio=${2:-}
n1=${N1:-200}
n2=${N2:-2200}

command -v strace >/dev/null || { echo "strace is not installed (tools/install-deps.sh)"; exit 77; }
strace -f -o /dev/null true 2>/dev/null || { echo "strace cannot trace here (ptrace refused)"; exit 77; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# count BACKEND N: total system calls of one probe run, every thread included.
count() {
  local out="$tmp/$1-$2"
  BOKBOK_BACKEND=$1 strace -f -c -U calls,name -o "$out" "$probe" "$2" ||
    { echo "rtt_probe failed on $1 with N=$2" >&2; exit 1; }
  awk '$2 == "total" { print $1 }' "$out"
}

per_rtt() {
  local a b
  a=$(count "$1" "$n1")
  b=$(count "$1" "$n2")
  awk -v a="$a" -v b="$b" -v n="$((n2 - n1))" 'BEGIN { printf "%.2f", (b - a) / n }'
}

uring=$(per_rtt uring)
epoll=$(per_rtt epoll)
ratio=$(awk -v e="$epoll" -v u="$uring" 'BEGIN { printf "%.2f", e / u }')
echo "syscalls per tiny round trip: io_uring $uring, epoll $epoll, epoll/io_uring $ratio"
echo "(N = $n1 and $n2 calls; per backend, the breakdown of the larger run:)"
for b in uring epoll; do
  echo "--- $b"
  grep -v '^-' "$tmp/$b-$n2"
done
if [ -n "$max_ratio" ]; then
  if awk -v r="$ratio" -v m="$max_ratio" 'BEGIN { exit !(r > m) }'; then
    echo "FAIL: epoll makes $ratio times the system calls of io_uring per round trip (at most $max_ratio)"
    exit 1
  fi
fi
