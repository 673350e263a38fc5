/* libFuzzer target: the reflector's I/O-free machine (stamp_rmach_*), i.e.
 * the WHOLE processing of datagrams, with every policy on: authenticated
 * mode with a key and HMAC TLV verification (or open mode, chosen by octet
 * 0), stateful, Return Path with allowed prefixes, Type 12 with caps,
 * per-source rate limit, replay window; several datagrams per input from a
 * few source addresses (IPv4 and IPv6), times advancing, extra replies polled.
 *
 * Input: octet 0 = switches; then records, each: octet h (source address,
 * time step, sign, stamp the Sender Timestamp), octet n, then n octets (or
 * the rest) of datagram. In authenticated mode a record is put behind a
 * zeroed base when h asks, so it reaches the code behind the checks.
 *
 * Invariants:
 * - every datagram ends counted: rx = inputs = reflected + no_reply + drops
 *   (stamp.h: each ends in exactly one); replies returned = reflected;
 *   replies polled = extra_replies;
 * - no reply larger than its request, except TWAMP-Light-sized requests
 *   (14..43 octets, open mode) answered at 44 and granted Type 12 lengths
 *   (never beyond the configured max size); extra replies within the cap;
 * - replies go to and from addresses of the receiving socket's family;
 * - trust (RFC 8972 4.8): a request whose one HMAC TLV verifies with the key
 *   over the request's own sequence number and every TLV before it (only
 *   Extra Padding after it) is answered without I on any TLV.
 *   KNOWN ISSUE (fuzz/README.md): in stateful mode the machine verifies the
 *   HMAC TLV over the reply's sequence number (the reflector's counter,
 *   written before stamp_tlv_reflect runs), so a request whose sequence
 *   number differs from it is flagged I; that case is exempt unless built
 *   with -DRMACH_STRICT_TRUST=1 (now the default: K2 is fixed).
 * - reads in bounds (ASan: every datagram is an exact heap copy). */
#include <arpa/inet.h>
#include <stdint.h>

#include "fuzz.h"

#define MAXSIZE 2000
#ifndef RMACH_STRICT_TRUST
#define RMACH_STRICT_TRUST 1
#endif

/* Does the request carry one valid HMAC TLV covering all TLVs before it, with only Extra Padding after it? */
static int trusted(stamp_hmac_t *h, const uint8_t *pkt, size_t base, size_t len)
{
    if (len <= base) return 0;
    size_t pos = base;
    stamp_tlv_t t;
    long at = -1;
    int r;
    while ((r = stamp_tlv_next(pkt, len, &pos, &t)) == 1) {
        if (t.type == STAMP_TLV_HMAC) {
            if (at >= 0 || t.len != STAMP_HMAC_LEN) return 0;
            at = (long)t.off;
        } else if (at >= 0 && t.type != STAMP_TLV_PADDING) {
            return 0;
        }
    }
    return r == 0 && at >= 0 && stamp_tlv_verify(h, pkt, base, (size_t)at) == STAMP_OK;
}

/* Is a TLV of the reply flagged I that was not flagged I in the request? (The
 * TLVs go back in order; Type 12 may drop Extra Padding TLVs, so compare the
 * others one by one. TLVs after a malformed one go back as received, I too.) */
static int new_i(const uint8_t *req, size_t reqlen, const uint8_t *rep, size_t replen, size_t base)
{
    size_t p1 = base, p2 = base;
    stamp_tlv_t a, b;
    for (;;) {
        int r2;
        do r2 = stamp_tlv_next(rep, replen, &p2, &b); while (r2 == 1 && b.type == STAMP_TLV_PADDING);
        if (r2 != 1) return 0;
        int r1;
        do r1 = stamp_tlv_next(req, reqlen, &p1, &a); while (r1 == 1 && a.type == STAMP_TLV_PADDING);
        if (r1 != 1) return 1; /* more TLVs than asked */
        if ((b.flags & STAMP_TLV_I) && !(a.flags & STAMP_TLV_I)) return 1;
    }
}

static const char *const srcs[4] = {"127.0.0.1", "127.0.0.9", "::1", "::ffff:127.0.0.5"};

/* `meta` is the sources' metadata: a reply goes to the source port of the
 * datagram it answers (a Return Address changes the address, not the port),
 * in the family of the socket that datagram came to. */
static void check_reply(const stamp_reply_t *r, size_t reqlen, const stamp_rxmeta_t *meta, int open)
{
    CHECK(r->buf && r->len <= STAMP_MAX_PKT);
    if (r->len > reqlen) {
        int light = open && reqlen >= STAMP_TWAMP_LIGHT_MIN && reqlen < STAMP_BASE_LEN && r->len == STAMP_BASE_LEN;
        CHECK(light || r->len <= MAXSIZE);
    }
    CHECK(r->len >= (open ? STAMP_BASE_LEN : STAMP_AUTH_BASE_LEN));
    volatile uint8_t x = 0;
    for (size_t i = 0; i < r->len; i++) x ^= r->buf[i]; /* the whole reply readable */
    (void)x;
    char host[64];
    unsigned port = 0;
    CHECK(stamp_addr_format(&r->to, host, sizeof host, &port) == 0);
    CHECK(port >= 8621 && port <= 8624);
    const stamp_rxmeta_t *m = &meta[port - 8621];
    CHECK(r->to.addr.ss_family == m->dst.addr.ss_family);
    if (r->from.len) CHECK(r->from.addr.ss_family == m->dst.addr.ss_family);
    /* a reply grown past its request (Type 12) fits the egress MTU of that peer's interface (RFC 10052 3) */
    if (r->len > reqlen && m->mtu) CHECK(r->len + (m->src.addr.ss_family == AF_INET6 ? 48u : 28u) <= (size_t)m->mtu);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static stamp_hmac_t *hmac;
    if (!hmac) hmac = stamp_hmac_new(FUZZ_KEY, FUZZ_KEYLEN);
    if (size < 1) return 0;
    const unsigned sw = data[0];
    const int open = sw & 1;
    stamp_reflector_cfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.mode = open ? STAMP_MODE_OPEN : STAMP_MODE_AUTH;
    cfg.key = FUZZ_KEY;
    cfg.keylen = FUZZ_KEYLEN;
    cfg.clock = STAMP_CLOCK_NTP;
    cfg.stateful = !(sw & 2);
    cfg.session_timeout = 5;
    cfg.max_sessions = (sw & 4) ? 2 : 64; /* small tables: fast runs */
    cfg.strict_packets = sw & 8 ? 1 : 0;
    cfg.tlv.process = 1;
    cfg.tlv.verify_hmac = 1;
    cfg.tlv.refl_max_count = 4;
    cfg.tlv.refl_max_size = MAXSIZE;
    cfg.tlv.refl_min_interval = 1000;
    cfg.tlv.refl_max_interval = 1000000000;
    cfg.tlv.n_allow_return = 2;
    cfg.tlv.allow_return[0].family = AF_INET;
    cfg.tlv.allow_return[0].plen = 8;
    cfg.tlv.allow_return[0].addr[0] = 127;
    cfg.tlv.allow_return[1].family = AF_INET6;
    cfg.tlv.allow_return[1].plen = 128;
    cfg.tlv.allow_return[1].addr[15] = 1;
    cfg.max_pps = (sw & 0x10) ? 100 : 0;
    cfg.rate_burst = 3;
    cfg.rate_sources = 2;
    cfg.replay_max_age = (sw & 0x20) ? 1 : 0;
    cfg.drop_replayed = (sw & 0x40) ? 1 : 0;
    cfg.max_bursts = (sw & 0x80) ? 1 : 8;
    /* Type 12 volume limit and provisioned admission (SSID 0 from anyone, SSID 1 from the second peer) */
    cfg.t12_max_rate = (sw & 0x10) ? 20000 : 0;
    cfg.t12_max_volume = 3000;
    stamp_provisioned_t prov[2];
    memset(prov, 0, sizeof prov);
    prov[1].ssid = 1;
    stamp_addr_parse(&prov[1].peer, srcs[1], 8622);
    cfg.admission = (sw & 0x20) ? STAMP_ADMIT_PROVISIONED : STAMP_ADMIT_OPEN;
    cfg.sessions = prov;
    cfg.n_sessions = 2;
    stamp_rmach_t *m = NULL;
    CHECK(stamp_rmach_new(&cfg, &m) == 0 && m);

    const size_t base = stamp_base_len(cfg.mode);
    stamp_ns_t mono = 1000000000, now0 = (stamp_ns_t)1764201600 * STAMP_NS_PER_SEC;
    uint64_t inputs = 0, first = 0, extras = 0;
    size_t pos = 1;
    stamp_reply_t out[8];
    stamp_rxmeta_t meta[4];
    for (int i = 0; i < 4; i++) {
        memset(&meta[i], 0, sizeof meta[i]);
        stamp_addr_parse(&meta[i].src, srcs[i], 8621 + (unsigned)i);
        stamp_addr_parse(&meta[i].dst, i < 2 ? "127.0.0.2" : "::1", 8620);
        meta[i].ttl = 255;
        meta[i].tos = i & 1 ? -1 : 0xb8;
        meta[i].ifindex = 1;
        meta[i].mtu = i == 0 ? 576 : i == 2 ? 1280 : 0; /* egress MTU: known for two peers */
    }
    while (pos + 2 <= size && inputs < 64) {
        const unsigned h = data[pos], n = data[pos + 1];
        pos += 2;
        size_t take = n ? n : size - pos;
        if (take > size - pos) take = size - pos;
        const uint8_t *src = data + pos;
        pos += take;
        mono += (stamp_ns_t)((h >> 2) & 7) * ((h & 0x20) ? 1000000000 : 3000000);
        stamp_ns_t now = now0 + mono;
        stamp_rxmeta_t *mt = &meta[h & 3];
        mt->rx_time = now;
        /* behind a zeroed base (h & 0x40), or as it is */
        size_t len = take + ((h & 0x40) ? base : 0);
        uint8_t *pkt = malloc(len ? len : 1);
        CHECK(pkt);
        if (h & 0x40) {
            memset(pkt, 0, base);
            pkt[3] = (uint8_t)inputs;
            memcpy(pkt + base, src, take);
        } else if (take) {
            memcpy(pkt, src, take);
        }
        if ((h & 0x80) && len >= 24) { /* a fresh Sender Timestamp (replay window) */
            uint64_t ts = (uint64_t)(now / STAMP_NS_PER_SEC + 2208988800u) << 32;
            const size_t at = open ? 4 : 16;
            for (int k = 0; k < 8; k++) pkt[at + k] = (uint8_t)(ts >> (56 - 8 * k));
        }
        if ((h & 0x40) && len >= base) fz_sign(hmac, pkt, len, base, !open);
        stamp_reply_t r;
        inputs++;
        if (stamp_rmach_input(m, pkt, len, mt, mono, now, &r) == 1) {
            first++;
            CHECK(!r.extra);
            CHECK(r.to.addr.ss_family == mt->dst.addr.ss_family);
            check_reply(&r, len, meta, open);
            int exempt = cfg.stateful && memcmp(r.buf, pkt, 4) != 0 && !RMACH_STRICT_TRUST; /* known issue */
            if (len > base && trusted(hmac, pkt, base, len) && !exempt) CHECK(!new_i(pkt, len, r.buf, r.len, base));
        }
        free(pkt);
        if (stamp_rmach_next_due(m) <= mono) {
            int k = stamp_rmach_poll(m, mono, now, out, 8);
            CHECK(k >= 0 && k <= 8);
            for (int i = 0; i < k; i++) {
                CHECK(out[i].extra && out[i].due <= mono);
                check_reply(&out[i], MAXSIZE, meta, open);
            }
            extras += (uint64_t)k;
        }
        if (h & 0x10) stamp_rmach_tick(m, mono);
        if ((h & 0x13) == 0x13) { /* a new TLV policy (SIGHUP): caps up or down, Type 12 off, prefixes gone */
            stamp_tlv_policy_t p = cfg.tlv;
            p.refl_max_count = (h >> 2) & 7;
            if (h & 0x40) p.refl_max_size = 200;
            if (h & 0x80) p.refl_min_interval = 5000000;
            if (h & 0x20) p.n_allow_return = 0;
            CHECK(stamp_rmach_set_tlv_policy(m, &p) == 0);
        }
        stamp_reflector_counters_t c;
        stamp_rmach_counters(m, &c);
        CHECK(c.rx == inputs);
        CHECK(c.rx == c.reflected + c.no_reply + c.drop_short + c.drop_truncated + c.drop_hmac + c.drop_sessions +
                          c.drop_tx + c.drop_micro + c.drop_group + c.drop_rate + c.drop_replayed +
                          c.drop_unprovisioned);
        CHECK(c.reflected == first && c.extra_replies == extras);
        CHECK(c.short_padded <= c.reflected + c.no_reply);
    }
    /* drain what stays queued: the schedule ends */
    for (int round = 0; round < 64 && stamp_rmach_next_due(m) != INT64_MAX; round++) {
        stamp_ns_t due = stamp_rmach_next_due(m);
        if (due > mono) mono = due;
        int k = stamp_rmach_poll(m, mono, now0 + mono, out, 8);
        CHECK(k >= 0 && k <= 8);
        for (int i = 0; i < k; i++) {
            CHECK(out[i].extra && out[i].due <= mono);
            check_reply(&out[i], MAXSIZE, meta, open);
        }
        extras += (uint64_t)k;
        if (k == 0) stamp_rmach_tick(m, mono);
    }
    stamp_reflector_counters_t c;
    stamp_rmach_counters(m, &c);
    CHECK(c.extra_replies == extras);
    CHECK(c.extra_replies <= c.reflected * 3);
    stamp_rmach_free(m);
    return 0;
}
