#!/usr/bin/env bash
# bench/scrape_cost.sh [--quick] [ROUNDS] [SECONDS]
# Issue 9: what Prometheus scrapes cost the reflector under load ("a scrape during a
# 100,000 packets/s load costs the reflector less than 1 % of its replies/s").
# Loopback only (127.0.0.1). Run from the repository root after a build, on an idle machine.
#
# Each round runs three conditions, interleaved (the order rotates from round to round so that
# background load and warm caches hit every condition alike), each against a fresh
#   bin/stamp -i --local-addr 127.0.0.1 --local-port P --metrics --metrics-addr 127.0.0.1:M
# loaded by bench/loadgen.c (closed loop, 64 outstanding, open mode; built here as bench/run does):
#   none   no scraper;
#   10/s   one curl fetching /metrics 10 times a second (a busy Prometheus scrapes every 1-15 s);
#   b2b    one curl fetching /metrics back to back, as fast as the endpoint answers (worst case).
# Prints per round and condition the replies/s, the reflector's CPU time per reply (utime +
# stime from /proc/PID/stat over the run, warm-up included) and the scrapes answered (HTTP 200)
# and failed; then per condition the medians and the ratio to `none` with the cost in percent.
# --quick: 1 round of 0.5 s (a smoke test that every part works; the figures mean nothing).
set -euo pipefail
usage() { echo "usage: bench/scrape_cost.sh [--quick] [ROUNDS] [SECONDS]" >&2; exit 2; }
quick=0
if [ "${1:-}" = --quick ]; then quick=1; shift; fi
[ $# -le 2 ] || usage
if [ $quick = 1 ]; then rounds=${1:-1} secs=${2:-0.5}; else rounds=${1:-5} secs=${2:-5}; fi
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench/scrape_cost.sh: ROUNDS: a positive integer, got '$rounds'" >&2; exit 2; }
if ! [[ $secs =~ ^[0-9]*\.?[0-9]+$ ]] || ! awk -v s="$secs" 'BEGIN { exit !(s > 0) }'; then
  echo "bench/scrape_cost.sh: SECONDS: a positive number, got '$secs'" >&2
  exit 2
fi
for tool in cc curl stdbuf awk lua5.4; do
  command -v "$tool" >/dev/null || { echo "bench/scrape_cost.sh: $tool missing" >&2; exit 1; }
done
if [ ! -x bin/stamp ] || [ ! -f build/libstamp_static.a ]; then
  echo "bench/scrape_cost.sh: run from the repository root after a build (cmake -S . -B build && cmake --build build)" >&2
  exit 1
fi

work=$(mktemp -d /tmp/scrape_cost.XXXXXX)
refl_pid='' scraper_pid=''
cleanup() {
  if [ -n "$scraper_pid" ]; then kill "$scraper_pid" 2>/dev/null || true; fi
  if [ -n "$refl_pid" ]; then kill -INT "$refl_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p build/bench
cc -O2 -Wall -Wextra -Werror -Icsrc/core -o build/bench/loadgen bench/loadgen.c build/libstamp_static.a -lcrypto -lm

tck=$(getconf CLK_TCK)

# A free loopback port of KIND (udp or tcp), from the kernel.
free_port() {
  lua5.4 -e "local s = require('socket').$1(); assert(s:setsockname('127.0.0.1', 0)); local _, p = s:getsockname(); print(p); s:close()"
}

# utime + stime of PID in clock ticks (the name in field 2 may hold spaces: skip past its ')').
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

# one_run CONDITION: sets result to "replies_per_s cpu_us_per_reply scrapes_ok scrapes_failed"
# (in this shell, not a subshell: the trap must see the processes it starts)
one_run() {
  local cond=$1 out="$work/refl.out" port mport url a b lg rate replies ok failed
  port=$(free_port udp)
  mport=$(free_port tcp)
  url="http://127.0.0.1:$mport/metrics"
  bin/stamp -i --local-addr 127.0.0.1 --local-port "$port" --metrics --metrics-addr "127.0.0.1:$mport" >"$out" 2>&1 &
  refl_pid=$!
  for _ in $(seq 200); do grep -q listening "$out" && curl -sf -o /dev/null "$url" && break; sleep 0.025; done
  curl -sf -o /dev/null "$url" || { echo "reflector with --metrics did not start:" >&2; cat "$out" >&2; exit 1; }
  : >"$work/scrapes"
  case $cond in
    # one curl process for the whole run (no process start per scrape); "?[1-N]" fetches N times
    10/s) stdbuf -oL curl -s -o /dev/null -w '%{http_code}\n' --rate 10/s "$url?[1-100000000]" >"$work/scrapes" 2>/dev/null &
          scraper_pid=$! ;;
    b2b)  stdbuf -oL curl -s -o /dev/null -w '%{http_code}\n' "$url?[1-100000000]" >"$work/scrapes" 2>/dev/null &
          scraper_pid=$! ;;
  esac
  a=$(cpu_ticks "$refl_pid")
  lg=$(build/bench/loadgen -a 127.0.0.1 -p "$port" -m open -d "$secs" -w 64)
  b=$(cpu_ticks "$refl_pid")
  if [ -n "$scraper_pid" ]; then
    kill "$scraper_pid" 2>/dev/null || true
    wait "$scraper_pid" 2>/dev/null || true
    scraper_pid=''
  fi
  kill -INT "$refl_pid"
  wait "$refl_pid" 2>/dev/null || true
  refl_pid=''
  rate=$(sed -n 's/.*"rate":\([0-9.]*\).*/\1/p' <<<"$lg")
  replies=$(sed -n 's/.*"replies":\([0-9]*\).*/\1/p' <<<"$lg")
  if [ -z "$rate" ] || [ -z "$replies" ]; then echo "loadgen: $lg" >&2; exit 1; fi
  ok=$(grep -c '^200$' "$work/scrapes" || true)
  failed=$(grep -vc '^200$' "$work/scrapes" || true)
  result=$(awk -v r="$rate" -v n="$replies" -v d=$((b - a)) -v t="$tck" -v ok="$ok" -v f="$failed" \
    'BEGIN { printf "%d %.2f %d %d\n", r, (n > 0 ? d / t * 1e6 / n : 0), ok, f }')
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

conds=(none 10/s b2b)
declare -A rates cpus
echo "scrape cost: $rounds round(s) x 3 conditions x ${secs} s, $(nproc) cores, load average $(cut -d' ' -f1 /proc/loadavg)"
[ $quick = 1 ] && echo "(--quick: a smoke test, the figures mean nothing)"
for ((r = 1; r <= rounds; r++)); do
  line="round $r:"
  for ((k = 0; k < 3; k++)); do
    c=${conds[$(((r - 1 + k) % 3))]}
    one_run "$c"
    read -r rate cpu ok failed <<<"$result"
    rates[$c]+="$rate "
    cpus[$c]+="$cpu "
    line+=$(printf "  %s %d/s (%.2f us/reply" "$c" "$rate" "$cpu")
    [ "$c" = none ] || line+=$(printf ", %d scrapes, %d failed" "$ok" "$failed")
    line+=")"
  done
  echo "$line"
done

base=$(tr ' ' '\n' <<<"${rates[none]}" | grep . | median)
base_cpu=$(tr ' ' '\n' <<<"${cpus[none]}" | grep . | median)
for c in "${conds[@]}"; do
  m=$(tr ' ' '\n' <<<"${rates[$c]}" | grep . | median)
  mc=$(tr ' ' '\n' <<<"${cpus[$c]}" | grep . | median)
  if [ "$c" = none ]; then
    printf "median %-5s %9.0f replies/s  %.2f us CPU/reply\n" "$c" "$m" "$mc"
  else
    awk -v c="$c" -v m="$m" -v mc="$mc" -v b="$base" -v bc="$base_cpu" 'BEGIN {
      printf "median %-5s %9.0f replies/s  %.2f us CPU/reply  ratio to none %.4f (cost %.2f %% of replies/s; target < 1 %%)  CPU/reply ratio %.4f\n",
        c, m, mc, (b > 0 ? m / b : 0), (b > 0 ? (1 - m / b) * 100 : 0), (bc > 0 ? mc / bc : 0) }'
  fi
done
