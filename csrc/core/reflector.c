/* reflector.c - the Session-Reflector socket engine: a thin driver over the
 * I/O-free machine (rmach.c) that keeps what only a kernel socket gives:
 * recvmmsg/sendmmsg batches, kernel receive timestamps, PKTINFO/TTL/TOS
 * control messages and kernel transmit timestamps (Follow-Up Telemetry). */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "rmach.h"

/* Which reply each kernel transmit timestamp belongs to, by timestamp number. */
typedef struct {
    uint32_t sess, gen, seq;
    stamp_ns_t t3;
} txrec_t;

#define TXREC 1024

#define WORKERS_MAX 64

/* The MTU of each arrival interface (SIOCGIFMTU), read again after MTU_TTL: a Type 12 reply leaves there. */
typedef struct {
    int ifindex, mtu;
    stamp_ns_t at;
} mtu_ent_t;

#define MTU_CACHE 32
#define MTU_TTL (5 * STAMP_NS_PER_SEC)

/* The path MTU toward each sender (the route's: `mtu lock`, tunnels, PMTU), read with IP_MTU / IPV6_MTU on a
 * probe socket connected to it, cached per address like the interface MTU. Only for datagrams that can carry
 * a Type 12 TLV. */
typedef struct {
    uint8_t addr[16];
    int mtu;
    stamp_ns_t at;
} route_ent_t;

#define ROUTE_CACHE 256
#ifndef IP_MTU
#define IP_MTU 14 /* Linux */
#endif

/* Type 12 extra replies: the last this many ns before one is due are spun, not slept (as the sender) */
#ifndef REFL_SPIN_NS
#define REFL_SPIN_NS 80000
#endif

struct stamp_reflector {
    stamp_rmach_t *m;
    /* workers (first engine only): the others, each on its own SO_REUSEPORT socket and thread */
    int nworkers;
    struct stamp_reflector *workers[WORKERS_MAX];
    pthread_t threads[WORKERS_MAX];
    _Atomic int stop;
    int fd, batch;
    stamp_addr_t local;
    /* preallocated batch buffers: no allocation per packet */
    uint8_t *rxbuf[STAMP_BATCH];
    uint8_t *txbuf[STAMP_BATCH];
    size_t rxlen[STAMP_BATCH];
    stamp_rxmeta_t meta[STAMP_BATCH];
    stamp_txmsg_t tx[STAMP_BATCH];
    stamp_reply_t rep[STAMP_BATCH];
    rmach_txinfo_t txi[STAMP_BATCH];
    txrec_t txrec[TXREC];
    uint32_t txts_next; /* number of the next timestamped reply */
    int t12;            /* Type 12 on: the arrival interface's MTU is looked up */
    size_t tlv_min;     /* ... and the route's for datagrams at least this long */
    _Atomic int mtu_flush; /* stamp_reflector_refresh(): forget the cache at the next packet */
    mtu_ent_t mtu[MTU_CACHE];
    route_ent_t route[ROUTE_CACHE];
    int probe4, probe6; /* UDP sockets connected to a sender to read its route's MTU; -1 until needed */
    uint32_t txts_wait; /* transmit timestamps asked and not yet read: no error-queue read when none */
    stamp_proc_hist_t proc; /* worker threads only: their processing time (the first engine's is the host's) */
    uint8_t mem[];      /* 2 * STAMP_BATCH * STAMP_MAX_PKT octets */
};

void stamp_reflector_free(stamp_reflector_t *r)
{
    if (!r) return;
    stamp_metrics_forget(r);
    atomic_store(&r->stop, 1);
    for (int i = 1; i < r->nworkers; i++) {
        pthread_join(r->threads[i], NULL);
        stamp_reflector_free(r->workers[i]);
    }
    if (r->fd >= 0) close(r->fd);
    if (r->probe4 >= 0) close(r->probe4);
    if (r->probe6 >= 0) close(r->probe6);
    stamp_rmach_free(r->m);
    free(r);
}

static int new_one(const stamp_reflector_cfg_t *cfg, stamp_reflector_t **out);

static void *worker_main(void *arg)
{
    stamp_reflector_t *w = arg;
    stamp_reflector_t *owner = w->workers[0];
    (void)prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* nanosecond wake-ups for Type 12 extra replies */
    while (!atomic_load_explicit(&owner->stop, memory_order_relaxed)) (void)stamp_reflector_step(w, 100);
    return NULL;
}

int stamp_reflector_new(const stamp_reflector_cfg_t *cfg, stamp_reflector_t **out)
{
    *out = NULL;
    if (cfg->workers < 0 || cfg->workers > WORKERS_MAX) return STAMP_EINVAL;
    if (cfg->workers <= 1) return new_one(cfg, out);
    stamp_reflector_cfg_t c = *cfg;
    c.sock.reuseport = 1;
    stamp_reflector_t *r;
    int rc = new_one(&c, &r);
    if (rc) return rc;
    unsigned port = 0;
    char host[64];
    if (stamp_addr_format(&r->local, host, sizeof host, &port) == 0) c.sock.port = port; /* ephemeral: all on it */
    r->workers[0] = r;
    r->nworkers = 1;
    /* worker threads take no signals: they stay with the thread that steps the first engine */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (int i = 1; i < cfg->workers; i++) {
        stamp_reflector_t *w;
        rc = new_one(&c, &w);
        if (rc) break;
        w->workers[0] = r;
        if (pthread_create(&r->threads[i], NULL, worker_main, w) != 0) {
            stamp_reflector_free(w);
            rc = STAMP_ENOMEM;
            break;
        }
        r->workers[i] = w;
        r->nworkers = i + 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        stamp_reflector_free(r);
        return rc;
    }
    *out = r;
    return STAMP_OK;
}

static int new_one(const stamp_reflector_cfg_t *cfg, stamp_reflector_t **out)
{
    *out = NULL;
    size_t memsz = (size_t)2 * STAMP_BATCH * STAMP_MAX_PKT;
    stamp_reflector_t *r = calloc(1, sizeof *r + memsz);
    if (!r) return STAMP_ENOMEM;
    r->fd = r->probe4 = r->probe6 = -1;
    int rc = stamp_rmach_new(cfg, &r->m);
    if (rc) {
        stamp_reflector_free(r);
        return rc;
    }
    r->t12 = cfg->tlv.refl_max_count > 0;
    r->tlv_min = stamp_base_len(cfg->mode) + STAMP_TLV_HDR + 12; /* the smallest request with a type 12 TLV */
    r->batch = cfg->batch <= 0 || cfg->batch > STAMP_BATCH ? STAMP_BATCH : cfg->batch;
    for (int i = 0; i < STAMP_BATCH; i++) {
        r->rxbuf[i] = r->mem + (size_t)i * STAMP_MAX_PKT;
        r->txbuf[i] = r->mem + (size_t)(STAMP_BATCH + i) * STAMP_MAX_PKT;
    }
    int fd = stamp_sock_open(&cfg->sock, &r->local);
    if (fd < 0) {
        stamp_reflector_free(r);
        return fd;
    }
    r->fd = fd;
    /* Type 12 extra replies leave on nanosecond deadlines: no timer slack for this thread */
    if (cfg->tlv.refl_max_count) (void)prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    *out = r;
    return STAMP_OK;
}

int stamp_reflector_fd(const stamp_reflector_t *r) { return r->fd; }

int stamp_reflector_local(const stamp_reflector_t *r, stamp_addr_t *a)
{
    *a = r->local;
    return STAMP_OK;
}

void stamp_reflector_counters(const stamp_reflector_t *r, stamp_reflector_counters_t *c)
{
    stamp_rmach_counters(r->m, c);
    for (int i = 1; i < r->nworkers; i++) {
        stamp_reflector_counters_t t;
        stamp_rmach_counters(r->workers[i]->m, &t);
#define X(f) c->f += t.f;
        RCTR_LIST(X)
#undef X
    }
    for (int i = 0; i < r->nworkers || i == 0; i++) { /* every worker's socket (the first is r's own) */
        const stamp_reflector_t *w = i ? r->workers[i] : r;
        if (w->fd >= 0) c->drop_kernel += stamp_sock_drops(w->fd);
    }
}

stamp_rmach_t *stamp_reflector_machine(stamp_reflector_t *r) { return r->m; }

int stamp_reflector_set_keys(stamp_reflector_t *r, const uint8_t *def, size_t deflen, const stamp_key_t *keys,
                             size_t n)
{
    int rc = stamp_rmach_set_keys(r->m, def, deflen, keys, n);
    for (int i = 1; !rc && i < r->nworkers; i++) rc = stamp_rmach_set_keys(r->workers[i]->m, def, deflen, keys, n);
    return rc;
}

int stamp_reflector_set_rate(stamp_reflector_t *r, double max_pps, unsigned burst)
{
    int rc = stamp_rmach_set_rate(r->m, max_pps, burst);
    for (int i = 1; !rc && i < r->nworkers; i++) rc = stamp_rmach_set_rate(r->workers[i]->m, max_pps, burst);
    return rc;
}

int stamp_reflector_set_admission(stamp_reflector_t *r, stamp_admission_t mode, const stamp_provisioned_t *s,
                                  size_t n)
{
    int rc = stamp_rmach_set_admission(r->m, mode, s, n);
    for (int i = 1; !rc && i < r->nworkers; i++) rc = stamp_rmach_set_admission(r->workers[i]->m, mode, s, n);
    return rc;
}

int stamp_reflector_set_t12_limit(stamp_reflector_t *r, double max_rate, double max_volume)
{
    int rc = stamp_rmach_set_t12_limit(r->m, max_rate, max_volume);
    for (int i = 1; !rc && i < r->nworkers; i++) rc = stamp_rmach_set_t12_limit(r->workers[i]->m, max_rate, max_volume);
    return rc;
}

int stamp_reflector_set_tlv_policy(stamp_reflector_t *r, const stamp_tlv_policy_t *p)
{
    int rc = stamp_rmach_set_tlv_policy(r->m, p);
    for (int i = 1; !rc && i < r->nworkers; i++) rc = stamp_rmach_set_tlv_policy(r->workers[i]->m, p);
    return rc;
}

void stamp_reflector_refresh(stamp_reflector_t *r)
{
    atomic_store(&r->mtu_flush, 1);
    for (int i = 1; i < r->nworkers; i++) atomic_store(&r->workers[i]->mtu_flush, 1);
}

/* The MTU of interface `ifindex` (cached, read again after MTU_TTL), 0 when unknown. */
static int if_mtu(stamp_reflector_t *r, int ifindex, stamp_ns_t mono)
{
    if (atomic_exchange_explicit(&r->mtu_flush, 0, memory_order_relaxed)) {
        memset(r->mtu, 0, sizeof r->mtu);
        memset(r->route, 0, sizeof r->route); /* route_mtu() is asked after if_mtu() */
    }
    if (ifindex <= 0) return 0;
    mtu_ent_t *e = &r->mtu[(unsigned)ifindex % MTU_CACHE];
    if (e->ifindex == ifindex && mono - e->at < MTU_TTL) return e->mtu;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    int mtu = 0;
    if (if_indextoname((unsigned)ifindex, ifr.ifr_name) && ioctl(r->fd, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0)
        mtu = ifr.ifr_mtu;
    e->ifindex = ifindex;
    e->mtu = mtu;
    e->at = mono;
    return mtu;
}

/* The path MTU toward `a` (cached, read again after MTU_TTL), 0 when unknown. */
static int route_mtu(stamp_reflector_t *r, const stamp_addr_t *a, stamp_ns_t mono)
{
    uint8_t key[16];
    uint16_t port;
    rt_addr_key(a, key, &port);
    uint32_t hsh = 2166136261u;
    for (int i = 0; i < 16; i++) hsh = (hsh ^ key[i]) * 16777619u;
    route_ent_t *e = &r->route[hsh % ROUTE_CACHE];
    if (e->at && memcmp(e->addr, key, 16) == 0 && mono - e->at < MTU_TTL) return e->mtu;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    int v4 = memcmp(key, mapped, 12) == 0, mtu = 0;
    int *fd = v4 ? &r->probe4 : &r->probe6;
    if (*fd < 0) *fd = socket(v4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (*fd >= 0) {
        struct sockaddr_storage ss;
        socklen_t sl;
        memset(&ss, 0, sizeof ss);
        if (v4) {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            s4->sin_family = AF_INET;
            s4->sin_port = htons(9); /* any port: connect() only looks up the route */
            memcpy(&s4->sin_addr, key + 12, 4);
            sl = sizeof *s4;
        } else {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            s6->sin6_family = AF_INET6;
            s6->sin6_port = htons(9);
            memcpy(&s6->sin6_addr, key, 16);
            if (a->addr.ss_family == AF_INET6) s6->sin6_scope_id = ((const struct sockaddr_in6 *)&a->addr)->sin6_scope_id;
            sl = sizeof *s6;
        }
        int v = 0;
        socklen_t vl = sizeof v;
        if (connect(*fd, (struct sockaddr *)&ss, sl) == 0 &&
            getsockopt(*fd, v4 ? IPPROTO_IP : IPPROTO_IPV6, v4 ? IP_MTU : IPV6_MTU, &v, &vl) == 0 && v > 0)
            mtu = v;
    }
    memcpy(e->addr, key, 16);
    e->mtu = mtu;
    e->at = mono;
    return mtu;
}

static void fill_tx(stamp_txmsg_t *t, const stamp_reply_t *p)
{
    t->buf = p->buf;
    t->len = p->len;
    t->to = &p->to;
    t->from = p->from.len ? &p->from : NULL;
    t->ifindex = p->ifindex;
    t->tos = p->tos;
    t->want_txts = 0;
    t->ok = 0;
}

/* Kernel transmit timestamps: the real transmit time of each session's last reply. */
static void read_txts(stamp_reflector_t *r, int always)
{
    uint32_t ids[64];
    stamp_ns_t times[64];
    int n;
    if (!r->txts_wait && !always) return;
    while ((n = stamp_sock_txts(r->fd, ids, times, 64)) > 0) {
        for (int i = 0; i < n; i++) {
            txrec_t *x = &r->txrec[ids[i] % TXREC];
            rmach_txts(r->m, x->sess, x->gen, x->seq, x->t3, times[i]);
            x->sess = 0;
        }
        r->txts_wait = (uint32_t)n < r->txts_wait ? r->txts_wait - (uint32_t)n : 0;
        if (n < 64) break;
    }
    /* none there: the kernel drops timestamps when the receive buffer is full; any still to come
       are read with the next ones asked, or by the drain when the socket wakes us with no datagram */
    if (n <= 0) r->txts_wait = 0;
}

/* Type 12 extra replies that are due. Each one's kernel transmit timestamp is asked for: it tells
 * the machine when the reply really left, and the next one of its burst waits a whole interval from it. */
static void send_due(stamp_reflector_t *r, int fresh)
{
    stamp_reply_t ex[STAMP_BATCH];
    stamp_txmsg_t tx[STAMP_BATCH];
    rmach_txinfo_t ti[STAMP_BATCH];
    for (int round = 0; round < 64; round++) {
        if (!fresh || round) read_txts(r, 0); /* fresh: stamp_reflector_wait() read them just now */
        stamp_ns_t mono = stamp_mono();
        if (stamp_rmach_next_due(r->m) > mono) return;
        /* T3 first, then the monotonic time it is paired with: a preemption between the two reads then
           makes the reply's departure look later, never earlier (its burst's next reply waits a whole
           interval from it; read the other way round, a late read of T3 made the next gap short) */
        stamp_ns_t now = stamp_now();
        mono = stamp_mono();
        int n = rmach_poll(r->m, mono, now, ex, ti, STAMP_BATCH);
        if (n <= 0) return;
        for (int i = 0; i < n; i++) {
            fill_tx(&tx[i], &ex[i]);
            tx[i].want_txts = ti[i].sess != 0;
        }
        int sent = stamp_sock_send(r->fd, tx, n);
        if (sent < 0) sent = 0;
        rmach_sent(r->m, ti, sent, mono, stamp_mono());
        for (int i = 0; i < n; i++) {
            if (!tx[i].want_txts || !tx[i].ok) continue;
            txrec_t *x = &r->txrec[r->txts_next++ % TXREC];
            x->sess = ti[i].sess;
            x->gen = ti[i].gen;
            x->seq = ti[i].seq;
            x->t3 = now;
            r->txts_wait++;
        }
        stamp_rmach_tx_failed(r->m, (unsigned)(n - sent), 1);
    }
}

int stamp_reflector_wait(stamp_reflector_t *r, int timeout_ms)
{
    if (r->fd < 0) return STAMP_ECLOSED;
    if (timeout_ms < 0 || timeout_ms > 1000) timeout_ms = 1000; /* housekeeping at least once a second */
    struct pollfd p = {.fd = r->fd, .events = POLLIN, .revents = 0};
    stamp_ns_t limit = stamp_mono() + (stamp_ns_t)timeout_ms * 1000000;
    for (;;) {
        read_txts(r, 0); /* may move the next extra reply's deadline later */
        stamp_ns_t due = stamp_rmach_next_due(r->m);
        stamp_ns_t until = due < limit ? due : limit;
        stamp_ns_t left = until - stamp_mono();
        if (left <= 0) return 0;
        if (until == due && left <= REFL_SPIN_NS) { /* the final microseconds: spin, then go */
            int rd = poll(&p, 1, 0);
            if (rd != 0) return rd < 0 ? -errno : 1;
            while (stamp_mono() < due) {
            }
            return 0;
        }
        stamp_ns_t sl = until == due ? left - REFL_SPIN_NS : left;
        struct timespec ts = {(time_t)(sl / STAMP_NS_PER_SEC), (long)(sl % STAMP_NS_PER_SEC)};
        int rd = ppoll(&p, 1, &ts, NULL);
        if (rd < 0) return -errno;
        if (rd > 0) return 1;
    }
}

int stamp_reflector_step(stamp_reflector_t *r, int timeout_ms)
{
    if (r->fd < 0) return STAMP_ECLOSED;
    if (timeout_ms != 0) {
        int w = stamp_reflector_wait(r, timeout_ms);
        if (w < 0) return w;
        if (w == 0) send_due(r, 1); /* a reply is due: it goes first, nothing in between */
    }
    int total = 0;
    stamp_ns_t t0 = stamp_mono();
    read_txts(r, 0);
    for (int round = 0; round < 64; round++) {
        /* the previous round's transmit times first: a Follow-Up TLV in this round reports them */
        if (round) read_txts(r, 0);
        int n = stamp_sock_recv(r->fd, &r->local, r->rxbuf, STAMP_MAX_PKT, r->rxlen, r->meta, r->batch);
        if (n < 0) {
            if (total) break;
            return n;
        }
        if (n == 0) break;
        stamp_ns_t mono = stamp_mono();
        int ntx = 0;
        for (int i = 0; i < n; i++) {
            size_t len = r->rxlen[i] > STAMP_MAX_PKT ? STAMP_MAX_PKT + 1 : r->rxlen[i];
            if (r->t12) {
                r->meta[i].mtu = if_mtu(r, r->meta[i].ifindex, mono);
                /* room for a type 12 TLV: the route toward the sender may carry less than the interface */
                if (len >= r->tlv_min) {
                    int pm = route_mtu(r, &r->meta[i].src, mono);
                    if (pm > 0 && (r->meta[i].mtu <= 0 || pm < r->meta[i].mtu)) r->meta[i].mtu = pm;
                }
            }
            /* the reply is built in txbuf[ntx]: replies stay packed at the front */
            if (rmach_prepare(r->m, r->rxbuf[i], len, &r->meta[i], mono, r->txbuf[ntx], &r->rep[ntx],
                              &r->txi[ntx]))
                ntx++;
        }
        /* transmit timestamps as late as possible: just before the batch leaves */
        stamp_ns_t now = stamp_now(), now_m = stamp_mono(); /* this order: see send_due() */
        for (int k = 0; k < ntx; k++) {
            stamp_txmsg_t *t = &r->tx[k];
            fill_tx(t, &r->rep[k]);
            rmach_finish(r->m, r->txbuf[k], r->rep[k].len, &r->txi[k], now);
        }
        /* the kernel's transmit time only where a Follow-Up can report it: a stateful reflector's
           session reports its last reply, so of a session's replies in this batch only the last one
           asks (the times of the others would be discarded as not the session's last) */
        uint32_t seen[STAMP_BATCH];
        int nseen = 0;
        for (int k = ntx - 1; k >= 0; k--) {
            r->tx[k].want_txts = r->txi[k].txts == 2; /* a Type 12 burst's first reply: always */
            if (r->txi[k].txts != 1) continue;
            uint32_t sess = r->txi[k].sess;
            int dup = 0;
            for (int j = 0; j < nseen && !dup; j++) dup = seen[j] == sess;
            if (dup) continue;
            seen[nseen++] = sess;
            r->tx[k].want_txts = 1;
        }
        if (ntx) {
            int sent = stamp_sock_send(r->fd, r->tx, ntx);
            if (sent < 0) sent = 0;
            rmach_sent(r->m, r->txi, sent, now_m, stamp_mono());
            for (int k = 0; k < ntx; k++) {
                if (!r->tx[k].want_txts || !r->tx[k].ok) continue;
                txrec_t *x = &r->txrec[r->txts_next++ % TXREC];
                x->sess = r->txi[k].sess;
                x->gen = r->txi[k].gen;
                x->seq = r->txi[k].seq;
                x->t3 = now;
                r->txts_wait++;
            }
            stamp_rmach_tx_failed(r->m, (unsigned)(ntx - sent), 0);
        }
        total += n;
        if (n < r->batch) break;
    }
    /* woken with no datagram: the error queue may hold timestamps not counted (e.g. ones given up
       on), and a non-empty error queue keeps the socket ready: drain it */
    if (!total) read_txts(r, 1);
    send_due(r, 0);
    stamp_ns_t t1 = stamp_mono();
    stamp_rmach_tick(r->m, t1);
    if (total > 0 && r->workers[0] && r->workers[0] != r) stamp_proc_observe(&r->proc, t1 - t0, (unsigned)total);
    return total;
}

void stamp_reflector_proc_add(const stamp_reflector_t *r, uint64_t *counts, int64_t *sum_ns)
{
    for (int i = 1; i < r->nworkers; i++) {
        const stamp_proc_hist_t *h = &r->workers[i]->proc;
        for (int k = 0; k < STAMP_PROC_BUCKETS; k++)
            counts[k] += atomic_load_explicit(&h->counts[k], memory_order_relaxed);
        *sum_ns += atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
    }
}
