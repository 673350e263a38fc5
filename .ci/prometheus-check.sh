#!/usr/bin/env bash
# Debian's prometheus scrapes a reflector started with --metrics (every second,
# temporary storage, 127.0.0.1 only); 20 packets are sent, and
# stamp_reflector_packets_reflected_total is read back through Prometheus's HTTP API.
set -euo pipefail
cd "$(dirname "$0")/.."
STAMP=${STAMP:-./bin/stamp}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { # a port nobody listens on (TCP or UDP), outside the ephemeral range
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 10000))
    if ! ss -Hltun "( sport = :$p )" | grep -q .; then echo "$p"; return; fi
  done
  return 1
}
udp=$(free_port); mport=$(free_port); pport=$(free_port)

"$STAMP" -i --local-addr 127.0.0.1 --local-port "$udp" --metrics --metrics-addr "127.0.0.1:$mport" >"$work/reflector.log" 2>&1 &
pids+=($!)
cat >"$work/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: stamp
    static_configs:
      - targets: ['127.0.0.1:$mport']
YML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$pport" >"$work/prometheus.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 100); do grep -q listening "$work/reflector.log" && break; sleep 0.1; done
"$STAMP" -r 127.0.0.1 -p "$udp" -o 0 -c 20 -d 5 | grep -E "^Packets (sent|received)"

query() { curl -sf "http://127.0.0.1:$pport/api/v1/query?query=$1" || true; }
value=""
for _ in $(seq 1 120); do
  value=$(query stamp_reflector_packets_reflected_total | sed -n 's/.*"value":\[[^,]*,"\([0-9.e+]*\)"\].*/\1/p')
  [ "$value" = 20 ] && break
  sleep 0.5
done
if [ "$value" != 20 ]; then
  echo "Prometheus did not report 20 (got '$value')"
  tail -n 20 "$work/prometheus.log"
  query up
  exit 1
fi
echo "stamp_reflector_packets_reflected_total = $value (read from Prometheus's HTTP API)"
