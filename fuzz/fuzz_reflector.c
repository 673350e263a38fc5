/* libFuzzer target: the reflector's processing of one test packet's TLVs
 * (stamp_tlv_reflect, then stamp_tlv_fit for Type 12) with every policy on:
 * authenticated mode, HMAC TLV verification, Return Path with allowed
 * prefixes, Destination Node Address, Class of Service, Micro-session ID,
 * Type 12 with caps, stateful sequence checks; IPv4 and IPv6.
 * Input: octet 0 and octet 1 choose mode, addresses and switches; the rest
 * is the packet after the base (a base packet is put in front). When octet
 * 0 asks for it, the packet is signed with the key first (HMAC TLV and
 * base), so the fuzzer reaches what lies behind the checks.
 *
 * Invariants (checked against an independent reading of the request):
 * - TLVs go back in order and length, only flags and values change;
 * - trust (RFC 8972 4.8): in authenticated mode or with HMAC verification,
 *   unless the only TLV is one Extra Padding TLV, nothing is acted on and
 *   every TLV is flagged I unless one valid HMAC TLV covers all TLVs before
 *   it with only Extra Padding after it;
 * - the reply never grows but for Type 12, never beyond the size cap, and
 *   never below the TLVs it must carry; extra replies within the count cap;
 *   stamp_tlv_fit makes it exactly that long or sets C; the non-padding TLVs
 *   survive it in order, the HMAC TLV offset follows it, and the reply's
 *   HMAC TLV verifies once signed;
 * - Return Address only inside the allowed prefixes, Destination Node
 *   Address in the family of the test. */
#include <arpa/inet.h>

#include "fuzz.h"

#define MAXT 4096

typedef struct {
    uint8_t type[MAXT], flags[MAXT];
    uint16_t len[MAXT];
    size_t off[MAXT];
    int n, bad; /* bad: the area does not parse to its end */
} tlvs_t;

static void scan(const uint8_t *p, size_t from, size_t len, tlvs_t *o)
{
    size_t pos = from;
    stamp_tlv_t t;
    int r;
    o->n = 0;
    while ((r = stamp_tlv_next(p, len, &pos, &t)) == 1 && o->n < MAXT) {
        o->type[o->n] = t.type;
        o->flags[o->n] = t.flags;
        o->len[o->n] = t.len;
        o->off[o->n] = t.off;
        o->n++;
    }
    o->bad = r < 0;
}

/* Does the request carry what the trust rule asks for? */
static int trusted(const tlvs_t *in, const uint8_t *pkt, size_t base, stamp_hmac_t *h)
{
    if (in->bad) return 0;
    int at = -1;
    for (int i = 0; i < in->n; i++) {
        if (in->type[i] == STAMP_TLV_HMAC) {
            if (at >= 0) return 0; /* two of them */
            at = i;
        } else if (at >= 0 && in->type[i] != STAMP_TLV_PADDING) {
            return 0; /* something after it that it does not cover */
        }
    }
    return at >= 0 && in->len[at] == STAMP_HMAC_LEN && stamp_tlv_verify(h, pkt, base, in->off[at]) == STAMP_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static stamp_hmac_t *hmac;
    static tlvs_t in, out, fit;
    if (!hmac) hmac = stamp_hmac_new(FUZZ_KEY, FUZZ_KEYLEN);
    if (size < 2) return 0;
    const unsigned sw = data[0], sw2 = data[1];
    const stamp_mode_t mode = (sw & 0x10) ? STAMP_MODE_AUTH : STAMP_MODE_OPEN;
    const size_t base = stamp_base_len(mode);
    if (size - 2 + base > STAMP_MAX_PKT) return 0;
    size_t len = base + size - 2;
    uint8_t *pkt = malloc(len); /* exact size: ASan sees any access past the datagram */
    CHECK(pkt);
    memset(pkt, 0, base);
    pkt[3] = 7; /* sequence number */
    memcpy(pkt + base, data + 2, size - 2);
    if (sw & 0x20) fz_sign(hmac, pkt, len, base, mode == STAMP_MODE_AUTH);

    stamp_rxmeta_t m;
    memset(&m, 0, sizeof m);
    int v6 = sw & 1;
    stamp_addr_parse(&m.src, v6 ? "::1" : "127.0.0.1", 8621);
    stamp_addr_parse(&m.dst, v6 ? "::1" : "127.0.0.2", 8620);
    m.ifindex = (sw2 & 0x20) ? 1 : 0;
    m.ttl = 64;
    m.tos = (sw & 0x40) ? -1 : 0xb8;
    stamp_tlv_policy_t pol;
    memset(&pol, 0, sizeof pol);
    pol.process = 1;
    pol.verify_hmac = sw & 2;
    pol.cos_refuse = sw & 4;
    pol.has_member_link = sw & 8;
    pol.location_hide = sw & 0x80;
    pol.member_link = 9;
    pol.refl_max_count = (sw2 & 0x10) ? 0 : 4;
    pol.refl_max_size = 2000;
    pol.refl_min_interval = 1000;
    pol.refl_max_interval = (sw2 & 0x40) ? 0 : 1000000000;
    pol.n_allow_return = 2;
    pol.allow_return[0].family = AF_INET;
    pol.allow_return[0].plen = 8;
    pol.allow_return[0].addr[0] = 127;
    pol.allow_return[1].family = AF_INET6;
    pol.allow_return[1].plen = 128;
    pol.allow_return[1].addr[15] = 1;
    static const uint8_t local[2][16] = {{192, 0, 2, 1}, {0x20, 0x01, 0x0d, 0xb8, [15] = 1}};
    static const uint8_t local_lens[2] = {4, 16};
    stamp_tlv_ctx_t c;
    memset(&c, 0, sizeof c);
    c.meta = &m;
    c.pol = &pol;
    c.clock = (sw & 0x40) ? STAMP_CLOCK_PTP : STAMP_CLOCK_NTP;
    c.tai = 37;
    c.stateful = sw2 & 1;
    c.sess_rx = 3;
    c.sess_tx = 2;
    c.prev_seq = 6;
    c.prev_tx = (stamp_ns_t)1764201600 * STAMP_NS_PER_SEC;
    c.has_prev = sw & 0x40;
    c.sender_seq = 7;
    c.has_last_sender_seq = sw2 & 2;
    c.last_sender_seq = (sw2 & 4) ? 7 : 6;
    c.max_len = (sw2 & 8) ? 1472 : 0;
    c.local_addrs = local;
    c.local_lens = local_lens;
    c.n_local = 2;
    c.tos = -1;

    scan(pkt, base, len, &in);
    const int need = mode == STAMP_MODE_AUTH || pol.verify_hmac;
    const int lone_pad = !in.bad && in.n == 1 && in.type[0] == STAMP_TLV_PADDING;
    const int ok_hmac = trusted(&in, pkt, base, hmac);
    size_t nopad = base;
    for (int i = 0; i < in.n; i++)
        if (in.type[i] != STAMP_TLV_PADDING) nopad += STAMP_TLV_HDR + in.len[i];
    int has12 = 0;
    for (int i = 0; i < in.n; i++) has12 |= in.type[i] == STAMP_TLV_REFLCTRL;

    int hoff = -2;
    int f = stamp_tlv_reflect(&c, hmac, pkt, base, len, &hoff);
    CHECK(hoff == -1 || ((size_t)hoff >= base && (size_t)hoff + STAMP_TLV_HDR + STAMP_HMAC_LEN <= len));
    CHECK(f == STAMP_TLV_DROP || (f & ~0xff) == 0);

    /* in order and length: the same headers but for their flags */
    scan(pkt, base, len, &out);
    CHECK(out.n == in.n && out.bad == in.bad);
    CHECK(memcmp(in.type, out.type, (size_t)in.n) == 0);
    CHECK(memcmp(in.len, out.len, (size_t)in.n * sizeof in.len[0]) == 0);

    if (need && !lone_pad && !ok_hmac) { /* trust: nothing acted on, everything flagged I */
        /* ... but an HMAC TLV whose Length is not 16 (the last one) is malformed: M on it, not I */
        int last_hmac = -1;
        for (int i = 0; i < in.n; i++)
            if (in.type[i] == STAMP_TLV_HMAC) last_hmac = i;
        int bad_len = last_hmac >= 0 && in.len[last_hmac] != STAMP_HMAC_LEN;
        CHECK(f == (bad_len ? STAMP_TLV_M : STAMP_TLV_I));
        for (int i = 0; i < out.n; i++)
            CHECK(bad_len && i == last_hmac ? (out.flags[i] & STAMP_TLV_M) && !(out.flags[i] & STAMP_TLV_I)
                                            : (out.flags[i] & STAMP_TLV_I) != 0);
        CHECK(!c.no_reply && !c.has_return_to && !c.has_source && !c.extra_count && !c.want_len);
        CHECK(c.tos == -1 && c.ifindex == 0 && hoff == -1);
    }
    if (f != STAMP_TLV_DROP && !c.no_reply) {
        if (c.want_len || c.extra_count) CHECK(has12 && pol.refl_max_count);
        CHECK(c.extra_count + 1 <= pol.refl_max_count || c.extra_count == 0);
        if (c.extra_count) CHECK(c.extra_interval >= pol.refl_min_interval);
        if (c.extra_count && pol.refl_max_interval) CHECK(c.extra_interval <= pol.refl_max_interval);
        if (c.want_len) {
            CHECK(!in.bad && c.want_len >= nopad);                    /* never below what it must carry */
            if (c.want_len > len) CHECK(c.want_len <= pol.refl_max_size); /* grows only within the cap */
            if (c.max_len && c.want_len > nopad) CHECK(c.want_len <= c.max_len);
            CHECK(c.want_len % 4 == 0 || c.want_len == nopad);
        }
        if (c.has_return_to) { /* only inside the allowed prefixes: 127/8 and ::1 (or mapped), to the source port */
            char host[64];
            unsigned port;
            CHECK(stamp_addr_format(&c.return_to, host, sizeof host, &port) == 0);
            CHECK(strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0);
            CHECK(port == 8621);
        }
        if (c.has_source) { /* in the family of the test, on the port it came to */
            char host[64];
            unsigned port;
            CHECK(stamp_addr_format(&c.source, host, sizeof host, &port) == 0);
            CHECK(c.source.addr.ss_family == m.src.addr.ss_family);
            CHECK(port == 8620);
        }
        /* Type 12: the reply made exactly as long as asked, or C */
        size_t rlen = len;
        uint8_t *reply = malloc(STAMP_MAX_PKT);
        CHECK(reply);
        memcpy(reply, pkt, len);
        if (c.want_len) {
            int h2 = hoff;
            rlen = stamp_tlv_fit(reply, STAMP_MAX_PKT, base, len, c.want_len, &h2);
            CHECK(rlen <= STAMP_MAX_PKT);
            scan(reply, base, rlen, &fit);
            CHECK(!fit.bad);
            int k = 0, c12 = 0;
            for (int i = 0; i < fit.n; i++) {
                if (fit.type[i] == STAMP_TLV_PADDING) {
                    CHECK(i == fit.n - 1 && fit.flags[i] == 0); /* only the one the reflector appends */
                    continue;
                }
                while (k < out.n && out.type[k] == STAMP_TLV_PADDING) k++;
                CHECK(k < out.n && out.type[k] == fit.type[i] && out.len[k] == fit.len[i]);
                CHECK(memcmp(reply + fit.off[i] + 1, pkt + out.off[k] + 1, STAMP_TLV_HDR - 1 + out.len[k]) == 0);
                if (fit.type[i] == STAMP_TLV_REFLCTRL && !c12++) CHECK(rlen == c.want_len || (reply[fit.off[i]] & STAMP_TLV_C));
                if (hoff >= 0 && (size_t)hoff == out.off[k]) CHECK(h2 == (int)fit.off[i]);
                k++;
            }
            if (hoff >= 0) CHECK(h2 >= 0 && reply[h2 + 1] == STAMP_TLV_HMAC);
            hoff = h2;
        }
        if (rlen > len) CHECK(has12 && rlen <= pol.refl_max_size);
        /* the reply's HMAC TLV, signed as the reflector signs it, verifies */
        if (hoff >= 0) {
            CHECK(stamp_tlv_sign(hmac, reply, base, (size_t)hoff) == STAMP_OK);
            CHECK(stamp_tlv_verify(hmac, reply, base, (size_t)hoff) == STAMP_OK);
        }
        free(reply);
    }
    free(pkt);
    return 0;
}
