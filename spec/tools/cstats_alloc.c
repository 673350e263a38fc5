/* spec/48: stamp_stats_add straight from C (as a sender's step calls it), counting the allocations
 * made while 100,000 results (past the switch to histograms) are added: there must be none.
 * Linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc against the static core. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stamp.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
static int counting, allocs;
void *__wrap_malloc(size_t n) { allocs += counting; return __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m) { allocs += counting; return __real_calloc(n, m); }
void *__wrap_realloc(void *p, size_t n) { allocs += counting; return __real_realloc(p, n); }

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

int main(void)
{
    stamp_stats_t *st;
    if (stamp_stats_new(0, &st) != 0) return 1;
    uint8_t pkt[STAMP_BASE_LEN + 16 + 16];
    memset(pkt, 0, sizeof pkt);
    uint8_t *dm = pkt + STAMP_BASE_LEN, *t12 = dm + 16;
    dm[1] = STAMP_TLV_DM, dm[3] = 12;
    t12[1] = STAMP_TLV_REFLCTRL, t12[3] = 12;
    const uint32_t N = 100000;
    counting = 1;
    for (uint32_t i = 0; i < N; i++) {
        stamp_result_t r;
        memset(&r, 0, sizeof r);
        r.seq = i;
        r.status = i % 100 == 99 ? STAMP_RES_LOST : STAMP_RES_OK;
        r.refl_seq = i;
        r.fwd = 20000 + (stamp_ns_t)(i % 777);
        r.bwd = 15000 + (stamp_ns_t)(i % 555);
        r.rtt = r.fwd + r.bwd;
        r.sender_ee = (stamp_ee_t){.s = 1, .scale = 1, .mult = 100};
        r.refl_ee = (stamp_ee_t){.s = 1, .scale = 2, .mult = 50};
        r.t1_kernel = i % 4 != 0;
        r.rx_replies = i + 1;
        wr32(dm + 4, i + 1);     /* S_TxC */
        wr32(dm + 8, i + 1 - i / 100); /* R_RxC: the lost ones never arrived */
        wr32(dm + 12, i + 1 - i / 100);
        t12[0] = i % 10 == 0 ? STAMP_TLV_C : 0;
        r.pkt = pkt;
        r.pkt_len = sizeof pkt;
        r.tlv_count = r.tlv_usable = 2;
        stamp_stats_add(st, &r, STAMP_BASE_LEN);
    }
    counting = 0;
    stamp_stats_figures_t f;
    stamp_stats_figures(st, &f);
    stamp_ee_t a = {.s = 1, .scale = 1, .mult = 100}, b = {.s = 1, .scale = 2, .mult = 50};
    printf("allocs=%d received=%llu lost=%llu hist=%d refused=%llu t1_kernel=%llu t1_user=%llu err_ok=%d "
           "owd_valid=%d last_seq=%u r_rxc=%u episodes=%llu\n",
           allocs, (unsigned long long)f.received, (unsigned long long)f.lost, f.hist,
           (unsigned long long)f.extra_refused, (unsigned long long)f.t1_kernel, (unsigned long long)f.t1_user,
           f.err_bound == stamp_ee_ns(&a) + stamp_ee_ns(&b), f.owd_valid, f.last_seq, f.last_r_rxc,
           (unsigned long long)(f.episodes + f.in_run));
    stamp_stats_free(st);
    return 0;
}
