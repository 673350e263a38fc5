/* sender_machine.c - the Session-Sender protocol machine without I/O (RFC 8762 4.2).
 *
 * Schedule, sequence numbers, packet assembly (TLVs, HMAC, zeroed padding),
 * reply validation and matching, loss / duplicate / late / aborted accounting.
 * Whoever owns the socket gives it the time and the datagrams: the socket
 * engine in sender.c, a Lua event loop through stamp.core, an FFI program.
 *
 * Every packet ends exactly once as answered (stamp_sm_reply), lost or aborted
 * (stamp_sm_expire). The ring of outstanding packets grows (doubling) when more
 * are in flight than it holds, so no record is ever given up; its size is
 * bounded by rate x timeout.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "internal.h"

enum { SLOT_FREE = 0, SLOT_OUT, SLOT_DONE, SLOT_LOST, SLOT_ABORTED };
/* the Access Report (RFC 8972 4.6): to send in the next packet, sent with the timer armed, echoed, given up */
enum { AR_DUE = 0, AR_ARMED, AR_ACKED, AR_FAILED };
#define AR_TIMEOUT_DEFAULT (3 * STAMP_NS_PER_SEC)
#define AR_RETRIES_DEFAULT 4

typedef struct {
    uint32_t seq;
    uint8_t state;
    uint16_t extra; /* further replies of a granted type 12 burst seen for this packet */
    uint16_t ee;         /* Error Estimate sent: the reply must echo it */
    uint8_t ts[8];       /* T1 as sent on the wire: the reply must echo it */
    stamp_ns_t t1;       /* UTC send time (user space) */
    stamp_ns_t t1k;      /* UTC send time from the kernel, 0 = none (yet) */
    stamp_ns_t deadline; /* caller's monotonic clock */
} slot_t;

#define RING_MIN 64
#define RING_LIMIT ((size_t)1 << 26)
#define INTERVAL_MAX (86400LL * STAMP_NS_PER_SEC) /* intervals and timeouts: at most one day */

struct stamp_sm {
    stamp_sender_cfg_t cfg; /* pointers cleared: the machine keeps its own copies */
    size_t base;
    stamp_addr_t peer;
    int has_peer;
    stamp_hmac_t *hmac;
    stamp_clockstate_t clk;
    stamp_ns_t next_send; /* caller's monotonic clock; valid once started */
    stamp_ns_t first;     /* when the first packet was due */
    int started;
    uint64_t nsent;  /* sequence numbers used */
    uint64_t oldest; /* lowest sequence number not yet resolved */
    int stopped;     /* 1: no more sending; 2: abort, outstanding packets are reported as aborted */
    uint64_t rng;    /* xorshift64* state for the Poisson schedule */
    slot_t *ring;
    size_t mask;
    stamp_sender_counters_t ctr;
    uint8_t *tlvs; /* TLV template */
    size_t dm_off[8];
    int ndm;
    long hmac_off;
    int t12_sent;       /* a type 12 TLV is among ours */
    int no_reply;       /* our TLVs ask for no reply (Return Path Control Code 0, type 12 Number 0) */
    int t12_last_set;
    stamp_ns_t t12_last; /* when the last request left (caller's monotonic clock) */
    unsigned t12_count; /* RFC 10052: replies asked for by our type 12 TLV (0: none sent) */
    stamp_ns_t t12_interval; /* ... and the interval between them (ns) */
    uint64_t extra_pending;  /* further replies of granted bursts not seen yet */
    stamp_ns_t extra_until;  /* until when they are awaited (caller's monotonic clock) */
    long ar_off;             /* RFC 8972 4.6: offset of our Access Report TLV in the packet, -1: none */
    uint8_t ar_id, ar_rc;    /* its Access ID and Return Code */
    int ar_state;            /* AR_* */
    int ar_tries;            /* retransmissions so far */
    stamp_ns_t ar_deadline;  /* its timer (caller's monotonic clock) while AR_ARMED */
    int has_micro; /* RFC 9534: we send a Micro-session ID TLV */
    uint16_t micro_sender, micro_refl;
};

void stamp_sm_free(stamp_sm_t *m)
{
    if (!m) return;
    free(m->ring);
    free(m->tlvs);
    stamp_hmac_free(m->hmac);
    free(m);
}

int stamp_sm_new(const stamp_sender_cfg_t *cfg, stamp_sm_t **out)
{
    *out = NULL;
    if (!cfg || (cfg->mode != STAMP_MODE_OPEN && cfg->mode != STAMP_MODE_AUTH)) return STAMP_EINVAL;
    size_t base = stamp_base_len(cfg->mode);
    if (cfg->tlvs_len > STAMP_MAX_PKT) return STAMP_EINVAL;
    size_t plen = cfg->packet_len ? cfg->packet_len : base + cfg->tlvs_len;
    if (cfg->mode == STAMP_MODE_AUTH && (!cfg->key || cfg->keylen == 0 || cfg->keylen > STAMP_KEY_MAX))
        return STAMP_EINVAL;
    if (cfg->keylen > STAMP_KEY_MAX || plen < base + cfg->tlvs_len || plen > STAMP_MAX_PKT ||
        (cfg->tlvs_len && !cfg->tlvs) || cfg->interval < 0 || cfg->timeout <= 0 || cfg->duration < 0)
        return STAMP_EINVAL;
    /* degenerate schedules: without an interval only a count ends the sending */
    if (cfg->interval > INTERVAL_MAX || cfg->timeout > INTERVAL_MAX || (cfg->interval == 0 && cfg->count == 0))
        return STAMP_EINVAL;

    stamp_sm_t *m = calloc(1, sizeof *m);
    if (!m) return STAMP_ENOMEM;
    m->cfg = *cfg;
    m->cfg.key = NULL;
    m->cfg.keylen = 0;
    m->cfg.remote_addr = NULL;
    m->cfg.tlvs = NULL;
    m->cfg.packet_len = plen;
    m->base = base;

    /* ring of outstanding packets, sized for what is in flight at this rate; it grows if needed */
    double inflight = cfg->interval > 0 ? (double)cfg->timeout / (double)cfg->interval + 2 : 65536;
    size_t ring = RING_MIN;
    while (ring < 2 * inflight && ring < ((size_t)1 << 18)) ring <<= 1;
    m->ring = calloc(ring, sizeof *m->ring);
    if (!m->ring) {
        stamp_sm_free(m);
        return STAMP_ENOMEM;
    }
    m->mask = ring - 1;

    m->hmac_off = -1;
    m->ar_off = -1;
    if (m->cfg.access_timeout <= 0) m->cfg.access_timeout = AR_TIMEOUT_DEFAULT;
    if (m->cfg.access_retries < 0) m->cfg.access_retries = AR_RETRIES_DEFAULT;
    if (cfg->tlvs_len) {
        m->tlvs = malloc(cfg->tlvs_len);
        if (!m->tlvs) {
            stamp_sm_free(m);
            return STAMP_ENOMEM;
        }
        memcpy(m->tlvs, cfg->tlvs, cfg->tlvs_len);
        /* where the per-packet values go, found once */
        size_t pos = 0;
        int rp_seen = 0;
        stamp_tlv_t t;
        while (stamp_tlv_next(m->tlvs, cfg->tlvs_len, &pos, &t) == 1) {
            if (t.type == STAMP_TLV_DM && t.len >= 4 && m->ndm < 8) m->dm_off[m->ndm++] = base + t.off + STAMP_TLV_HDR;
            if (t.type == STAMP_TLV_HMAC && t.len == STAMP_HMAC_LEN) m->hmac_off = (long)(base + t.off);
            if (t.type == STAMP_TLV_REFLCTRL && t.len >= 12 && !m->t12_sent) { /* the first one is acted on */
                m->t12_count = rd16(m->tlvs + t.off + STAMP_TLV_HDR + 2);
                m->t12_interval = (stamp_ns_t)rd32(m->tlvs + t.off + STAMP_TLV_HDR + 4);
                if (m->t12_count == 0) m->no_reply = 1; /* RFC 10052 3: Number 0, no reply */
            }
            if (t.type == STAMP_TLV_REFLCTRL) m->t12_sent = 1;
            if (t.type == STAMP_TLV_RETURNPATH && !rp_seen++) { /* RFC 9503 4.1: the first one counts */
                const uint8_t *v = m->tlvs + t.off + STAMP_TLV_HDR;
                size_t sp = 0;
                stamp_tlv_t st;
                while (stamp_tlv_next(v, t.len, &sp, &st) == 1)
                    if (st.type == 1 && st.len == 4 && !(rd32(v + st.off + STAMP_TLV_HDR) & 1u)) m->no_reply = 1;
            }
            if (t.type == STAMP_TLV_ACCESS && t.len == 4 && m->ar_off < 0) {
                m->ar_off = (long)(base + t.off);
                m->ar_id = m->tlvs[t.off + STAMP_TLV_HDR] >> 4;
                m->ar_rc = m->tlvs[t.off + STAMP_TLV_HDR + 1];
            }
            if (t.type == STAMP_TLV_MICRO && t.len >= 4 && !m->has_micro) {
                m->has_micro = 1;
                m->micro_sender = rd16(m->tlvs + t.off + STAMP_TLV_HDR);
                m->micro_refl = rd16(m->tlvs + t.off + STAMP_TLV_HDR + 2);
            }
        }
    }
    if (m->hmac_off >= 0 && (!cfg->key || !cfg->keylen)) {
        stamp_sm_free(m);
        return STAMP_EINVAL; /* an HMAC TLV needs the key */
    }
    if (cfg->key && cfg->keylen) {
        m->hmac = stamp_hmac_new(cfg->key, cfg->keylen);
        if (!m->hmac) {
            stamp_sm_free(m);
            return STAMP_ECRYPTO;
        }
    }
    stamp_clock_refresh(&m->clk, m->cfg.clock, stamp_mono(), 1);
    m->rng = cfg->seed ? cfg->seed : (uint64_t)stamp_now() ^ 0x9e3779b97f4a7c15ULL;
    if (!m->rng) m->rng = 1;
    *out = m;
    return STAMP_OK;
}

void stamp_sm_set_peer(stamp_sm_t *m, const stamp_addr_t *peer)
{
    if (peer && peer->addr.ss_family != AF_UNSPEC) {
        m->peer = *peer;
        m->has_peer = 1;
    } else {
        m->has_peer = 0;
    }
}

size_t stamp_sm_packet_len(const stamp_sm_t *m) { return m->cfg.packet_len; }

void stamp_sm_counters(const stamp_sm_t *m, stamp_sender_counters_t *c) { *c = m->ctr; }

void stamp_sm_tx_error(stamp_sm_t *m) { m->ctr.tx_errors++; }

void stamp_sm_stop(stamp_sm_t *m, int now)
{
    if (m->stopped < 1) m->stopped = 1;
    if (now) m->stopped = 2;
}

int stamp_sm_stopped(const stamp_sm_t *m) { return m->stopped; }

static int sending(const stamp_sm_t *m)
{
    if (m->stopped || (m->cfg.count && m->nsent >= m->cfg.count)) return 0;
    return !(m->cfg.duration > 0 && m->started && m->next_send - m->first >= m->cfg.duration);
}

/* RFC 10052: after the last packet is answered, the further replies of its granted burst are still
 * awaited (up to Number - 1 intervals after its own timeout), unless the run was aborted */
static int extras_awaited(const stamp_sm_t *m) { return m->extra_pending > 0 && m->stopped != 2; }

int stamp_sm_done(const stamp_sm_t *m) { return !sending(m) && m->oldest >= m->nsent && !extras_awaited(m); }

uint64_t stamp_sm_outstanding(const stamp_sm_t *m)
{
    uint64_t n = 0;
    for (uint64_t q = m->oldest; q < m->nsent; q++)
        if (m->ring[q & m->mask].state == SLOT_OUT) n++;
    return n;
}

/* The gap before the next packet: fixed, or exponential with the same mean (Poisson process). */
static stamp_ns_t next_gap(stamp_sm_t *m)
{
    if (!m->cfg.poisson || m->cfg.interval == 0) return m->cfg.interval;
    m->rng ^= m->rng >> 12;
    m->rng ^= m->rng << 25;
    m->rng ^= m->rng >> 27;
    uint64_t x = m->rng * 2685821657736338717ULL;
    double u = ((double)(x >> 11) + 1.0) / 9007199254740993.0; /* (0, 1) */
    double g = -log(u) * (double)m->cfg.interval;
    return g >= 9.0e18 ? (stamp_ns_t)9000000000000000000LL : (stamp_ns_t)llround(g);
}

static stamp_ns_t next_send(const stamp_sm_t *m)
{
    if (!sending(m)) return INT64_MAX;
    return m->started ? m->next_send : INT64_MIN;
}

stamp_ns_t stamp_sm_next_deadline(const stamp_sm_t *m)
{
    if (m->stopped == 2 && m->oldest < m->nsent) return INT64_MIN; /* aborted packets to report */
    stamp_ns_t d = next_send(m);
    if (extras_awaited(m) && m->extra_until < d) d = m->extra_until;
    for (uint64_t q = m->oldest; q < m->nsent; q++) {
        const slot_t *sl = &m->ring[q & m->mask];
        if (sl->state == SLOT_OUT) {
            if (sl->deadline < d) d = sl->deadline;
            break; /* deadlines grow with the sequence number */
        }
    }
    return d;
}

int stamp_sm_due(const stamp_sm_t *m, stamp_ns_t now)
{
    return sending(m) && (!m->started || now >= m->next_send);
}

/* Make room for sequence number nsent: skip resolved slots, grow the ring if still full. */
static int ring_room(stamp_sm_t *m)
{
    while (m->oldest < m->nsent && m->ring[m->oldest & m->mask].state == SLOT_DONE) m->oldest++;
    size_t size = m->mask + 1;
    if (m->nsent - m->oldest < size) return STAMP_OK;
    if (size >= RING_LIMIT) return STAMP_ENOMEM;
    size_t nsize = size * 2;
    slot_t *r = calloc(nsize, sizeof *r);
    if (!r) return STAMP_ENOMEM;
    uint64_t from = m->nsent >= size ? m->nsent - size : 0;
    for (uint64_t q = from; q < m->nsent; q++) r[q & (nsize - 1)] = m->ring[q & m->mask];
    free(m->ring);
    m->ring = r;
    m->mask = nsize - 1;
    return STAMP_OK;
}

/* RFC 8972 4.6: the Access Report timer expired without an echo: send it again, or give up */
static void ar_timer(stamp_sm_t *m, stamp_ns_t now)
{
    if (m->ar_state != AR_ARMED || now < m->ar_deadline) return;
    if (m->ar_tries < m->cfg.access_retries) {
        m->ar_tries++;
        m->ar_state = AR_DUE;
        m->ctr.access_retransmits++;
    } else {
        m->ar_state = AR_FAILED;
        m->ctr.access_failed = 1;
    }
}

/* Our Access Report in the packet being built: when due (timer armed from now), otherwise an Extra
 * Padding TLV of the same size in its place (same length, same offsets, the same HMAC TLV input). */
static void ar_place(stamp_sm_t *m, stamp_ns_t now, uint8_t *buf)
{
    if (m->ar_off < 0) return;
    ar_timer(m, now);
    if (m->ar_state == AR_DUE) {
        m->ar_state = AR_ARMED;
        m->ar_deadline = now + m->cfg.access_timeout;
        m->ctr.access_sent++;
        return;
    }
    uint8_t *t = buf + m->ar_off;
    t[1] = STAMP_TLV_PADDING; /* the Type; Flags (t[0]) and Length 4 stay */
    memset(t + STAMP_TLV_HDR, 0, 4);
}

int stamp_sm_build(stamp_sm_t *m, stamp_ns_t now, stamp_ns_t t1, uint8_t *buf, size_t cap, uint32_t *seq_out)
{
    if (!stamp_sm_due(m, now)) return 0;
    size_t plen = m->cfg.packet_len;
    if (!buf || cap < plen) return STAMP_ESHORT;
    /* after a stall: the grid never shifts; of the grid points that fell due, at most STAMP_SM_BURST
     * or STAMP_SM_CATCHUP_NS worth (the newest) are sent at once, older ones are skipped (their time
     * counts against the duration) */
    stamp_ns_t keep = STAMP_SM_BURST;
    if (m->cfg.interval > 0 && STAMP_SM_CATCHUP_NS / m->cfg.interval > keep) keep = STAMP_SM_CATCHUP_NS / m->cfg.interval;
    if (m->started && m->cfg.interval > 0 && now - m->next_send >= keep * m->cfg.interval) {
        stamp_ns_t skip = (now - m->next_send) / m->cfg.interval - (keep - 1);
        m->next_send += skip * m->cfg.interval;
        if (!sending(m)) return 0;
    }
    /* RFC 10052 5 SHOULD NOT: no type 12 request before the previous one's burst should have ended; after
     * a stall the grid points that would break that are skipped (the grid never shifts) */
    if (m->t12_count > 1 && m->t12_last_set) {
        stamp_ns_t until = m->t12_last + (stamp_ns_t)(m->t12_count - 1u) * m->t12_interval;
        if (now < until) {
            if (m->cfg.interval > 0) {
                stamp_ns_t skip = (until - m->next_send + m->cfg.interval - 1) / m->cfg.interval;
                if (skip > 0) m->next_send += skip * m->cfg.interval;
            } else {
                m->next_send = until;
            }
            return 0;
        }
    }
    int rc = ring_room(m);
    if (rc) return rc;
    stamp_clock_refresh(&m->clk, m->cfg.clock, now, 0);
    slot_t *sl = &m->ring[m->nsent & m->mask];
    size_t base = m->base;
    stamp_test_t t;
    memset(&t, 0, sizeof t);
    t.seq = (uint32_t)m->nsent;
    t.ee = m->clk.ee;
    t.ssid = m->cfg.ssid;
    memset(buf + base, 0, plen - base);
    if (m->cfg.tlvs_len) memcpy(buf + base, m->tlvs, m->cfg.tlvs_len);
    for (int k = 0; k < m->ndm; k++) wr32(buf + m->dm_off[k], (uint32_t)(m->nsent + 1)); /* S_TxC */
    ar_place(m, now, buf);
    stamp_ts_encode(t.ts, t1, m->cfg.clock, m->clk.tai);
    stamp_test_encode(buf, plen, m->cfg.mode, &t);
    if (m->hmac_off >= 0) stamp_tlv_sign(m->hmac, buf, base, (size_t)m->hmac_off);
    if (m->cfg.mode == STAMP_MODE_AUTH) stamp_auth_sign(m->hmac, buf, plen);
    sl->seq = t.seq;
    sl->state = SLOT_OUT;
    sl->ee = t.ee;
    memcpy(sl->ts, t.ts, sizeof sl->ts);
    sl->t1 = t1;
    sl->t1k = 0;
    sl->deadline = now + m->cfg.timeout;
    sl->extra = 0; /* a reused slot: this packet's burst counts from zero */
    m->nsent++;
    m->t12_last = now;
    m->t12_last_set = 1;
    m->ctr.sent++;
    if (seq_out) *seq_out = t.seq;
    /* the schedule: absolute deadlines anchored at the first packet */
    if (!m->started) {
        m->started = 1;
        m->next_send = m->first = now;
    }
    m->next_send += next_gap(m);
    return (int)plen;
}

/* The slot of 32-bit Sequence Number `seq32`, unwrapped against what was sent (NULL: not ours). */
static slot_t *find_slot(stamp_sm_t *m, uint32_t seq32, uint64_t *seq_out)
{
    if (m->nsent == 0) return NULL;
    uint64_t hi = m->nsent - 1;
    uint64_t seq = (hi & ~(uint64_t)0xffffffffu) | seq32;
    if (seq > hi) {
        if (seq < ((uint64_t)1 << 32)) return NULL;
        seq -= (uint64_t)1 << 32;
    }
    *seq_out = seq;
    slot_t *sl = &m->ring[seq & m->mask];
    if (hi - seq >= m->mask + 1 || sl->seq != seq32 || sl->state == SLOT_FREE) return NULL;
    return sl;
}

int stamp_sm_tx_time(stamp_sm_t *m, uint32_t seq32, stamp_ns_t t1)
{
    uint64_t seq;
    slot_t *sl = find_slot(m, seq32, &seq);
    if (!sl || sl->state != SLOT_OUT || seq < m->oldest || t1 < sl->t1) return 0;
    sl->t1k = t1;
    return 1;
}

static void result_init(stamp_result_t *r, int status, const slot_t *sl)
{
    memset(r, 0, sizeof *r);
    r->status = status;
    r->seq = sl->seq;
    r->t1 = sl->t1k ? sl->t1k : sl->t1;
    r->t1_kernel = sl->t1k != 0;
    r->t1_user = sl->t1;
    r->sender_ttl = r->reply_ttl = r->reply_tos = -1;
    r->tlv_hmac = -1;
}

/* RFC 9534 3.2: both Micro-session IDs of the reply must be ours (the reflector's when we know it).
   Only a reply whose Micro-session ID TLV the reflector processed confirms the micro-session: one
   without the TLV (stripped, a legacy or TWAMP-Light reflector) or with it flagged U, M or I (not
   processed, its IDs merely echoed) is not a valid reply and is dropped like a mismatch. */
static int micro_ok(const stamp_sm_t *m, const uint8_t *b, size_t len)
{
    size_t pos = m->base;
    stamp_tlv_t t;
    if (len <= m->base) return 0;
    while (stamp_tlv_next(b, len, &pos, &t) == 1) {
        if (t.type == STAMP_TLV_MICRO && t.len >= 4) {
            if (t.flags & (STAMP_TLV_U | STAMP_TLV_M | STAMP_TLV_I)) return 0;
            const uint8_t *v = b + t.off + STAMP_TLV_HDR;
            return rd16(v) == m->micro_sender && (!m->micro_refl || rd16(v + 2) == m->micro_refl);
        }
    }
    return 0; /* no Micro-session ID TLV in the reply: nothing confirms it */
}

/* RFC 10052 3: the flags of the reply's type 12 TLV (ours, the first), -1 when it has none */
static int t12_flags(const stamp_sm_t *m, const uint8_t *b, size_t len)
{
    size_t pos = m->base;
    stamp_tlv_t t;
    while (len > m->base && stamp_tlv_next(b, len, &pos, &t) == 1)
        if (t.type == STAMP_TLV_REFLCTRL) return t.flags;
    return -1;
}

/* ... granted (no U, M, I or C)? */
static int t12_granted(const stamp_sm_t *m, const uint8_t *b, size_t len)
{
    int f = t12_flags(m, b, len);
    return f >= 0 && !(f & (STAMP_TLV_U | STAMP_TLV_M | STAMP_TLV_I | STAMP_TLV_C));
}

/* RFC 8972 4 and 4.8: which of the reply's TLVs the sender may use (see stamp_result_t). */
static void tlv_usability(const stamp_sm_t *m, const uint8_t *b, size_t len, stamp_result_t *res)
{
    size_t pos = m->base;
    stamp_tlv_t t;
    int n = 0, usable = -1, hmac_at = -1, flagged_i = 0, only_padding = 1, r;
    while (pos < len && (r = stamp_tlv_next(b, len, &pos, &t)) != 0) {
        if (t.flags & STAMP_TLV_I) flagged_i = 1;
        if (((t.flags & STAMP_TLV_M) || r < 0) && usable < 0) usable = n;
        /* a type 12 TLV we never sent (a reflector adds none, RFC 8972 4): not ours to use, nor what follows */
        if (t.type == STAMP_TLV_REFLCTRL && !m->t12_sent && usable < 0) usable = n;
        if (t.type == STAMP_TLV_HMAC && hmac_at < 0) hmac_at = n;
        if (t.type != STAMP_TLV_PADDING) only_padding = 0;
        n++;
        if (r < 0) break;
    }
    if (usable < 0) usable = n;
    int hmac_due = (m->cfg.mode == STAMP_MODE_AUTH || m->hmac_off >= 0) && !only_padding;
    if (flagged_i || res->tlv_hmac == 0 || (hmac_due && res->tlv_hmac != 1))
        usable = 0;
    else if (res->tlv_hmac == 1 && usable > hmac_at + 1)
        usable = hmac_at + 1; /* nothing after the HMAC TLV is covered by it */
    res->tlv_count = n;
    res->tlv_usable = usable;
}

/* RFC 8972 4.6: a usable Access Report TLV in the reply (no U, M or I) echoing our Access ID and
 * Return Code disarms the timer */
static void ar_echo(stamp_sm_t *m, const uint8_t *b, size_t len, int usable)
{
    size_t pos = m->base;
    stamp_tlv_t t;
    for (int i = 0; i < usable && stamp_tlv_next(b, len, &pos, &t) == 1; i++) {
        if (t.type != STAMP_TLV_ACCESS || t.len != 4) continue;
        if (t.flags & (STAMP_TLV_U | STAMP_TLV_M | STAMP_TLV_I)) continue;
        const uint8_t *v = b + t.off + STAMP_TLV_HDR;
        if ((v[0] >> 4) == m->ar_id && v[1] == m->ar_rc) {
            m->ar_state = AR_ACKED;
            m->ctr.access_acked = 1;
            return;
        }
    }
}

int stamp_sm_reply(stamp_sm_t *m, const uint8_t *b, size_t len, const stamp_rxmeta_t *meta, stamp_result_t *res)
{
    size_t base = m->base;
    uint8_t light[STAMP_BASE_LEN]; /* a short TWAMP-Light reply, zero-filled to the base */
    const uint8_t *pb = b;
    if (!b || len > STAMP_MAX_PKT || len < base) {
        if (!b || m->cfg.mode != STAMP_MODE_OPEN || len < STAMP_LIGHT_REPLY_MIN || len > STAMP_MAX_PKT) {
            m->ctr.drop_invalid++;
            return 0;
        }
        memset(light, 0, sizeof light);
        memcpy(light, b, len);
        pb = light;
    }
    if (m->has_peer && meta && meta->src.addr.ss_family != AF_UNSPEC && !stamp_addr_equal(&meta->src, &m->peer)) {
        m->ctr.drop_invalid++;
        return 0;
    }
    if (m->cfg.mode == STAMP_MODE_AUTH && stamp_auth_verify(m->hmac, b, len) != STAMP_OK) {
        m->ctr.drop_hmac++;
        return 0;
    }
    stamp_reflected_t p;
    stamp_reflected_decode(pb, len < base ? base : len, m->cfg.mode, &p);
    /* RFC 8972 3: a different SSID is not ours; SSID 0 (a legacy reflector) is accepted unless told otherwise */
    if ((m->cfg.ssid && p.ssid != m->cfg.ssid && (p.ssid || m->cfg.drop_ssid_zero)) ||
        (m->has_micro && !micro_ok(m, b, len))) {
        m->ctr.drop_invalid++;
        return 0;
    }
    if (m->nsent == 0) {
        m->ctr.drop_invalid++;
        return 0;
    }
    uint64_t seq = UINT64_MAX;
    slot_t *sl = find_slot(m, p.sender_seq, &seq);
    if (!sl) {
        /* a number we sent so long ago that its slot was reused: a reply too late to match (its
           packet was declared lost long since), not a reply that is not ours */
        if (seq != UINT64_MAX && m->nsent - 1 - seq > m->mask)
            m->ctr.late++;
        else
            m->ctr.drop_invalid++;
        return 0;
    }
    /* RFC 8762 4.3: the reply echoes our Sender Timestamp and Error Estimate (a plain echo of the
     * test packet does not); the Error Estimate is not in a TWAMP-Light reply shorter than 38 octets */
    if (memcmp(p.sender_ts, sl->ts, sizeof sl->ts) != 0 || ((pb == b || len >= 38) && p.sender_ee != sl->ee)) {
        m->ctr.drop_invalid++;
        return 0;
    }
    if (sl->state == SLOT_DONE) {
        /* RFC 10052 3: a granted burst (type 12 back without U, M, I or C) brings Number replies
           in all; the further ones are expected, not duplicates */
        if (m->t12_count > 1 && sl->extra < m->t12_count - 1 && t12_granted(m, b, len)) {
            sl->extra++;
            m->ctr.extra_replies++;
            if (m->extra_pending) m->extra_pending--;
        } else {
            m->ctr.duplicates++;
        }
        return 0;
    }
    if (sl->state != SLOT_OUT || seq < m->oldest) { /* lost or aborted already */
        m->ctr.late++;
        return 0;
    }
    sl->state = SLOT_DONE;
    m->ctr.received++;
    if (m->t12_sent) { /* the reflector does not support type 12: say so, nothing follows */
        int f = t12_flags(m, b, len);
        if (f >= 0 && (f & STAMP_TLV_U)) m->ctr.extra_unsupported++;
    }
    if (m->t12_count > 1 && t12_granted(m, b, len)) {
        /* its further replies come Number - 1 intervals apart: awaited until the packet's timeout
           plus that span (a reply delayed up to the timeout delays its burst as much) */
        m->extra_pending += m->t12_count - 1u;
        stamp_ns_t until = sl->deadline + (stamp_ns_t)(m->t12_count - 1u) * m->t12_interval;
        if (until > m->extra_until) m->extra_until = until;
    }
    if (sl->t1k)
        m->ctr.t1_kernel++;
    else
        m->ctr.t1_user++;
    while (m->oldest < m->nsent && m->ring[m->oldest & m->mask].state == SLOT_DONE) m->oldest++; /* done() at once */

    result_init(res, STAMP_RES_OK, sl);
    res->rx_replies = m->ctr.received + m->ctr.extra_replies;
    res->refl_seq = p.seq;
    res->ssid = p.ssid;
    stamp_ee_unpack(p.sender_ee, &res->sender_ee);
    stamp_ee_unpack(p.ee, &res->refl_ee);
    stamp_clock_t rfmt = res->refl_ee.z ? STAMP_CLOCK_PTP : STAMP_CLOCK_NTP;
    int tai = rfmt == STAMP_CLOCK_PTP ? m->clk.tai : 0;
    stamp_ts_decode(p.rx_ts, rfmt, tai, &res->t2);
    stamp_ts_decode(p.ts, rfmt, tai, &res->t3);
    res->t4 = meta ? meta->rx_time : stamp_now();
    res->rtt = (res->t4 - res->t1) - (res->t3 - res->t2);
    res->fwd = res->t2 - res->t1;
    res->bwd = res->t4 - res->t3;
    if (res->t4 < res->t1 || res->rtt < 0) { /* a clock step: answered, but no delay can be taken from it */
        res->clock_error = 1;
        m->ctr.clock_errors++;
    }
    res->sender_ttl = len > 40 ? p.sender_ttl : -1; /* octet 40 (open mode) was not in a short reply */
    res->reply_ttl = meta ? meta->ttl : -1;
    res->reply_tos = meta ? meta->tos : -1;
    res->rx_kernel = meta ? meta->rx_kernel : 0;
    res->pkt = b;
    res->pkt_len = len;
    if (m->hmac && len > base) { /* the reply's HMAC TLV, if any */
        size_t pos = base;
        stamp_tlv_t tl;
        while (stamp_tlv_next(b, len, &pos, &tl) == 1) {
            if (tl.type == STAMP_TLV_HMAC && tl.len == STAMP_HMAC_LEN) {
                res->tlv_hmac = stamp_tlv_verify(m->hmac, b, base, tl.off) == STAMP_OK;
                break;
            }
        }
    }
    if (len > base) tlv_usability(m, b, len, res);
    if (m->ar_off >= 0 && (m->ar_state == AR_ARMED || m->ar_state == AR_DUE) && len > base) ar_echo(m, b, len, res->tlv_usable);
    return 1;
}

int stamp_sm_expire(stamp_sm_t *m, stamp_ns_t now, stamp_result_t *res, int max)
{
    int n = 0;
    if (m->ar_off >= 0) ar_timer(m, now);
    if (m->extra_pending && (now >= m->extra_until || m->stopped == 2)) {
        m->ctr.extra_missing += m->extra_pending; /* granted, never seen in time */
        m->extra_pending = 0;
    }
    while (m->oldest < m->nsent && n < max) {
        slot_t *sl = &m->ring[m->oldest & m->mask];
        if (sl->state != SLOT_OUT) { /* answered */
            m->oldest++;
            continue;
        }
        if (m->stopped == 2) {
            sl->state = SLOT_ABORTED;
            m->ctr.aborted++;
            result_init(&res[n++], STAMP_RES_ABORTED, sl);
        } else if (sl->deadline <= now && m->no_reply) { /* none asked for, none came: not lost */
            sl->state = SLOT_LOST;
            m->ctr.no_reply++;
            result_init(&res[n++], STAMP_RES_NO_REPLY, sl);
        } else if (sl->deadline <= now) {
            sl->state = SLOT_LOST;
            m->ctr.lost++;
            result_init(&res[n++], STAMP_RES_LOST, sl);
        } else {
            break;
        }
        m->oldest++;
    }
    return n;
}
