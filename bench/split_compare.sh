#!/usr/bin/env bash
# bench/split_compare.sh BEFORE_REV [ROUNDS] [SECONDS]
# The CLI reflector's replies/s, this tree against BEFORE_REV, interleaved
# (before, after, before, after, ...) so that background load hits both alike.
# Loopback only (127.0.0.1). Run from the repository root after a build.
# Each round: a fresh `bin/stamp -i --local-addr 127.0.0.1 --local-port P`
# (open mode) of one tree, loaded by bench/loadgen.c (closed loop, 64
# outstanding, open mode, built once from this tree, so the load is the same);
# prints replies/s and the reflector's CPU time per reply (utime+stime from
# /proc/PID/stat over the measured interval, warm-up included), then the
# median of each side and the ratio after/before.
set -euo pipefail
rev=${1:?usage: bench/split_compare.sh BEFORE_REV [ROUNDS] [SECONDS]}
rounds=${2:-5}
secs=${3:-5}
root=$(pwd)
work=$(mktemp -d /tmp/split_compare.XXXXXX)
trap 'rm -rf "$work"' EXIT

mkdir -p build/bench "$work/before"
cc -O2 -Wall -Wextra -Werror -Icsrc/core -o build/bench/loadgen bench/loadgen.c build/libstamp_static.a -lcrypto -lm
git archive "$rev" | tar -x -C "$work/before"
(cd "$work/before" && cmake -S . -B build >/dev/null && cmake --build build -j2 >/dev/null)

tck=$(getconf CLK_TCK)
port=$((20000 + $$ % 20000))

# one_run TREE -> "replies_per_s cpu_us_per_reply"
one_run() {
  local tree=$1 out="$work/refl.out" pid a b lg replies rate
  port=$((port + 1))
  (cd "$tree" && exec bin/stamp -i --local-addr 127.0.0.1 --local-port "$port") >"$out" 2>&1 &
  pid=$!
  for _ in $(seq 200); do grep -q listening "$out" && break; sleep 0.025; done
  grep -q listening "$out" || { echo "reflector in $tree did not start:" >&2; cat "$out" >&2; exit 1; }
  a=$(cpu_ticks "$pid")
  lg=$("$root/build/bench/loadgen" -a 127.0.0.1 -p "$port" -m open -d "$secs" -w 64)
  b=$(cpu_ticks "$pid")
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
  rate=$(sed -n 's/.*"rate":\([0-9.]*\).*/\1/p' <<<"$lg")
  replies=$(sed -n 's/.*"replies":\([0-9]*\).*/\1/p' <<<"$lg")
  awk -v r="$rate" -v n="$replies" -v d=$((b - a)) -v t="$tck" \
    'BEGIN { printf "%d %.2f\n", r, (n > 0 ? d / t * 1e6 / n : 0) }'
}

# utime + stime of PID in clock ticks (the name in field 2 may hold spaces: skip past its ')').
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "machine: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1), $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "before: $rev ($(git rev-parse --short "$rev"))  after: $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo '+dirty')"
echo "load: bench/loadgen open, window 64, ${secs} s per run, ${rounds} rounds interleaved"
printf '%-6s %-7s %12s %14s\n' round tree replies/s cpu_us/reply
: >"$work/b"; : >"$work/a"; : >"$work/bc"; : >"$work/ac"
for r in $(seq "$rounds"); do
  read -r rate cpu < <(one_run "$work/before")
  printf '%-6s %-7s %12s %14s\n' "$r" before "$rate" "$cpu"
  echo "$rate" >>"$work/b"; echo "$cpu" >>"$work/bc"
  read -r rate cpu < <(one_run "$root")
  printf '%-6s %-7s %12s %14s\n' "$r" after "$rate" "$cpu"
  echo "$rate" >>"$work/a"; echo "$cpu" >>"$work/ac"
done
mb=$(median <"$work/b"); ma=$(median <"$work/a")
mbc=$(median <"$work/bc"); mac=$(median <"$work/ac")
echo "median before: $mb replies/s, $mbc us CPU/reply"
echo "median after:  $ma replies/s, $mac us CPU/reply"
awk -v a="$ma" -v b="$mb" -v ac="$mac" -v bc="$mbc" 'BEGIN {
  printf "ratio after/before: replies/s %.3f, CPU/reply %.3f\n", a / b, (bc > 0 ? ac / bc : 0) }'
