#!/usr/bin/env python3
"""Type 12 (RFC 10052) reply intervals of a running stamp reflector, from kernel receive times.

Usage: bench/type12_interval.py PORT [SESSIONS [COUNT [INTERVAL_NS [ROUNDS]]]]
  e.g. ./bin/stamp -i --local-addr 127.0.0.1 --local-port 40862 --reflected-control-max-count 1000 &
       bench/type12_interval.py 40862 1 100 1000000 5
SESSIONS sockets each send one request for COUNT replies INTERVAL_NS apart, all at once, ROUNDS
times. Each reply's kernel receive time (SO_TIMESTAMPNS) is compared with the ideal one: the first
reply's receive time + k * interval. Prints the replies received against those asked for, the
shortest gap between two replies of one burst (RFC 10052 3: never shorter than the interval), and
p50/p99/max of |actual - ideal|. Loopback only; run on a quiet machine.
"""
import socket
import struct
import sys
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def request(seq, count, ival):
    base = struct.pack("!IQHH", seq, 0xE000000000000000, 0x8001, 0) + b"\0" * 28
    return base + struct.pack("!BBHHHII", 0x80, 12, 12, 0, count, ival, 0)


def main():
    port = int(sys.argv[1])
    nsess = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    ival = int(sys.argv[4]) if len(sys.argv) > 4 else 1000000
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    socks = []
    for _ in range(nsess):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    errs, min_gap, got, asked = [], None, 0, 0
    for rnd in range(rounds):
        for s in socks:
            s.sendto(request(rnd + 1, count, ival), ("127.0.0.1", port))
        asked += nsess * count
        end = time.monotonic() + count * ival / 1e9 + 0.5
        times = {s: [] for s in socks}
        while time.monotonic() < end:
            import select
            r, _, _ = select.select(socks, [], [], 0.05)
            for s in r:
                while True:
                    try:
                        _, anc, _, _ = s.recvmsg(2048, 64)
                    except BlockingIOError:
                        break
                    for lvl, typ, data in anc:
                        if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
                            sec, ns = struct.unpack("qq", data[:16])
                            times[s].append(sec * 1000000000 + ns)
        for s in socks:
            t = times[s]
            got += len(t)
            for k in range(1, len(t)):
                g = t[k] - t[k - 1]
                min_gap = g if min_gap is None or g < min_gap else min_gap
                errs.append(abs(t[k] - (t[0] + k * ival)))
        time.sleep(0.1)
    errs.sort()

    def pct(p):
        return errs[min(len(errs) - 1, int(p / 100 * len(errs)))] / 1000 if errs else float("nan")

    print("sessions=%d count=%d interval=%.3f ms rounds=%d: replies %d of %d; shortest gap %.3f ms; "
          "|actual - ideal| p50 %.1f us, p99 %.1f us, max %.1f us"
          % (nsess, count, ival / 1e6, rounds, got, asked, (min_gap or 0) / 1e6, pct(50), pct(99),
             errs[-1] / 1000 if errs else float("nan")))


if __name__ == "__main__":
    main()
