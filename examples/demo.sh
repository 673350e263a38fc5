#!/bin/sh
# Loopback demo: a reflector and a sender through the `stamp` command.
# STAMP_DEMO_PORT / STAMP_DEMO_SPORT change the ports (8620, 8621).
cd "$(dirname "$0")/.." || exit 1
PORT=${STAMP_DEMO_PORT:-8620}
SPORT=${STAMP_DEMO_SPORT:-8621}
./bin/stamp -i --local-addr 127.0.0.1 --local-port "$PORT" &
REFLECTOR=$!
# wait (at most 5 s) until the reflector's socket is bound
i=0
while [ $i -lt 50 ] && ! ss -Hlun "sport = :$PORT" 2>/dev/null | grep -q .; do sleep 0.1; i=$((i + 1)); done
./bin/stamp --remote-addr 127.0.0.1 --remote-port "$PORT" --local-port "$SPORT" --count 20 --send-delay 10 -R
STATUS=$?
kill -INT $REFLECTOR
wait $REFLECTOR
exit $STATUS
