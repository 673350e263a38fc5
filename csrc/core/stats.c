/*
 * stats.c - the accumulator of per-packet results, Lua-free (see stamp.h,
 * "Statistics"). It computes exactly what lua/stamp/stats.lua's `Acc:add`
 * computes, so that the Lua layer renders the same summary from either;
 * every definition (IPDV, reordering extents, loss episodes, the loss
 * direction's last record) is documented there.
 */
#include "stamp.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HASH_BITS 17 /* 2^17 slots for at most 2^16 sequence numbers of the sample */
#define HASH_SIZE (1u << HASH_BITS)

typedef struct {
    uint32_t seq;
    float v[3]; /* rtt, fwd, bwd rounded to float32 (string.pack "f" in the Lua sample) */
} rec_t;

typedef struct {
    uint64_t pos[STAMP_STATS_HIST_K], neg[STAMP_STATS_HIST_K];
    uint64_t zero, n;
} hist_t;

struct stamp_stats {
    double log_gamma;
    stamp_stats_figures_t f; /* the scalar figures, kept up to date (f.owd_reason: a static string) */
    /* the sample: records in arrival order, and the latest arrival of each number (index + 1) */
    rec_t *sample;
    size_t ns;
    uint32_t *at;
    /* histograms (f.hist = 1), and the frozen sample still to move into them: records conv..ns */
    hist_t *h;
    size_t conv;
    /* IPDV: the last IPDV_WINDOW received packets by sequence number */
    int64_t *wseq, (*wval)[3];
    /* reordering: the recent new maxima (sequence number, arrival position), a ring of rc entries */
    uint32_t *rseq;
    uint64_t *rpos;
    uint64_t rc, pos;
    int64_t max_seen;
    int64_t last_rtt; /* the RTT added last (progress) */
};

static void mom_init(stamp_moments_t *m) { memset(m, 0, sizeof *m); }

static void mom_add(stamp_moments_t *m, int64_t v)
{
    uint64_t n = m->n + 1;
    double x = (double)v;
    double d = x - m->mean;
    m->n = n;
    m->mean = m->mean + d / (double)n;
    m->m2 = m->m2 + d * (x - m->mean);
    if (n == 1 || v < m->min) m->min = v;
    if (n == 1 || v > m->max) m->max = v;
    /* integer sums wrap as Lua's integers do (no undefined overflow for absurd delays) */
    uint64_t a = v < 0 ? 0u - (uint64_t)v : (uint64_t)v;
    m->sabs = (int64_t)((uint64_t)m->sabs + a);
}

static void hist_add(const stamp_stats_t *st, hist_t *h, double v)
{
    if (v >= 1) {
        double k = ceil(log(v) / st->log_gamma);
        h->pos[k < STAMP_STATS_HIST_K ? (size_t)k : STAMP_STATS_HIST_K - 1]++;
    } else if (v <= -1) {
        double k = ceil(log(-v) / st->log_gamma);
        h->neg[k < STAMP_STATS_HIST_K ? (size_t)k : STAMP_STATS_HIST_K - 1]++;
    } else {
        h->zero++;
    }
    h->n++;
}

int stamp_stats_new(int stateful_reflector, stamp_stats_t **out)
{
    *out = NULL;
    stamp_stats_t *st = calloc(1, sizeof *st);
    if (!st) return STAMP_ENOMEM;
    st->sample = calloc(STAMP_STATS_SAMPLE_MAX, sizeof *st->sample);
    st->at = calloc(HASH_SIZE, sizeof *st->at);
    st->h = calloc(STAMP_STATS_NDIST, sizeof *st->h);
    st->wseq = malloc(STAMP_STATS_IPDV_WINDOW * sizeof *st->wseq);
    st->wval = calloc(STAMP_STATS_IPDV_WINDOW, sizeof *st->wval);
    st->rseq = calloc(STAMP_STATS_REORDER_WINDOW, sizeof *st->rseq);
    st->rpos = calloc(STAMP_STATS_REORDER_WINDOW, sizeof *st->rpos);
    if (!st->sample || !st->at || !st->h || !st->wseq || !st->wval || !st->rseq || !st->rpos) {
        stamp_stats_free(st);
        return STAMP_ENOMEM;
    }
    for (size_t i = 0; i < STAMP_STATS_IPDV_WINDOW; i++) st->wseq[i] = INT64_MIN;
    /* computed at run time with the C library's log, as Lua's math.log does (no constant folding) */
    volatile double gamma = (1 + 0.005) / (1 - 0.005);
    st->log_gamma = log(gamma);
    for (int d = 0; d < STAMP_STATS_NDIST; d++) mom_init(&st->f.dist[d]);
    mom_init(&st->f.ext);
    st->f.owd_valid = 1;
    st->f.stateful = stateful_reflector ? 1 : 0;
    st->max_seen = -1;
    *out = st;
    return 0;
}

void stamp_stats_free(stamp_stats_t *st)
{
    if (!st) return;
    free(st->sample);
    free(st->at);
    free(st->h);
    free(st->wseq);
    free(st->wval);
    free(st->rseq);
    free(st->rpos);
    free(st);
}

/* ---- the sample: latest arrival of each sequence number ------------------ */

static uint32_t slot_of(uint32_t seq) { return (uint32_t)(seq * 2654435761u) >> (32 - HASH_BITS); }

static void at_set(stamp_stats_t *st, uint32_t seq, size_t idx)
{
    for (uint32_t s = slot_of(seq);; s = (s + 1) & (HASH_SIZE - 1)) {
        uint32_t e = st->at[s];
        if (e == 0 || st->sample[e - 1].seq == seq) {
            st->at[s] = (uint32_t)idx + 1;
            return;
        }
    }
}

static int at_get(const stamp_stats_t *st, uint32_t seq, size_t *idx)
{
    for (uint32_t s = slot_of(seq);; s = (s + 1) & (HASH_SIZE - 1)) {
        uint32_t e = st->at[s];
        if (e == 0) return 0;
        if (st->sample[e - 1].seq == seq) {
            *idx = e - 1;
            return 1;
        }
    }
}

int stamp_stats_sample_get(const stamp_stats_t *st, size_t i, uint32_t *seq, double v[3], double ipdv[3])
{
    const rec_t *r = &st->sample[i];
    size_t m;
    *seq = r->seq;
    for (int k = 0; k < 3; k++) v[k] = r->v[k];
    if (r->seq == 0 || !at_get(st, r->seq - 1, &m)) return 0;
    for (int k = 0; k < 3; k++) ipdv[k] = (double)r->v[k] - (double)st->sample[m].v[k];
    return 1;
}

/* Move up to `max` records of the frozen sample (their values and IPDV pairs) into the histograms. */
static void convert(stamp_stats_t *st, size_t max)
{
    for (; st->conv < st->ns && max > 0; st->conv++, max--) {
        uint32_t seq;
        double v[3], iv[3];
        int pair = stamp_stats_sample_get(st, st->conv, &seq, v, iv);
        for (int k = 0; k < 3; k++) {
            hist_add(st, &st->h[k], v[k]);
            if (pair) hist_add(st, &st->h[3 + k], iv[k]);
        }
    }
}

/* ---- per result ----------------------------------------------------------- */

static void ipdv_pair(stamp_stats_t *st, const int64_t a[3], const int64_t b[3])
{
    for (int k = 0; k < 3; k++) {
        int64_t d = (int64_t)((uint64_t)b[k] - (uint64_t)a[k]); /* wraps as in Lua */
        mom_add(&st->f.dist[3 + k], d);
        if (st->f.hist) hist_add(st, &st->h[3 + k], (double)d);
    }
}

/* Reordering (RFC 4737) for a received packet, in arrival order. */
static void reorder(stamp_stats_t *st, uint32_t seq)
{
    const uint64_t W = STAMP_STATS_REORDER_WINDOW;
    uint64_t pos = ++st->pos;
    if ((int64_t)seq > st->max_seen) {
        st->max_seen = seq;
        uint64_t rc = ++st->rc;
        st->rseq[(rc - 1) % W] = seq;
        st->rpos[(rc - 1) % W] = pos;
    } else if ((int64_t)seq < st->max_seen) {
        /* the earliest arrival with a higher number set a new maximum: binary search the recent maxima */
        uint64_t lo = st->rc > W ? st->rc - W + 1 : 1, hi = st->rc;
        while (lo < hi) {
            uint64_t mid = lo + (hi - lo) / 2;
            if (st->rseq[(mid - 1) % W] > seq)
                hi = mid;
            else
                lo = mid + 1;
        }
        st->f.reordered++;
        mom_add(&st->f.ext, (int64_t)(pos - st->rpos[(lo - 1) % W]));
    }
}

static void close_run(stamp_stats_figures_t *f)
{
    uint64_t len = (uint64_t)(f->run_last - f->run_first + 1);
    f->episodes++;
    f->burst_total += len;
    if (len > f->longest) f->longest = len;
    f->in_run = 0;
}

/* Loss episodes: runs of consecutive lost sequence numbers. */
static void lost_seq(stamp_stats_figures_t *f, int64_t seq)
{
    if (f->in_run && seq == f->run_last + 1) {
        f->run_last = seq;
    } else if (f->in_run && seq == f->run_first - 1) {
        f->run_first = seq;
    } else if (!(f->in_run && seq >= f->run_first && seq <= f->run_last)) {
        if (f->in_run) close_run(f);
        f->in_run = 1;
        f->run_first = f->run_last = seq;
    }
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

typedef struct {
    int present, u, fields;
    uint32_t s_txc, r_rxc, r_txc;
} dm_t;

/* The reply's TLVs as the binding lists them: a usable Type 12 TLV with C (refused burst),
 * and the first Direct Measurement TLV among the usable ones. */
static int scan_tlvs(const stamp_result_t *r, size_t base, dm_t *dm)
{
    int refused = 0, i = 0, rc;
    memset(dm, 0, sizeof *dm);
    if (!r->pkt || r->pkt_len <= base) return 0;
    size_t pos = base;
    stamp_tlv_t t;
    while ((rc = stamp_tlv_next(r->pkt, r->pkt_len, &pos, &t)) != 0) {
        if (t.type == STAMP_TLV_REFLCTRL && (t.flags & STAMP_TLV_C) && i < r->tlv_usable) refused = 1;
        if (t.type == STAMP_TLV_DM && !dm->present && i < r->tlv_usable) {
            dm->present = 1;
            dm->u = (t.flags & STAMP_TLV_U) != 0;
            if (rc > 0 && t.len == 12) {
                const uint8_t *v = r->pkt + t.off + STAMP_TLV_HDR;
                dm->fields = 1;
                dm->s_txc = rd32(v);
                dm->r_rxc = rd32(v + 4);
                dm->r_txc = rd32(v + 8);
            }
        }
        i++;
        if (rc < 0) break;
    }
    return refused;
}

void stamp_stats_add_ex(stamp_stats_t *st, const stamp_result_t *r, size_t base, unsigned flags, double err_ns)
{
    stamp_stats_figures_t *f = &st->f;
    if (r->status == STAMP_RES_ABORTED || r->status == STAMP_RES_NO_REPLY) return; /* neither received nor lost */
    uint32_t seq = r->seq;
    if (r->status == STAMP_RES_LOST) {
        f->lost++;
        lost_seq(f, seq);
        return;
    }
    dm_t dm;
    if (scan_tlvs(r, base, &dm)) f->extra_refused++;
    if (!(flags & STAMP_STATS_NO_T1_SOURCE)) {
        if (r->t1_kernel)
            f->t1_kernel++;
        else
            f->t1_user++;
    }
    f->received++;
    if (r->clock_error) { /* received, but no delay is taken from it */
        f->clock_errors++;
        reorder(st, seq);
        return;
    }
    int64_t v[3] = {r->rtt, r->fwd, r->bwd};
    for (int k = 0; k < 3; k++) mom_add(&f->dist[k], v[k]);
    st->last_rtt = r->rtt;
    if (f->owd_valid) {
        const char *why = NULL;
        if (flags & STAMP_STATS_NO_EE)
            why = "no error estimate";
        else if (r->sender_ee.s != 1 || r->refl_ee.s != 1)
            why = "unsynchronized clock";
        else if (r->fwd < 0 || r->bwd < 0)
            why = "negative delay";
        if (why) {
            f->owd_valid = 0;
            f->owd_reason = why;
        }
    }
    if (!(flags & STAMP_STATS_NO_EE)) {
        double e = (flags & STAMP_STATS_ERR_GIVEN) ? err_ns : stamp_ee_ns(&r->sender_ee) + stamp_ee_ns(&r->refl_ee);
        if (e > f->err_bound) f->err_bound = e;
    }
    if (r->refl_seq != seq) f->stateful = 1;
    if (!f->has_last || seq > f->last_seq) {
        if (dm.present && f->last_dm && !dm.u && !f->last_dm_u &&
            (dm.r_rxc < f->last_r_rxc || dm.r_txc < f->last_r_txc))
            f->dm_backwards = 1; /* a restart, another session's counters (absent fields count 0) */
        f->has_last = 1;
        f->last_seq = seq;
        f->last_refl_seq = r->refl_seq;
        f->last_rx_replies = r->rx_replies;
        f->last_dm = dm.present;
        f->last_dm_u = dm.u;
        f->last_dm_fields = dm.fields;
        f->last_s_txc = dm.s_txc;
        f->last_r_rxc = dm.r_rxc;
        f->last_r_txc = dm.r_txc;
    }
    reorder(st, seq);
    /* IPDV with the neighbours already here (by sequence number, whatever the arrival order) */
    const int64_t W = STAMP_STATS_IPDV_WINDOW, s = seq;
    size_t lo = (size_t)(((s - 1) % W + W) % W), hi = (size_t)((s + 1) % W), me = (size_t)(s % W);
    if (st->wseq[lo] == s - 1) ipdv_pair(st, st->wval[lo], v);
    if (st->wseq[hi] == s + 1) ipdv_pair(st, v, st->wval[hi]);
    st->wseq[me] = s;
    memcpy(st->wval[me], v, sizeof v);
    /* the distributions: the sample, or beyond it the histograms */
    if (f->hist) {
        for (int k = 0; k < 3; k++) hist_add(st, &st->h[k], (double)v[k]);
        convert(st, STAMP_STATS_CONVERT_STEP);
    } else {
        rec_t *rec = &st->sample[st->ns];
        rec->seq = seq;
        for (int k = 0; k < 3; k++) rec->v[k] = (float)(double)v[k];
        at_set(st, seq, st->ns);
        if (++st->ns >= STAMP_STATS_SAMPLE_MAX) {
            f->hist = 1; /* from now on every value goes to the histograms; the sample follows a bit per add */
            st->conv = 0;
        }
    }
}

void stamp_stats_add(stamp_stats_t *st, const stamp_result_t *r, size_t base)
{
    stamp_stats_add_ex(st, r, base, 0, 0);
}

void stamp_stats_figures(stamp_stats_t *st, stamp_stats_figures_t *f)
{
    if (st->f.hist) convert(st, SIZE_MAX);
    *f = st->f;
}

void stamp_stats_progress(const stamp_stats_t *st, stamp_stats_progress_t *p)
{
    p->received = st->f.received;
    p->lost = st->f.lost;
    p->rtt_n = st->f.dist[STAMP_STATS_RTT].n;
    p->rtt_mean = st->f.dist[STAMP_STATS_RTT].mean;
    p->rtt_last = st->last_rtt;
}

size_t stamp_stats_sample_len(const stamp_stats_t *st) { return st->f.hist ? 0 : st->ns; }

const uint64_t *stamp_stats_hist(const stamp_stats_t *st, int d, const uint64_t **neg, uint64_t *zero)
{
    if (!st->f.hist || d < 0 || d >= STAMP_STATS_NDIST) return NULL;
    if (neg) *neg = st->h[d].neg;
    if (zero) *zero = st->h[d].zero;
    return st->h[d].pos;
}
