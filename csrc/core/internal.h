/* internal.h - helpers shared by the core's translation units (not installed). */
#ifndef STAMP_INTERNAL_H
#define STAMP_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "stamp.h"

#if defined(__GNUC__)
#define STAMP_HIDDEN __attribute__((visibility("hidden")))
#else
#define STAMP_HIDDEN
#endif

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* The local clock as both engines describe it, refreshed about once a second. */
typedef struct {
    uint16_t ee;  /* packed Error Estimate */
    int synced;   /* S bit */
    int tai;      /* TAI - UTC seconds */
    stamp_ns_t last;
} stamp_clockstate_t;

STAMP_HIDDEN void stamp_addr_to_mapped(stamp_addr_t *a);
STAMP_HIDDEN int stamp_addr_from_octets(stamp_addr_t *out, const uint8_t *oct, int n, unsigned port, int family);

/* This host's addresses (4 or 16 octets each, lens[i]); returns how many (at most max). */
STAMP_HIDDEN int stamp_local_addrs(uint8_t (*addrs)[16], uint8_t *lens, int max);

STAMP_HIDDEN void stamp_clock_refresh(stamp_clockstate_t *cs, stamp_clock_t clock, stamp_ns_t mono, int force);

/* metrics.c: the processing-time histogram of one reflector worker thread, kept in
 * that worker's engine (single writer: the worker; the metrics render the sum). */
#define STAMP_PROC_BUCKETS 14 /* 13 finite buckets and +Inf, as in metrics.c */
typedef struct {
    _Atomic uint64_t counts[STAMP_PROC_BUCKETS];
    _Atomic int64_t sum_ns;
} stamp_proc_hist_t;
STAMP_HIDDEN void stamp_proc_observe(stamp_proc_hist_t *h, stamp_ns_t ns, unsigned packets);
/* reflector.c: add the worker threads' histograms (not the first engine's) into counts, *sum_ns. */
STAMP_HIDDEN void stamp_reflector_proc_add(const stamp_reflector_t *r, uint64_t *counts, int64_t *sum_ns);
/* metrics.c: an engine is being freed: every metrics object attached to it lets go of it
 * (under the lock the HTTP thread renders with), so no scrape reads freed memory. */
STAMP_HIDDEN void stamp_metrics_forget(const void *engine);

#endif
