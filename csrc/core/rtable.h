/* rtable.h - the reflector's compact tables (not installed): sessions keyed by
 * addresses as octets, source addresses for rate limits. Open addressing with
 * linear probing over 32-bit indices, backward-shift deletion, and an
 * intrusive least-recently-seen list per table: expiry and eviction take the
 * list's head, so they cost O(1) per session and never scan the table. */
#ifndef STAMP_RTABLE_H
#define STAMP_RTABLE_H

#include <stdint.h>

#include "internal.h"

#define RT_NONE 0xffffffffu

/* index: slot[i] = entry + 1 (0 empty), hash[i] = that entry's hash */
typedef struct {
    uint32_t *slot;
    uint32_t *hash;
    uint32_t mask;
    uint64_t seed; /* secret per table: flooding one probe run needs it */
} rt_index_t;

/* Least-recently-seen list over entries 0..cap-1 (links live in the entries). */
typedef struct {
    uint32_t head, tail; /* RT_NONE when empty */
} rt_lru_t;

/* One session: 128 octets. Addresses are IPv6 or IPv4-mapped octets. */
typedef struct {
    uint8_t src[16], dst[16];
    uint16_t sport, dport, ssid;
    uint8_t has_last, has_replay;
    uint8_t has_sender_seq;
    uint8_t last_pending; /* the previous reply is built but not yet stamped (same batch) */
    uint8_t pad_[2];
    uint32_t next_seq;    /* stateful: the reflector's own sequence number */
    uint32_t rx, tx;      /* Direct Measurement counters */
    uint32_t last_seq;    /* Follow-Up Telemetry: the previous reply */
    stamp_ns_t last_tx;
    stamp_ns_t last_seen; /* monotonic */
    uint32_t prev, next;  /* LRU links; `next` also chains free entries */
    uint32_t gen;         /* bumped each time the entry holds a new session (0: free) */
    uint32_t burst;       /* Type 12 burst slot + 1, 0 none */
    uint32_t sender_seq;  /* type 12: the highest Sequence Number seen (RFC 10052 5) */
    uint32_t replay_top;  /* highest authenticated sequence number seen */
    uint64_t replay_bits; /* bit k: replay_top - k seen */
    uint64_t replay_ts;   /* newest authenticated Sender Timestamp (wire value, big-endian order) */
    uint64_t seq_ts;      /* type 12: newest Sender Timestamp seen (wire value), a restart when a newer one comes */
} rt_session_t;

typedef struct {
    rt_session_t *e;
    uint32_t cap, used, hiwater, free_head, gen;
    rt_index_t ix;
    rt_lru_t lru;
} rt_sessions_t;

/* One source address for max_pps (GCRA: theoretical arrival time). */
typedef struct {
    uint8_t addr[16];
    stamp_ns_t tat;
    uint32_t prev, next;
} rt_source_t;

typedef struct {
    rt_source_t *e;
    uint32_t cap, used;
    rt_index_t ix;
    rt_lru_t lru;
} rt_sources_t;

/* The 16 address octets (IPv4 as IPv4-mapped) and the port of a socket address; 0 if it has none. */
STAMP_HIDDEN int rt_addr_key(const stamp_addr_t *a, uint8_t out[16], uint16_t *port);

STAMP_HIDDEN int rt_sessions_init(rt_sessions_t *t, uint32_t cap);
STAMP_HIDDEN void rt_sessions_free(rt_sessions_t *t);
/* Find the session; *created = 1 when a new one was made. When the table is full the entry
 * idle longest is evicted first (*evicted = its index, else RT_NONE). Returns the index. */
STAMP_HIDDEN uint32_t rt_session_get(rt_sessions_t *t, const uint8_t src[16], uint16_t sport, const uint8_t dst[16],
                                     uint16_t dport, uint16_t ssid, stamp_ns_t mono, int *created,
                                     uint32_t *evicted);
/* Session `i` is active at `mono` (e.g. it sends a Type 12 extra reply): not idle, last to be evicted. */
STAMP_HIDDEN void rt_session_touch(rt_sessions_t *t, uint32_t i, stamp_ns_t mono);
/* The session idle longest when it has been idle more than `idle` ns, else RT_NONE. */
STAMP_HIDDEN uint32_t rt_session_oldest_idle(const rt_sessions_t *t, stamp_ns_t mono, stamp_ns_t idle);
STAMP_HIDDEN void rt_session_remove(rt_sessions_t *t, uint32_t i);

STAMP_HIDDEN int rt_sources_init(rt_sources_t *t, uint32_t cap);
STAMP_HIDDEN void rt_sources_free(rt_sources_t *t);
/* GCRA: 1 when a packet from `addr` at `mono` is within the rate, 0 when over it. */
STAMP_HIDDEN int rt_source_admit(rt_sources_t *t, const uint8_t addr[16], stamp_ns_t mono, stamp_ns_t emission,
                                 stamp_ns_t tolerance);

#endif
