/* bench/reflector_sessions.c - RSS of the reflector machine holding N stateful sessions (run by hand).
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Icsrc/core bench/reflector_sessions.c build/libstamp_static.a -lcrypto -lm -lpthread \
 *      -o /tmp/reflector_sessions && /tmp/reflector_sessions 1000000 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include "stamp.h"

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) v = atol(line + 6);
    fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 1000000;
    stamp_reflector_cfg_t c;
    memset(&c, 0, sizeof c);
    c.stateful = 1;
    c.session_timeout = 3600;
    c.max_sessions = n;
    c.tlv.process = 1;
    stamp_rmach_t *m;
    long r0 = rss_kb();
    if (stamp_rmach_new(&c, &m)) return 1;
    long r1 = rss_kb();
    uint8_t pkt[44] = {0};
    stamp_rxmeta_t meta;
    memset(&meta, 0, sizeof meta);
    struct sockaddr_in *s = (struct sockaddr_in *)&meta.src.addr;
    s->sin_family = AF_INET;
    meta.src.len = sizeof *s;
    struct sockaddr_in *d = (struct sockaddr_in *)&meta.dst.addr;
    d->sin_family = AF_INET;
    d->sin_port = htons(862);
    d->sin_addr.s_addr = htonl(0x7f000001);
    meta.dst.len = sizeof *d;
    meta.ttl = 64;
    stamp_reply_t r;
    stamp_ns_t t0 = stamp_mono();
    for (unsigned i = 0; i < n; i++) {
        s->sin_addr.s_addr = htonl(0x0a000000u + i / 50);
        s->sin_port = htons((uint16_t)(10000 + i % 50));
        stamp_rmach_input(m, pkt, sizeof pkt, &meta, 1000000000LL + i, 0, &r);
    }
    stamp_ns_t t1 = stamp_mono();
    stamp_reflector_counters_t ctr;
    stamp_rmach_counters(m, &ctr);
    long r2 = rss_kb();
    printf("sessions %llu created %llu evicted %llu; RSS before %ld kB, empty machine %ld kB, full %ld kB; %.0f ns/packet (new sessions)\n",
           (unsigned long long)ctr.sessions_active, (unsigned long long)ctr.sessions_created,
           (unsigned long long)ctr.sessions_evicted, r0, r1, r2, (double)(t1 - t0) / n);
    stamp_rmach_free(m);
    return 0;
}
