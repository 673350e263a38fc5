/* burst_txlat.c - the reflector machine driven as the socket engine drives it (rmach_prepare/finish,
 * rmach_poll, rmach_sent, rmach_txts: csrc/core/reflector.c) through a Type 12 burst, with a loop that
 * wakes up late for a while (as on a loaded machine or under valgrind) and then on time again. Every
 * reply leaves the kernel 5 us after it was handed over. Prints the gaps between departures that are
 * shorter than the interval asked (RFC 10052 3: the spacing is the Interval, never shorter), then "ok".
 * Usage: burst_txlat HEX-OF-REQUEST INTERVAL-NS LATE-NS
 * Linked against the static core (internal symbols). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stamp.h"
#include "rmach.h"

#define T0 1700000000000000000LL /* realtime = T0 + monotonic */
#define SEND 5000                /* from the hand-over to the kernel's transmit timestamp */

int main(int argc, char **argv)
{
    if (argc != 4) return 2;
    uint8_t req[STAMP_MAX_PKT];
    size_t len = strlen(argv[1]) / 2;
    if (len > sizeof req || stamp_hex_decode(argv[1], req, sizeof req) != (int)len) return 2;
    stamp_ns_t ival = atoll(argv[2]), late = atoll(argv[3]);

    stamp_reflector_cfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.mode = STAMP_MODE_OPEN;
    cfg.clock = STAMP_CLOCK_NTP;
    cfg.session_timeout = 10;
    cfg.tlv.process = 1;
    cfg.tlv.refl_max_count = 1000;
    cfg.tlv.refl_max_size = STAMP_MAX_PKT;
    cfg.tlv.refl_max_interval = STAMP_NS_PER_SEC;
    stamp_rmach_t *m;
    if (stamp_rmach_new(&cfg, &m) != 0) return 3;

    stamp_rxmeta_t meta;
    memset(&meta, 0, sizeof meta);
    stamp_addr_parse(&meta.src, "127.0.0.1", 40000);
    stamp_addr_parse(&meta.dst, "127.0.0.1", 862);
    meta.ttl = 64;
    meta.rx_time = T0 + STAMP_NS_PER_SEC;

    static uint8_t out[STAMP_MAX_PKT];
    stamp_reply_t r, ex[8];
    rmach_txinfo_t ti, tis[8];
    stamp_ns_t mono = STAMP_NS_PER_SEC;
    if (!rmach_prepare(m, req, len, &meta, mono, out, &r, &ti)) return 4;
    rmach_finish(m, out, r.len, &ti, T0 + mono);
    rmach_sent(m, &ti, 1, mono, mono + SEND);
    rmach_txts(m, ti.sess, ti.gen, ti.seq, T0 + mono, T0 + mono + SEND);
    stamp_ns_t prev = mono + SEND;
    int k = 0, bad = 0;
    for (;;) {
        stamp_ns_t due = stamp_rmach_next_due(m);
        if (due == INT64_MAX) break;
        k++;
        /* the first half of the burst: the loop wakes `late` after the due time; then on time */
        mono = due + (k <= 10 ? late : 0);
        int n = rmach_poll(m, mono, T0 + mono, ex, tis, 8);
        if (n != 1) return 5;
        rmach_sent(m, tis, 1, mono, mono + SEND);
        stamp_ns_t dep = mono + SEND;
        rmach_txts(m, tis[0].sess, tis[0].gen, tis[0].seq, T0 + mono, T0 + dep);
        if (dep - prev < ival) {
            printf("reply %d left %lld ns after the previous one\n", k, (long long)(dep - prev));
            bad++;
        }
        prev = dep;
    }
    stamp_rmach_free(m);
    printf("%d extra replies, %d too early\n", k, bad);
    return 0;
}
