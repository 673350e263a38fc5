/*
 * tlv.c - the TLV registry: one entry per type with its lengths, fields
 * (for the table-driven codec), sub-TLVs and reflector processing.
 * RFC 8972 types 1-8, RFC 9503 types 9-10, RFC 9534 type 11, and type 12
 * (reflected test packet control, draft-ietf-ippm-asymmetrical-pkts).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <openssl/crypto.h>

#include "internal.h"

/* ------------------------------------------------------------------ */
/* generic field access                                                */
/* ------------------------------------------------------------------ */

/* The octets [b0, b1] of a field, big-endian, in one word (at most 8 of them). */
static uint64_t span_read(const uint8_t *v, unsigned b0, unsigned b1)
{
    uint64_t x = 0;
    for (unsigned i = b0; i <= b1; i++) x = (x << 8) | v[i];
    return x;
}

uint64_t stamp_field_get(const uint8_t *v, size_t vlen, const stamp_tlv_field_t *f)
{
    if (f->kind != STAMP_F_UINT || f->width == 0 || f->width > 64) return 0;
    if ((size_t)(f->bitpos + f->width + 7) / 8 > vlen) return 0;
    unsigned b0 = f->bitpos / 8u, last = f->bitpos + f->width - 1u, b1 = last / 8u;
    if (b1 - b0 < 8) { /* the field within 8 octets: one word, shifted and masked */
        uint64_t x = span_read(v, b0, b1) >> (7u - last % 8u);
        return f->width == 64 ? x : x & ((UINT64_C(1) << f->width) - 1u);
    }
    uint64_t x = 0; /* 64 bits over 9 octets */
    for (unsigned b = f->bitpos; b < (unsigned)(f->bitpos + f->width); b++)
        x = (x << 1) | ((v[b / 8] >> (7 - b % 8)) & 1u);
    return x;
}

void stamp_field_set(uint8_t *v, size_t vlen, const stamp_tlv_field_t *f, uint64_t x)
{
    if (f->kind != STAMP_F_UINT || f->width == 0 || f->width > 64) return;
    if ((size_t)(f->bitpos + f->width + 7) / 8 > vlen) return;
    unsigned b0 = f->bitpos / 8u, last = f->bitpos + f->width - 1u, b1 = last / 8u;
    if (b1 - b0 < 8) { /* read the octets, replace the field's bits, write them back */
        unsigned sh = 7u - last % 8u;
        uint64_t mask = (f->width == 64 ? ~UINT64_C(0) : (UINT64_C(1) << f->width) - 1u) << sh;
        uint64_t w = (span_read(v, b0, b1) & ~mask) | ((x << sh) & mask);
        for (unsigned i = b1 + 1; i-- > b0; w >>= 8) v[i] = (uint8_t)w;
        return;
    }
    for (int i = f->width - 1, b = f->bitpos; i >= 0; i--, b++) {
        uint8_t m = (uint8_t)(1u << (7 - b % 8));
        if ((x >> i) & 1u)
            v[b / 8] |= m;
        else
            v[b / 8] &= (uint8_t)~m;
    }
}

/* stamp_tlv_next, inlined into the walks of this file */
static inline int tlv_next(const uint8_t *buf, size_t len, size_t *pos, stamp_tlv_t *t)
{
    size_t p = *pos;
    memset(t, 0, sizeof *t);
    if (p >= len) return 0;
    t->off = p;
    if (len - p < STAMP_TLV_HDR) {
        t->flags = buf[p];
        return -1;
    }
    t->flags = buf[p];
    t->type = buf[p + 1];
    t->len = rd16(buf + p + 2);
    if ((size_t)t->len > len - p - STAMP_TLV_HDR) return -1;
    *pos = p + STAMP_TLV_HDR + t->len;
    return 1;
}

int stamp_tlv_next(const uint8_t *buf, size_t len, size_t *pos, stamp_tlv_t *t) { return tlv_next(buf, len, pos, t); }

/* ------------------------------------------------------------------ */
/* helpers for the reflector                                           */
/* ------------------------------------------------------------------ */

/* The address octets of a (possibly IPv4-mapped) socket address: 4 or 16. */
static int addr_octets(const stamp_addr_t *a, uint8_t out[16])
{
    if (a->addr.ss_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)&a->addr)->sin_addr, 4);
        return 4;
    }
    if (a->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->addr;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            memcpy(out, &s6->sin6_addr.s6_addr[12], 4);
            return 4;
        }
        memcpy(out, &s6->sin6_addr, 16);
        return 16;
    }
    return 0;
}

static unsigned addr_port(const stamp_addr_t *a)
{
    if (a->addr.ss_family == AF_INET) return ntohs(((const struct sockaddr_in *)&a->addr)->sin_port);
    if (a->addr.ss_family == AF_INET6) return ntohs(((const struct sockaddr_in6 *)&a->addr)->sin6_port);
    return 0;
}

/* A socket address of the family of `like` from raw octets and a port. */
static int make_addr(stamp_addr_t *out, const uint8_t *oct, int n, unsigned port, const stamp_addr_t *like)
{
    return stamp_addr_from_octets(out, oct, n, port, like->addr.ss_family);
}

static int prefix_match(const uint8_t *a, const uint8_t *p, int plen)
{
    int full = plen / 8, rest = plen % 8;
    if (memcmp(a, p, (size_t)full) != 0) return 0;
    if (rest == 0) return 1;
    uint8_t m = (uint8_t)(0xff << (8 - rest));
    return (a[full] & m) == (p[full] & m);
}

int stamp_local_addrs(uint8_t (*addrs)[16], uint8_t *lens, int max)
{
    struct ifaddrs *ifa = NULL;
    int n = 0;
    if (getifaddrs(&ifa) != 0) return 0;
    for (struct ifaddrs *i = ifa; i && n < max; i = i->ifa_next) {
        if (!i->ifa_addr) continue;
        if (i->ifa_addr->sa_family == AF_INET) {
            memcpy(addrs[n], &((struct sockaddr_in *)i->ifa_addr)->sin_addr, 4);
            lens[n++] = 4;
        } else if (i->ifa_addr->sa_family == AF_INET6) {
            memcpy(addrs[n], &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, 16);
            lens[n++] = 16;
        }
    }
    freeifaddrs(ifa);
    return n;
}

/* Is `oct` (n octets) one of this host's addresses (as the reflector last listed them)? */
static int is_local_addr(const stamp_tlv_ctx_t *c, const uint8_t *oct, int n)
{
    if (n == 4 && oct[0] == 127) return 1; /* the whole of 127.0.0.0/8 is local on Linux */
    for (int i = 0; i < c->n_local; i++)
        if (c->local_lens[i] == n && memcmp(c->local_addrs[i], oct, (size_t)n) == 0) return 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* fields and sub-TLVs of each type                                    */
/* ------------------------------------------------------------------ */

#define END_FIELDS {NULL, 0, 0, 0}
#define END_SUBS {0, NULL, 0, 0}

static const stamp_tlv_field_t F_PADDING[] = {END_FIELDS};
static const stamp_tlv_field_t F_LOCATION[] = {
    {"dst_port", STAMP_F_UINT, 0, 16}, {"src_port", STAMP_F_UINT, 16, 16}, END_FIELDS};
static const stamp_subtlv_def_t S_LOCATION[] = {
    {1, "src_mac_request", STAMP_F_BYTES, 0}, {2, "src_mac", STAMP_F_BYTES, 0}, {3, "src_eui64", STAMP_F_BYTES, 0},
    {4, "dst_addr_request", STAMP_F_BYTES, 0}, {5, "dst_addr", STAMP_F_ADDR, 4}, {6, "dst_addr", STAMP_F_ADDR, 16},
    {7, "src_addr_request", STAMP_F_BYTES, 0}, {8, "src_addr", STAMP_F_ADDR, 4}, {9, "src_addr", STAMP_F_ADDR, 16},
    END_SUBS};
static const stamp_tlv_field_t F_TSINFO[] = {{"sync_in", STAMP_F_UINT, 0, 8},
                                             {"method_in", STAMP_F_UINT, 8, 8},
                                             {"sync_out", STAMP_F_UINT, 16, 8},
                                             {"method_out", STAMP_F_UINT, 24, 8},
                                             END_FIELDS};
static const stamp_subtlv_def_t S_NONE[] = {END_SUBS};
/* RFC 8972 4.4: DSCP1(6) DSCP2(6) ECN(2) RP(2) Reserved(16) */
static const stamp_tlv_field_t F_COS[] = {{"dscp1", STAMP_F_UINT, 0, 6},
                                          {"dscp2", STAMP_F_UINT, 6, 6},
                                          {"ecn2", STAMP_F_UINT, 12, 2},
                                          {"rp", STAMP_F_UINT, 14, 2},
                                          END_FIELDS};
static const stamp_tlv_field_t F_DM[] = {{"s_txc", STAMP_F_UINT, 0, 32},
                                         {"r_rxc", STAMP_F_UINT, 32, 32},
                                         {"r_txc", STAMP_F_UINT, 64, 32},
                                         END_FIELDS};
static const stamp_tlv_field_t F_ACCESS[] = {
    {"id", STAMP_F_UINT, 0, 4}, {"return_code", STAMP_F_UINT, 8, 8}, END_FIELDS};
static const stamp_tlv_field_t F_FOLLOWUP[] = {{"seq", STAMP_F_UINT, 0, 32},
                                               {"timestamp", STAMP_F_TS, 32, 64},
                                               {"mode", STAMP_F_UINT, 96, 8},
                                               END_FIELDS};
static const stamp_tlv_field_t F_HMAC[] = {{"hmac", STAMP_F_BYTES, 0, 16}, END_FIELDS};
static const stamp_tlv_field_t F_DESTNODE[] = {{"addr", STAMP_F_ADDR, 0, 0}, END_FIELDS};
static const stamp_subtlv_def_t S_RETURNPATH[] = {{1, "control_code", STAMP_F_UINT, 0},
                                                  {2, "return_addr", STAMP_F_ADDR, 0},
                                                  {3, "sr_mpls", STAMP_F_BYTES, 0},
                                                  {4, "srv6", STAMP_F_BYTES, 0},
                                                  END_SUBS};
static const stamp_tlv_field_t F_MICRO[] = {
    {"sender_id", STAMP_F_UINT, 0, 16}, {"reflector_id", STAMP_F_UINT, 16, 16}, END_FIELDS};
static const stamp_tlv_field_t F_REFLCTRL[] = {{"reflected_length", STAMP_F_UINT, 0, 16},
                                               {"count", STAMP_F_UINT, 16, 16},
                                               {"interval", STAMP_F_UINT, 32, 32},
                                               END_FIELDS};
static const stamp_subtlv_def_t S_REFLCTRL[] = {
    {10, "l2_group", STAMP_F_BYTES, 0}, {11, "l3_group", STAMP_F_BYTES, 0}, END_SUBS};

/* Where each field is in its list (keep in the order of the lists above): the handlers on the packet
   path reach their fields by these, not by name. */
enum { LOCATION_DST_PORT, LOCATION_SRC_PORT };
enum { TSINFO_SYNC_IN, TSINFO_METHOD_IN, TSINFO_SYNC_OUT, TSINFO_METHOD_OUT };
enum { DM_S_TXC, DM_R_RXC, DM_R_TXC };
enum { ACCESS_ID, ACCESS_RETURN_CODE };
enum { FOLLOWUP_SEQ, FOLLOWUP_TIMESTAMP, FOLLOWUP_MODE };
enum { MICRO_SENDER_ID, MICRO_REFLECTOR_ID };
enum { REFLCTRL_REFLECTED_LENGTH, REFLCTRL_COUNT, REFLCTRL_INTERVAL };

/* Set / read field `f` (a constant of the lists above): whole octets directly, the others through the
   generic bit codec. `len` is the value's length, already checked against the type's minimum. */
static inline void putf(uint8_t *v, uint16_t len, const stamp_tlv_field_t *f, uint64_t x)
{
    size_t o = f->bitpos / 8u;
    if (f->kind == STAMP_F_UINT && f->bitpos % 8u == 0 && o + f->width / 8u <= len) {
        if (f->width == 8) {
            v[o] = (uint8_t)x;
            return;
        }
        if (f->width == 16) {
            wr16(v + o, (uint16_t)x);
            return;
        }
        if (f->width == 32) {
            wr32(v + o, (uint32_t)x);
            return;
        }
    }
    stamp_field_set(v, len, f, x);
}

static inline uint64_t getf(const uint8_t *v, uint16_t len, const stamp_tlv_field_t *f)
{
    size_t o = f->bitpos / 8u;
    if (f->kind == STAMP_F_UINT && f->bitpos % 8u == 0 && o + f->width / 8u <= len) {
        if (f->width == 8) return v[o];
        if (f->width == 16) return rd16(v + o);
        if (f->width == 32) return rd32(v + o);
    }
    return stamp_field_get(v, len, f);
}

/* ------------------------------------------------------------------ */
/* reflector processing, one function per type                         */
/* ------------------------------------------------------------------ */

static int r_padding(stamp_tlv_ctx_t *c, uint8_t *v, uint16_t len)
{
    (void)c, (void)v, (void)len;
    return 0; /* returned as received */
}

#define TLV_RBITS 0x0f /* reserved flag bits: zero on send */

/* Walk sub-TLVs of a value from `off`; calls fn per complete sub-TLV. Returns M on a bad layout. */
typedef int (*sub_fn)(stamp_tlv_ctx_t *c, uint8_t *sub, uint8_t type, uint16_t len);
static int walk_subs(stamp_tlv_ctx_t *c, uint8_t *v, uint16_t len, uint16_t off, sub_fn fn)
{
    size_t pos = off;
    stamp_tlv_t t;
    int acc = 0, r;
    while ((r = tlv_next(v, len, &pos, &t)) == 1) {
        uint8_t *sub = v + t.off;
        int rr = fn(c, sub, t.type, t.len);
        if (rr & STAMP_TLV_DROP) return rr;
        acc |= rr & ~0xff; /* flags for the parent in the high byte */
        sub[0] = (uint8_t)((sub[0] & ~(STAMP_TLV_U | STAMP_TLV_M | STAMP_TLV_I | STAMP_TLV_C | TLV_RBITS)) |
                           (rr & 0xff));
        if (rr & STAMP_TLV_M) return STAMP_TLV_M; /* stop at a malformed sub-TLV */
    }
    if (r < 0) {
        v[t.off] |= STAMP_TLV_M;
        return STAMP_TLV_M;
    }
    return acc >> 8;
}

static int loc_sub(stamp_tlv_ctx_t *c, uint8_t *sub, uint8_t type, uint16_t len)
{
    /* RFC 8972 4.2.1: MAC sub-TLVs (1-3) have Length 8, address sub-TLVs (4-9) Length 16 */
    if (type >= 1 && type <= 3 && len != 8) return STAMP_TLV_M;
    if (type >= 4 && type <= 9 && len != 16) return STAMP_TLV_M;
    const stamp_addr_t *a;
    uint8_t v4, v6;
    if (type == 4) {
        a = &c->meta->dst;
        v4 = 5;
        v6 = 6;
    } else if (type == 7) {
        a = &c->meta->src;
        v4 = 8;
        v6 = 9;
    } else {
        return STAMP_TLV_U; /* e.g. Source MAC: not visible to a UDP socket */
    }
    uint8_t oct[16];
    int n = a->len ? addr_octets(a, oct) : 0;
    if (n == 0) return STAMP_TLV_U;
    if (len < n) return STAMP_TLV_M;
    uint8_t *val = sub + STAMP_TLV_HDR;
    memset(val, 0, len);
    sub[1] = n == 4 ? v4 : v6;
    if (!c->pol->location_hide) memcpy(val, oct, (size_t)n);
    return 0;
}

/* The first malformed sub-TLV of a Location value (RFC 8972 4.2.1 Lengths, or running past the
   value), as an offset into `v`; -1 when all are well formed. Reads only. */
static long loc_malformed(const uint8_t *v, uint16_t len)
{
    size_t pos = 4;
    stamp_tlv_t t;
    int r;
    while ((r = tlv_next(v, len, &pos, &t)) == 1) {
        if (t.type >= 1 && t.type <= 3 && t.len != 8) return (long)t.off;
        if (t.type >= 4 && t.type <= 9 && t.len != 16) return (long)t.off;
    }
    return r < 0 ? (long)t.off : -1;
}

static int r_location(stamp_tlv_ctx_t *c, uint8_t *v, uint16_t len)
{
    /* RFC 8972 4: a malformed TLV is returned as received but for its flags: nothing is filled */
    long bad = len < 4 ? -2 : loc_malformed(v, len);
    if (bad == -2) return STAMP_TLV_M;
    if (bad >= 0) {
        v[bad] = (uint8_t)((v[bad] & ~(STAMP_TLV_U | STAMP_TLV_I | STAMP_TLV_C | TLV_RBITS)) | STAMP_TLV_M);
        return STAMP_TLV_M;
    }
    if (!c->pol->location_hide) {
        putf(v, len, &F_LOCATION[LOCATION_DST_PORT], addr_port(&c->meta->dst));
        putf(v, len, &F_LOCATION[LOCATION_SRC_PORT], addr_port(&c->meta->src));
    }
    return walk_subs(c, v, len, 4, loc_sub);
}

static int r_tsinfo(stamp_tlv_ctx_t *c, uint8_t *v, uint16_t len)
{
    unsigned sync = c->synced ? STAMP_SYNC_NTP : STAMP_SYNC_LOCAL;
    /* kernel receive timestamps and user-space transmit stamps are both software */
    putf(v, len, &F_TSINFO[TSINFO_SYNC_IN], sync);
    putf(v, len, &F_TSINFO[TSINFO_METHOD_IN], STAMP_TSM_SW);
    putf(v, len, &F_TSINFO[TSINFO_SYNC_OUT], sync);
    putf(v, len, &F_TSINFO[TSINFO_METHOD_OUT], STAMP_TSM_SW);
    return 0;
}

static int r_cos(stamp_tlv_ctx_t *c, uint8_t *v, uint16_t len)
{
    (void)len; /* exactly 4 (registry) */
    /* the first 16 bits, as F_COS lays them out: DSCP1(6) DSCP2(6) ECN(2) RP(2) */
    unsigned dscp1 = (unsigned)rd16(v) >> 10;
    int tos = c->meta->tos;
    unsigned dscp2 = tos >= 0 ? (unsigned)tos >> 2 : 0, ecn = tos >= 0 ? (unsigned)tos & 3u : 0;
    unsigned rp = c->pol->cos_refuse ? 1u : 0u;
    wr16(v, (uint16_t)(dscp1 << 10 | (dscp2 & 0x3fu) << 4 | ecn << 2 | rp));
    v[2] = v[3] = 0; /* Reserved */
    if (rp)
        c->tos = tos >= 0 ? (tos & 0xfc) : -1; /* reply with the DSCP we received */
    else
        c->tos = (int)(dscp1 << 2);
    return 0;
}

static int r_dm(stamp_tlv_ctx_t *c, uint8_t *v, uint16_t len)
{
    putf(v, len, &F_DM[DM_R_RXC], c->sess_rx);
    putf(v, len, &F_DM[DM_R_TXC], c->sess_tx);
    return 0;
}

static int r_access(stamp_tlv_ctx_t *c, uint8_t *v, uint16_t len)
{
    (void)c;
    uint64_t id = getf(v, len, &F_ACCESS[ACCESS_ID]);
    /* RFC 8972 4.6: an Access ID other than 1 (3GPP) or 2 (non-3GPP) means the TLV is discarded:
       not used, returned as received with U. The Return Code is echoed whatever its value. */
    if (id != 1 && id != 2) return STAMP_TLV_U;
    v[0] &= 0xf0; /* Resv */
    v[2] = v[3] = 0; /* Reserved */
    return 0;
}

static int r_followup(stamp_tlv_ctx_t *c, uint8_t *v, uint16_t len)
{
    memset(v, 0, len);
    /* RFC 8972 4.7 (erratum 8339): a stateless reflector has no previous reply to report */
    if (c->stateful && c->has_prev) {
        putf(v, len, &F_FOLLOWUP[FOLLOWUP_SEQ], c->prev_seq);
        stamp_ts_encode(v + 4, c->prev_tx, c->clock, c->tai);
        putf(v, len, &F_FOLLOWUP[FOLLOWUP_MODE], STAMP_TSM_SW);
    }
    return 0;
}

static int r_destnode(stamp_tlv_ctx_t *c, uint8_t *v, uint16_t len)
{
    uint8_t dst[16], src[16];
    int n = c->meta->dst.len ? addr_octets(&c->meta->dst, dst) : 0;
    /* the reply goes back in the family of the test: an address of the other family
       cannot be its source (dual-stack socket), so the request is not honoured: U */
    int fam = c->meta->src.len ? addr_octets(&c->meta->src, src) : n;
    if (fam != len) return STAMP_TLV_U;
    if ((n == len && memcmp(dst, v, len) == 0) || is_local_addr(c, v, len)) {
        stamp_addr_t a; /* never touch an output before the whole decision is made */
        if (make_addr(&a, v, len, addr_port(&c->meta->dst), &c->meta->src) != 0) return STAMP_TLV_U;
        c->source = a;
        c->has_source = 1;
        return 0;
    }
    return STAMP_TLV_U; /* not one of our addresses */
}

/* A Return Address a reply may go to: unicast only (RFC 9503 6: the reflector may refuse addresses). Not
 * 0.0.0.0/8, multicast, the reserved 240/4 and the limited broadcast (224.0.0.0/3), 127.255.255.255, nor
 * ::, ff00::/8 and IPv4-mapped forms of the IPv4 ones. A directed broadcast of another subnet is the
 * allow list's to exclude (the kernel refuses it anyway without SO_BROADCAST: counted as a send failure). */
static int unicast_return(const uint8_t *v, uint16_t len)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (len == 16 && memcmp(v, mapped, 12) == 0) {
        v += 12;
        len = 4;
    }
    if (len == 4) {
        if (v[0] == 0 || v[0] >= 224) return 0;
        if (v[0] == 127 && v[1] == 255 && v[2] == 255 && v[3] == 255) return 0;
        return 1;
    }
    if (v[0] == 0xff) return 0;
    for (int i = 0; i < 16; i++)
        if (v[i]) return 1;
    return 0; /* :: */
}

static int rp_sub(stamp_tlv_ctx_t *c, uint8_t *sub, uint8_t type, uint16_t len)
{
    uint8_t *val = sub + STAMP_TLV_HDR;
    if (type == 1) { /* Return Path Control Code: reply request flag in the last bit */
        if (len != 4) return STAMP_TLV_M | (STAMP_TLV_M << 8);
        uint32_t cc = rd32(val) & 1u;
        wr32(val, cc); /* the other bits are reserved: zero on send */
        if (cc == 0) {
            c->no_reply = 1;
            return 0;
        }
        /* "reply on the same link": pin the reply to the arrival interface and address, or say U */
        if (c->meta->ifindex <= 0 || !c->meta->dst.len) return STAMP_TLV_U | (STAMP_TLV_U << 8);
        c->ifindex = c->meta->ifindex;
        c->source = c->meta->dst;
        c->has_source = 1;
        return 0;
    }
    if (type == 2) { /* Return Address */
        if (len != 4 && len != 16) return STAMP_TLV_M | (STAMP_TLV_M << 8);
        const stamp_tlv_policy_t *p = c->pol;
        if (!unicast_return(val, len)) return STAMP_TLV_U | (STAMP_TLV_U << 8); /* never there: to the source */
        for (int i = 0; i < p->n_allow_return; i++) {
            int fam_len = p->allow_return[i].family == AF_INET ? 4 : 16;
            if (fam_len == len && prefix_match(val, p->allow_return[i].addr, p->allow_return[i].plen)) {
                stamp_addr_t a;
                if (make_addr(&a, val, len, addr_port(&c->meta->src), &c->meta->src) != 0) break;
                c->return_to = a;
                c->has_return_to = 1;
                return 0;
            }
        }
        return STAMP_TLV_U | (STAMP_TLV_U << 8); /* not allowed: reply to the source instead */
    }
    /* RFC 9503 4.1.3: a segment list of at least one entry, 4 (SR-MPLS) or 16 (SRv6) octets each */
    if (type == 3 && (len == 0 || len % 4)) return STAMP_TLV_M | (STAMP_TLV_M << 8);
    if (type == 4 && (len == 0 || len % 16)) return STAMP_TLV_M | (STAMP_TLV_M << 8);
    return STAMP_TLV_U | (STAMP_TLV_U << 8); /* SR-MPLS / SRv6 / unknown: not from user space */
}

static int r_returnpath(stamp_tlv_ctx_t *c, uint8_t *v, uint16_t len)
{
    /* RFC 9503 4.1: a Control Code makes every other sub-TLV ignored; at most one of each
       sub-TLV and one segment list count, later ones are ignored (left with U) */
    size_t pos = 0;
    stamp_tlv_t t;
    int r;
    long cc = -1;
    while ((r = tlv_next(v, len, &pos, &t)) == 1)
        if (t.type == 1 && cc < 0) cc = (long)t.off;
    if (r < 0) {
        v[t.off] |= STAMP_TLV_M;
        return STAMP_TLV_M;
    }
    int acc = 0, seen_addr = 0, seen_seg = 0;
    pos = 0;
    while (tlv_next(v, len, &pos, &t) == 1) {
        uint8_t *sub = v + t.off;
        int rr;
        if (cc >= 0 && (long)t.off != cc)
            rr = STAMP_TLV_U;
        else if (t.type == 2 && seen_addr++)
            rr = STAMP_TLV_U;
        else if ((t.type == 3 || t.type == 4) && seen_seg++)
            rr = STAMP_TLV_U;
        else
            rr = rp_sub(c, sub, t.type, t.len);
        sub[0] = (uint8_t)((sub[0] & ~(STAMP_TLV_U | STAMP_TLV_M | STAMP_TLV_I | TLV_RBITS | STAMP_TLV_C)) | (rr & 0xff));
        acc |= rr >> 8;
        if (rr & STAMP_TLV_M) return STAMP_TLV_M; /* stop at a malformed sub-TLV */
    }
    return acc;
}

static int r_micro(stamp_tlv_ctx_t *c, uint8_t *v, uint16_t len)
{
    if (!c->pol->has_member_link) return STAMP_TLV_U;
    unsigned want = (unsigned)getf(v, len, &F_MICRO[MICRO_REFLECTOR_ID]);
    if (want != 0 && want != c->pol->member_link) return STAMP_TLV_DROP;
    putf(v, len, &F_MICRO[MICRO_REFLECTOR_ID], c->pol->member_link);
    return 0;
}

/* Type 12 sub-TLVs: a Layer-3 Address Group we are not in means the request is not for us. */
static int refl_sub(stamp_tlv_ctx_t *c, uint8_t *sub, uint8_t type, uint16_t len)
{
    uint8_t *val = sub + STAMP_TLV_HDR;
    if (type == 10) { /* Layer-2 Address Group: mask and group of equal length */
        if (len != 4 && len != 12 && len != 16) return STAMP_TLV_M | (STAMP_TLV_M << 8);
        return STAMP_TLV_U; /* not visible to a UDP socket */
    }
    if (type == 11) {
        if (len != 8 && len != 20) return STAMP_TLV_M | (STAMP_TLV_M << 8);
        val[1] = val[2] = val[3] = 0; /* Reserved: zero on send */
        int n = len - 4, plen = val[0];
        uint8_t own[16];
        if (plen > n * 8) return STAMP_TLV_M | (STAMP_TLV_M << 8);
        if (!c->meta->dst.len || addr_octets(&c->meta->dst, own) != n || !prefix_match(own, val + 4, plen))
            return STAMP_TLV_DROP;
        return 0;
    }
    if (type == 0 && len == 0) return 0; /* the all-zero filler that makes a Value of 12 octets */
    return STAMP_TLV_U; /* Layer-2 groups are not visible to a UDP socket */
}

static size_t round4(size_t n) { return (n + 3) & ~(size_t)3; }

static int r_reflctrl(stamp_tlv_ctx_t *c, uint8_t *v, uint16_t len)
{
    const stamp_tlv_policy_t *p = c->pol;
    if (p->refl_max_count == 0) return STAMP_TLV_U; /* feature off: not supported here */
    unsigned count = (unsigned)getf(v, len, &F_REFLCTRL[REFLCTRL_COUNT]);
    size_t plen = (size_t)getf(v, len, &F_REFLCTRL[REFLCTRL_REFLECTED_LENGTH]);
    stamp_ns_t ival = (stamp_ns_t)getf(v, len, &F_REFLCTRL[REFLCTRL_INTERVAL]);
    int sub = walk_subs(c, v, len, 8, refl_sub);
    if (sub & STAMP_TLV_DROP) return sub;
    if (sub & STAMP_TLV_M) return STAMP_TLV_M;
    if (count == 0) { /* RFC 10052 3: no reply at all (MUST NOT: before the U of a replay, which would be one) */
        c->no_reply = 1;
        return 0;
    }
    /* RFC 10052 5: a Sequence Number that does not increase the session's highest gets one plain reply, U */
    if (c->has_last_sender_seq && (int32_t)(c->sender_seq - c->last_sender_seq) <= 0) return STAMP_TLV_U;
    if (c->nopad_len == 0) return STAMP_TLV_C; /* the TLV area does not parse: one reply as it is */
    /* reply length: max(base + TLVs other than Extra Padding, requested length rounded up to 4) */
    size_t target = round4(plen);
    if (target < c->nopad_len) target = c->nopad_len;
    size_t limit = c->max_len && c->max_len < STAMP_MAX_PKT ? c->max_len : STAMP_MAX_PKT;
    if (p->refl_max_size && p->refl_max_size < limit) limit = p->refl_max_size;
    int over = 0;
    if (target > limit) { /* over the egress MTU / size limit: one reply of that size, C */
        target = limit > c->nopad_len ? limit : c->nopad_len;
        over = 1;
    }
    /* over the count or rate limit: one reply of the computed length, C; intervals are never stretched */
    if (count > p->refl_max_count) over = 1;
    if (count > 1 && ival < p->refl_min_interval) over = 1;
    if (count > 1 && p->refl_max_interval && ival > p->refl_max_interval) over = 1; /* a slot held too long */
    c->want_len = target;
    c->t12_over = over;
    c->extra_count = over ? 0 : count - 1;
    c->extra_interval = over ? 0 : ival;
    return over ? STAMP_TLV_C : 0;
}

/* ------------------------------------------------------------------ */
/* the registry                                                        */
/* ------------------------------------------------------------------ */

#define NOSUB 0xffff

static const stamp_tlv_def_t REGISTRY[] = {
    {STAMP_TLV_PADDING, "Extra Padding", "padding", 0, 0xffff, 0, 0, F_PADDING, NOSUB, S_NONE, 0, r_padding},
    {STAMP_TLV_LOCATION, "Location", "location", 4, 0xffff, 0, 44, F_LOCATION, 4, S_LOCATION, 0, r_location},
    {STAMP_TLV_TSINFO, "Timestamp Information", "timestamp_info", 4, 0xffff, 0, 4, F_TSINFO, 4, S_NONE, 0,
     r_tsinfo},
    {STAMP_TLV_COS, "Class of Service", "cos", 4, 4, 0, 4, F_COS, NOSUB, S_NONE, 0, r_cos},
    {STAMP_TLV_DM, "Direct Measurement", "direct_measurement", 12, 12, 0, 12, F_DM, NOSUB, S_NONE, 1, r_dm},
    {STAMP_TLV_ACCESS, "Access Report", "access_report", 4, 4, 0, 4, F_ACCESS, NOSUB, S_NONE, 0, r_access},
    {STAMP_TLV_FOLLOWUP, "Follow-Up Telemetry", "follow_up", 16, 16, 0, 16, F_FOLLOWUP, NOSUB, S_NONE, 1,
     r_followup},
    {STAMP_TLV_HMAC, "HMAC", "hmac", 16, 16, 0, 16, F_HMAC, NOSUB, S_NONE, 0, NULL /* handled by the walker */},
    {STAMP_TLV_DESTNODE, "Destination Node Address", "destination", 4, 16, 12, 4, F_DESTNODE, NOSUB, S_NONE, 0,
     r_destnode},
    {STAMP_TLV_RETURNPATH, "Return Path", "return_path", 4, 0xffff, 0, 8, F_PADDING, 0, S_RETURNPATH, 0,
     r_returnpath},
    {STAMP_TLV_MICRO, "Micro-session ID", "micro_session", 4, 4, 0, 4, F_MICRO, NOSUB, S_NONE, 0, r_micro},
    {STAMP_TLV_REFLCTRL, "Reflected Test Packet Control", "reflected_control", 12, 0xffff, 0, 12, F_REFLCTRL, 8,
     S_REFLCTRL, 0, r_reflctrl},
};

#define NREG (sizeof REGISTRY / sizeof REGISTRY[0])

const stamp_tlv_def_t *stamp_tlv_registry(size_t *n)
{
    *n = NREG;
    return REGISTRY;
}

const stamp_tlv_def_t *stamp_tlv_lookup(unsigned type)
{
    if (type >= 1 && type <= NREG) return &REGISTRY[type - 1]; /* dense: types 1..12 */
    return NULL;
}

const stamp_tlv_def_t *stamp_tlv_by_key(const char *key)
{
    for (size_t i = 0; i < NREG; i++)
        if (strcmp(REGISTRY[i].key, key) == 0) return &REGISTRY[i];
    return NULL;
}

int stamp_tlv_len_ok(const stamp_tlv_def_t *d, size_t len)
{
    if (len < d->min_len || len > d->max_len) return 0;
    if (d->len_step && (len - d->min_len) % d->len_step) return 0;
    return 1;
}

/* ------------------------------------------------------------------ */
/* HMAC TLV                                                            */
/* ------------------------------------------------------------------ */

int stamp_tlv_sign(stamp_hmac_t *hmac, uint8_t *pkt, size_t base, size_t off)
{
    return stamp_hmac_compute2(hmac, pkt, 4, pkt + base, off - base, pkt + off + STAMP_TLV_HDR);
}

int stamp_tlv_verify(stamp_hmac_t *hmac, const uint8_t *pkt, size_t base, size_t off)
{
    uint8_t calc[STAMP_HMAC_LEN];
    int rc = stamp_hmac_compute2(hmac, pkt, 4, pkt + base, off - base, calc);
    if (rc) return rc;
    return CRYPTO_memcmp(calc, pkt + off + STAMP_TLV_HDR, STAMP_HMAC_LEN) == 0 ? STAMP_OK : STAMP_EAUTH;
}

/* ------------------------------------------------------------------ */
/* the reflector's walk (RFC 8972 4)                                   */
/* ------------------------------------------------------------------ */

/* Set `flag` on every TLV (reserved flag bits cleared: zero on send). */
static void set_all(uint8_t *pkt, size_t base, size_t len, uint8_t flag)
{
    size_t pos = base;
    stamp_tlv_t t;
    int r;
    while ((r = tlv_next(pkt, len, &pos, &t)) == 1)
        pkt[t.off] = (uint8_t)((pkt[t.off] & ~TLV_RBITS & ~(t.type == STAMP_TLV_REFLCTRL ? 0 : STAMP_TLV_C)) | flag);
    if (r < 0) pkt[t.off] = (uint8_t)((pkt[t.off] & ~TLV_RBITS) | flag);
}

int stamp_tlv_reflect(stamp_tlv_ctx_t *c, stamp_hmac_t *hmac, uint8_t *pkt, size_t base, size_t len,
                      int *hmac_tlv_off)
{
    *hmac_tlv_off = -1;
    /* authenticated mode is told by the base length; verify_hmac asks for the same in open mode */
    int need_hmac = base == STAMP_AUTH_BASE_LEN || c->pol->verify_hmac;
    /* pass 1: where is the HMAC TLV, is it the last but for Extra Padding, does the area parse? */
    size_t pos = base, nopad = base;
    stamp_tlv_t t;
    long hoff = -1;
    int misplaced = 0, r, n = 0, npad = 0;
    while ((r = tlv_next(pkt, len, &pos, &t)) == 1) {
        n++;
        if (t.type == STAMP_TLV_PADDING) {
            npad++;
        } else {
            nopad += STAMP_TLV_HDR + t.len;
            if (t.type == STAMP_TLV_HMAC) {
                if (hoff >= 0) misplaced = 1;
                hoff = (long)t.off;
            } else if (hoff >= 0) {
                misplaced = 1;
            }
        }
    }
    if (r < 0 && hoff >= 0) misplaced = 1; /* octets appended after the HMAC TLV */
    c->nopad_len = r < 0 ? 0 : nopad;
    int lone_padding = r == 0 && n == 1 && npad == 1;
    if (need_hmac && !lone_padding) {
        /* RFC 8972 4.8: nothing is used unless one valid HMAC TLV covers every TLV before it
           and only Extra Padding follows it: I on every TLV, all copied unchanged, none acted on */
        int ok = hmac && hoff >= 0 && !misplaced && rd16(pkt + hoff + 2) == STAMP_HMAC_LEN &&
                 stamp_tlv_verify(hmac, pkt, base, (size_t)hoff) == STAMP_OK;
        if (!ok) {
            set_all(pkt, base, len, STAMP_TLV_I);
            if (hoff >= 0 && rd16(pkt + hoff + 2) != STAMP_HMAC_LEN) { /* last or not */
                /* RFC 8972 4.8 fixes its Length at 16: malformed (M on it, a mis-built sender), not a forgery */
                pkt[hoff] = (uint8_t)((pkt[hoff] & ~STAMP_TLV_I) | STAMP_TLV_M);
                return STAMP_TLV_M;
            }
            return STAMP_TLV_I;
        }
    }
    /* pass 2: process in order */
    int acc = 0, seen_rp = 0, seen_t12 = 0;
    long rp_noreply = -1, t12 = -1;
    pos = base;
    for (;;) {
        r = tlv_next(pkt, len, &pos, &t);
        if (r == 0) break;
        uint8_t *flags = &pkt[t.off];
        if (r < 0) { /* runs past the packet: M (U too if the type is not understood), stop */
            int known = len - t.off >= STAMP_TLV_HDR && stamp_tlv_lookup(pkt[t.off + 1]);
            uint8_t f = (uint8_t)(STAMP_TLV_M | (len - t.off >= STAMP_TLV_HDR && !known ? STAMP_TLV_U : 0));
            *flags = (uint8_t)((*flags & ~(STAMP_TLV_U | STAMP_TLV_M | STAMP_TLV_I | STAMP_TLV_C | TLV_RBITS)) | f);
            acc |= f;
            break;
        }
        /* RFC 8972 4: U only when not understood, M only when malformed, I only for integrity;
           reserved flag bits are zero on send; C belongs to type 12 only */
        *flags &= (uint8_t) ~(TLV_RBITS | (t.type == STAMP_TLV_REFLCTRL ? 0 : STAMP_TLV_C));
        const stamp_tlv_def_t *d = stamp_tlv_lookup(t.type);
        if (!d) {
            *flags = (uint8_t)((*flags & ~(STAMP_TLV_M | STAMP_TLV_I | STAMP_TLV_C)) | STAMP_TLV_U);
            acc |= STAMP_TLV_U;
            continue;
        }
        if (!stamp_tlv_len_ok(d, t.len)) {
            /* RFC 8972 4.7, erratum 8339: a bad Follow-Up Length zeroes its Sequence Number and Timestamp */
            if (t.type == STAMP_TLV_FOLLOWUP) memset(pkt + t.off + STAMP_TLV_HDR, 0, t.len < 12 ? t.len : 12);
            *flags = (uint8_t)((*flags & ~(STAMP_TLV_U | STAMP_TLV_I | STAMP_TLV_C)) | STAMP_TLV_M);
            acc |= STAMP_TLV_M;
            break;
        }
        if (t.type == STAMP_TLV_HMAC) {
            if (hmac && !misplaced) {
                *flags &= (uint8_t) ~(STAMP_TLV_U | STAMP_TLV_M | STAMP_TLV_I | STAMP_TLV_C);
                *hmac_tlv_off = (int)t.off; /* signed when the reply is final */
            } else {
                *flags = (uint8_t)((*flags & ~(STAMP_TLV_M | STAMP_TLV_I | STAMP_TLV_C)) | STAMP_TLV_U);
                acc |= STAMP_TLV_U; /* no key: cannot sign */
            }
            continue;
        }
        if (t.type == STAMP_TLV_RETURNPATH && seen_rp++) { /* RFC 9503 4: only the first one counts */
            *flags = (uint8_t)((*flags & ~(STAMP_TLV_M | STAMP_TLV_I)) | STAMP_TLV_U);
            acc |= STAMP_TLV_U;
            continue;
        }
        if (t.type == STAMP_TLV_REFLCTRL && seen_t12++) {
            /* one request per packet: the first type 12 TLV is acted on; a later one is not granted (C), or
               not supported (U) when type 12 is off; only the one acted on may come back with C clear */
            uint8_t f = c->pol->refl_max_count ? STAMP_TLV_C : STAMP_TLV_U;
            *flags = (uint8_t)((*flags & ~(STAMP_TLV_U | STAMP_TLV_M | STAMP_TLV_I | STAMP_TLV_C)) | f);
            acc |= f;
            continue;
        }
        *flags &= (uint8_t) ~(STAMP_TLV_U | STAMP_TLV_M | STAMP_TLV_I | STAMP_TLV_C);
        int had_no_reply = c->no_reply;
        int rr = d->reflect(c, pkt + t.off + STAMP_TLV_HDR, t.len);
        if (rr & STAMP_TLV_DROP) return STAMP_TLV_DROP;
        *flags |= (uint8_t)(rr & 0xff);
        acc |= rr & 0xff;
        if (t.type == STAMP_TLV_RETURNPATH && c->no_reply && !had_no_reply) rp_noreply = (long)t.off;
        if (t.type == STAMP_TLV_REFLCTRL && t12 < 0) t12 = (long)t.off;
        if (rr & STAMP_TLV_M) break; /* RFC 8972 4: stop at a malformed TLV, the rest as received */
    }
    if (acc & STAMP_TLV_M) {
        /* the rest is copied unchanged but for its reserved flag bits, which are zero on send */
        while ((r = tlv_next(pkt, len, &pos, &t)) == 1)
            pkt[t.off] &= (uint8_t) ~(TLV_RBITS | (t.type == STAMP_TLV_REFLCTRL ? 0 : STAMP_TLV_C));
        if (r < 0) pkt[t.off] &= (uint8_t) ~(TLV_RBITS | (len - t.off >= STAMP_TLV_HDR &&
                                                           pkt[t.off + 1] == STAMP_TLV_REFLCTRL ? 0 : STAMP_TLV_C));
    }
    /* RFC 10052 4.3: "no reply" together with a non-zero type 12 request: one reply, U on both */
    if (rp_noreply >= 0 && t12 >= 0 && rd16(pkt + t12 + STAMP_TLV_HDR + 2) != 0) {
        pkt[rp_noreply] |= STAMP_TLV_U;
        pkt[t12] = (uint8_t)((pkt[t12] & ~STAMP_TLV_C) | STAMP_TLV_U);
        c->no_reply = 0;
        c->extra_count = 0;
        c->want_len = 0;
        acc |= STAMP_TLV_U;
    }
    return acc;
}

int stamp_tlv_refill(stamp_tlv_ctx_t *c, uint8_t *pkt, size_t base, size_t len)
{
    size_t pos = base;
    stamp_tlv_t t;
    int n = 0;
    while (tlv_next(pkt, len, &pos, &t) == 1) {
        uint8_t f = pkt[t.off];
        if (f & STAMP_TLV_M) break;                 /* the walk stopped here: the rest went back as received */
        if (f & (STAMP_TLV_U | STAMP_TLV_I)) continue; /* not acted on: unchanged */
        const stamp_tlv_def_t *d = stamp_tlv_lookup(t.type);
        if (!d || !stamp_tlv_len_ok(d, t.len)) continue;
        if (t.type == STAMP_TLV_DM) {
            r_dm(c, pkt + t.off + STAMP_TLV_HDR, t.len);
            n++;
        } else if (t.type == STAMP_TLV_FOLLOWUP) {
            r_followup(c, pkt + t.off + STAMP_TLV_HDR, t.len);
            n++;
        }
    }
    return n;
}

size_t stamp_tlv_fit(uint8_t *pkt, size_t cap, size_t base, size_t len, size_t target, int *hmac_tlv_off)
{
    size_t pos = base;
    stamp_tlv_t t;
    int r;
    if (target == 0 || len < base || len > cap) return len;
    while ((r = tlv_next(pkt, len, &pos, &t)) == 1) {
    }
    if (r < 0) return len; /* left as received */
    /* drop the Extra Padding TLVs, keep the others in order */
    size_t w = base;
    long t12 = -1;
    pos = base;
    while (tlv_next(pkt, len, &pos, &t) == 1) {
        size_t sz = STAMP_TLV_HDR + (size_t)t.len;
        if (t.type == STAMP_TLV_PADDING) continue;
        if (t.type == STAMP_TLV_HMAC && hmac_tlv_off && *hmac_tlv_off == (int)t.off) *hmac_tlv_off = (int)w;
        if (t.type == STAMP_TLV_REFLCTRL && t12 < 0) t12 = (long)w;
        memmove(pkt + w, pkt + t.off, sz); /* w <= t.off: nothing unread is overwritten */
        w += sz;
    }
    int short_of = 0;
    if (target > w) {
        size_t d = target - w;
        if (d >= STAMP_TLV_HDR && target <= cap && d - STAMP_TLV_HDR <= 0xffff) {
            uint8_t *p = pkt + w;
            p[0] = 0; /* made by the reflector: nothing to flag */
            p[1] = STAMP_TLV_PADDING;
            wr16(p + 2, (uint16_t)(d - STAMP_TLV_HDR));
            memset(p + STAMP_TLV_HDR, 0, d - STAMP_TLV_HDR);
            w = target;
        } else {
            short_of = 1;
        }
    }
    if (short_of && t12 >= 0) pkt[t12] |= STAMP_TLV_C; /* not granted as asked: say so */
    return w;
}
