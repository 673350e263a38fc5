/* sender.c - the Session-Sender socket engine: a thin driver over the I/O-free
 * machine (sender_machine.c). It keeps what only a kernel socket gives: kernel
 * receive timestamps, TTL/TOS from control messages, recvmmsg/sendmmsg batches,
 * and waits on absolute monotonic deadlines with nanosecond resolution
 * (ppoll, timer slack 1 ns, a short spin for the final microseconds). */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* below this much time before a send deadline the engine spins instead of sleeping: a ppoll wake-up
 * is now and then ~100 us late on a virtual machine (60 us left the p99 of departures at 35-50 us
 * at 1,000 packets/s; 150 us: 7-15 us) */
#ifndef SPIN_NS
#define SPIN_NS 150000
#endif
/* a step that has results for the caller still sends a departure due within this much time before
 * it returns them (bounded hold: the caller's Lua work then starts right after a send) */
#ifndef HOLD_NS
#define HOLD_NS 200000
#endif
/* Sequence Numbers of the last TXREC datagrams sent, by kernel timestamp number (SOF_TIMESTAMPING_OPT_ID) */
#define TXREC 4096
/* a step that may wait "until the next deadline" returns at least this often */
#define STEP_MAX_NS 100000000LL

struct stamp_sender {
    stamp_sm_t *m;
    int fd;
    uint64_t rx_overflow; /* the socket's kernel drops, last read (kept after close) */
    stamp_addr_t local, remote;
    size_t plen;
    uint8_t *txmem; /* STAMP_BATCH test packets of plen octets */
    stamp_txmsg_t tx[STAMP_BATCH];
    uint8_t *rxbuf[STAMP_BATCH];
    size_t rxlen[STAMP_BATCH];
    stamp_rxmeta_t meta[STAMP_BATCH];
    uint32_t txseq[TXREC]; /* by kernel timestamp number modulo TXREC: the packet's Sequence Number */
    uint32_t txts_next;    /* number the kernel gives the next timestamped datagram */
    int txts_off;          /* a send failed: the kernel's numbering may no longer match ours, T1 stays user */
    uint8_t mem[];
};

void stamp_sender_free(stamp_sender_t *s)
{
    if (!s) return;
    stamp_metrics_forget(s);
    if (s->fd >= 0) close(s->fd);
    stamp_sm_free(s->m);
    free(s->txmem);
    free(s);
}

/* Grow a socket buffer to `want` octets: past net.core.[rw]mem_max where the process may
 * (SO_*BUFFORCE, CAP_NET_ADMIN), else up to that cap. */
static void setbuf_opt(int fd, int opt, int force, int want)
{
    int cur = 0;
    socklen_t l = sizeof cur;
    if (getsockopt(fd, SOL_SOCKET, opt, &cur, &l) == 0 && cur >= want) return;
    if (setsockopt(fd, SOL_SOCKET, force, &want, sizeof want) == 0) return;
    (void)setsockopt(fd, SOL_SOCKET, opt, &want, sizeof want);
}

static void warm_up(stamp_sender_t *s);

int stamp_sender_new(const stamp_sender_cfg_t *cfg, stamp_sender_t **out)
{
    *out = NULL;
    if (!cfg->remote_addr || cfg->remote_port == 0 || cfg->remote_port > 65535) return STAMP_EINVAL;
    stamp_sm_t *m = NULL;
    int rc = stamp_sm_new(cfg, &m);
    if (rc) return rc;
    stamp_addr_t remote;
    rc = stamp_addr_parse(&remote, cfg->remote_addr, cfg->remote_port);
    if (rc) {
        stamp_sm_free(m);
        return rc;
    }
    size_t memsz = (size_t)STAMP_BATCH * STAMP_MAX_PKT;
    stamp_sender_t *s = calloc(1, sizeof *s + memsz);
    if (!s) {
        stamp_sm_free(m);
        return STAMP_ENOMEM;
    }
    s->m = m;
    s->fd = -1;
    s->remote = remote;
    s->plen = stamp_sm_packet_len(m);
    for (int i = 0; i < STAMP_BATCH; i++) s->rxbuf[i] = s->mem + (size_t)i * STAMP_MAX_PKT;
    s->txmem = calloc(STAMP_BATCH, s->plen);
    if (!s->txmem) {
        stamp_sender_free(s);
        return STAMP_ENOMEM;
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
    stamp_sm_set_peer(m, &s->remote);
    /* socket buffers for about 200 ms of packets at this rate, counted as the kernel counts them
     * (a small datagram, or a transmit timestamp in the error queue, costs about 1 KiB of buffer);
     * without CAP_NET_ADMIN the kernel caps them at net.core.rmem_max/wmem_max */
    if (cfg->interval < 1000000) {
        double pps = cfg->interval > 0 ? 1e9 / (double)cfg->interval : 1e6;
        double want = pps * 0.2 * (double)(s->plen + 1024);
        int w = want > 64e6 ? 64 << 20 : (int)want;
        if (!cfg->sock.rcvbuf) setbuf_opt(fd, SO_RCVBUF, SO_RCVBUFFORCE, w);
        setbuf_opt(fd, SO_SNDBUF, SO_SNDBUFFORCE, w);
    }
    (void)prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* nanosecond wakeups for the schedule */
    /* touch the buffers now, so that no page fault delays the first packet (the grid's anchor) */
    memset(s->txmem, 0, (size_t)STAMP_BATCH * s->plen);
    memset(s->mem, 0, memsz);
    warm_up(s);
    *out = s;
    return STAMP_OK;
}

int stamp_sender_fd(const stamp_sender_t *s) { return s->fd; }

int stamp_sender_local(const stamp_sender_t *s, stamp_addr_t *a)
{
    *a = s->local;
    return STAMP_OK;
}

stamp_sm_t *stamp_sender_machine(stamp_sender_t *s) { return s->m; }

void stamp_sender_counters(const stamp_sender_t *s, stamp_sender_counters_t *c)
{
    stamp_sm_counters(s->m, c);
    if (s->fd >= 0) ((stamp_sender_t *)s)->rx_overflow = stamp_sock_drops(s->fd); /* kept after close */
    c->rx_overflow = s->rx_overflow;
}

void stamp_sender_stop(stamp_sender_t *s) { stamp_sm_stop(s->m, 0); }

void stamp_sender_abort(stamp_sender_t *s) { stamp_sm_stop(s->m, 1); }

int stamp_sender_done(const stamp_sender_t *s) { return stamp_sm_done(s->m); }

/* Send everything that is due now, in one sendmmsg; T1 is read right before it. */
static void send_due(stamp_sender_t *s, stamp_ns_t now)
{
    int k = 0;
    uint32_t seq[STAMP_BATCH];
    stamp_ns_t t1 = stamp_now();
    while (k < STAMP_BATCH && stamp_sm_due(s->m, now)) {
        uint8_t *buf = s->txmem + (size_t)k * s->plen;
        int len = stamp_sm_build(s->m, now, t1, buf, s->plen, &seq[k]);
        if (len <= 0) break;
        s->tx[k] = (stamp_txmsg_t){.buf = buf, .len = (size_t)len, .to = &s->remote, .from = NULL,
                                   .ifindex = 0, .tos = -1, .want_txts = !s->txts_off, .ok = 0};
        k++;
    }
    if (!k) return;
    stamp_sock_send(s->fd, s->tx, k);
    for (int i = 0; i < k; i++) {
        if (!s->tx[i].ok) {
            stamp_sm_tx_error(s->m);
            s->txts_off = 1;
        } else if (!s->txts_off) {
            s->txseq[s->txts_next++ % TXREC] = seq[i];
        }
    }
}

/* Hand the kernel's transmit timestamps waiting in the error queue to the machine (never blocks). */
static void read_txts(stamp_sender_t *s)
{
    uint32_t ids[64];
    stamp_ns_t times[64];
    int n;
    while ((n = stamp_sock_txts(s->fd, ids, times, 64)) > 0) {
        for (int i = 0; i < n; i++) {
            /* only numbers of the last TXREC datagrams sent name a packet we know */
            if (s->txts_off || s->txts_next - ids[i] - 1 >= TXREC) continue;
            (void)stamp_sm_tx_time(s->m, s->txseq[ids[i] % TXREC], times[i]);
        }
        if (n < 64) break;
    }
}

/* Rehearse the send path once before the first test packet: one datagram through the sender's own
 * socket to a throwaway loopback socket. Without it the first packet, the grid's anchor, leaves
 * ~20 us later than its deadline than the packets after it (cold route and socket paths in the
 * kernel), and every later departure looks early by as much. Best effort: a failure changes nothing. */
static void warm_up(stamp_sender_t *s)
{
    int v4 = s->remote.addr.ss_family == AF_INET ||
             (s->remote.addr.ss_family == AF_INET6 &&
              IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)&s->remote.addr)->sin6_addr));
    stamp_addr_t sink;
    if (stamp_addr_parse(&sink, v4 ? "127.0.0.1" : "::1", 1) != STAMP_OK) return;
    int fd = socket(sink.addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    if (v4) ((struct sockaddr_in *)&sink.addr)->sin_port = 0;
    else ((struct sockaddr_in6 *)&sink.addr)->sin6_port = 0;
    sink.len = sizeof sink.addr;
    if (bind(fd, (struct sockaddr *)&sink.addr, v4 ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sink.addr, &sink.len) == 0) {
        if (v4 && s->local.addr.ss_family == AF_INET6) stamp_addr_to_mapped(&sink);
        if (v4 == (s->local.addr.ss_family == AF_INET) || s->local.addr.ss_family == AF_INET6) {
            stamp_txmsg_t t = {.buf = s->txmem, .len = s->plen, .to = &sink, .from = NULL,
                               .ifindex = 0, .tos = -1, .want_txts = 1, .ok = 0};
            stamp_sock_send(s->fd, &t, 1);
            /* its transmit timestamp takes the kernel's number 0; the machine refuses it (no packet
             * was sent yet, and a kernel time before a packet's own T1 is never taken) */
            if (t.ok) s->txts_next = 1;
            read_txts(s);
        }
    }
    close(fd);
}

int stamp_sender_next_timeout(const stamp_sender_t *s)
{
    if (stamp_sm_done(s->m)) return -1;
    stamp_ns_t d = stamp_sm_next_deadline(s->m);
    if (d == INT64_MAX) return -1;
    stamp_ns_t now = stamp_mono();
    if (d <= now) return 0;
    stamp_ns_t ms = (d - now + 999999) / 1000000;
    return ms > 1000000 ? 1000000 : (int)ms;
}

/* Wait until the fd is readable or the monotonic time `until`: ppoll with ns resolution,
 * then a spin for the last SPIN_NS. Returns the poll events (> 0) when readable (POLLERR: a transmit
 * timestamp waits in the error queue), 0 at the deadline, <0 error (-EINTR). */
static int wait_until(int fd, stamp_ns_t until)
{
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    for (;;) {
        stamp_ns_t left = until - stamp_mono();
        if (left <= 0) return 0;
        struct timespec ts = {0, 0};
        if (left > SPIN_NS) {
            stamp_ns_t sl = left - SPIN_NS;
            ts.tv_sec = (time_t)(sl / STAMP_NS_PER_SEC);
            ts.tv_nsec = (long)(sl % STAMP_NS_PER_SEC);
        }
        int r = ppoll(&p, 1, &ts, NULL);
        if (r < 0) return -errno;
        if (r > 0) return p.revents ? p.revents : 1;
    }
}

int stamp_sender_step(stamp_sender_t *s, int timeout_ms, stamp_result_t *res, int max)
{
    if (s->fd < 0) return STAMP_ECLOSED;
    if (max <= 0) return STAMP_EINVAL;
    stamp_ns_t start = stamp_mono();
    stamp_ns_t limit = timeout_ms < 0 ? start + STEP_MAX_NS : start + (stamp_ns_t)timeout_ms * 1000000;
    int n = 0;
    for (;;) {
        stamp_ns_t now = stamp_mono();
        send_due(s, now);
        read_txts(s); /* before the replies: on loopback the kernel's T1 is already there */
        int want = max - n < STAMP_BATCH ? max - n : STAMP_BATCH;
        int got = stamp_sock_recv(s->fd, &s->local, s->rxbuf, STAMP_MAX_PKT, s->rxlen, s->meta, want);
        if (got < 0 && got != -EINTR) return n ? n : got;
        for (int i = 0; i < got; i++) {
            /* a truncated datagram (rxlen > STAMP_MAX_PKT) is refused by the machine */
            n += stamp_sm_reply(s->m, s->rxbuf[i], s->rxlen[i], &s->meta[i], &res[n]);
        }
        n += stamp_sm_expire(s->m, stamp_mono(), res + n, max - n);
        if (n > 0) {
            /* a departure due within HOLD_NS goes first: the results wait for it (at most HOLD_NS,
             * taking in the replies that arrive meanwhile) and the caller's work then falls in the
             * longest gap of the schedule rather than across a deadline */
            stamp_ns_t d = stamp_sm_next_deadline(s->m);
            if (stamp_sm_due(s->m, d) && d - stamp_mono() <= HOLD_NS) {
                /* bounded by d: wait_until returns 0 once d has passed, whatever the fd says */
                while (n < max && wait_until(s->fd, d) > 0) {
                    read_txts(s); /* a transmit timestamp (POLLERR) also wakes the wait */
                    int w2 = max - n < STAMP_BATCH ? max - n : STAMP_BATCH;
                    int g2 = stamp_sock_recv(s->fd, &s->local, s->rxbuf, STAMP_MAX_PKT, s->rxlen, s->meta, w2);
                    for (int i = 0; i < g2; i++) n += stamp_sm_reply(s->m, s->rxbuf[i], s->rxlen[i], &s->meta[i], &res[n]);
                }
                while (stamp_mono() < d) {
                }
                send_due(s, stamp_mono());
            }
            return n;
        }
        if (got == want) continue; /* more may be queued */
        now = stamp_mono();
        stamp_ns_t d = stamp_sm_next_deadline(s->m);
        if (d == INT64_MAX && timeout_ms < 0) return 0; /* nothing left to wait for */
        stamp_ns_t until = d < limit ? d : limit;
        if (until <= now) {
            if (now >= limit) return 0;
            continue; /* a deadline passed: act on it */
        }
        int w = wait_until(s->fd, until);
        if (w < 0) return w;
        if (w == 0 && stamp_mono() >= limit && d > limit) return 0;
    }
}

/* Hand `n` results to `each`; returns n. */
static int hand(stamp_result_t *res, int n, stamp_result_fn each, void *ud)
{
    for (int i = 0; i < n; i++) each(ud, &res[i]);
    return n;
}

int stamp_sender_pump(stamp_sender_t *s, int timeout_ms, stamp_result_fn each, void *ud,
                      const volatile sig_atomic_t *watch)
{
    const sig_atomic_t seen = watch ? *watch : 0;
    if (s->fd < 0) return STAMP_ECLOSED;
    if (!each) return STAMP_EINVAL;
    stamp_ns_t start = stamp_mono();
    stamp_ns_t limit = timeout_ms < 0 ? start + STEP_MAX_NS : start + (stamp_ns_t)timeout_ms * 1000000;
    stamp_result_t res[STAMP_BATCH];
    int total = 0, errq = 1;
    /* a signal handled while not in ppoll (sending, spinning, handing results) shows in *watch */
    while (!stamp_sm_done(s->m) && !(watch && *watch != seen)) {
        send_due(s, stamp_mono());
        int got = stamp_sock_recv(s->fd, &s->local, s->rxbuf, STAMP_MAX_PKT, s->rxlen, s->meta, STAMP_BATCH);
        if (got < 0 && got != -EINTR) return total ? total : got;
        /* the kernel's transmit times first (a reply's T1), read in batches: when replies came, or when
         * the last wait said some wait in the error queue */
        if (got > 0 || errq) {
            read_txts(s);
            errq = 0;
        }
        for (int i = 0; i < got; i++) {
            /* a truncated datagram (rxlen > STAMP_MAX_PKT) is refused by the machine */
            if (stamp_sm_reply(s->m, s->rxbuf[i], s->rxlen[i], &s->meta[i], &res[0]))
                total += hand(res, 1, each, ud);
        }
        int e;
        while ((e = stamp_sm_expire(s->m, stamp_mono(), res, STAMP_BATCH)) > 0) {
            total += hand(res, e, each, ud);
            if (e < STAMP_BATCH) break;
        }
        if (got == STAMP_BATCH) continue; /* more may be queued */
        stamp_ns_t now = stamp_mono();
        if (now >= limit) break;
        stamp_ns_t d = stamp_sm_next_deadline(s->m);
        stamp_ns_t until = d < limit ? d : limit;
        if (until <= now) continue; /* a deadline passed: act on it */
        int w = wait_until(s->fd, until);
        if (w == -EINTR) break; /* a signal: the caller looks at it */
        if (w < 0) return total ? total : w;
        if (w & POLLERR) errq = 1;
    }
    return total;
}
