#!/bin/bash
# bench/sender_rate.sh [RATE] [COUNT]: the sender at RATE packets/s (default 100000) for COUNT packets
# (default 1000000: 10 s) against the reference reflector (build/bench/refl_ref, built by bench/run),
# on loopback; prints the command's sent/received/loss lines, its peak RSS and wall time, and the rate
# achieved from the reference's kernel receive times. Run by hand on an idle machine after bench/run.
set -eu
cd "$(dirname "$0")/.."
RATE=${1:-100000}; COUNT=${2:-1000000}
[ -x build/bench/refl_ref ] || { echo "build/bench/refl_ref missing: run bench/run --quick first" >&2; exit 2; }
P=$((40000 + RANDOM % 2000)); TS=$(mktemp); OUT=$(mktemp); ERR=$(mktemp)
build/bench/refl_ref -p "$P" -t "$TS" > /dev/null 2>&1 & RP=$!
sleep 0.5
/usr/bin/time -v ./bin/stamp -r 127.0.0.1 -p "$P" -c "$COUNT" -d "$(awk "BEGIN{print 1000/$RATE}")" -L 1 -q \
  > "$OUT" 2> "$ERR" || true
kill -INT "$RP"; wait "$RP" 2>/dev/null || true
grep -E "Packets sent|Packets received|Packets lost|Loss episodes" "$OUT" || cat "$OUT"
grep -E "Maximum resident|Elapsed" "$ERR"
awk 'NR==1{f=$2;l=$2} {if($2<f)f=$2; if($2>l)l=$2; n++} END{if(n>1) printf "reference received %d, span %.3f s, achieved %.0f/s\n", n, (l-f)/1e9, (n-1)/((l-f)/1e9)}' "$TS"
rm -f "$TS" "$OUT" "$ERR"
