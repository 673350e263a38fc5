/* sender.c - the Session-Sender engine (RFC 8762 4.2). */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"


enum { SLOT_FREE = 0, SLOT_OUT, SLOT_DONE, SLOT_LOST };

typedef struct {
    uint32_t seq;
    uint8_t state;
    stamp_ns_t t1;       /* UTC send time */
    stamp_ns_t deadline; /* monotonic */
} slot_t;

#define RING_MAX (1u << 18)

struct stamp_sender {
    stamp_sender_cfg_t cfg;
    int fd;
    stamp_addr_t local, remote;
    stamp_hmac_t *hmac;
    stamp_clockstate_t clk;
    stamp_ns_t next_send; /* monotonic */
    uint64_t nsent;   /* sequence numbers used */
    uint64_t oldest;  /* lowest sequence number not yet resolved */
    int stopped;
    uint64_t rng;         /* xorshift64* state for the Poisson schedule */
    slot_t *ring;
    size_t mask;
    stamp_sender_counters_t ctr;
    uint8_t *tlvs;      /* TLV template */
    size_t dm_off[8];   /* Direct Measurement TLVs to count in */
    int ndm;
    long hmac_off;      /* HMAC TLV to sign, -1 none */
    uint8_t *txmem;     /* STAMP_BATCH test packets of packet_len octets */
    stamp_txmsg_t tx[STAMP_BATCH];
    uint8_t *rxbuf[STAMP_BATCH];
    size_t rxlen[STAMP_BATCH];
    stamp_rxmeta_t meta[STAMP_BATCH];
    uint8_t mem[];
};

void stamp_sender_free(stamp_sender_t *s)
{
    if (!s) return;
    if (s->fd >= 0) close(s->fd);
    free(s->ring);
    free(s->tlvs);
    free(s->txmem);
    stamp_hmac_free(s->hmac);
    free(s);
}

int stamp_sender_new(const stamp_sender_cfg_t *cfg, stamp_sender_t **out)
{
    *out = NULL;
    size_t base = stamp_base_len(cfg->mode);
    size_t plen = cfg->packet_len ? cfg->packet_len : base + cfg->tlvs_len;
    if (cfg->mode != STAMP_MODE_OPEN && cfg->mode != STAMP_MODE_AUTH) return STAMP_EINVAL;
    if (cfg->mode == STAMP_MODE_AUTH && (!cfg->key || cfg->keylen == 0 || cfg->keylen > STAMP_KEY_MAX))
        return STAMP_EINVAL;
    if (plen < base + cfg->tlvs_len || plen > STAMP_MAX_PKT || (cfg->tlvs_len && !cfg->tlvs) || cfg->interval < 0 || cfg->timeout <= 0 || !cfg->remote_addr ||
        cfg->remote_port == 0 || cfg->remote_port > 65535)
        return STAMP_EINVAL;

    stamp_addr_t remote;
    int rc = stamp_addr_parse(&remote, cfg->remote_addr, cfg->remote_port);
    if (rc) return rc;

    size_t memsz = (size_t)STAMP_BATCH * STAMP_MAX_PKT;
    stamp_sender_t *s = calloc(1, sizeof *s + memsz);
    if (!s) return STAMP_ENOMEM;
    s->fd = -1;
    s->cfg = *cfg;
    s->cfg.key = NULL;
    s->cfg.remote_addr = NULL;
    s->cfg.packet_len = plen;
    s->remote = remote;
    for (int i = 0; i < STAMP_BATCH; i++) s->rxbuf[i] = s->mem + (size_t)i * STAMP_MAX_PKT;
    s->txmem = calloc(STAMP_BATCH, plen);
    if (!s->txmem) {
        stamp_sender_free(s);
        return STAMP_ENOMEM;
    }

    /* ring of outstanding packets, big enough for every packet in flight */
    double inflight = cfg->interval > 0 ? (double)cfg->timeout / (double)cfg->interval + 2 : RING_MAX;
    size_t ring = 64;
    while (ring < 2 * inflight && ring < RING_MAX) ring <<= 1;
    s->ring = calloc(ring, sizeof *s->ring);
    if (!s->ring) {
        stamp_sender_free(s);
        return STAMP_ENOMEM;
    }
    s->mask = ring - 1;

    s->hmac_off = -1;
    if (cfg->tlvs_len) {
        s->tlvs = malloc(cfg->tlvs_len);
        if (!s->tlvs) {
            stamp_sender_free(s);
            return STAMP_ENOMEM;
        }
        memcpy(s->tlvs, cfg->tlvs, cfg->tlvs_len);
        /* where the per-packet values go, found once */
        size_t pos = 0;
        stamp_tlv_t t;
        while (stamp_tlv_next(s->tlvs, cfg->tlvs_len, &pos, &t) == 1) {
            if (t.type == STAMP_TLV_DM && t.len >= 4 && s->ndm < 8) s->dm_off[s->ndm++] = base + t.off + STAMP_TLV_HDR;
            if (t.type == STAMP_TLV_HMAC && t.len == STAMP_HMAC_LEN) s->hmac_off = (long)(base + t.off);
        }
    }
    if (s->hmac_off >= 0 && (!cfg->key || !cfg->keylen)) {
        stamp_sender_free(s);
        return STAMP_EINVAL; /* an HMAC TLV needs the key */
    }
    if (cfg->key && cfg->keylen) {
        s->hmac = stamp_hmac_new(cfg->key, cfg->keylen);
        if (!s->hmac) {
            stamp_sender_free(s);
            return STAMP_ECRYPTO;
        }
    }

    stamp_sock_opts_t so = cfg->sock;
    int rfam = remote.addr.ss_family;
    const char *la = so.addr;
    if (!la || !*la || strcmp(la, "0.0.0.0") == 0 || strcmp(la, "::") == 0) {
        so.addr = rfam == AF_INET6 ? "::" : "0.0.0.0";
    }
    int fd = stamp_sock_open(&so, &s->local);
    if (fd < 0) {
        stamp_sender_free(s);
        return fd;
    }
    s->fd = fd;
    if (s->local.addr.ss_family == AF_INET6 && rfam == AF_INET) stamp_addr_to_mapped(&s->remote);
    if (s->local.addr.ss_family == AF_INET && rfam == AF_INET6) {
        stamp_sender_free(s);
        return STAMP_EADDR; /* IPv4 local address, IPv6 remote */
    }
    stamp_clock_refresh(&s->clk, s->cfg.clock, stamp_mono(), 1);
    s->next_send = stamp_mono();
    s->rng = cfg->seed ? cfg->seed : (uint64_t)stamp_now() ^ 0x9e3779b97f4a7c15ULL;
    if (!s->rng) s->rng = 1;
    *out = s;
    return STAMP_OK;
}

int stamp_sender_fd(const stamp_sender_t *s) { return s->fd; }

int stamp_sender_local(const stamp_sender_t *s, stamp_addr_t *a)
{
    *a = s->local;
    return STAMP_OK;
}

void stamp_sender_counters(const stamp_sender_t *s, stamp_sender_counters_t *c) { *c = s->ctr; }

void stamp_sender_stop(stamp_sender_t *s) { s->stopped = 1; }

static int sending(const stamp_sender_t *s)
{
    return !s->stopped && (s->cfg.count == 0 || s->nsent < s->cfg.count);
}

int stamp_sender_done(const stamp_sender_t *s) { return !sending(s) && s->oldest >= s->nsent; }

/* The gap before the next packet: fixed, or exponential with the same mean (Poisson process). */
static stamp_ns_t next_gap(stamp_sender_t *s)
{
    if (!s->cfg.poisson || s->cfg.interval == 0) return s->cfg.interval;
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    uint64_t x = s->rng * 2685821657736338717ULL;
    double u = ((double)(x >> 11) + 1.0) / 9007199254740993.0; /* (0, 1] */
    return (stamp_ns_t)(-log(u) * (double)s->cfg.interval);
}

static void emit_lost(stamp_result_t *r, const slot_t *sl)
{
    memset(r, 0, sizeof *r);
    r->status = STAMP_RES_LOST;
    r->seq = sl->seq;
    r->t1 = sl->t1;
    r->sender_ttl = r->reply_ttl = r->reply_tos = -1;
    r->tlv_hmac = -1;
}

/* Build test packet number nsent into buf with send time t1, and remember it. */
static void build_one(stamp_sender_t *s, uint8_t *buf, stamp_ns_t mono, stamp_ns_t t1)
{
    slot_t *sl = &s->ring[s->nsent & s->mask];
    if (sl->state == SLOT_OUT) {
        /* more in flight than the ring holds: the oldest one is given up on */
        sl->state = SLOT_LOST;
        s->ctr.lost++;
    }
    size_t base = stamp_base_len(s->cfg.mode);
    stamp_test_t t;
    memset(&t, 0, sizeof t);
    t.seq = (uint32_t)s->nsent;
    t.ee = s->clk.ee;
    t.ssid = s->cfg.ssid;
    memset(buf + base, 0, s->cfg.packet_len - base);
    if (s->cfg.tlvs_len) memcpy(buf + base, s->tlvs, s->cfg.tlvs_len);
    for (int k = 0; k < s->ndm; k++) wr32(buf + s->dm_off[k], (uint32_t)(s->nsent + 1)); /* S_TxC */
    stamp_ts_encode(t.ts, t1, s->cfg.clock, s->clk.tai);
    stamp_test_encode(buf, s->cfg.packet_len, s->cfg.mode, &t);
    if (s->hmac_off >= 0) stamp_tlv_sign(s->hmac, buf, base, (size_t)s->hmac_off);
    if (s->cfg.mode == STAMP_MODE_AUTH) stamp_auth_sign(s->hmac, buf, s->cfg.packet_len);
    sl->seq = t.seq;
    sl->state = SLOT_OUT;
    sl->t1 = t1;
    sl->deadline = mono + s->cfg.timeout;
    s->nsent++;
    s->ctr.sent++;
}

/* Send what is due: one packet per step on a schedule, up to a batch when flooding (interval 0). */
static void send_due(stamp_sender_t *s, stamp_ns_t now)
{
    int max = s->cfg.interval > 0 ? 1 : STAMP_BATCH, k = 0;
    stamp_ns_t t1 = stamp_now(); /* as late as possible: the batch leaves right after */
    while (k < max && sending(s) && now >= s->next_send) {
        uint8_t *buf = s->txmem + (size_t)k * s->cfg.packet_len;
        build_one(s, buf, now, t1);
        s->tx[k] = (stamp_txmsg_t){.buf = buf, .len = s->cfg.packet_len, .to = &s->remote, .from = NULL,
                                   .ifindex = 0, .tos = -1, .want_txts = 0, .ok = 0};
        k++;
        s->next_send += next_gap(s);
        if (now - s->next_send > STAMP_NS_PER_SEC) s->next_send = now; /* do not burst after a stall */
    }
    if (!k) return;
    stamp_sock_send(s->fd, s->tx, k);
    for (int i = 0; i < k; i++)
        if (!s->tx[i].ok) s->ctr.tx_errors++;
}

static int handle_reply(stamp_sender_t *s, int i, stamp_result_t *res)
{
    const uint8_t *b = s->rxbuf[i];
    size_t len = s->rxlen[i];
    const stamp_rxmeta_t *m = &s->meta[i];
    size_t base = stamp_base_len(s->cfg.mode);
    if (len > STAMP_MAX_PKT || len < base || !stamp_addr_equal(&m->src, &s->remote)) {
        s->ctr.drop_invalid++;
        return 0;
    }
    if (s->cfg.mode == STAMP_MODE_AUTH && stamp_auth_verify(s->hmac, b, len) != STAMP_OK) {
        s->ctr.drop_hmac++;
        return 0;
    }
    stamp_reflected_t p;
    stamp_reflected_decode(b, len, s->cfg.mode, &p);
    if (s->cfg.ssid && p.ssid && p.ssid != s->cfg.ssid) {
        s->ctr.drop_invalid++;
        return 0;
    }
    /* match by sequence number within the ring's window */
    uint64_t seq = p.sender_seq;
    uint64_t base_seq = s->nsent > s->mask ? s->nsent - s->mask - 1 : 0;
    /* unwrap 32-bit sequence numbers against what we have sent */
    seq |= (s->nsent - 1) & ~(uint64_t)0xffffffffu;
    if (seq >= s->nsent && seq >= ((uint64_t)1 << 32)) seq -= (uint64_t)1 << 32;
    slot_t *sl = &s->ring[seq & s->mask];
    if (seq >= s->nsent || seq < base_seq || sl->seq != p.sender_seq || sl->state == SLOT_FREE) {
        s->ctr.drop_invalid++;
        return 0;
    }
    if (sl->state == SLOT_DONE) {
        s->ctr.duplicates++;
        return 0;
    }
    if (sl->state == SLOT_LOST) {
        s->ctr.late++;
        return 0;
    }
    sl->state = SLOT_DONE;
    s->ctr.received++;

    memset(res, 0, sizeof *res);
    res->status = STAMP_RES_OK;
    res->seq = p.sender_seq;
    res->refl_seq = p.seq;
    res->ssid = p.ssid;
    stamp_ee_unpack(p.sender_ee, &res->sender_ee);
    stamp_ee_unpack(p.ee, &res->refl_ee);
    stamp_clock_t rfmt = res->refl_ee.z ? STAMP_CLOCK_PTP : STAMP_CLOCK_NTP;
    int tai = rfmt == STAMP_CLOCK_PTP ? s->clk.tai : 0;
    res->t1 = sl->t1;
    stamp_ts_decode(p.rx_ts, rfmt, tai, &res->t2);
    stamp_ts_decode(p.ts, rfmt, tai, &res->t3);
    res->t4 = m->rx_time;
    res->rtt = (res->t4 - res->t1) - (res->t3 - res->t2);
    res->fwd = res->t2 - res->t1;
    res->bwd = res->t4 - res->t3;
    res->sender_ttl = p.sender_ttl;
    res->reply_ttl = m->ttl;
    res->reply_tos = m->tos;
    res->rx_kernel = m->rx_kernel;
    res->pkt = b;
    res->pkt_len = len;
    res->tlv_hmac = -1;
    if (s->hmac && len > base) { /* the reply's HMAC TLV, if any */
        size_t pos = base;
        stamp_tlv_t tl;
        while (stamp_tlv_next(b, len, &pos, &tl) == 1) {
            if (tl.type == STAMP_TLV_HMAC && tl.len == STAMP_HMAC_LEN) {
                res->tlv_hmac = stamp_tlv_verify(s->hmac, b, base, tl.off) == STAMP_OK;
                break;
            }
        }
    }
    return 1;
}

static stamp_ns_t next_deadline(const stamp_sender_t *s)
{
    stamp_ns_t d = INT64_MAX;
    if (sending(s)) d = s->next_send;
    for (uint64_t q = s->oldest; q < s->nsent; q++) {
        const slot_t *sl = &s->ring[q & s->mask];
        if (sl->state == SLOT_OUT && sl->seq == (uint32_t)q) {
            if (sl->deadline < d) d = sl->deadline;
            break; /* deadlines grow with the sequence number */
        }
    }
    return d;
}

int stamp_sender_next_timeout(const stamp_sender_t *s)
{
    if (stamp_sender_done(s)) return -1;
    stamp_ns_t d = next_deadline(s);
    if (d == INT64_MAX) return -1;
    stamp_ns_t now = stamp_mono();
    if (d <= now) return 0;
    stamp_ns_t ms = (d - now + 999999) / 1000000;
    return ms > 1000000 ? 1000000 : (int)ms;
}

int stamp_sender_step(stamp_sender_t *s, int timeout_ms, stamp_result_t *res, int max)
{
    if (s->fd < 0) return STAMP_ECLOSED;
    if (max <= 0) return STAMP_EINVAL;
    stamp_ns_t now = stamp_mono();
    stamp_clock_refresh(&s->clk, s->cfg.clock, now, 0);
    send_due(s, now);
    /* wait for a reply, but no longer than the next send or loss deadline */
    stamp_ns_t d = next_deadline(s);
    int wait = timeout_ms;
    if (d != INT64_MAX) {
        stamp_ns_t left = d - stamp_mono();
        int lms = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
        if (wait < 0 || lms < wait) wait = lms;
    } else if (wait < 0) {
        wait = 0; /* nothing left to wait for */
    }
    if (wait != 0) {
        int w = stamp_wait_readable(s->fd, wait);
        if (w < 0) return w;
    }
    int n = 0;
    int want = max < STAMP_BATCH ? max : STAMP_BATCH;
    int got = stamp_sock_recv(s->fd, &s->local, s->rxbuf, STAMP_MAX_PKT, s->rxlen, s->meta, want);
    if (got < 0 && got != -EINTR) return got;
    for (int i = 0; i < got; i++) n += handle_reply(s, i, &res[n]);
    /* declare losses, oldest first */
    now = stamp_mono();
    while (s->oldest < s->nsent && n < max) {
        slot_t *sl = &s->ring[s->oldest & s->mask];
        if (sl->seq != (uint32_t)s->oldest || sl->state == SLOT_DONE || sl->state == SLOT_FREE) {
            s->oldest++;
            continue;
        }
        if (sl->state == SLOT_LOST) { /* given up when the ring wrapped */
            emit_lost(&res[n++], sl);
            s->oldest++;
            continue;
        }
        if (sl->deadline > now) break;
        sl->state = SLOT_LOST;
        s->ctr.lost++;
        emit_lost(&res[n++], sl);
        s->oldest++;
    }
    return n;
}
