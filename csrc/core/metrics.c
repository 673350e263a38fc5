/*
 * metrics.c - Prometheus text exposition of the reflector's and the sender's
 * counters and histograms, and an HTTP endpoint serving it from its own
 * thread (libmicrohttpd).
 *
 * Threads: one writer (the packet thread) updates the histograms with relaxed
 * atomic loads and stores (no lock, no read-modify-write, no allocation); any
 * number of readers (the HTTP thread, a Lua host) render snapshots. Engine
 * counters are read through stamp_reflector_counters()/stamp_sender_counters(),
 * under a lock that stamp_reflector_free()/stamp_sender_free() take too: a freed
 * engine is first detached from every metrics object (they then render zeros).
 * With reflector workers, each worker thread keeps its own processing-time
 * histogram in its engine; the rendered one is the sum over all of them.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

#define HIST_MAX 16

/* bucket upper bounds, in nanoseconds and as printed */
static const int64_t PROC_NS[] = {1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,
                                  2500000, 5000000, 10000000};
static const char *const PROC_LE[] = {"1e-06", "2.5e-06", "5e-06", "1e-05", "2.5e-05", "5e-05", "0.0001",
                                      "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01"};
static const int64_t DELAY_NS[] = {100000,   250000,    500000,    1000000,   2500000,    5000000,    10000000,
                                   25000000, 50000000,  100000000, 250000000, 500000000,  1000000000, 2500000000,
                                   5000000000};
static const char *const DELAY_LE[] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
                                       "0.05",   "0.1",     "0.25",   "0.5",   "1",      "2.5",   "5"};

typedef struct {
    const int64_t *bounds;
    const char *const *le;
    int n; /* finite buckets; counts[n] is +Inf */
    _Atomic uint64_t counts[HIST_MAX + 1];
    _Atomic int64_t sum_ns;
} hist_t;

#define SND_PUB 12 /* sender counters published for the scraper thread */

struct stamp_metrics {
    struct stamp_metrics *next; /* every live metrics object, under g_lock */
    stamp_metrics_role_t role;
    const stamp_reflector_t *refl;
    const stamp_sender_t *snd;
    hist_t proc, rtt, fwd, bwd;
    _Atomic uint64_t extra[STAMP_METRICS_EXTRA_MAX];
    _Atomic uint64_t snd_pub[SND_PUB]; /* sender counters published by the packet thread */
    _Atomic int snd_published;
    struct MHD_Daemon *httpd;
    int listen_fd;
};

_Static_assert(sizeof PROC_NS / sizeof PROC_NS[0] + 1 == STAMP_PROC_BUCKETS, "worker histogram buckets");

/* g_lock guards g_all and every m->refl / m->snd, and is held while an engine's counters are read */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static stamp_metrics_t *g_all;

void stamp_metrics_forget(const void *engine)
{
    pthread_mutex_lock(&g_lock);
    for (stamp_metrics_t *m = g_all; m; m = m->next) {
        if ((const void *)m->refl == engine) m->refl = NULL;
        if ((const void *)m->snd == engine) m->snd = NULL;
    }
    pthread_mutex_unlock(&g_lock);
}

static void hist_init(hist_t *h, const int64_t *b, const char *const *le, int n)
{
    h->bounds = b;
    h->le = le;
    h->n = n;
    for (int i = 0; i <= HIST_MAX; i++) atomic_init(&h->counts[i], 0);
    atomic_init(&h->sum_ns, 0);
}

/* single writer: a relaxed load and store instead of a locked add */
static inline void bump(_Atomic uint64_t *c, uint64_t by)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by, memory_order_relaxed);
}

static void hist_observe(hist_t *h, int64_t ns, uint64_t times)
{
    int i = 0;
    while (i < h->n && ns > h->bounds[i]) i++;
    bump(&h->counts[i], times);
    atomic_store_explicit(&h->sum_ns, atomic_load_explicit(&h->sum_ns, memory_order_relaxed) + ns * (int64_t)times,
                          memory_order_relaxed);
}

void stamp_proc_observe(stamp_proc_hist_t *h, stamp_ns_t ns, unsigned packets)
{
    if (!packets) return;
    int64_t per = ns / (int64_t)packets;
    int i = 0, n = (int)(sizeof PROC_NS / sizeof PROC_NS[0]);
    while (i < n && per > PROC_NS[i]) i++;
    bump(&h->counts[i], packets);
    atomic_store_explicit(&h->sum_ns, atomic_load_explicit(&h->sum_ns, memory_order_relaxed) + per * (int64_t)packets,
                          memory_order_relaxed);
}

int stamp_metrics_new(stamp_metrics_role_t role, stamp_metrics_t **out)
{
    *out = NULL;
    if (role != STAMP_METRICS_REFLECTOR && role != STAMP_METRICS_SENDER) return STAMP_EINVAL;
    stamp_metrics_t *m = calloc(1, sizeof *m);
    if (!m) return STAMP_ENOMEM;
    m->role = role;
    m->listen_fd = -1;
    hist_init(&m->proc, PROC_NS, PROC_LE, (int)(sizeof PROC_NS / sizeof PROC_NS[0]));
    hist_init(&m->rtt, DELAY_NS, DELAY_LE, (int)(sizeof DELAY_NS / sizeof DELAY_NS[0]));
    hist_init(&m->fwd, DELAY_NS, DELAY_LE, (int)(sizeof DELAY_NS / sizeof DELAY_NS[0]));
    hist_init(&m->bwd, DELAY_NS, DELAY_LE, (int)(sizeof DELAY_NS / sizeof DELAY_NS[0]));
    for (int i = 0; i < STAMP_METRICS_EXTRA_MAX; i++) atomic_init(&m->extra[i], 0);
    for (int i = 0; i < SND_PUB; i++) atomic_init(&m->snd_pub[i], 0);
    atomic_init(&m->snd_published, 0);
    pthread_mutex_lock(&g_lock);
    m->next = g_all;
    g_all = m;
    pthread_mutex_unlock(&g_lock);
    *out = m;
    return 0;
}

void stamp_metrics_free(stamp_metrics_t *m)
{
    if (!m) return;
    stamp_metrics_stop(m);
    pthread_mutex_lock(&g_lock);
    for (stamp_metrics_t **p = &g_all; *p; p = &(*p)->next)
        if (*p == m) {
            *p = m->next;
            break;
        }
    pthread_mutex_unlock(&g_lock);
    free(m);
}

void stamp_metrics_attach_reflector(stamp_metrics_t *m, const stamp_reflector_t *r)
{
    pthread_mutex_lock(&g_lock);
    m->refl = r;
    pthread_mutex_unlock(&g_lock);
}

void stamp_metrics_attach_sender(stamp_metrics_t *m, const stamp_sender_t *s)
{
    pthread_mutex_lock(&g_lock);
    m->snd = s;
    pthread_mutex_unlock(&g_lock);
}

void stamp_metrics_observe_processing(stamp_metrics_t *m, stamp_ns_t ns, unsigned packets)
{
    if (packets) hist_observe(&m->proc, ns / (stamp_ns_t)packets, packets);
}

void stamp_metrics_observe_rtt(stamp_metrics_t *m, stamp_ns_t rtt) { hist_observe(&m->rtt, rtt, 1); }

void stamp_metrics_observe_owd(stamp_metrics_t *m, stamp_ns_t fwd, stamp_ns_t bwd)
{
    hist_observe(&m->fwd, fwd, 1);
    hist_observe(&m->bwd, bwd, 1);
}

void stamp_metrics_observe_result(stamp_metrics_t *m, const stamp_result_t *r)
{
    if (r->status != STAMP_RES_OK || r->clock_error) return;
    stamp_metrics_observe_rtt(m, r->rtt);
    if (r->sender_ee.s == 1 && r->refl_ee.s == 1) stamp_metrics_observe_owd(m, r->fwd, r->bwd);
}

void stamp_metrics_count(stamp_metrics_t *m, stamp_metrics_extra_t which, uint64_t by)
{
    if ((unsigned)which < STAMP_METRICS_EXTRA_MAX) bump(&m->extra[which], by);
}

void stamp_metrics_publish_sender(stamp_metrics_t *m)
{
    if (!m->snd) return;
    stamp_sender_counters_t c;
    stamp_sender_counters(m->snd, &c);
    const uint64_t v[SND_PUB] = {c.sent,         c.received,   c.lost,          c.duplicates,
                                 c.late,         c.drop_hmac,  c.drop_invalid,  c.tx_errors,
                                 c.extra_replies, c.extra_missing, c.extra_unsupported, c.no_reply};
    for (int i = 0; i < SND_PUB; i++) atomic_store_explicit(&m->snd_pub[i], v[i], memory_order_relaxed);
    atomic_store_explicit(&m->snd_published, 1, memory_order_release);
}

int stamp_metrics_reflector_step(stamp_metrics_t *m, stamp_reflector_t *r, int timeout_ms)
{
    stamp_ns_t t0 = stamp_mono();
    int n = stamp_reflector_step(r, 0);
    if (n == 0 && timeout_ms != 0) {
        int w = stamp_reflector_wait(r, timeout_ms); /* also wakes when a Type 12 extra reply is due */
        if (w < 0) return w;
        t0 = stamp_mono();
        n = stamp_reflector_step(r, 0);
    }
    if (n > 0) stamp_metrics_observe_processing(m, stamp_mono() - t0, (unsigned)n);
    return n;
}

/* ---- rendering --------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t cap, len; /* len counts what would have been written */
} out_t;

static void put(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    int k = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (k > 0) o->len += (size_t)k;
}

static void head(out_t *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void scalar(out_t *o, const char *name, const char *type, const char *help, uint64_t v)
{
    head(o, name, type, help);
    put(o, "%s %llu\n", name, (unsigned long long)v);
}

static void seconds(out_t *o, int64_t ns)
{
    if (ns < 0) {
        put(o, "-");
        ns = -ns;
    }
    put(o, "%lld.%09lld", (long long)(ns / STAMP_NS_PER_SEC), (long long)(ns % STAMP_NS_PER_SEC));
}

/* add: counts of the same buckets to add (reflector workers), or NULL */
static void histogram_plus(out_t *o, const char *name, const char *help, const hist_t *h, const uint64_t *add,
                           int64_t add_sum)
{
    uint64_t c[HIST_MAX + 1], cum = 0;
    for (int i = 0; i <= h->n; i++) c[i] = atomic_load_explicit(&h->counts[i], memory_order_relaxed) + (add ? add[i] : 0);
    int64_t sum = atomic_load_explicit(&h->sum_ns, memory_order_relaxed) + add_sum;
    head(o, name, "histogram", help);
    for (int i = 0; i < h->n; i++) {
        cum += c[i];
        put(o, "%s_bucket{le=\"%s\"} %llu\n", name, h->le[i], (unsigned long long)cum);
    }
    cum += c[h->n];
    put(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum ", name, (unsigned long long)cum, name);
    seconds(o, sum);
    put(o, "\n%s_count %llu\n", name, (unsigned long long)cum);
}

static void histogram(out_t *o, const char *name, const char *help, const hist_t *h)
{
    histogram_plus(o, name, help, h, NULL, 0);
}

typedef struct {
    const char *label;
    uint64_t v;
} labelled_t;

static void family(out_t *o, const char *name, const char *help, const char *label, const labelled_t *v, int n)
{
    head(o, name, "counter", help);
    for (int i = 0; i < n; i++) put(o, "%s{%s=\"%s\"} %llu\n", name, label, v[i].label, (unsigned long long)v[i].v);
}

static void render_reflector(const stamp_metrics_t *m, out_t *o)
{
    stamp_reflector_counters_t c;
    uint64_t wc[STAMP_PROC_BUCKETS] = {0};
    int64_t wsum = 0;
    memset(&c, 0, sizeof c);
    pthread_mutex_lock(&g_lock);
    if (m->refl) {
        stamp_reflector_counters(m->refl, &c);
        stamp_reflector_proc_add(m->refl, wc, &wsum);
    }
    pthread_mutex_unlock(&g_lock);
    scalar(o, "stamp_reflector_packets_received_total", "counter", "Test packets received by the Session-Reflector.",
           c.rx);
    scalar(o, "stamp_reflector_packets_reflected_total", "counter", "Reflected test packets sent.", c.reflected);
    labelled_t drops[] = {
        {"short", c.drop_short},
        {"truncated", c.drop_truncated},
        {"hmac", c.drop_hmac},
        {"session_limit", c.drop_sessions},
        {"send_error", c.drop_tx},
        {"micro_session", c.drop_micro},
        {"no_reply_requested", c.no_reply},
        {"address_group", c.drop_group},
        {"rate_limit", c.drop_rate},
        {"replayed", c.drop_replayed},
        {"unprovisioned", c.drop_unprovisioned},
        {"kernel_overflow", c.drop_kernel},
    };
    family(o, "stamp_reflector_packets_dropped_total", "Test packets not answered, by reason.", "reason", drops,
           (int)(sizeof drops / sizeof drops[0]));
    scalar(o, "stamp_reflector_active_sessions", "gauge", "Sessions currently known (stateful mode).",
           c.sessions_active);
    scalar(o, "stamp_reflector_sessions_total", "counter", "Sessions created (stateful mode).", c.sessions_created);
    scalar(o, "stamp_reflector_sessions_evicted_total", "counter",
           "Sessions forgotten to make room under max_sessions (the one idle longest).", c.sessions_evicted);
    scalar(o, "stamp_reflector_replays_total", "counter",
           "Authenticated test packets seen as replays (answered or not, see drop_replayed).", c.replayed);
    scalar(o, "stamp_reflector_extra_replies_total", "counter",
           "Further replies of Type 12 bursts sent (RFC 10052; not in packets_reflected_total).", c.extra_replies);
    scalar(o, "stamp_reflector_extra_cancelled_total", "counter",
           "Further replies of granted Type 12 bursts cancelled (session gone or no longer admitted).",
           c.extra_cancelled);
    scalar(o, "stamp_reflector_extra_refused_total", "counter",
           "Type 12 bursts not started for want of a burst slot (answered once with C).", c.extra_refused);
    scalar(o, "stamp_reflector_extra_limited_total", "counter",
           "Type 12 requests over a limit (count, interval, size, volume; answered once with C).",
           c.extra_limited);
    scalar(o, "stamp_reflector_hmac_failures_total", "counter",
           "HMAC verification failures (base packet and HMAC TLV).", c.drop_hmac + c.tlv_integrity);
    labelled_t tlv[] = {
        {"unrecognized", c.tlv_unknown},
        {"malformed", c.tlv_malformed},
        {"integrity", c.tlv_integrity},
    };
    family(o, "stamp_reflector_tlv_errors_total", "Test packets with a TLV flagged U, M or I, by flag.", "flag", tlv,
           3);
    histogram_plus(o, "stamp_reflector_processing_seconds", "Time the reflector spends on one test packet.", &m->proc,
                   wc, wsum);
}

static void render_sender(const stamp_metrics_t *m, out_t *o)
{
    stamp_sender_counters_t c;
    memset(&c, 0, sizeof c);
    if (atomic_load_explicit(&m->snd_published, memory_order_acquire)) {
        uint64_t v[SND_PUB];
        for (int i = 0; i < SND_PUB; i++) v[i] = atomic_load_explicit(&m->snd_pub[i], memory_order_relaxed);
        c.sent = v[0], c.received = v[1], c.lost = v[2], c.duplicates = v[3], c.late = v[4], c.drop_hmac = v[5],
        c.drop_invalid = v[6], c.tx_errors = v[7], c.extra_replies = v[8], c.extra_missing = v[9],
        c.extra_unsupported = v[10], c.no_reply = v[11];
    } else {
        pthread_mutex_lock(&g_lock);
        if (m->snd) stamp_sender_counters(m->snd, &c);
        pthread_mutex_unlock(&g_lock);
    }
    scalar(o, "stamp_sender_packets_sent_total", "counter", "Test packets sent by the Session-Sender.", c.sent);
    scalar(o, "stamp_sender_packets_received_total", "counter", "Replies matched to a test packet in time.",
           c.received);
    scalar(o, "stamp_sender_packets_lost_total", "counter", "Test packets without a reply within the timeout.",
           c.lost);
    scalar(o, "stamp_sender_packets_duplicated_total", "counter", "Duplicate replies.", c.duplicates);
    scalar(o, "stamp_sender_packets_late_total", "counter", "Replies after their packet was declared lost.", c.late);
    scalar(o, "stamp_sender_send_errors_total", "counter",
           "Test packets the host failed to send (counted in sent, and in lost after the timeout).", c.tx_errors);
    scalar(o, "stamp_sender_extra_replies_total", "counter",
           "Further replies of granted Type 12 bursts received (RFC 10052; not duplicates).", c.extra_replies);
    scalar(o, "stamp_sender_extra_missing_total", "counter",
           "Further replies of granted Type 12 bursts not seen in time.", c.extra_missing);
    scalar(o, "stamp_sender_extra_unsupported_total", "counter",
           "Replies whose Type 12 TLV came back with U: the reflector does not support it.", c.extra_unsupported);
    scalar(o, "stamp_sender_packets_no_reply_total", "counter",
           "Test packets that asked for no reply and got none in time (not in lost_total).", c.no_reply);
    labelled_t inv[] = {{"hmac", c.drop_hmac}, {"invalid", c.drop_invalid}};
    family(o, "stamp_sender_replies_dropped_total", "Replies discarded, by reason.", "reason", inv, 2);
    histogram(o, "stamp_sender_rtt_seconds", "Round-trip time without the reflector's residence time.", &m->rtt);
    histogram(o, "stamp_sender_forward_delay_seconds",
              "One-way delay sender to reflector (both clocks synchronized).", &m->fwd);
    histogram(o, "stamp_sender_backward_delay_seconds",
              "One-way delay reflector to sender (both clocks synchronized).", &m->bwd);
}

size_t stamp_metrics_render(const stamp_metrics_t *m, char *buf, size_t cap)
{
    out_t o = {buf, cap, 0};
    if (m->role == STAMP_METRICS_REFLECTOR)
        render_reflector(m, &o);
    else
        render_sender(m, &o);
    static const char *const EXTRA[STAMP_METRICS_EXTRA_MAX] = {"stamp_reloads_total", "stamp_reload_failures_total"};
    static const char *const EXTRA_HELP[STAMP_METRICS_EXTRA_MAX] = {"Configuration reloads (SIGHUP) applied.",
                                                                    "Configuration reloads (SIGHUP) refused."};
    for (int i = 0; i < STAMP_METRICS_EXTRA_MAX; i++)
        scalar(&o, EXTRA[i], "counter", EXTRA_HELP[i], atomic_load_explicit(&m->extra[i], memory_order_relaxed));
    head(&o, "stamp_build_info", "gauge", "Version and role of this stamp process.");
    put(&o, "stamp_build_info{version=\"%s\",role=\"%s\"} 1\n", STAMP_VERSION,
        m->role == STAMP_METRICS_REFLECTOR ? "reflector" : "sender");
    if (cap) buf[o.len < cap ? o.len : cap - 1] = 0;
    return o.len;
}

/* ---- HTTP endpoint ------------------------------------------------------- */

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_len, void **state)
{
    (void)version;
    (void)upload;
    (void)upload_len;
    (void)state;
    const stamp_metrics_t *m = cls;
    struct MHD_Response *resp;
    enum MHD_Result ret;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char msg[] = "method not allowed\n";
        resp = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
        if (!resp) return MHD_NO;
        MHD_add_response_header(resp, "Allow", "GET, HEAD");
        ret = MHD_queue_response(conn, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
    } else if (strcmp(url, "/metrics") != 0 && strcmp(url, "/") != 0) {
        static const char msg[] = "not found: the metrics are at /metrics\n";
        resp = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
        if (!resp) return MHD_NO;
        ret = MHD_queue_response(conn, MHD_HTTP_NOT_FOUND, resp);
    } else {
        size_t cap = 8192, need;
        char *buf = NULL;
        for (int tries = 0; tries < 4; tries++) {
            char *nb = realloc(buf, cap);
            if (!nb) break;
            buf = nb;
            need = stamp_metrics_render(m, buf, cap);
            if (need < cap) break;
            cap = need + 1024;
        }
        if (!buf) return MHD_NO;
        resp = MHD_create_response_from_buffer(strlen(buf), buf, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
            free(buf);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    }
    MHD_destroy_response(resp);
    return ret;
}

int stamp_metrics_parse_addr(const char *spec, char *host, size_t hostcap, unsigned *port)
{
    if (!spec) return STAMP_EINVAL;
    const char *colon;
    const char *h = spec;
    size_t hl;
    if (spec[0] == '[') {
        const char *end = strchr(spec, ']');
        if (!end || end[1] != ':') return STAMP_EADDR;
        h = spec + 1;
        hl = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(spec, ':');
        if (!colon) return STAMP_EADDR;
        hl = (size_t)(colon - spec);
        if (memchr(spec, ':', hl)) return STAMP_EADDR; /* IPv6 needs brackets */
    }
    if (hl == 0 || hl >= hostcap) return STAMP_EADDR;
    char *end;
    errno = 0;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (!colon[1] || *end || errno || p > 65535) return STAMP_EADDR;
    memcpy(host, h, hl);
    host[hl] = 0;
    struct in6_addr tmp;
    if (inet_pton(AF_INET, host, &tmp) != 1 && inet_pton(AF_INET6, host, &tmp) != 1) return STAMP_EADDR;
    *port = (unsigned)p;
    return 0;
}

int stamp_metrics_serve(stamp_metrics_t *m, const char *addrport, unsigned *bound_port)
{
    char host[INET6_ADDRSTRLEN + 1];
    unsigned port;
    if (m->httpd) return STAMP_EINVAL;
    int rc = stamp_metrics_parse_addr(addrport, host, sizeof host, &port);
    if (rc) return rc;
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        sl = sizeof *s4;
    } else {
        inet_pton(AF_INET6, host, &s6->sin6_addr);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        sl = sizeof *s6;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 64) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (bound_port) {
        struct sockaddr_storage b;
        socklen_t bl = sizeof b;
        *bound_port = port;
        if (getsockname(fd, (struct sockaddr *)&b, &bl) == 0)
            *bound_port = ntohs(b.ss_family == AF_INET ? ((struct sockaddr_in *)&b)->sin_port
                                                       : ((struct sockaddr_in6 *)&b)->sin6_port);
    }
    /* the HTTP thread takes no signal: they stay with the packet thread */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    m->httpd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL, answer, m,
                                MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_CONNECTION_LIMIT,
                                (unsigned)STAMP_METRICS_MAX_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                (unsigned)STAMP_METRICS_PER_IP_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
                                (unsigned)STAMP_METRICS_IDLE_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                (size_t)16384, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!m->httpd) {
        close(fd);
        return STAMP_ENOMEM;
    }
    m->listen_fd = fd;
    return 0;
}

void stamp_metrics_stop(stamp_metrics_t *m)
{
    if (m->httpd) {
        MHD_stop_daemon(m->httpd);
        m->httpd = NULL;
    }
    if (m->listen_fd >= 0) {
        close(m->listen_fd);
        m->listen_fd = -1;
    }
}
