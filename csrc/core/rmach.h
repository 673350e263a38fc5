/* rmach.h - what the socket engine needs of the reflector machine beyond stamp.h (not installed). */
#ifndef STAMP_RMACH_H
#define STAMP_RMACH_H

#include <stdatomic.h>

#include "rtable.h"

/* Counters in the order of stamp_reflector_counters_t: one list for both. */
#define RCTR_LIST(X)                                                                                          \
    X(rx) X(reflected) X(short_padded) X(drop_short) X(drop_truncated) X(drop_hmac) X(drop_sessions)          \
    X(drop_tx) X(drop_micro) X(no_reply) X(extra_replies) X(tlv_unknown) X(tlv_malformed) X(tlv_integrity)    \
    X(sessions_active) X(sessions_created) X(sessions_reaped) X(drop_group) X(drop_rate) X(drop_replayed)     \
    X(replayed) X(sessions_evicted) X(extra_refused) X(extra_cancelled) X(drop_unprovisioned) X(extra_limited)

/* What finishing a reply needs: its session, sequence number and key. */
typedef struct {
    int hmac_off;  /* HMAC TLV to sign, -1 none */
    uint32_t sess; /* session index + 1, 0 none */
    uint32_t gen;
    uint32_t seq;  /* the reply's sequence number */
    uint16_t ssid;
    uint8_t txts;  /* ask the kernel's transmit time: 1 a stateful session's reply (Follow-Up; the last of the
                      session in a batch asks), 2 a burst's first reply (always asks) */
    uint8_t fu_patch; /* its Follow-Up Telemetry names a reply of the same batch: that reply's T3 (the same
                         `now`) is written in at finish, before signing */
} rmach_txinfo_t;

/* Build the reply to one datagram into `out` (STAMP_MAX_PKT octets), unstamped and unsigned.
 * Returns 1 with *r (r->buf = out) and *ti filled, 0 when nothing is to be sent. */
STAMP_HIDDEN int rmach_prepare(stamp_rmach_t *m, const uint8_t *pkt, size_t len, const stamp_rxmeta_t *meta,
                               stamp_ns_t mono, uint8_t *out, stamp_reply_t *r, rmach_txinfo_t *ti);
/* Stamp T3 = now and sign, just before the reply leaves. */
STAMP_HIDDEN void rmach_finish(stamp_rmach_t *m, uint8_t *buf, size_t len, const rmach_txinfo_t *ti,
                               stamp_ns_t now);
/* The kernel's transmit time `t` of a reply stamped `t3` (Follow-Up Telemetry). */
STAMP_HIDDEN void rmach_txts(stamp_rmach_t *m, uint32_t sess, uint32_t gen, uint32_t seq, stamp_ns_t t3,
                             stamp_ns_t t);

/* Replies `ti[0..n)`, stamped with a T3 read at monotonic `t3_mono`, were handed to the kernel before
 * monotonic `after`: their bursts count their departure as `after` until the kernel's transmit
 * timestamp says when exactly (the I/O-free machine alone never calls it: its clock is the caller's). */
STAMP_HIDDEN void rmach_sent(stamp_rmach_t *m, const rmach_txinfo_t *ti, int n, stamp_ns_t t3_mono,
                             stamp_ns_t after);
/* stamp_rmach_poll, and the txinfo of each reply (for kernel transmit timestamps); tis may be NULL. */
STAMP_HIDDEN int rmach_poll(stamp_rmach_t *m, stamp_ns_t mono, stamp_ns_t now, stamp_reply_t *out,
                            rmach_txinfo_t *tis, int max);

#endif
