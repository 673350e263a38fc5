#!/bin/sh
# Loopback demo: a reflector and a sender through the `stamp` command.
cd "$(dirname "$0")/.." || exit 1
./bin/stamp -i --local-addr 127.0.0.1 --local-port 8620 &
REFLECTOR=$!
sleep 0.3
./bin/stamp --remote-addr 127.0.0.1 --remote-port 8620 --local-port 8621 --count 20 --send-delay 10 -R
STATUS=$?
kill -INT $REFLECTOR
wait $REFLECTOR
exit $STATUS
