#!/usr/bin/env bash
# Wake-ups sent to nobody, per tiny round trip: FUTEX_WAKE calls that woke no thread
# (strace shows them returning 0), counted with `strace -ff` (counts, not time).
# rtt_probe makes N tiny calls between two connections on a socketpair, the handler on a
# handler thread, then inline (RTT_PROBE_INLINE=1); it runs with N1 and N2 calls, and a
# round trip's figure is (count(N2) - count(N1)) / (N2 - N1). Then the same per
# connection to a server (RTT_PROBE_CONNECTS=1: open, one call, close, wait_closed).
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
#
# Per connection, 2 went to nobody before: the server gave a connection's place back
# through std::call_once, whose completion always wakes, and posted to its loop under
# its mutex, which the woken loop thread then found held (a contended mutex costs its
# next holder a wake-up call). One remains, wait_closed()'s condition variable.
# Usage: futex_wakes_per_rtt.sh PROBE MAX [MAX_PER_CONNECTION]
#   Fails (exit 1) when a round trip exceeds MAX, or a connection MAX_PER_CONNECTION.
#   Exit 77 (skipped) when strace or taskset is missing or cannot run here.
set -euo pipefail
probe=${1:?usage: futex_wakes_per_rtt.sh PROBE MAX}
max=${2:?usage: futex_wakes_per_rtt.sh PROBE MAX}
max_conn=${3:-}
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
  local mode_env=RTT_PROBE_POOL=1
  [ "$1" = inline ] && mode_env=RTT_PROBE_INLINE=1
  [ "$1" = connection ] && mode_env=RTT_PROBE_CONNECTS=1
  env "$mode_env" taskset -c "$cpu" strace -ff -qq -e trace=futex -o "$dir/t" "$probe" "$2" >/dev/null ||
    { echo "rtt_probe failed ($1, N=$2)"; exit 1; }
  cat "$dir"/t.* | grep -c 'FUTEX_WAKE.*= 0$' || true
}

# check MODE WHAT N1 N2 MAX: one figure, printed, and checked against MAX.
status=0
check() {
  local a b per
  a=$(wasted "$1" "$3")
  b=$(wasted "$1" "$4")
  per=$(awk -v a="$a" -v b="$b" -v n="$(($4 - $3))" 'BEGIN { printf "%.2f", (b - a) / n }')
  echo "$1: $per wake-ups sent to nobody per $2 ($a in $3, $b in $4; at most $5)"
  if awk -v p="$per" -v m="$5" 'BEGIN { exit !(p > m) }'; then
    echo "FAIL: $1: $per futex wake-ups per $2 woke nobody (at most $5)"
    status=1
  fi
}
check pool "round trip (handler thread)" "$n1" "$n2" "$max"
check inline "round trip (inline handler)" "$n1" "$n2" "$max"
[ -n "$max_conn" ] && check connection "connection" "$((n1 / 4))" "$((n2 / 4))" "$max_conn"
exit $status
