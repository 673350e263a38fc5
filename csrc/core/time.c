/* time.c - NTP and PTPv2-truncated timestamps, Error Estimate. */
#define _GNU_SOURCE
#include <math.h>
#include <string.h>
#include <sys/timex.h>
#include <time.h>

#include "internal.h"

stamp_ns_t stamp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (stamp_ns_t)ts.tv_sec * STAMP_NS_PER_SEC + ts.tv_nsec;
}

stamp_ns_t stamp_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (stamp_ns_t)ts.tv_sec * STAMP_NS_PER_SEC + ts.tv_nsec;
}

int stamp_tai_offset(void)
{
    struct timespec a, b;
    if (clock_gettime(CLOCK_TAI, &a) != 0) return 0;
    clock_gettime(CLOCK_REALTIME, &b);
    stamp_ns_t d = ((stamp_ns_t)a.tv_sec - b.tv_sec) * STAMP_NS_PER_SEC + (a.tv_nsec - b.tv_nsec);
    return (int)((d + (d >= 0 ? 1 : -1) * STAMP_NS_PER_SEC / 2) / STAMP_NS_PER_SEC);
}

/* floor division for possibly negative times */
static void split_ns(stamp_ns_t t, int64_t *sec, int64_t *nsec)
{
    int64_t s = t / STAMP_NS_PER_SEC, n = t % STAMP_NS_PER_SEC;
    if (n < 0) {
        n += STAMP_NS_PER_SEC;
        s -= 1;
    }
    *sec = s;
    *nsec = n;
}

void stamp_ts_encode(uint8_t out[8], stamp_ns_t t, stamp_clock_t fmt, int tai_offset)
{
    int64_t sec, nsec;
    split_ns(t, &sec, &nsec);
    if (fmt == STAMP_CLOCK_PTP) {
        wr32(out, (uint32_t)(uint64_t)(sec + tai_offset));
        wr32(out + 4, (uint32_t)nsec);
    } else {
        /* fraction = nsec * 2^32 / 1e9, rounded to nearest */
        uint64_t frac = (((uint64_t)nsec << 32) + STAMP_NS_PER_SEC / 2) / STAMP_NS_PER_SEC;
        uint64_t s = (uint64_t)(sec + STAMP_NTP_UNIX_OFFSET);
        if (frac >> 32) { /* rounding carried into the seconds */
            frac = 0;
            s += 1;
        }
        wr32(out, (uint32_t)s);
        wr32(out + 4, (uint32_t)frac);
    }
}

int stamp_ts_decode(const uint8_t in[8], stamp_clock_t fmt, int tai_offset, stamp_ns_t *t)
{
    uint32_t hi = rd32(in), lo = rd32(in + 4);
    if (fmt == STAMP_CLOCK_PTP) {
        int rc = STAMP_OK;
        if (lo >= STAMP_NS_PER_SEC) {
            rc = STAMP_EINVAL;
            lo = STAMP_NS_PER_SEC - 1;
        }
        *t = ((stamp_ns_t)hi - tai_offset) * STAMP_NS_PER_SEC + lo;
        return rc;
    }
    /* RFC 4330 3: MSB clear means era 1 (2036-02-07 onwards) */
    int64_t s = (int64_t)hi + ((hi & 0x80000000u) ? 0 : ((int64_t)1 << 32)) - STAMP_NTP_UNIX_OFFSET;
    uint64_t ns = (((uint64_t)lo * STAMP_NS_PER_SEC) + ((uint64_t)1 << 31)) >> 32;
    *t = s * STAMP_NS_PER_SEC + (stamp_ns_t)ns;
    return STAMP_OK;
}

uint16_t stamp_ee_pack(const stamp_ee_t *ee)
{
    unsigned mult = ee->mult & 0xff;
    if (mult == 0) mult = 1; /* a multiplier of 0 is never sent */
    return (uint16_t)(((ee->s & 1u) << 15) | ((ee->z & 1u) << 14) | ((ee->scale & 0x3fu) << 8) | mult);
}

void stamp_ee_unpack(uint16_t v, stamp_ee_t *ee)
{
    ee->s = (v >> 15) & 1u;
    ee->z = (v >> 14) & 1u;
    ee->scale = (v >> 8) & 0x3fu;
    ee->mult = v & 0xffu;
}

double stamp_ee_ns(const stamp_ee_t *ee)
{
    return (double)ee->mult * ldexp(1.0, (int)ee->scale - 32) * 1e9;
}

void stamp_ee_from_ns(stamp_ee_t *ee, double err_ns)
{
    if (!(err_ns > 0)) err_ns = 1; /* at least 1 ns */
    for (unsigned scale = 0; scale < 64; scale++) {
        double unit = ldexp(1.0, (int)scale - 32) * 1e9; /* ns per multiplier step */
        double m = ceil(err_ns / unit);
        if (m <= 255) {
            ee->scale = scale;
            ee->mult = m < 1 ? 1 : (unsigned)m;
            return;
        }
    }
    ee->scale = 63;
    ee->mult = 255;
}

void stamp_ee_local(stamp_ee_t *ee, stamp_clock_t fmt)
{
    struct timex tx;
    memset(&tx, 0, sizeof tx);
    int state = adjtimex(&tx);
    int synced = state >= 0 && state != TIME_ERROR && !(tx.status & STA_UNSYNC);
    ee->s = synced ? 1u : 0u;
    ee->z = fmt == STAMP_CLOCK_PTP ? 1u : 0u;
    /* esterror is in microseconds; unsynchronized clocks get a 1 s bound */
    double err = synced && tx.esterror > 0 ? (double)tx.esterror * 1e3 : (synced ? 1e3 : 1e9);
    stamp_ee_from_ns(ee, err);
}

void stamp_clock_refresh(stamp_clockstate_t *cs, stamp_clock_t clock, stamp_ns_t mono, int force)
{
    if (!force && mono - cs->last < STAMP_NS_PER_SEC) return;
    cs->last = mono;
    stamp_ee_t ee;
    stamp_ee_local(&ee, clock);
    cs->ee = stamp_ee_pack(&ee);
    cs->synced = ee.s != 0;
    cs->tai = stamp_tai_offset(); /* also for decoding a PTP peer's timestamps */
    (void)clock;
}
