/* reflector.c - the Session-Reflector engine (RFC 8762 4.3, RFC 8972 4). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

STAMP_HIDDEN void stamp_addr_to_mapped(stamp_addr_t *a);

typedef struct session {
    struct session *next;
    stamp_addr_t src, dst;
    uint16_t ssid;
    uint32_t next_seq;    /* stateful: the reflector's own sequence number */
    stamp_ns_t last_seen; /* monotonic */
} session_t;

struct stamp_reflector {
    stamp_reflector_cfg_t cfg;
    int fd;
    stamp_addr_t local;
    stamp_hmac_t *hmac;
    uint16_t ee; /* our packed Error Estimate, refreshed once a second */
    int tai;     /* TAI - UTC seconds */
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
    session_t *s = calloc(1, sizeof *s); /* once per new session, never per packet */
    if (!s) return NULL;
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
    stamp_ee_t ee;
    stamp_ee_local(&ee, r->cfg.clock);
    r->ee = stamp_ee_pack(&ee);
    r->tai = r->cfg.clock == STAMP_CLOCK_PTP ? stamp_tai_offset() : 0;
    stamp_ns_t idle = (stamp_ns_t)(r->cfg.session_timeout * 1e9);
    for (size_t i = 0; i < r->nbuckets; i++) {
        session_t **pp = &r->buckets[i];
        while (*pp) {
            session_t *s = *pp;
            if (now - s->last_seen > idle) {
                *pp = s->next;
                free(s);
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
    stamp_hmac_free(r->hmac);
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
    if (cfg->mode == STAMP_MODE_AUTH) {
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
    if (r->hmac && stamp_auth_verify(r->hmac, in, len) != STAMP_OK) {
        r->ctr.drop_hmac++;
        return 0;
    }
    stamp_test_t t;
    stamp_test_decode(in, len, r->cfg.mode, &t);

    stamp_reflected_t o;
    memset(&o, 0, sizeof o);
    o.seq = t.seq;
    if (r->cfg.stateful) {
        session_t *s = session_get(r, m, t.ssid, mono);
        if (!s) {
            r->ctr.drop_sessions++;
            return 0;
        }
        o.seq = s->next_seq++;
    }
    o.ee = r->ee;
    o.ssid = t.ssid;
    stamp_ts_encode(o.rx_ts, m->rx_time, r->cfg.clock, r->tai);
    o.sender_seq = t.seq;
    memcpy(o.sender_ts, t.ts, 8);
    o.sender_ee = t.ee;
    o.sender_ttl = m->ttl >= 0 ? (uint8_t)m->ttl : 0;
    uint8_t *out = r->txbuf[i];
    stamp_reflected_encode(out, STAMP_MAX_PKT, r->cfg.mode, &o);
    /* symmetric size: octets beyond the base go back as received */
    if (len > base) memcpy(out + base, in + base, len - base);
    return len;
}

int stamp_reflector_step(stamp_reflector_t *r, int timeout_ms)
{
    if (r->fd < 0) return STAMP_ECLOSED;
    if (timeout_ms != 0) {
        if (r->cfg.stateful && (timeout_ms < 0 || timeout_ms > 1000)) timeout_ms = 1000;
        int w = stamp_wait_readable(r->fd, timeout_ms);
        if (w < 0) return w;
    }
    int total = 0;
    for (int round = 0; round < 64; round++) {
        int n = stamp_sock_recv(r->fd, r->rxbuf, STAMP_MAX_PKT, r->rxlen, r->meta, STAMP_BATCH);
        if (n < 0) return total ? total : n;
        if (n == 0) break;
        stamp_ns_t mono = stamp_mono();
        int ntx = 0;
        for (int i = 0; i < n; i++) {
            r->ctr.rx++;
            size_t rl = reflect_one(r, i, mono);
            if (!rl) continue;
            stamp_txmsg_t *t = &r->tx[ntx++];
            t->buf = r->txbuf[i];
            t->len = rl;
            t->to = &r->meta[i].src;
            t->from = r->meta[i].dst.len ? &r->meta[i].dst : NULL;
            t->ifindex = 0;
            t->tos = -1;
        }
        /* transmit timestamps as late as possible: just before the batch leaves */
        stamp_ns_t now = stamp_now();
        size_t tsoff = r->cfg.mode == STAMP_MODE_AUTH ? 16 : 4;
        for (int k = 0; k < ntx; k++) {
            uint8_t *b = (uint8_t *)r->tx[k].buf;
            stamp_ts_encode(b + tsoff, now, r->cfg.clock, r->tai);
            if (r->hmac) stamp_auth_sign(r->hmac, b, r->tx[k].len);
        }
        if (ntx) {
            int sent = stamp_sock_send(r->fd, r->tx, ntx);
            if (sent < 0) sent = 0;
            r->ctr.reflected += (uint64_t)sent;
            r->ctr.drop_tx += (uint64_t)(ntx - sent);
        }
        total += n;
        if (n < STAMP_BATCH) break;
    }
    housekeeping(r, stamp_mono());
    return total;
}
