#!/usr/bin/env bash
# Questions asked of the kernel about a connection's socket, per connection: getsockopt,
# setsockopt, fcntl, fstat and getpeername calls, counted with `strace -f -c` over
# rtt_probe's connections to a server (RTT_PROBE_CONNECTS: open, one call, close,
# wait_closed; both ends in the probe), on a UNIX socket and then over TCP. It runs with
# N1 and N2 connections, and a connection's figure is (count(N2) - count(N1)) / (N2 - N1).
#
# Why: each layer a new socket passes through (connect or accept, the credentials, the
# fd-passing check, the stream) asked again what it was and set it non-blocking: 20
# such calls per connection on a UNIX socket, on a machine where a system call is a
# large part of a connection's cost. The layer that makes the socket now says what it is
# (base::fd_kind), makes it non-blocking from the start, and a UNIX connect is tried
# non-blocking before any timeout is set. What remains on UNIX: SO_PEERCRED once per
# end. On TCP: TCP_NODELAY once per end, and the client's SO_ERROR after its
# non-blocking connect.
# Usage: socket_queries_per_connection.sh PROBE MAX_UNIX MAX_TCP
#   Fails (exit 1) when a transport's figure exceeds its MAX.
#   Exit 77 (skipped) when strace is missing or cannot trace here.
set -euo pipefail
usage="usage: socket_queries_per_connection.sh PROBE MAX_UNIX MAX_TCP"
probe=${1:?$usage}
max_unix=${2:?$usage}
max_tcp=${3:?$usage}
n1=${N1:-50}
n2=${N2:-550}

command -v strace >/dev/null || { echo "strace is not installed (tools/install-deps.sh)"; exit 77; }
strace -f -o /dev/null true 2>/dev/null || { echo "strace cannot trace here (ptrace refused)"; exit 77; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

queries='getsockopt|setsockopt|fcntl|fstat|newfstatat|getpeername'

# count TRANSPORT N: the questions of one run of N connections (every thread).
count() {
  local out="$tmp/$1-$2" tcp_env=RTT_PROBE_UNIX=1
  [ "$1" = tcp ] && tcp_env=RTT_PROBE_TCP=1
  env RTT_PROBE_CONNECTS=1 "$tcp_env" strace -f -c -U calls,name -o "$out" "$probe" "$2" >/dev/null ||
    { echo "rtt_probe failed ($1, N=$2)"; exit 1; }
  awk -v re="^($queries)\$" '$2 ~ re { c += $1 } END { print c + 0 }' "$out"
}

status=0
for transport in unix tcp; do
  max=$max_unix
  [ "$transport" = tcp ] && max=$max_tcp
  a=$(count "$transport" "$n1")
  b=$(count "$transport" "$n2")
  per=$(awk -v a="$a" -v b="$b" -v n="$((n2 - n1))" 'BEGIN { printf "%.2f", (b - a) / n }')
  echo "$transport: $per socket questions per connection ($a in $n1, $b in $n2; at most $max)"
  if awk -v p="$per" -v m="$max" 'BEGIN { exit !(p > m) }'; then
    echo "FAIL: $transport: $per getsockopt/setsockopt/fcntl/fstat/getpeername calls per connection (at most $max)"
    status=1
  fi
done
exit $status
