/* reflector.c - the Session-Reflector engine (RFC 8762 4.3, RFC 8972 4). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"


typedef struct session {
    struct session *next;
    stamp_addr_t src, dst;
    uint16_t ssid;
    uint32_t next_seq;    /* stateful: the reflector's own sequence number */
    stamp_ns_t last_seen; /* monotonic */
    uint32_t rx, tx;      /* Direct Measurement counters */
    uint32_t last_seq;    /* Follow-Up Telemetry: the previous reply */
    stamp_ns_t last_tx;
    int has_last;
    uint32_t last_sender_seq; /* type 12: Sequence Numbers must increase */
    int has_sender_seq;
    uint32_t gen;         /* bumped each time this memory holds a new session */
} session_t;

/* Which session each kernel-timestamped reply belongs to, by timestamp number. */
typedef struct {
    session_t *s;
    uint32_t gen, seq;
    stamp_ns_t t3;
} txrec_t;

#define TXREC 1024

/* What we know about each reply of a batch until it leaves. */
typedef struct {
    int hmac_off;   /* HMAC TLV to sign, -1 none */
    session_t *sess;
    uint32_t seq;
    stamp_addr_t to, from;
    int has_from;
    int ifindex;    /* with from: the interface the reply must leave through, 0 = any */
    int tos;
    unsigned extra; /* type 12 copies to queue */
    stamp_ns_t extra_ival;
} txinfo_t;

/* A type 12 extra reply waiting for its time. */
typedef struct {
    stamp_ns_t due; /* monotonic */
    size_t len;
    txinfo_t info;
    uint8_t *buf;
} pending_t;

#define PENDING_MAX 256

struct stamp_reflector {
    stamp_reflector_cfg_t cfg;
    int fd;
    stamp_addr_t local;
    stamp_hmac_t *hmac;
    stamp_clockstate_t clk; /* our Error Estimate and TAI offset */
    stamp_ns_t last_housekeeping;
    session_t **buckets;
    size_t nbuckets;
    stamp_reflector_counters_t ctr;
    /* preallocated batch buffers: no allocation per packet */
    uint8_t *rxbuf[STAMP_BATCH];
    uint8_t *txbuf[STAMP_BATCH];
    size_t rxlen[STAMP_BATCH];
    stamp_rxmeta_t meta[STAMP_BATCH];
    stamp_txmsg_t tx[STAMP_BATCH];
    txinfo_t txi[STAMP_BATCH];
    uint8_t local_addrs[64][16]; /* this host's addresses, refreshed once a second */
    uint8_t local_lens[64];
    int n_local;
    session_t *free_sessions; /* reaped sessions are kept for reuse, never freed while running */
    uint32_t gen;
    txrec_t txrec[TXREC];
    uint32_t txts_next;       /* number of the next timestamped reply */
    pending_t *pending; /* type 12 queue, allocated only when the feature is on */
    int npending;
    uint8_t *pendmem;
    uint8_t mem[]; /* 2 * STAMP_BATCH * STAMP_MAX_PKT octets */
};

static uint64_t hash_addr(uint64_t h, const stamp_addr_t *a)
{
    const uint8_t *p = (const uint8_t *)&a->addr;
    size_t n = a->len < sizeof a->addr ? a->len : sizeof a->addr;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static size_t session_hash(const stamp_reflector_t *r, const stamp_addr_t *src, const stamp_addr_t *dst,
                           uint16_t ssid)
{
    uint64_t h = 14695981039346656037ULL;
    h = hash_addr(h, src);
    h = hash_addr(h, dst);
    h ^= ssid;
    h *= 1099511628211ULL;
    return (size_t)(h & (r->nbuckets - 1));
}

static int addr_same(const stamp_addr_t *a, const stamp_addr_t *b)
{
    if (a->len == 0 && b->len == 0) return 1;
    return stamp_addr_equal(a, b);
}

static session_t *session_get(stamp_reflector_t *r, const stamp_rxmeta_t *m, uint16_t ssid, stamp_ns_t now)
{
    size_t h = session_hash(r, &m->src, &m->dst, ssid);
    for (session_t *s = r->buckets[h]; s; s = s->next) {
        if (s->ssid == ssid && addr_same(&s->src, &m->src) && addr_same(&s->dst, &m->dst)) {
            s->last_seen = now;
            return s;
        }
    }
    if (r->ctr.sessions_active >= r->cfg.max_sessions) return NULL;
    session_t *s = r->free_sessions;
    if (s) {
        r->free_sessions = s->next;
        memset(s, 0, sizeof *s);
    } else {
        s = calloc(1, sizeof *s); /* once per new session, never per packet */
        if (!s) return NULL;
    }
    s->gen = ++r->gen;
    s->src = m->src;
    s->dst = m->dst;
    s->ssid = ssid;
    s->last_seen = now;
    s->next = r->buckets[h];
    r->buckets[h] = s;
    r->ctr.sessions_active++;
    r->ctr.sessions_created++;
    return s;
}

static void housekeeping(stamp_reflector_t *r, stamp_ns_t now)
{
    if (now - r->last_housekeeping < STAMP_NS_PER_SEC) return;
    r->last_housekeeping = now;
    stamp_clock_refresh(&r->clk, r->cfg.clock, now, 1);
    r->n_local = stamp_local_addrs(r->local_addrs, r->local_lens, 64);
    stamp_ns_t idle = (stamp_ns_t)(r->cfg.session_timeout * 1e9);
    for (size_t i = 0; i < r->nbuckets; i++) {
        session_t **pp = &r->buckets[i];
        while (*pp) {
            session_t *s = *pp;
            if (now - s->last_seen > idle) {
                *pp = s->next;
                s->gen = 0;
                s->next = r->free_sessions;
                r->free_sessions = s;
                r->ctr.sessions_active--;
                r->ctr.sessions_reaped++;
            } else {
                pp = &s->next;
            }
        }
    }
}

void stamp_reflector_free(stamp_reflector_t *r)
{
    if (!r) return;
    if (r->fd >= 0) close(r->fd);
    if (r->buckets) {
        for (size_t i = 0; i < r->nbuckets; i++) {
            session_t *s = r->buckets[i];
            while (s) {
                session_t *n = s->next;
                free(s);
                s = n;
            }
        }
        free(r->buckets);
    }
    while (r->free_sessions) {
        session_t *n = r->free_sessions->next;
        free(r->free_sessions);
        r->free_sessions = n;
    }
    stamp_hmac_free(r->hmac);
    free(r->pending);
    free(r->pendmem);
    free(r);
}

int stamp_reflector_new(const stamp_reflector_cfg_t *cfg, stamp_reflector_t **out)
{
    *out = NULL;
    if (cfg->mode != STAMP_MODE_OPEN && cfg->mode != STAMP_MODE_AUTH) return STAMP_EINVAL;
    if (cfg->mode == STAMP_MODE_AUTH && (!cfg->key || cfg->keylen == 0 || cfg->keylen > STAMP_KEY_MAX))
        return STAMP_EINVAL;
    if (!(cfg->session_timeout > 0)) return STAMP_EINVAL;
    size_t memsz = (size_t)2 * STAMP_BATCH * STAMP_MAX_PKT;
    stamp_reflector_t *r = calloc(1, sizeof *r + memsz);
    if (!r) return STAMP_ENOMEM;
    r->fd = -1;
    r->cfg = *cfg;
    r->cfg.key = NULL; /* the key lives only inside the HMAC context */
    if (!r->cfg.max_sessions) r->cfg.max_sessions = 65536;
    if (r->cfg.batch <= 0 || r->cfg.batch > STAMP_BATCH) r->cfg.batch = STAMP_BATCH;
    for (int i = 0; i < STAMP_BATCH; i++) {
        r->rxbuf[i] = r->mem + (size_t)i * STAMP_MAX_PKT;
        r->txbuf[i] = r->mem + (size_t)(STAMP_BATCH + i) * STAMP_MAX_PKT;
    }
    r->nbuckets = 1;
    while (r->nbuckets < r->cfg.max_sessions / 2 && r->nbuckets < (1u << 20)) r->nbuckets <<= 1;
    if (r->nbuckets < 64) r->nbuckets = 64;
    r->buckets = calloc(r->nbuckets, sizeof *r->buckets);
    if (!r->buckets) {
        stamp_reflector_free(r);
        return STAMP_ENOMEM;
    }
    if (cfg->tlv.refl_max_count) {
        r->pending = calloc(PENDING_MAX, sizeof *r->pending);
        r->pendmem = calloc(PENDING_MAX, STAMP_MAX_PKT); /* zeroed: every octet that can reach the wire */
        if (!r->pending || !r->pendmem) {
            stamp_reflector_free(r);
            return STAMP_ENOMEM;
        }
        for (int i = 0; i < PENDING_MAX; i++) r->pending[i].buf = r->pendmem + (size_t)i * STAMP_MAX_PKT;
    }
    /* the key signs the base packet (authenticated mode) and the HMAC TLV (either mode) */
    if (cfg->key && cfg->keylen) {
        if (cfg->keylen > STAMP_KEY_MAX) {
            stamp_reflector_free(r);
            return STAMP_EINVAL;
        }
        r->hmac = stamp_hmac_new(cfg->key, cfg->keylen);
        if (!r->hmac) {
            stamp_reflector_free(r);
            return STAMP_ECRYPTO;
        }
    }
    int fd = stamp_sock_open(&cfg->sock, &r->local);
    if (fd < 0) {
        stamp_reflector_free(r);
        return fd;
    }
    r->fd = fd;
    r->last_housekeeping = stamp_mono() - 2 * STAMP_NS_PER_SEC;
    housekeeping(r, stamp_mono());
    *out = r;
    return STAMP_OK;
}

int stamp_reflector_fd(const stamp_reflector_t *r) { return r->fd; }

int stamp_reflector_local(const stamp_reflector_t *r, stamp_addr_t *a)
{
    *a = r->local;
    return STAMP_OK;
}

void stamp_reflector_counters(const stamp_reflector_t *r, stamp_reflector_counters_t *c) { *c = r->ctr; }

/* Build the reply for datagram i into txbuf[i]. Returns the reply length, 0 to drop. */
static size_t reflect_one(stamp_reflector_t *r, int i, stamp_ns_t mono)
{
    uint8_t *in = r->rxbuf[i];
    size_t len = r->rxlen[i];
    const stamp_rxmeta_t *m = &r->meta[i];
    size_t base = stamp_base_len(r->cfg.mode);
    txinfo_t *ti = &r->txi[i];
    memset(ti, 0, sizeof *ti);
    ti->hmac_off = -1;
    ti->tos = -1;

    if (len > STAMP_MAX_PKT) {
        r->ctr.drop_truncated++;
        return 0;
    }
    if (len < STAMP_TWAMP_LIGHT_MIN) {
        r->ctr.drop_short++;
        return 0;
    }
    if (len < base) {
        /* TWAMP-Light interop (RFC 8762 4.6): answer zero-filled, unauthenticated only */
        if (r->cfg.strict_packets || r->cfg.mode == STAMP_MODE_AUTH) {
            r->ctr.drop_short++;
            return 0;
        }
        memset(in + len, 0, base - len);
        r->ctr.short_padded++;
        len = base;
    }
    if (r->cfg.mode == STAMP_MODE_AUTH && stamp_auth_verify(r->hmac, in, len) != STAMP_OK) {
        r->ctr.drop_hmac++;
        return 0;
    }
    stamp_test_t t;
    stamp_test_decode(in, len, r->cfg.mode, &t);
    int tlvs = len > base && r->cfg.tlv.process;

    /* per-session state: stateful numbering, and the TLVs that count per session */
    session_t *s = NULL;
    if (r->cfg.stateful || tlvs) {
        s = session_get(r, m, t.ssid, mono);
        if (!s && r->cfg.stateful) {
            r->ctr.drop_sessions++;
            return 0;
        }
    }
    stamp_reflected_t o;
    memset(&o, 0, sizeof o);
    o.seq = r->cfg.stateful ? s->next_seq : t.seq;
    o.ee = r->clk.ee;
    o.ssid = t.ssid;
    stamp_ts_encode(o.rx_ts, m->rx_time, r->cfg.clock, r->clk.tai);
    o.sender_seq = t.seq;
    memcpy(o.sender_ts, t.ts, 8);
    o.sender_ee = t.ee;
    o.sender_ttl = m->ttl >= 0 ? (uint8_t)m->ttl : 0;
    uint8_t *out = r->txbuf[i];
    stamp_reflected_encode(out, STAMP_MAX_PKT, r->cfg.mode, &o);
    size_t olen = base;
    if (len > base && r->cfg.tlv.process) {
        /* the TLVs go back in order and length, processed in place (RFC 8972 4) */
        memcpy(out + base, in + base, len - base);
        olen = len;
        stamp_tlv_ctx_t c;
        memset(&c, 0, sizeof c);
        c.meta = m;
        c.clock = r->cfg.clock;
        c.tai = r->clk.tai;
        c.synced = r->clk.synced;
        c.pol = &r->cfg.tlv;
        c.local_addrs = (const uint8_t(*)[16])r->local_addrs;
        c.local_lens = r->local_lens;
        c.n_local = r->n_local;
        c.tos = -1;
        c.stateful = r->cfg.stateful;
        c.sender_seq = t.seq;
        if (s) {
            c.last_sender_seq = s->last_sender_seq;
            c.has_last_sender_seq = s->has_sender_seq;
            c.sess_rx = s->rx + 1;
            c.sess_tx = s->tx + 1;
            c.prev_seq = s->last_seq;
            c.prev_tx = s->last_tx;
            c.has_prev = s->has_last;
        }
        int f = stamp_tlv_reflect(&c, r->hmac, out, base, olen, &ti->hmac_off);
        if (f & STAMP_TLV_DROP) {
            r->ctr.drop_micro++;
            return 0;
        }
        if (f & STAMP_TLV_U) r->ctr.tlv_unknown++;
        if (f & STAMP_TLV_M) r->ctr.tlv_malformed++;
        if (f & STAMP_TLV_I) r->ctr.tlv_integrity++;
        if (s) {
            s->rx++;
            s->last_sender_seq = t.seq;
            s->has_sender_seq = 1;
        }
        if (c.no_reply) {
            r->ctr.no_reply++;
            return 0;
        }
        ti->tos = c.tos;
        if (c.has_return_to) ti->to = c.return_to;
        if (c.has_source) {
            ti->from = c.source;
            ti->has_from = 1;
            ti->ifindex = c.ifindex;
        }
        /* type 12: the exact reply length of RFC 10052 3 (C set by the registry where it cannot be met) */
        if (c.want_len) olen = stamp_tlv_fit(out, STAMP_MAX_PKT, base, olen, c.want_len, &ti->hmac_off);
        ti->extra = c.extra_count;
        ti->extra_ival = c.extra_interval;
    } else {
        /* RFC 8762 4.3/4.6: without TLV processing the octets past the base are copied, unprocessed,
           so the reply stays as long as the request */
        if (len > base) {
            memcpy(out + base, in + base, len - base);
            olen = len;
        }
        if (s) s->rx++;
    }
    if (!ti->to.len) ti->to = m->src;
    if (!ti->has_from && m->dst.len) {
        ti->from = m->dst;
        ti->has_from = 1;
    }
    if (s) {
        s->tx++;
        if (r->cfg.stateful) s->next_seq++;
    }
    ti->sess = s;
    ti->seq = o.seq;
    return olen;
}

/* Stamp, sign and remember one reply just before it leaves. */
static void finalize(stamp_reflector_t *r, uint8_t *b, size_t len, txinfo_t *ti, stamp_ns_t now)
{
    size_t tsoff = r->cfg.mode == STAMP_MODE_AUTH ? 16 : 4;
    size_t base = stamp_base_len(r->cfg.mode);
    stamp_ts_encode(b + tsoff, now, r->cfg.clock, r->clk.tai);
    if (ti->hmac_off >= 0 && r->hmac) stamp_tlv_sign(r->hmac, b, base, (size_t)ti->hmac_off);
    if (r->cfg.mode == STAMP_MODE_AUTH) stamp_auth_sign(r->hmac, b, len);
    if (ti->sess) {
        ti->sess->last_seq = ti->seq;
        ti->sess->last_tx = now;
        ti->sess->has_last = 1;
    }
}

static void queue_extra(stamp_reflector_t *r, const uint8_t *b, size_t len, const txinfo_t *ti, stamp_ns_t mono)
{
    for (unsigned k = 1; k <= ti->extra && r->npending < PENDING_MAX; k++) {
        pending_t *p = &r->pending[r->npending++];
        memcpy(p->buf, b, len);
        p->len = len;
        p->info = *ti;
        p->info.sess = NULL; /* sessions may be reaped meanwhile */
        if (r->cfg.stateful && ti->sess) { /* each reply has its own number */
            p->info.seq = ti->sess->next_seq++;
            wr32(p->buf, p->info.seq);
        }
        p->due = mono + (stamp_ns_t)k * ti->extra_ival;
    }
}

static void send_pending(stamp_reflector_t *r)
{
    if (!r->npending) return;
    stamp_ns_t mono = stamp_mono(), now = stamp_now();
    for (int i = 0; i < r->npending;) {
        pending_t *p = &r->pending[i];
        if (p->due > mono) {
            i++;
            continue;
        }
        finalize(r, p->buf, p->len, &p->info, now);
        stamp_txmsg_t t = {.buf = p->buf, .len = p->len, .to = &p->info.to,
                           .from = p->info.has_from ? &p->info.from : NULL,
                           .ifindex = p->info.has_from ? p->info.ifindex : 0, .tos = p->info.tos,
                           .want_txts = 0, .ok = 0};
        if (stamp_sock_send(r->fd, &t, 1) == 1)
            r->ctr.extra_replies++;
        else
            r->ctr.drop_tx++;
        /* swap the last one in; its buffer goes with it */
        pending_t tmp = r->pending[i];
        r->pending[i] = r->pending[--r->npending];
        r->pending[r->npending] = tmp;
    }
}

/* Kernel transmit timestamps: the real transmit time of each session's last reply (Follow-Up Telemetry). */
static void read_txts(stamp_reflector_t *r)
{
    uint32_t ids[64];
    stamp_ns_t times[64];
    int n;
    while ((n = stamp_sock_txts(r->fd, ids, times, 64)) > 0) {
        for (int i = 0; i < n; i++) {
            txrec_t *x = &r->txrec[ids[i] % TXREC];
            session_t *s = x->s;
            stamp_ns_t d = times[i] - x->t3;
            /* the same session, still on that reply, and a plausible time: after our stamp, within a second */
            if (s && s->gen == x->gen && s->has_last && s->last_seq == x->seq && d >= 0 && d < STAMP_NS_PER_SEC)
                s->last_tx = times[i];
            x->s = NULL;
        }
        if (n < 64) break;
    }
}

static int pending_wait_ms(const stamp_reflector_t *r)
{
    if (!r->npending) return -1;
    stamp_ns_t first = INT64_MAX, mono = stamp_mono();
    for (int i = 0; i < r->npending; i++)
        if (r->pending[i].due < first) first = r->pending[i].due;
    return first <= mono ? 0 : (int)((first - mono + 999999) / 1000000);
}

int stamp_reflector_step(stamp_reflector_t *r, int timeout_ms)
{
    if (r->fd < 0) return STAMP_ECLOSED;
    if (timeout_ms != 0) {
        if (r->cfg.stateful && (timeout_ms < 0 || timeout_ms > 1000)) timeout_ms = 1000;
        int pw = pending_wait_ms(r);
        if (pw >= 0 && (timeout_ms < 0 || pw < timeout_ms)) timeout_ms = pw;
        if (timeout_ms != 0) {
            int w = stamp_wait_readable(r->fd, timeout_ms);
            if (w < 0) return w;
        }
    }
    int total = 0;
    read_txts(r);
    for (int round = 0; round < 64; round++) {
        int n = stamp_sock_recv(r->fd, &r->local, r->rxbuf, STAMP_MAX_PKT, r->rxlen, r->meta, r->cfg.batch);
        if (n < 0) return total ? total : n;
        if (n == 0) break;
        stamp_ns_t mono = stamp_mono();
        int ntx = 0;
        for (int i = 0; i < n; i++) {
            r->ctr.rx++;
            size_t rl = reflect_one(r, i, mono);
            if (!rl) continue;
            stamp_txmsg_t *t = &r->tx[ntx];
            r->txi[ntx] = r->txi[i]; /* compact: reply k describes tx[k] */
            t->buf = r->txbuf[i];
            t->len = rl;
            t->ifindex = 0;
            ntx++;
        }
        /* transmit timestamps as late as possible: just before the batch leaves */
        stamp_ns_t now = stamp_now();
        for (int k = 0; k < ntx; k++) {
            txinfo_t *ti = &r->txi[k];
            stamp_txmsg_t *t = &r->tx[k];
            t->to = &ti->to;
            t->from = ti->has_from ? &ti->from : NULL;
            t->ifindex = ti->has_from ? ti->ifindex : 0;
            t->tos = ti->tos;
            t->want_txts = ti->sess != NULL; /* only sessions report a previous reply */
            finalize(r, (uint8_t *)t->buf, t->len, ti, now);
            if (ti->extra && r->pending) queue_extra(r, t->buf, t->len, ti, mono);
        }
        if (ntx) {
            int sent = stamp_sock_send(r->fd, r->tx, ntx);
            if (sent < 0) sent = 0;
            for (int k = 0; k < ntx; k++) {
                if (!r->tx[k].want_txts || !r->tx[k].ok) continue;
                txrec_t *x = &r->txrec[r->txts_next++ % TXREC];
                x->s = r->txi[k].sess;
                x->gen = x->s->gen;
                x->seq = r->txi[k].seq;
                x->t3 = now;
            }
            r->ctr.reflected += (uint64_t)sent;
            r->ctr.drop_tx += (uint64_t)(ntx - sent);
        }
        total += n;
        if (n < r->cfg.batch) break;
    }
    send_pending(r);
    housekeeping(r, stamp_mono());
    return total;
}
