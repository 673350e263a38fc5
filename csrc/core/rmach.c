/* rmach.c - the Session-Reflector without I/O (RFC 8762 4.3, RFC 8972 4, RFC 9503, RFC 10052):
 * one datagram and its metadata in, the reply out; sessions, rate limits,
 * replay protection, per-SSID keys and Type 12 bursts. */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <stdlib.h>

#include "rmach.h"

/* A table replaced while running (keys, admission) waits here before it is freed: another thread may still
 * read it. Each such table begins with this header. */
typedef struct retired {
    struct retired *next;
    stamp_ns_t at;
    void (*free)(struct retired *);
} retired_t;

#define KEYS_GRACE (5 * STAMP_NS_PER_SEC) /* far longer than any packet holds a table */

typedef struct keyset {
    retired_t ret;
    stamp_hmac_t *def;
    size_t n;
    uint16_t *ssid; /* sorted */
    stamp_hmac_t **h;
} keyset_t;

/* Provisioned sessions (RFC 8972 3), sorted by SSID; NULL table pointer: open admission. */
typedef struct {
    uint16_t ssid, port; /* port 0: any */
    uint8_t any_addr;
    uint8_t addr[16];    /* rt_addr_key form */
} admit_ent_t;

typedef struct {
    retired_t ret;
    size_t n;
    admit_ent_t e[];
} admit_t;

/* The TLV policy in force (replaced whole by stamp_rmach_set_tlv_policy, like the keys). */
typedef struct {
    retired_t ret;
    unsigned gen; /* one more than the policy it replaced: running bursts are checked against each new one */
    stamp_tlv_policy_t p;
} policy_t;

typedef struct {
    uint32_t sess, gen; /* owner session (index, generation) */
    uint32_t left;      /* extra replies still to send */
    uint32_t k;         /* the next one is the k-th after the first reply */
    stamp_ns_t start, ival;
    /* the previous reply of this burst left at `prev` (monotonic); it was stamped T3 = prev_t3 at
     * monotonic prev_m3, and the kernel's transmit timestamp, when it comes, moves `prev` to it */
    stamp_ns_t prev, prev_m3, prev_t3;
    stamp_ns_t handoff; /* when the previous reply was handed to the kernel (monotonic) */
    int exact;          /* `prev` is the kernel's transmit timestamp, not an upper bound of it */
    size_t len;
    uint8_t *buf;       /* the reply as first built, before T3 and signatures */
    stamp_reply_t r;    /* its addressing */
    rmach_txinfo_t ti;
    int active;
    int refill;         /* it carries Direct Measurement or Follow-Up: refilled for each extra reply */
    uint16_t ssid, sport; /* its session's SSID and Session-Sender address: admission is checked again */
    uint8_t src[16];      /*   before each extra reply (a SIGHUP may have removed the session) */
} burst_t;

#define POLL_MAX 32

typedef struct {
#define X(f) _Atomic uint64_t f;
    RCTR_LIST(X)
#undef X
} rctr_t;

/* One writer: a relaxed load and store, no read-modify-write on the packet path. */
#define CTR_ADD(m, f, n)                                                                                      \
    atomic_store_explicit(&(m)->ctr.f, atomic_load_explicit(&(m)->ctr.f, memory_order_relaxed) + (uint64_t)(n), \
                          memory_order_relaxed)
#define CTR_SET(m, f, v) atomic_store_explicit(&(m)->ctr.f, (uint64_t)(v), memory_order_relaxed)

struct stamp_rmach {
    stamp_reflector_cfg_t cfg;
    _Atomic(keyset_t *) keys;
    _Atomic(admit_t *) admit; /* NULL: open admission */
    _Atomic(policy_t *) pol;  /* read once per packet */
    unsigned pol_seen;        /* the generation the bursts were last checked against (packet thread) */
    retired_t *retired;
    /* Type 12 volume limit: a token bucket of reply octets (rate, depth switched atomically) */
    _Atomic double t12_rate_a, t12_depth_a;
    double t12_tokens;
    stamp_ns_t t12_at;
    _Atomic int rate_on_a;
    _Atomic stamp_ns_t rate_emission_a, rate_tol_a;
    stamp_clockstate_t clk;
    stamp_ns_t last_tick;
    int ticked;
    stamp_ns_t idle_ns;
    rt_sessions_t sess;
    rt_sources_t src;
    uint8_t local_addrs[64][16];
    uint8_t local_lens[64];
    int n_local;
    burst_t *bursts;
    uint32_t *freeb, nfree; /* free burst slots */
    uint32_t *active, nactive;
    uint8_t *pollmem; /* POLL_MAX * STAMP_MAX_PKT, with Type 12 only */
    stamp_ns_t txlat; /* least time seen from T3 to the kernel's transmit timestamp, -1 none yet */
    rctr_t ctr;
    uint8_t out[STAMP_MAX_PKT];
};

/* ------------------------------------------------------------------ */
/* keys                                                                */
/* ------------------------------------------------------------------ */

static void keyset_free(keyset_t *k);
static void keyset_free_ret(retired_t *r) { keyset_free((keyset_t *)r); }
static void admit_free_ret(retired_t *r) { free(r); }
static void policy_free_ret(retired_t *r) { free(r); }

/* Put `old` on the retired list and free what has waited there longer than KEYS_GRACE. */
static void retire(stamp_rmach_t *m, retired_t *old)
{
    stamp_ns_t now = stamp_mono();
    retired_t **pp = &m->retired;
    while (*pp) {
        if (now - (*pp)->at > KEYS_GRACE) {
            retired_t *x = *pp;
            *pp = x->next;
            x->free(x);
        } else {
            pp = &(*pp)->next;
        }
    }
    if (!old) return;
    old->at = now;
    old->next = m->retired;
    m->retired = old;
}

static void keyset_free(keyset_t *k)
{
    if (!k) return;
    stamp_hmac_free(k->def);
    for (size_t i = 0; i < k->n; i++) stamp_hmac_free(k->h[i]);
    free(k->h);
    free(k->ssid);
    free(k);
}

static int keyset_new(const uint8_t *def, size_t deflen, const stamp_key_t *keys, size_t n, keyset_t **out)
{
    *out = NULL;
    if ((def && (deflen == 0 || deflen > STAMP_KEY_MAX)) || (n && !keys) || n > 65536) return STAMP_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!keys[i].key || keys[i].keylen == 0 || keys[i].keylen > STAMP_KEY_MAX) return STAMP_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (keys[j].ssid == keys[i].ssid) return STAMP_EINVAL;
    }
    keyset_t *k = calloc(1, sizeof *k);
    if (!k) return STAMP_ENOMEM;
    k->ret.free = keyset_free_ret;
    if (n) {
        k->ssid = calloc(n, sizeof *k->ssid);
        k->h = calloc(n, sizeof *k->h);
        if (!k->ssid || !k->h) {
            keyset_free(k);
            return STAMP_ENOMEM;
        }
    }
    if (def && !(k->def = stamp_hmac_new(def, deflen))) {
        keyset_free(k);
        return STAMP_ECRYPTO;
    }
    for (size_t i = 0; i < n; i++) { /* insertion in SSID order */
        stamp_hmac_t *h = stamp_hmac_new(keys[i].key, keys[i].keylen);
        if (!h) {
            keyset_free(k);
            return STAMP_ECRYPTO;
        }
        size_t j = k->n;
        while (j > 0 && k->ssid[j - 1] > keys[i].ssid) {
            k->ssid[j] = k->ssid[j - 1];
            k->h[j] = k->h[j - 1];
            j--;
        }
        k->ssid[j] = keys[i].ssid;
        k->h[j] = h;
        k->n++;
    }
    *out = k;
    return STAMP_OK;
}

static stamp_hmac_t *key_for(const stamp_rmach_t *m, uint16_t ssid)
{
    const keyset_t *k = atomic_load_explicit(&m->keys, memory_order_acquire);
    size_t lo = 0, hi = k->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (k->ssid[mid] == ssid) return k->h[mid];
        if (k->ssid[mid] < ssid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return k->def;
}

int stamp_rmach_set_keys(stamp_rmach_t *m, const uint8_t *def, size_t deflen, const stamp_key_t *keys, size_t n)
{
    keyset_t *k;
    int rc = keyset_new(def, deflen, keys, n, &k);
    if (rc) return rc;
    /* one pointer: the next packet sees the whole new table; the old one is freed later */
    keyset_t *old = atomic_exchange_explicit(&m->keys, k, memory_order_acq_rel);
    retire(m, &old->ret);
    return STAMP_OK;
}

/* ------------------------------------------------------------------ */
/* session admission (RFC 8972 3)                                      */
/* ------------------------------------------------------------------ */

static int admit_cmp(const void *a, const void *b)
{
    const admit_ent_t *x = a, *y = b;
    return (int)x->ssid - (int)y->ssid;
}

int stamp_rmach_set_admission(stamp_rmach_t *m, stamp_admission_t mode, const stamp_provisioned_t *s, size_t n)
{
    if ((mode != STAMP_ADMIT_OPEN && mode != STAMP_ADMIT_PROVISIONED) || n > 65536 || (n && !s)) return STAMP_EINVAL;
    admit_t *a = NULL;
    if (mode == STAMP_ADMIT_PROVISIONED) {
        if (!(a = calloc(1, sizeof *a + n * sizeof a->e[0]))) return STAMP_ENOMEM;
        a->ret.free = admit_free_ret;
        for (size_t i = 0; i < n; i++) {
            admit_ent_t *e = &a->e[i];
            e->ssid = s[i].ssid;
            e->any_addr = !rt_addr_key(&s[i].peer, e->addr, &e->port);
            if (e->any_addr && s[i].peer.len) { /* an address of no family we know */
                free(a);
                return STAMP_EINVAL;
            }
        }
        a->n = n;
        qsort(a->e, n, sizeof a->e[0], admit_cmp);
    }
    admit_t *old = atomic_exchange_explicit(&m->admit, a, memory_order_acq_rel);
    retire(m, old ? &old->ret : NULL);
    return STAMP_OK;
}

/* Whether a packet of `ssid` from srckey/sport is answered. */
static int admitted(const stamp_rmach_t *m, uint16_t ssid, const uint8_t srckey[16], uint16_t sport)
{
    const admit_t *a = atomic_load_explicit(&m->admit, memory_order_acquire);
    if (!a) return 1;
    size_t lo = 0, hi = a->n;
    while (lo < hi) { /* the first entry of ssid */
        size_t mid = (lo + hi) / 2;
        if (a->e[mid].ssid < ssid)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < a->n && a->e[i].ssid == ssid; i++) {
        const admit_ent_t *e = &a->e[i];
        if ((e->any_addr || memcmp(e->addr, srckey, 16) == 0) && (!e->port || e->port == sport)) return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Type 12 volume limit (RFC 10052 3, 5)                               */
/* ------------------------------------------------------------------ */

int stamp_rmach_set_t12_limit(stamp_rmach_t *m, double rate, double volume)
{
    if (!(rate >= 0 && rate <= 1e12) || !(volume >= 0 && volume <= 1e12)) return STAMP_EINVAL;
    if (rate > 0 && volume <= 0) volume = rate / 10 > STAMP_MAX_PKT ? rate / 10 : STAMP_MAX_PKT;
    atomic_store_explicit(&m->t12_depth_a, volume, memory_order_relaxed);
    atomic_store_explicit(&m->t12_rate_a, rate, memory_order_relaxed);
    return STAMP_OK;
}

/* Whether a burst of `cost` octets fits the budget at `mono` (then taken from it). */
static int t12_budget(stamp_rmach_t *m, double cost, stamp_ns_t mono)
{
    double rate = atomic_load_explicit(&m->t12_rate_a, memory_order_relaxed);
    double depth = atomic_load_explicit(&m->t12_depth_a, memory_order_relaxed);
    if (rate <= 0) return 1;
    if (m->t12_at == 0) m->t12_tokens = depth; /* full at the first request */
    else if (mono > m->t12_at) m->t12_tokens += rate * (double)(mono - m->t12_at) / 1e9;
    if (m->t12_tokens > depth) m->t12_tokens = depth;
    m->t12_at = mono ? mono : 1;
    if (cost > m->t12_tokens) return 0;
    m->t12_tokens -= cost;
    return 1;
}

int stamp_rmach_set_rate(stamp_rmach_t *m, double max_pps, unsigned burst)
{
    if (!(max_pps >= 0) || max_pps > 1e9) return STAMP_EINVAL;
    if (max_pps <= 0) {
        atomic_store_explicit(&m->rate_on_a, 0, memory_order_relaxed);
        return STAMP_OK;
    }
    if (burst == 0) burst = max_pps >= 10 ? (unsigned)(max_pps / 10) : 1;
    /* clamped in double before converting (a rate below ~1e-10/s would not fit in 64 bits): at most 1e17 ns
     * (about 3 years) between packets, and the burst tolerance at most 4e18 ns */
    double e = 1e9 / max_pps;
    stamp_ns_t em = e > 1e17 ? (stamp_ns_t)1e17 : e < 1 ? 1 : (stamp_ns_t)e;
    double tol = (double)(burst - 1) * (double)em;
    atomic_store_explicit(&m->rate_emission_a, em, memory_order_relaxed);
    atomic_store_explicit(&m->rate_tol_a, tol > 4e18 ? (stamp_ns_t)4e18 : (stamp_ns_t)tol, memory_order_relaxed);
    atomic_store_explicit(&m->rate_on_a, 1, memory_order_relaxed);
    return STAMP_OK;
}

/* ------------------------------------------------------------------ */
/* TLV policy                                                          */
/* ------------------------------------------------------------------ */

static int policy_check(const stamp_rmach_t *m, const stamp_tlv_policy_t *p)
{
    if (!p || p->n_allow_return < 0 || p->n_allow_return > 16) return STAMP_EINVAL;
    for (int i = 0; i < p->n_allow_return; i++) {
        int fam = p->allow_return[i].family, plen = p->allow_return[i].plen;
        if ((fam != AF_INET && fam != AF_INET6) || plen < 0 || plen > (fam == AF_INET ? 32 : 128)) return STAMP_EINVAL;
    }
    if (p->refl_max_count > 65535 || p->refl_max_size > STAMP_MAX_PKT || p->refl_min_interval < 0 ||
        p->refl_max_interval < 0)
        return STAMP_EINVAL;
    size_t smallest = stamp_base_len(m->cfg.mode) + STAMP_TLV_HDR + 12;
    if (p->refl_max_size && p->refl_max_size < smallest) return STAMP_EINVAL;
    return STAMP_OK;
}

int stamp_rmach_set_tlv_policy(stamp_rmach_t *m, const stamp_tlv_policy_t *p)
{
    int rc = policy_check(m, p);
    if (rc) return rc;
    /* Type 12 needs the burst table, allocated at creation only when Type 12 was on */
    if (p->refl_max_count && !m->bursts) return STAMP_EINVAL;
    policy_t *n = calloc(1, sizeof *n);
    if (!n) return STAMP_ENOMEM;
    n->ret.free = policy_free_ret;
    n->p = *p;
    n->gen = atomic_load_explicit(&m->pol, memory_order_acquire)->gen + 1u;
    /* one pointer: the next packet reads the whole new policy (and its generation); the old one is freed later */
    policy_t *old = atomic_exchange_explicit(&m->pol, n, memory_order_acq_rel);
    retire(m, old ? &old->ret : NULL);
    return STAMP_OK;
}

/* ------------------------------------------------------------------ */
/* life cycle                                                          */
/* ------------------------------------------------------------------ */

void stamp_rmach_free(stamp_rmach_t *m)
{
    if (!m) return;
    rt_sessions_free(&m->sess);
    rt_sources_free(&m->src);
    if (m->bursts)
        for (uint32_t i = 0; i < m->cfg.max_bursts; i++) free(m->bursts[i].buf);
    free(m->bursts);
    free(m->freeb);
    free(m->active);
    free(m->pollmem);
    keyset_free(atomic_load(&m->keys));
    free(atomic_load(&m->admit));
    free(atomic_load(&m->pol));
    while (m->retired) {
        retired_t *x = m->retired;
        m->retired = x->next;
        x->free(x);
    }
    free(m);
}

int stamp_rmach_new(const stamp_reflector_cfg_t *cfg, stamp_rmach_t **out)
{
    *out = NULL;
    if (cfg->mode != STAMP_MODE_OPEN && cfg->mode != STAMP_MODE_AUTH) return STAMP_EINVAL;
    if (cfg->mode == STAMP_MODE_AUTH && !(cfg->key && cfg->keylen) && !cfg->n_keys) return STAMP_EINVAL;
    if (!(cfg->session_timeout > 0)) return STAMP_EINVAL; /* also NaN */
    if (!(cfg->replay_max_age >= 0) || !(cfg->max_pps >= 0)) return STAMP_EINVAL;
    stamp_rmach_t *m = calloc(1, sizeof *m);
    if (!m) return STAMP_ENOMEM;
    m->cfg = *cfg;
    m->cfg.key = NULL; /* keys live only inside the HMAC contexts */
    m->cfg.keys = NULL;
    m->cfg.n_keys = 0;
    m->cfg.sessions = NULL; /* copied into m->admit */
    m->cfg.n_sessions = 0;
    atomic_init(&m->admit, NULL);
    atomic_init(&m->pol, NULL);
    if (!m->cfg.max_sessions) m->cfg.max_sessions = 65536;
    if (!m->cfg.rate_sources) m->cfg.rate_sources = 65536;
    if (!m->cfg.max_bursts) m->cfg.max_bursts = 1024;
    if (m->cfg.batch <= 0 || m->cfg.batch > STAMP_BATCH) m->cfg.batch = STAMP_BATCH;
    m->txlat = -1;
    double idle = cfg->session_timeout * 1e9;
    m->idle_ns = idle >= 9.2e18 ? INT64_MAX : (stamp_ns_t)idle;
    keyset_t *ks = NULL;
    int rc = keyset_new(cfg->key && cfg->keylen ? cfg->key : NULL, cfg->keylen, cfg->keys, cfg->n_keys, &ks);
    atomic_init(&m->keys, ks);
    if (!rc) rc = rt_sessions_init(&m->sess, m->cfg.max_sessions);
    /* the source table always exists (calloc'd: no RSS until sources arrive), so set_rate can turn limits on */
    if (!rc) rc = rt_sources_init(&m->src, m->cfg.rate_sources);
    if (!rc) rc = stamp_rmach_set_rate(m, cfg->max_pps, cfg->rate_burst);
    if (!rc) rc = stamp_rmach_set_admission(m, cfg->admission, cfg->sessions, cfg->n_sessions);
    if (!rc) rc = stamp_rmach_set_t12_limit(m, cfg->t12_max_rate, cfg->t12_max_volume);
    if (!rc) rc = policy_check(m, &cfg->tlv);
    if (!rc) {
        policy_t *pol = calloc(1, sizeof *pol);
        if (pol) {
            pol->ret.free = policy_free_ret;
            pol->p = cfg->tlv;
            atomic_store(&m->pol, pol);
        } else {
            rc = STAMP_ENOMEM;
        }
    }
    if (!rc && cfg->tlv.refl_max_count) {
        uint32_t nb = m->cfg.max_bursts;
        m->bursts = calloc(nb, sizeof *m->bursts);
        m->freeb = calloc(nb, sizeof *m->freeb);
        m->active = calloc(nb, sizeof *m->active);
        m->pollmem = calloc(POLL_MAX, STAMP_MAX_PKT); /* zeroed: every octet that can reach the wire */
        if (!m->bursts || !m->freeb || !m->active || !m->pollmem) rc = STAMP_ENOMEM;
        for (uint32_t i = 0; !rc && i < nb; i++) m->freeb[m->nfree++] = nb - 1 - i;
    }
    if (rc) {
        stamp_rmach_free(m);
        return rc;
    }
    stamp_rmach_tick(m, stamp_mono());
    *out = m;
    return STAMP_OK;
}

void stamp_rmach_counters(const stamp_rmach_t *m, stamp_reflector_counters_t *c)
{
#define X(f) c->f = atomic_load_explicit(&m->ctr.f, memory_order_relaxed);
    RCTR_LIST(X)
#undef X
    c->drop_kernel = 0; /* the machine owns no socket */
}

void stamp_rmach_tx_failed(stamp_rmach_t *m, unsigned n, int extra)
{
    if (!n) return;
    if (extra)
        CTR_ADD(m, extra_replies, -(int64_t)n);
    else
        CTR_ADD(m, reflected, -(int64_t)n);
    CTR_ADD(m, drop_tx, n);
}

/* ------------------------------------------------------------------ */
/* sessions and bursts                                                 */
/* ------------------------------------------------------------------ */

static void burst_release(stamp_rmach_t *m, uint32_t b, int cancelled)
{
    burst_t *x = &m->bursts[b];
    if (!x->active) return;
    if (cancelled) CTR_ADD(m, extra_cancelled, x->left);
    x->active = 0;
    for (uint32_t i = 0; i < m->nactive; i++)
        if (m->active[i] == b) {
            m->active[i] = m->active[--m->nactive];
            break;
        }
    m->freeb[m->nfree++] = b;
    rt_session_t *s = &m->sess.e[x->sess];
    if (s->gen == x->gen && s->burst == b + 1) s->burst = 0;
}

static void session_gone(stamp_rmach_t *m, uint32_t e)
{
    rt_session_t *s = &m->sess.e[e];
    if (s->burst && m->bursts) {
        uint32_t b = s->burst - 1;
        s->burst = 0;
        burst_release(m, b, 1);
    }
}

static void expire(stamp_rmach_t *m, stamp_ns_t mono, int budget)
{
    uint32_t e;
    while (budget-- > 0 && (e = rt_session_oldest_idle(&m->sess, mono, m->idle_ns)) != RT_NONE) {
        session_gone(m, e);
        rt_session_remove(&m->sess, e);
        CTR_ADD(m, sessions_reaped, 1);
    }
    CTR_SET(m, sessions_active, m->sess.used);
}

void stamp_rmach_tick(stamp_rmach_t *m, stamp_ns_t mono)
{
    if (!m->ticked || mono - m->last_tick >= STAMP_NS_PER_SEC) {
        m->ticked = 1;
        m->last_tick = mono;
        stamp_clock_refresh(&m->clk, m->cfg.clock, mono, 1);
        m->n_local = stamp_local_addrs(m->local_addrs, m->local_lens, 64);
    }
    expire(m, mono, 4096);
}

/* ------------------------------------------------------------------ */
/* helpers on the reply's TLVs                                         */
/* ------------------------------------------------------------------ */

/* Offset of the first TLV of `type` in pkt[base..len), or -1. */
static long find_tlv(const uint8_t *pkt, size_t base, size_t len, uint8_t type, stamp_tlv_t *t)
{
    size_t pos = base;
    while (stamp_tlv_next(pkt, len, &pos, t) == 1)
        if (t->type == type) return (long)t->off;
    return -1;
}

static int is_v4(const stamp_addr_t *a)
{
    if (a->addr.ss_family == AF_INET) return 1;
    if (a->addr.ss_family == AF_INET6)
        return IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)&a->addr)->sin6_addr);
    return 0;
}

/* The largest reply (UDP payload) the arrival interface carries: its MTU less the IP and UDP headers
 * (RFC 10052 3: the IP datagram is what must fit); 0 when the MTU is unknown. */
static size_t egress_payload(const stamp_rxmeta_t *meta)
{
    size_t hdr = (is_v4(&meta->src) ? 20 : 40) + 8;
    return meta->mtu > 0 && (size_t)meta->mtu > hdr ? (size_t)meta->mtu - hdr : 0;
}

/* A dropped packet: our Micro-session ID not matched (RFC 9534), else a Type 12 group without us. */
static int drop_is_micro(const stamp_tlv_policy_t *pol, const uint8_t *pkt, size_t base, size_t len)
{
    stamp_tlv_t t;
    size_t pos = base;
    if (!pol->has_member_link) return 0;
    while (stamp_tlv_next(pkt, len, &pos, &t) == 1) {
        if (t.type != STAMP_TLV_MICRO || t.len != 4) continue;
        unsigned want = rd16(pkt + t.off + STAMP_TLV_HDR + 2);
        if (want != 0 && want != pol->member_link) return 1;
    }
    return 0;
}

/* RFC 8762 4.2: a replay when seen in the window, older than it, or (with an age bound) stale. */
static int replayed(stamp_rmach_t *m, rt_session_t *s, const stamp_test_t *t, const stamp_rxmeta_t *meta)
{
    int rep = 0;
    if (m->cfg.replay_max_age > 0) {
        stamp_ee_t ee;
        stamp_ns_t ts;
        stamp_ee_unpack(t->ee, &ee);
        stamp_ts_decode(t->ts, ee.z ? STAMP_CLOCK_PTP : STAMP_CLOCK_NTP, m->clk.tai, &ts);
        double age = (double)(meta->rx_time - ts) / 1e9;
        if (age > m->cfg.replay_max_age || -age > m->cfg.replay_max_age) rep = 1;
    }
    uint64_t ts = 0;
    for (int i = 0; i < 8; i++) ts = (ts << 8) | t->ts[i];
    /* a sequence number at or below the window with a Sender Timestamp newer than
     * any seen is a sender that started a new test session (RFC 8762 4: its
     * numbers start at 0 again), not a replay: a replay carries an old timestamp
     * and the HMAC (verified before this) keeps the timestamp from being forged */
    if (!s->has_replay || ((int32_t)(t->seq - s->replay_top) <= 0 && ts > s->replay_ts)) {
        s->has_replay = 1;
        s->replay_top = t->seq;
        s->replay_bits = 1;
        s->replay_ts = ts;
        return rep;
    }
    if (ts > s->replay_ts) s->replay_ts = ts;
    int32_t d = (int32_t)(t->seq - s->replay_top);
    if (d > 0) {
        s->replay_bits = d >= 64 ? 1 : (s->replay_bits << d) | 1u;
        s->replay_top = t->seq;
        return rep;
    }
    uint32_t back = (uint32_t)(-(int64_t)d);
    if (back >= 64) return 1;
    if (s->replay_bits & (1ULL << back)) return 1;
    s->replay_bits |= 1ULL << back;
    return rep;
}

/* ------------------------------------------------------------------ */
/* one datagram                                                        */
/* ------------------------------------------------------------------ */

static void start_burst(stamp_rmach_t *m, uint32_t e, rt_session_t *s, uint8_t *out,
                        size_t olen, size_t base, const stamp_reply_t *r, const rmach_txinfo_t *ti,
                        unsigned extra, stamp_ns_t ival, stamp_ns_t mono)
{
    stamp_tlv_t tl;
    long off = find_tlv(out, base, olen, STAMP_TLV_REFLCTRL, &tl);
    if (s->burst) burst_release(m, s->burst - 1, 1); /* a newer request replaces the burst */
    if (!m->nfree) { /* no room to keep this grant: one reply, C */
        if (off >= 0) out[off] |= STAMP_TLV_C;
        CTR_ADD(m, extra_refused, 1);
        return;
    }
    uint32_t b = m->freeb[--m->nfree];
    burst_t *x = &m->bursts[b];
    if (!x->buf && !(x->buf = calloc(1, STAMP_MAX_PKT))) { /* once per slot, kept for reuse */
        m->freeb[m->nfree++] = b;
        if (off >= 0) out[off] |= STAMP_TLV_C;
        CTR_ADD(m, extra_refused, 1);
        return;
    }
    memcpy(x->buf, out, olen);
    x->len = olen;
    x->sess = e;
    x->gen = s->gen;
    x->left = extra;
    x->k = 1;
    x->start = mono;
    x->ival = ival;
    x->prev = x->prev_m3 = x->handoff = mono; /* until the first reply is stamped (rmach_finish) */
    x->prev_t3 = 0;
    x->exact = 0;
    x->r = *r;
    x->r.extra = 1;
    x->ti = *ti;
    x->refill = find_tlv(out, base, olen, STAMP_TLV_DM, &tl) >= 0 || find_tlv(out, base, olen, STAMP_TLV_FOLLOWUP, &tl) >= 0;
    x->active = 1;
    m->active[m->nactive++] = b;
    s->burst = b + 1;
}

/* Bursts running from source address `src` (all its ports), the session's own (replaced by a new request) aside. */
static unsigned src_bursts(const stamp_rmach_t *m, const uint8_t src[16], const rt_session_t *s)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < m->nactive; i++) {
        const burst_t *x = &m->bursts[m->active[i]];
        if (x->active && memcmp(x->src, src, 16) == 0 && !(s && s->burst == m->active[i] + 1)) n++;
    }
    return n;
}

/* The Sender Timestamp as a number that grows with time (wire order: NTP and PTP alike). */
static uint64_t ts_raw(const stamp_test_t *t)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | t->ts[i];
    return v;
}

/* RFC 10052 5: a request is granted only when it is new to the session: a Sender Timestamp newer than any
 * the session sent, or the same one with a higher Sequence Number (serial arithmetic). A replay or a
 * reordered copy carries an older timestamp: one reply, U. A sender that started again (its numbers restart
 * at 0, RFC 8762 4) sends newer timestamps: granted, and the reference starts again from it; so does the
 * sender after a stray far-off number, which costs one U at most, not 2^31 packets of U. */
static int seq_fresh(const rt_session_t *s, uint32_t seq, uint64_t ts)
{
    return !s->has_sender_seq || ts > s->seq_ts || (ts == s->seq_ts && (int32_t)(seq - s->sender_seq) > 0);
}

static void seq_seen(rt_session_t *s, uint32_t seq, uint64_t ts)
{
    if (seq_fresh(s, seq, ts)) s->sender_seq = seq;
    if (!s->has_sender_seq || ts > s->seq_ts) s->seq_ts = ts;
    s->has_sender_seq = 1;
}


static int in_prefixes(const stamp_tlv_policy_t *p, const stamp_addr_t *a)
{
    uint8_t key[16];
    uint16_t port;
    if (!rt_addr_key(a, key, &port)) return 0;
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    int v4 = memcmp(key, v4mapped, 12) == 0;
    for (int i = 0; i < p->n_allow_return; i++) {
        const uint8_t *pa = p->allow_return[i].addr;
        int plen = p->allow_return[i].plen, full = plen / 8, rest = plen % 8;
        if ((p->allow_return[i].family == AF_INET) != v4) continue;
        const uint8_t *x = v4 ? key + 12 : key;
        if (memcmp(x, pa, (size_t)full) != 0) continue;
        if (rest && ((x[full] ^ pa[full]) & (uint8_t)(0xff << (8 - rest)))) continue;
        return 1;
    }
    return 0;
}

/* Whether a running burst may go on under policy p: its Number, Interval and length within the caps, and,
 * when it goes to a Return Address (not its session's source), that address still allowed. */
static int burst_allowed(const stamp_tlv_policy_t *p, const burst_t *x)
{
    uint64_t number = (uint64_t)x->k + x->left; /* the first reply, the k - 1 extra ones sent, those left */
    if (!p->process || !p->refl_max_count || number > p->refl_max_count) return 0;
    if (x->ival < p->refl_min_interval) return 0;
    if (p->refl_max_interval && x->ival > p->refl_max_interval) return 0;
    if (p->refl_max_size && x->len > p->refl_max_size) return 0;
    uint8_t key[16];
    uint16_t port;
    rt_addr_key(&x->r.to, key, &port);
    if ((memcmp(key, x->src, 16) != 0 || port != x->sport) && !in_prefixes(p, &x->r.to)) return 0;
    return 1;
}

/* After a new policy (stamp_rmach_set_tlv_policy): cancel the bursts it forbids (counted extra_cancelled, as
 * when a session is no longer provisioned); the others keep going. Packet thread only. */
static void bursts_recheck(stamp_rmach_t *m, const policy_t *pp)
{
    if (pp->gen == m->pol_seen) return;
    m->pol_seen = pp->gen;
    if (!m->bursts) return;
    for (uint32_t i = 0; i < m->nactive;) {
        uint32_t b = m->active[i];
        if (!burst_allowed(&pp->p, &m->bursts[b]))
            burst_release(m, b, 1); /* moves the last active slot into i */
        else
            i++;
    }
}

int rmach_prepare(stamp_rmach_t *m, const uint8_t *pkt, size_t len, const stamp_rxmeta_t *meta, stamp_ns_t mono,
                  uint8_t *out, stamp_reply_t *r, rmach_txinfo_t *ti)
{
    memset(ti, 0, sizeof *ti);
    ti->hmac_off = -1;
    memset(r, 0, sizeof *r);
    r->tos = -1;
    r->due = mono;
    CTR_ADD(m, rx, 1);
    /* the policy in force for this packet: read once (another thread may put a new one in force) */
    const policy_t *pp = atomic_load_explicit(&m->pol, memory_order_acquire);
    const stamp_tlv_policy_t *pol = &pp->p;
    bursts_recheck(m, pp);
    expire(m, mono, 2);
    if (len > STAMP_MAX_PKT) {
        CTR_ADD(m, drop_truncated, 1);
        return 0;
    }
    uint8_t srckey[16], dstkey[16];
    uint16_t sport, dport;
    rt_addr_key(&meta->src, srckey, &sport);
    rt_addr_key(&meta->dst, dstkey, &dport);
    if (atomic_load_explicit(&m->rate_on_a, memory_order_relaxed) &&
        !rt_source_admit(&m->src, srckey, mono, atomic_load_explicit(&m->rate_emission_a, memory_order_relaxed),
                         atomic_load_explicit(&m->rate_tol_a, memory_order_relaxed))) {
        CTR_ADD(m, drop_rate, 1);
        return 0;
    }
    if (len < STAMP_TWAMP_LIGHT_MIN) {
        CTR_ADD(m, drop_short, 1);
        return 0;
    }
    size_t base = stamp_base_len(m->cfg.mode);
    int padded = 0;
    memcpy(out, pkt, len);
    if (len < base) {
        /* TWAMP-Light interop (RFC 8762 4.6): answer zero-filled, unauthenticated only */
        if (m->cfg.strict_packets || m->cfg.mode == STAMP_MODE_AUTH) {
            CTR_ADD(m, drop_short, 1);
            return 0;
        }
        memset(out + len, 0, base - len);
        padded = 1;
        len = base;
    }
    stamp_test_t t;
    stamp_test_decode(out, len, m->cfg.mode, &t);
    if (!admitted(m, t.ssid, srckey, sport)) { /* RFC 8972 3: no provisioned session matches */
        CTR_ADD(m, drop_unprovisioned, 1);
        return 0;
    }
    stamp_hmac_t *key = key_for(m, t.ssid);
    if (m->cfg.mode == STAMP_MODE_AUTH && (!key || stamp_auth_verify(key, out, len) != STAMP_OK)) {
        CTR_ADD(m, drop_hmac, 1);
        return 0;
    }
    int tlvs = len > base && pol->process;

    /* per-session state: stateful numbering, TLVs that count per session, replay windows */
    rt_session_t *s = NULL;
    uint32_t e = RT_NONE;
    /* with type 12 on, every packet of a session counts for its Sequence Number check (RFC 10052 5) */
    if (m->cfg.stateful || tlvs || m->cfg.mode == STAMP_MODE_AUTH || pol->refl_max_count) {
        int created;
        uint32_t ev;
        e = rt_session_get(&m->sess, srckey, sport, dstkey, dport, t.ssid, mono, &created, &ev);
        if (ev != RT_NONE) CTR_ADD(m, sessions_evicted, 1);
        if (created) CTR_ADD(m, sessions_created, 1);
        CTR_SET(m, sessions_active, m->sess.used);
        s = &m->sess.e[e];
    }
    if (m->cfg.mode == STAMP_MODE_AUTH && replayed(m, s, &t, meta)) {
        CTR_ADD(m, replayed, 1);
        if (m->cfg.drop_replayed) {
            CTR_ADD(m, drop_replayed, 1);
            return 0;
        }
    }
    if (padded) CTR_ADD(m, short_padded, 1);
    stamp_reflected_t o;
    memset(&o, 0, sizeof o);
    o.seq = m->cfg.stateful ? s->next_seq : t.seq;
    o.ee = m->clk.ee;
    o.ssid = t.ssid;
    stamp_ts_encode(o.rx_ts, meta->rx_time, m->cfg.clock, m->clk.tai);
    o.sender_seq = t.seq;
    memcpy(o.sender_ts, t.ts, 8);
    o.sender_ee = t.ee;
    o.sender_ttl = meta->ttl >= 0 ? (uint8_t)meta->ttl : 0;
    stamp_reflected_encode(out, STAMP_MAX_PKT, m->cfg.mode, &o);
    size_t olen = base;
    unsigned extra = 0;
    stamp_ns_t extra_ival = 0;
    int has_from = 0;
    r->to = meta->src;
    if (tlvs) {
        /* the TLVs go back in order and length, processed in place (RFC 8972 4) */
        olen = len;
        stamp_tlv_ctx_t c;
        memset(&c, 0, sizeof c);
        c.meta = meta;
        c.clock = m->cfg.clock;
        c.tai = m->clk.tai;
        c.synced = m->clk.synced;
        c.pol = pol;
        c.local_addrs = (const uint8_t(*)[16])m->local_addrs;
        c.local_lens = m->local_lens;
        c.n_local = m->n_local;
        c.tos = -1;
        c.stateful = m->cfg.stateful;
        c.sender_seq = t.seq;
        c.max_len = egress_payload(meta);
        if (s) {
            /* a request that is not new to the session (seq_fresh) is told to the registry as a Sequence Number
               that does not increase: one reply, U */
            int fresh = seq_fresh(s, t.seq, ts_raw(&t));
            c.last_sender_seq = fresh ? s->sender_seq : t.seq;
            c.has_last_sender_seq = !fresh;
            c.sess_rx = s->rx + 1;
            c.sess_tx = s->tx + 1;
            c.prev_seq = s->last_seq;
            c.prev_tx = s->last_tx;
            c.has_prev = s->has_last;
            ti->fu_patch = s->last_pending; /* the previous reply leaves in this batch, stamped at finish */
        }
        /* the HMAC TLV of a test packet covers the sender's Sequence Number (RFC 8972 4.8): a stateful
         * reflector's own number goes into the reply only after the walk has verified it */
        uint8_t own_seq[4];
        memcpy(own_seq, out, 4);
        memcpy(out, pkt, 4);
        int f = stamp_tlv_reflect(&c, key, out, base, olen, &ti->hmac_off);
        memcpy(out, own_seq, 4);
        if (f & STAMP_TLV_DROP) {
            if (drop_is_micro(pol, out, base, olen))
                CTR_ADD(m, drop_micro, 1);
            else
                CTR_ADD(m, drop_group, 1);
            return 0;
        }
        if (s) {
            s->rx++;
            seq_seen(s, t.seq, ts_raw(&t));
        }
        if (c.no_reply) {
            if (f & STAMP_TLV_U) CTR_ADD(m, tlv_unknown, 1);
            if (f & STAMP_TLV_M) CTR_ADD(m, tlv_malformed, 1);
            if (f & STAMP_TLV_I) CTR_ADD(m, tlv_integrity, 1);
            CTR_ADD(m, no_reply, 1);
            return 0;
        }
        r->tos = c.tos;
        if (c.has_return_to) r->to = c.return_to;
        stamp_tlv_t tl;
        if (c.has_source) {
            if (is_v4(&c.source) == is_v4(&r->to)) {
                r->from = c.source;
                r->ifindex = c.ifindex; /* Return Path "same link" */
                has_from = 1;
            } else { /* a source of the other family cannot be used: answer from ours, TLV flagged U */
                long off = find_tlv(out, base, olen, STAMP_TLV_DESTNODE, &tl);
                if (off >= 0) out[off] |= STAMP_TLV_U;
                f |= STAMP_TLV_U;
            }
        }
        if (f & STAMP_TLV_U) CTR_ADD(m, tlv_unknown, 1);
        if (f & STAMP_TLV_M) CTR_ADD(m, tlv_malformed, 1);
        if (f & STAMP_TLV_I) CTR_ADD(m, tlv_integrity, 1);
        if (c.t12_over) CTR_ADD(m, extra_limited, 1); /* over a per-request limit: one reply, C */
        /* type 12: the exact reply length of RFC 10052 3 (C set by the registry where it cannot be met) */
        if (c.want_len) olen = stamp_tlv_fit(out, STAMP_MAX_PKT, base, olen, c.want_len, &ti->hmac_off);
        extra = c.extra_count;
        extra_ival = c.extra_interval;
        /* a granted request spends the budget, Number x L octets: one for a single reply (Number 1),
         * a burst only when it will get a slot (start_burst frees the session's own first) */
        if (extra && pol->refl_max_bursts_src && src_bursts(m, srckey, s) >= pol->refl_max_bursts_src) {
            /* this source holds its share of the burst slots already: one reply with C (review 911, 13) */
            if (find_tlv(out, base, olen, STAMP_TLV_REFLCTRL, &tl) >= 0) out[tl.off] |= STAMP_TLV_C;
            CTR_ADD(m, extra_limited, 1);
            extra = 0;
        }
        int charge = 0;
        if (extra) {
            charge = m->bursts && (m->nfree || (s && s->burst));
        } else if (c.want_len) {
            long off = find_tlv(out, base, olen, STAMP_TLV_REFLCTRL, &tl);
            charge = off >= 0 && !(out[off] & (STAMP_TLV_U | STAMP_TLV_M | STAMP_TLV_C));
        }
        if (charge && !t12_budget(m, (double)(extra + 1) * (double)olen, mono)) {
            /* over the volume limit: one reply of the computed length, C (RFC 10052 3) */
            if (find_tlv(out, base, olen, STAMP_TLV_REFLCTRL, &tl) >= 0) out[tl.off] |= STAMP_TLV_C;
            CTR_ADD(m, extra_limited, 1);
            extra = 0;
        }
    } else {
        /* RFC 8762 4.3/4.6: without TLV processing the octets past the base (already copied into `out`)
           go back unprocessed, so the reply stays as long as the request */
        olen = len;
        if (s) {
            s->rx++;
            seq_seen(s, t.seq, ts_raw(&t));
        }
    }
    if (!has_from && meta->dst.len) {
        r->from = meta->dst;
        has_from = 1;
    }
    if (s) {
        s->tx++;
        if (m->cfg.stateful) s->next_seq++;
        ti->sess = e + 1;
        ti->gen = s->gen;
        if (m->cfg.stateful) { /* a later packet of this batch reports this reply (RFC 8972 4.7) */
            s->last_seq = o.seq;
            s->has_last = 1;
            s->last_pending = 1;
        }
        /* RFC 8972 4.7 (erratum 8339): only a stateful reflector reports its previous reply's time */
        ti->txts = m->cfg.stateful != 0;
    }
    ti->seq = o.seq;
    ti->ssid = t.ssid;
    r->buf = out;
    r->len = olen;
    if (extra && s && m->bursts) {
        start_burst(m, e, s, out, olen, base, r, ti, extra, extra_ival, mono);
        if (s->burst) {
            burst_t *x = &m->bursts[s->burst - 1];
            x->ssid = t.ssid;
            x->sport = sport;
            memcpy(x->src, srckey, 16);
        }
    }
    if (extra && s && s->burst) ti->txts = 2; /* the first reply's departure anchors the burst: always asked */
    CTR_ADD(m, reflected, 1);
    return 1;
}

void rmach_finish(stamp_rmach_t *m, uint8_t *b, size_t len, const rmach_txinfo_t *ti, stamp_ns_t now)
{
    size_t tsoff = m->cfg.mode == STAMP_MODE_AUTH ? 16 : 4;
    size_t base = stamp_base_len(m->cfg.mode);
    stamp_hmac_t *key = key_for(m, ti->ssid);
    stamp_ts_encode(b + tsoff, now, m->cfg.clock, m->clk.tai);
    if (ti->fu_patch) { /* Follow-Up: the previous reply, of this batch, is stamped with this same `now` */
        stamp_tlv_t tl;
        long off = find_tlv(b, base, len, STAMP_TLV_FOLLOWUP, &tl);
        if (off >= 0 && !(b[off] & (STAMP_TLV_U | STAMP_TLV_M | STAMP_TLV_I)) && tl.len >= 12)
            stamp_ts_encode(b + off + STAMP_TLV_HDR + 4, now, m->cfg.clock, m->clk.tai);
    }
    if (ti->hmac_off >= 0 && key) stamp_tlv_sign(key, b, base, (size_t)ti->hmac_off);
    if (m->cfg.mode == STAMP_MODE_AUTH && key) stamp_auth_sign(key, b, len);
    if (ti->sess) {
        rt_session_t *s = &m->sess.e[ti->sess - 1];
        if (s->gen == ti->gen) {
            s->last_seq = ti->seq;
            s->last_tx = now;
            s->has_last = 1;
            s->last_pending = 0;
            if (s->burst && m->bursts) { /* the first reply of a burst: its extra replies count from it */
                burst_t *x = &m->bursts[s->burst - 1];
                if (x->active && x->k == 1 && x->prev_t3 == 0) x->prev_t3 = now; /* rmach_sent() says when */
            }
        }
    }
}

void rmach_sent(stamp_rmach_t *m, const rmach_txinfo_t *ti, int n, stamp_ns_t t3_mono, stamp_ns_t after)
{
    if (!m->bursts) return;
    for (int i = 0; i < n; i++) {
        if (!ti[i].sess) continue;
        rt_session_t *s = &m->sess.e[ti[i].sess - 1];
        if (s->gen != ti[i].gen || !s->burst) continue;
        burst_t *x = &m->bursts[s->burst - 1];
        if (!x->active || x->exact || x->prev_t3 == 0) continue;
        if (x->k == 1) x->prev_m3 = t3_mono; /* the first reply: T3 was read at t3_mono */
        /* until its kernel timestamp tells, the reply left no later than `after` */
        if (x->prev < after) x->prev = after;
    }
}

void rmach_txts(stamp_rmach_t *m, uint32_t sess, uint32_t gen, uint32_t seq, stamp_ns_t t3, stamp_ns_t t)
{
    if (!sess) return;
    rt_session_t *s = &m->sess.e[sess - 1];
    stamp_ns_t d = t - t3;
    /* the same session, still on that reply, and a plausible time: after our stamp, within a second */
    if (s->gen == gen && s->has_last && s->last_seq == seq && d >= 0 && d < STAMP_NS_PER_SEC) s->last_tx = t;
    /* a burst's next reply is due no earlier than its interval after the previous one really left */
    if (s->gen == gen && s->burst && m->bursts && d >= 0 && d < STAMP_NS_PER_SEC) {
        burst_t *x = &m->bursts[s->burst - 1];
        if (x->active && x->prev_t3 == t3) {
            x->prev = x->prev_m3 + d;
            x->exact = 1;
            if (x->k == 1) {
                x->start = x->prev; /* the first reply really left: the burst's anchor */
            } else {
                stamp_ns_t l = x->prev - x->handoff; /* from the hand-over to the kernel */
                if (l >= 0 && (m->txlat < 0 || l < m->txlat)) m->txlat = l;
            }
        }
    }
}

int stamp_rmach_input(stamp_rmach_t *m, const uint8_t *pkt, size_t len, const stamp_rxmeta_t *meta,
                      stamp_ns_t mono, stamp_ns_t now, stamp_reply_t *out)
{
    rmach_txinfo_t ti;
    if (!rmach_prepare(m, pkt, len > STAMP_MAX_PKT ? STAMP_MAX_PKT + 1 : len, meta, mono, m->out, out, &ti))
        return 0;
    rmach_finish(m, m->out, out->len, &ti, now);
    return 1;
}

/* ------------------------------------------------------------------ */
/* Type 12 extra replies                                               */
/* ------------------------------------------------------------------ */

/* RFC 10052 3: the k-th extra reply leaves at start + k * interval (anchored on the first reply's
 * departure: no drift), and never less than the interval after the previous reply of the same burst
 * really left (kernel transmit timestamps; never shorter). It is handed to the kernel the least
 * send-path time seen earlier (txlat), so that it leaves on time, not a send path late each time. */
#define TXLAT_MAX 20000 /* ns */

static stamp_ns_t burst_due(const stamp_rmach_t *m, const burst_t *x)
{
    stamp_ns_t a = x->start + (stamp_ns_t)x->k * x->ival, b = x->prev + x->ival;
    stamp_ns_t early = m->txlat > 0 ? m->txlat : 0;
    /* a send path longer than that is not a send path (a loaded machine, valgrind): at most 20 us, and a
       quarter of the Interval, early: a later, faster path leaves no more than that before its time */
    if (early > TXLAT_MAX) early = TXLAT_MAX;
    if (early > x->ival / 4) early = x->ival / 4;
    return (a > b ? a : b) - early;
}

stamp_ns_t stamp_rmach_next_due(const stamp_rmach_t *m)
{
    stamp_ns_t first = INT64_MAX;
    for (uint32_t i = 0; i < m->nactive; i++) {
        stamp_ns_t d = burst_due(m, &m->bursts[m->active[i]]);
        if (d < first) first = d;
    }
    return first;
}

int rmach_poll(stamp_rmach_t *m, stamp_ns_t mono, stamp_ns_t now, stamp_reply_t *out, rmach_txinfo_t *tis, int max)
{
    int n = 0;
    if (max > POLL_MAX) max = POLL_MAX;
    bursts_recheck(m, atomic_load_explicit(&m->pol, memory_order_acquire));
    while (n < max && m->nactive) {
        uint32_t best = RT_NONE;
        stamp_ns_t first = INT64_MAX;
        for (uint32_t i = 0; i < m->nactive; i++) {
            stamp_ns_t d = burst_due(m, &m->bursts[m->active[i]]);
            if (d < first) {
                first = d;
                best = m->active[i];
            }
        }
        if (first > mono) break;
        burst_t *x = &m->bursts[best];
        rt_session_t *s = &m->sess.e[x->sess];
        if (s->gen != x->gen) { /* the session was reaped or evicted */
            burst_release(m, best, 1);
            continue;
        }
        if (!admitted(m, x->ssid, x->src, x->sport)) { /* no longer provisioned (e.g. SIGHUP): stop, counted */
            burst_release(m, best, 1);
            continue;
        }
        uint8_t *b = m->pollmem + (size_t)n * STAMP_MAX_PKT;
        memcpy(b, x->buf, x->len);
        rmach_txinfo_t ti = x->ti;
        ti.fu_patch = 0; /* refilled below from the finished previous reply */
        if (m->cfg.stateful) { /* each reply has its own number */
            ti.seq = s->next_seq++;
            wr32(b, ti.seq);
        }
        s->tx++;
        rt_session_touch(&m->sess, x->sess, mono); /* a session sending a burst is not idle: never evicted first */
        if (x->refill) { /* RFC 10052 3 / RFC 8972 4.5, 4.7: this reply's own counters, the previous reply */
            stamp_tlv_ctx_t c;
            memset(&c, 0, sizeof c);
            c.clock = m->cfg.clock;
            c.tai = m->clk.tai;
            c.stateful = m->cfg.stateful;
            c.sess_rx = s->rx;
            c.sess_tx = s->tx;
            c.prev_seq = s->last_seq;
            c.prev_tx = s->last_tx;
            c.has_prev = s->has_last;
            stamp_tlv_refill(&c, b, stamp_base_len(m->cfg.mode), x->len);
        }
        rmach_finish(m, b, x->len, &ti, now);
        x->prev = x->prev_m3 = mono;
        x->prev_t3 = now;
        x->handoff = mono; /* when it was really handed over: a loop that woke up late is not send-path time */
        x->exact = 0;
        if (tis) tis[n] = ti;
        out[n] = x->r;
        out[n].buf = b;
        out[n].len = x->len;
        out[n].due = first;
        n++;
        CTR_ADD(m, extra_replies, 1);
        x->k++;
        if (--x->left == 0) burst_release(m, best, 0);
    }
    return n;
}

int stamp_rmach_poll(stamp_rmach_t *m, stamp_ns_t mono, stamp_ns_t now, stamp_reply_t *out, int max)
{
    return rmach_poll(m, mono, now, out, NULL, max);
}
