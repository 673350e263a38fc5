/*
 * stamp.h - public interface of libstamp, the Lua-free core of `stamp`.
 *
 * Simple Two-Way Active Measurement Protocol (RFC 8762, RFC 8972).
 * Everything here is plain C11 + POSIX; no Lua header is ever included.
 *
 * Conventions:
 *  - functions that can fail return 0 (or a count) on success and a negative
 *    errno-style code on failure (STAMP_E* or -errno);
 *  - every buffer is passed with its length and never read or written past it;
 *  - times are `stamp_ns_t`: signed nanoseconds since 1970-01-01 00:00:00 UTC.
 */
#ifndef STAMP_H
#define STAMP_H

#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

#define STAMP_VERSION "0.1.0"

#if defined(__GNUC__)
#define STAMP_API __attribute__((visibility("default")))
#else
#define STAMP_API
#endif

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

enum {
    STAMP_OK = 0,
    STAMP_ESHORT = -1001,   /* buffer too short for the packet type */
    STAMP_EINVAL = -1002,   /* invalid argument or configuration value */
    STAMP_EAUTH = -1003,    /* HMAC verification failed */
    STAMP_ENOMEM = -1004,   /* out of memory */
    STAMP_EADDR = -1005,    /* address could not be parsed/resolved */
    STAMP_ECRYPTO = -1006,  /* libcrypto failure */
    STAMP_ECLOSED = -1007   /* object already closed */
};

/** Human readable message for a STAMP_E* or -errno code (static string). */
STAMP_API const char *stamp_strerror(int code);

/* ------------------------------------------------------------------ */
/* Time (NTP 64-bit, PTPv2 truncated) and the Error Estimate           */
/* ------------------------------------------------------------------ */

typedef int64_t stamp_ns_t;

#define STAMP_NS_PER_SEC 1000000000LL
#define STAMP_NTP_UNIX_OFFSET 2208988800LL /* seconds 1900 -> 1970 */

typedef enum { STAMP_CLOCK_NTP = 0, STAMP_CLOCK_PTP = 1 } stamp_clock_t;

/** Current time in UTC nanoseconds (CLOCK_REALTIME). */
STAMP_API stamp_ns_t stamp_now(void);
/** Monotonic nanoseconds, for scheduling only. */
STAMP_API stamp_ns_t stamp_mono(void);
/**
 * TAI - UTC offset in seconds as the kernel knows it (CLOCK_TAI - CLOCK_REALTIME,
 * rounded). It is 0 where no one set the kernel's TAI offset (then PTP
 * timestamps carry UTC seconds).
 */
STAMP_API int stamp_tai_offset(void);

/**
 * Encode a UTC time as an 8-octet wire timestamp.
 * NTP: seconds since 1900 (mod 2^32) and a 2^-32 fraction.
 * PTP: the low 32 bits of TAI seconds since 1970 and nanoseconds;
 * `tai_offset` is added to UTC seconds for PTP.
 */
STAMP_API void stamp_ts_encode(uint8_t out[8], stamp_ns_t t, stamp_clock_t fmt, int tai_offset);
/**
 * Decode an 8-octet wire timestamp to UTC nanoseconds. NTP eras are unfolded
 * (values with the top bit clear are taken as era 1, after 2036). For PTP,
 * `tai_offset` seconds are subtracted. Returns STAMP_EINVAL for a PTP
 * nanoseconds field >= 10^9 (and still stores the best value).
 */
STAMP_API int stamp_ts_decode(const uint8_t in[8], stamp_clock_t fmt, int tai_offset, stamp_ns_t *t);

/** Error Estimate (RFC 4656 4.1.2, Z from RFC 8186). */
typedef struct {
    unsigned s;     /* 1: clock synchronized to UTC by an external source */
    unsigned z;     /* 0: NTP format, 1: PTP format */
    unsigned scale; /* 6 bits */
    unsigned mult;  /* 8 bits, never 0 on the wire */
} stamp_ee_t;

STAMP_API uint16_t stamp_ee_pack(const stamp_ee_t *ee);
STAMP_API void stamp_ee_unpack(uint16_t v, stamp_ee_t *ee);
/** Error in nanoseconds that an Error Estimate stands for (mult * 2^(scale-32) s). */
STAMP_API double stamp_ee_ns(const stamp_ee_t *ee);
/** Smallest Error Estimate that covers `err_ns` (multiplier never 0). */
STAMP_API void stamp_ee_from_ns(stamp_ee_t *ee, double err_ns);
/**
 * This host's Error Estimate: S from the kernel's synchronization status
 * (adjtimex), Scale/Multiplier from its estimated error, Z per `fmt`.
 */
STAMP_API void stamp_ee_local(stamp_ee_t *ee, stamp_clock_t fmt);

/* ------------------------------------------------------------------ */
/* Wire codecs: the four RFC 8762 base packets with the RFC 8972 SSID  */
/* ------------------------------------------------------------------ */

#define STAMP_BASE_LEN 44       /* unauthenticated base, both directions */
#define STAMP_AUTH_BASE_LEN 112 /* authenticated base, both directions */
#define STAMP_HMAC_LEN 16
#define STAMP_HMAC_COVERED 96   /* octets 0..95 are authenticated */
#define STAMP_TWAMP_LIGHT_MIN 14
#define STAMP_LIGHT_REPLY_MIN 36 /* shortest reply the sender accepts in open mode: through the Sender Timestamp */
#define STAMP_MAX_PKT 9216      /* largest datagram handled (jumbo) */

typedef enum { STAMP_MODE_OPEN = 0, STAMP_MODE_AUTH = 1 } stamp_mode_t;

/** Session-Sender test packet. */
typedef struct {
    uint32_t seq;
    uint8_t ts[8]; /* wire timestamp, format per ee.z */
    uint16_t ee;   /* packed Error Estimate */
    uint16_t ssid;
    uint8_t hmac[STAMP_HMAC_LEN]; /* authenticated mode only */
} stamp_test_t;

/** Session-Reflector test packet. */
typedef struct {
    uint32_t seq;
    uint8_t ts[8];
    uint16_t ee;
    uint16_t ssid;
    uint8_t rx_ts[8];
    uint32_t sender_seq;
    uint8_t sender_ts[8];
    uint16_t sender_ee;
    uint8_t sender_ttl;
    uint8_t hmac[STAMP_HMAC_LEN];
} stamp_reflected_t;

STAMP_API size_t stamp_base_len(stamp_mode_t mode);

/**
 * Encode into `buf` (`len` octets available). Writes exactly the base length
 * (MBZ zeroed; in authenticated mode the hmac field is copied as given).
 * Returns the number of octets written or STAMP_ESHORT.
 */
STAMP_API int stamp_test_encode(uint8_t *buf, size_t len, stamp_mode_t mode, const stamp_test_t *p);
STAMP_API int stamp_reflected_encode(uint8_t *buf, size_t len, stamp_mode_t mode, const stamp_reflected_t *p);
/** Decode; MBZ ignored. Returns the base length consumed or STAMP_ESHORT. */
STAMP_API int stamp_test_decode(const uint8_t *buf, size_t len, stamp_mode_t mode, stamp_test_t *p);
STAMP_API int stamp_reflected_decode(const uint8_t *buf, size_t len, stamp_mode_t mode, stamp_reflected_t *p);

/* ------------------------------------------------------------------ */
/* HMAC-SHA-256 truncated to 128 bits (libcrypto)                      */
/* ------------------------------------------------------------------ */

#define STAMP_KEY_MAX 256

typedef struct stamp_hmac stamp_hmac_t;

/** Create a keyed HMAC context (key copied; cleansed on free). NULL on failure. */
STAMP_API stamp_hmac_t *stamp_hmac_new(const uint8_t *key, size_t keylen);
STAMP_API void stamp_hmac_free(stamp_hmac_t *h);
/** out = HMAC-SHA-256(key, data)[0..15]; no allocation. */
STAMP_API int stamp_hmac_compute(stamp_hmac_t *h, const uint8_t *data, size_t len, uint8_t out[STAMP_HMAC_LEN]);
/** Same over two pieces (e.g. sequence number then TLVs). */
STAMP_API int stamp_hmac_compute2(stamp_hmac_t *h, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                                  uint8_t out[STAMP_HMAC_LEN]);
/** Constant-time check of a received 16-octet HMAC. Returns 0 when equal, STAMP_EAUTH otherwise. */
STAMP_API int stamp_hmac_verify(stamp_hmac_t *h, const uint8_t *data, size_t len, const uint8_t mac[STAMP_HMAC_LEN]);
/** Sign / verify the base packet in `buf` (octets 0..95, HMAC at 96). */
STAMP_API int stamp_auth_sign(stamp_hmac_t *h, uint8_t *buf, size_t len);
STAMP_API int stamp_auth_verify(stamp_hmac_t *h, const uint8_t *buf, size_t len);
/** Parse a hex key ("0a1B..."), at most STAMP_KEY_MAX octets. Returns key length or STAMP_EINVAL. */
STAMP_API int stamp_hex_decode(const char *hex, uint8_t *out, size_t outlen);

/* ------------------------------------------------------------------ */
/* UDP sockets with control messages                                   */
/* ------------------------------------------------------------------ */

typedef struct {
    struct sockaddr_storage addr;
    socklen_t len;
} stamp_addr_t;

/** Parse a numeric IPv4/IPv6 address (or a host name) and port. */
STAMP_API int stamp_addr_parse(stamp_addr_t *a, const char *host, unsigned port);
/** "192.0.2.1" / "2001:db8::1" (IPv4-mapped IPv6 shown as IPv4); port returned separately. */
STAMP_API int stamp_addr_format(const stamp_addr_t *a, char *host, size_t hostlen, unsigned *port);
STAMP_API int stamp_addr_equal(const stamp_addr_t *a, const stamp_addr_t *b);

/** What the kernel told us about one received datagram. */
typedef struct {
    stamp_addr_t src;     /* peer */
    stamp_addr_t dst;     /* local address it was sent to (IP_PKTINFO), port = bound port */
    int ifindex;          /* arrival interface, 0 if unknown */
    int ttl;              /* IPv4 TTL / IPv6 Hop Limit, -1 if unknown */
    int tos;              /* IPv4 TOS / IPv6 Traffic Class, -1 if unknown */
    stamp_ns_t rx_time;   /* receive time (UTC ns) */
    int rx_kernel;        /* 1 if rx_time came from the kernel */
    int mtu;              /* MTU of the arrival interface (the reply leaves there), 0 if unknown: a Type 12 reply
                             is at most this IP datagram (RFC 10052 3) */
} stamp_rxmeta_t;

typedef struct {
    const char *addr; /* local address to bind, NULL = wildcard of the family */
    unsigned port;    /* local port, 0 = ephemeral */
    int family;       /* AF_INET, AF_INET6 or AF_UNSPEC (from addr; wildcard = dual-stack ::) */
    int ttl;          /* unicast TTL / Hop Limit for sent packets, 1..255 */
    int tos;          /* default TOS / Traffic Class for sent packets, -1 = leave */
    int rcvbuf;       /* SO_RCVBUF, 0 = default */
    int reuseport;    /* SO_REUSEPORT: several sockets share the port (reflector workers) */
} stamp_sock_opts_t;

/**
 * Open a non-blocking UDP socket with TTL/Hop Limit, PKTINFO, TOS/TCLASS and
 * kernel receive timestamps requested. Returns the fd or a negative code.
 */
STAMP_API int stamp_sock_open(const stamp_sock_opts_t *o, stamp_addr_t *bound);
/** The local address/port a socket is bound to. */
STAMP_API int stamp_sock_local(int fd, stamp_addr_t *a);
/** Datagrams the kernel dropped at this socket so far (receive queue full; SO_MEMINFO), 0 if unknown. */
STAMP_API uint64_t stamp_sock_drops(int fd);

/** Batch receive/send buffers, preallocated once. */
#define STAMP_BATCH 32

/**
 * Receive up to `n` datagrams (recvmmsg), non-blocking. `local` is the
 * socket's bound address (as stamp_sock_open returned it). bufs[i] has `cap`
 * octets; lens[i] and meta[i] are filled. Returns the count (0 = nothing
 * ready) or a negative code. Truncated datagrams are reported with
 * lens[i] > cap (and only cap octets stored).
 */
STAMP_API int stamp_sock_recv(int fd, const stamp_addr_t *local, uint8_t *const *bufs, size_t cap, size_t *lens,
                              stamp_rxmeta_t *meta, int n);

/** One datagram to send: destination, optional pinned source, optional TOS. */
typedef struct {
    const uint8_t *buf;
    size_t len;
    const stamp_addr_t *to;
    const stamp_addr_t *from; /* NULL = kernel's choice */
    int ifindex;              /* with `from`: 0 = any */
    int tos;                  /* -1 = socket default */
    int want_txts;            /* ask the kernel for a transmit timestamp (see stamp_sock_txts) */
    int ok;                   /* out: 1 when this datagram was sent */
} stamp_txmsg_t;

/** Send `n` datagrams (sendmmsg). Sets m[i].ok; returns the number sent or a negative code. */
STAMP_API int stamp_sock_send(int fd, stamp_txmsg_t *m, int n);

/**
 * Read kernel transmit timestamps of datagrams sent with want_txts (from the
 * socket's error queue). Each has the number of the timestamped datagram,
 * counting from 0 in sending order. Returns how many were read (0: none).
 */
STAMP_API int stamp_sock_txts(int fd, uint32_t *ids, stamp_ns_t *times, int max);

/** Wait for readability up to timeout_ms (<0: forever). Returns 1 readable, 0 timeout, <0 error/EINTR. */
STAMP_API int stamp_wait_readable(int fd, int timeout_ms);

/* ------------------------------------------------------------------ */
/* TLVs (RFC 8972 4, RFC 9503, RFC 9534, reflected packet control)      */
/* ------------------------------------------------------------------ */

#define STAMP_TLV_HDR 4
#define STAMP_TLV_U 0x80 /* Unrecognized */
#define STAMP_TLV_M 0x40 /* Malformed */
#define STAMP_TLV_I 0x20 /* Integrity check failed */
#define STAMP_TLV_C 0x10 /* Conformant reflected packet (type 12 only) */
#define STAMP_TLV_DROP 0x100 /* reflect(): discard the whole packet */

enum {
    STAMP_TLV_PADDING = 1,
    STAMP_TLV_LOCATION = 2,
    STAMP_TLV_TSINFO = 3,
    STAMP_TLV_COS = 4,
    STAMP_TLV_DM = 5,
    STAMP_TLV_ACCESS = 6,
    STAMP_TLV_FOLLOWUP = 7,
    STAMP_TLV_HMAC = 8,
    STAMP_TLV_DESTNODE = 9,
    STAMP_TLV_RETURNPATH = 10,
    STAMP_TLV_MICRO = 11,
    STAMP_TLV_REFLCTRL = 12
};

/* IANA Timestamping Methods and Synchronization Sources */
enum { STAMP_TSM_HW = 1, STAMP_TSM_SW = 2, STAMP_TSM_CP = 3 };
enum { STAMP_SYNC_NTP = 1, STAMP_SYNC_PTP = 2, STAMP_SYNC_SSU = 3, STAMP_SYNC_GNSS = 4, STAMP_SYNC_LOCAL = 5 };

/** Field kinds for the table-driven codec. */
typedef enum {
    STAMP_F_UINT = 0, /* `width` bits at bit position `bitpos` of the value (big-endian) */
    STAMP_F_TS,       /* 8-octet timestamp at octet bitpos/8 */
    STAMP_F_ADDR,     /* IPv4 (4 octets) or IPv6 (16 octets): the rest of the value */
    STAMP_F_BYTES     /* raw octets: `width` octets, 0 = the rest of the value */
} stamp_field_kind_t;

typedef struct {
    const char *name;
    uint8_t kind;
    uint16_t bitpos;
    uint16_t width;
} stamp_tlv_field_t;

/** Sub-TLV kinds (decoding) */
typedef struct {
    uint8_t type;
    const char *name; /* Lua field name */
    uint8_t kind;     /* STAMP_F_ADDR, STAMP_F_UINT (32-bit) or STAMP_F_BYTES */
    uint8_t width;    /* STAMP_F_ADDR: 4 (IPv4 in the first 4 octets) or 16 */
} stamp_subtlv_def_t;

/**
 * What the reflector knows while it fills TLVs of one packet (inputs), and
 * what the TLV registry decided the reflector must do (outputs). The walk
 * decides; the reflector engine executes every output exactly as stated.
 */
typedef struct {
    const stamp_rxmeta_t *meta;
    stamp_clock_t clock;
    int tai;
    int synced;                 /* local clock synchronized (Error Estimate S) */
    int stateful;               /* the reflector numbers its replies per session (RFC 8762 4) */
    uint32_t sess_rx, sess_tx;  /* per-session counters including this packet and its reply */
    uint32_t prev_seq;          /* the previous reply of this session */
    stamp_ns_t prev_tx;
    int has_prev;
    uint32_t sender_seq;        /* this packet's Sequence Number */
    uint32_t last_sender_seq;   /* the session's reference Sequence Number (the driver sets it to sender_seq when
                                   the packet is not new to the session: a replay, a reordered copy) ... */
    int has_last_sender_seq;    /* ... when there was one (type 12: non-increasing -> one reply, U) */
    size_t max_len;             /* largest reply the egress path carries (UDP payload), 0 = STAMP_MAX_PKT */
    size_t nopad_len;           /* set by stamp_tlv_reflect(): base + TLVs other than Extra Padding */
    const struct stamp_tlv_policy *pol;
    const uint8_t (*local_addrs)[16]; /* this host's addresses (for Destination Node Address) */
    const uint8_t *local_lens;        /* 4 or 16 each */
    int n_local;
    /* outputs */
    int tos;                    /* TOS/Traffic Class for the reply, -1 = default */
    int no_reply;               /* send nothing (Return Path Control Code 0; type 12 Number 0) */
    stamp_addr_t return_to;     /* Return Path: Return Address */
    int has_return_to;
    stamp_addr_t source;        /* source address of the reply (Destination Node Address, "same link"); */
    int has_source;             /*   always of the family of the received packet: it can be pinned */
    int ifindex;                /* Return Path "same link": the reply leaves through this interface, 0 = any */
    unsigned extra_count;       /* type 12: replies beyond the first, each exactly extra_interval apart */
    stamp_ns_t extra_interval;
    size_t want_len;            /* type 12: exact reply length (RFC 10052 3), 0 = unchanged; */
                                /*   the reflector calls stamp_tlv_fit() with it */
    int t12_over;               /* type 12: the request was over a limit of the policy (count, interval, size,
                                   MTU) and is answered once with C (the reflector counts extra_limited) */
} stamp_tlv_ctx_t;

/** One TLV type: everything about it in one place. */
typedef struct {
    uint8_t type;
    const char *name;      /* "Class of Service" */
    const char *key;       /* Lua/JSON key: "cos" */
    uint16_t min_len;      /* valid value lengths: min_len..max_len ... */
    uint16_t max_len;
    uint16_t len_step;     /* ... with (len - min_len) % len_step == 0 (0: any) */
    uint16_t default_len;  /* what the Session-Sender sends */
    const stamp_tlv_field_t *fields; /* NULL-name terminated */
    uint16_t sub_off;      /* sub-TLVs start at this value offset; 0xffff: none */
    const stamp_subtlv_def_t *subs;  /* known sub-TLVs, 0-type terminated */
    int needs_session;     /* reflector keeps per-session state for it */
    /* Reflector: fill the value in place. Returns 0, flags to set (U/M/C), or STAMP_TLV_DROP. */
    int (*reflect)(stamp_tlv_ctx_t *c, uint8_t *v, uint16_t len);
} stamp_tlv_def_t;

/** Reflector TLV policy. */
typedef struct stamp_tlv_policy {
    int process;              /* 1: echo and process (default), 0: ignore = copy them unprocessed */
    int verify_hmac;          /* verify the HMAC TLV (key needed) */
    int cos_refuse;           /* local policy refuses to use DSCP1 for replies (RP = 1) */
    int location_hide;        /* answer Location with zeros (privacy) */
    struct {
        uint8_t addr[16];
        int family;
        int plen;
    } allow_return[16];       /* Return Address allowed only inside these prefixes */
    int n_allow_return;
    int has_member_link;      /* RFC 9534: our member link ID */
    uint16_t member_link;
    unsigned refl_max_count;  /* type 12 caps; 0 count = feature off */
    size_t refl_max_size;
    stamp_ns_t refl_min_interval;
    stamp_ns_t refl_max_interval; /* longest Interval granted for Number > 1 (0 = no bound; the Lua binding and
                                     the command default to 1 s): a burst holds its
                                     slot (Number - 1) x Interval */
    unsigned refl_max_bursts_src; /* type 12 bursts running at once from one source address (all its ports and
                                     sessions), 0 = no bound (the Lua binding and the command default to 16):
                                     one source cannot hold every burst slot; over it one reply with C */
} stamp_tlv_policy_t;

STAMP_API const stamp_tlv_def_t *stamp_tlv_lookup(unsigned type);
STAMP_API const stamp_tlv_def_t *stamp_tlv_by_key(const char *key);
STAMP_API const stamp_tlv_def_t *stamp_tlv_registry(size_t *n);
STAMP_API int stamp_tlv_len_ok(const stamp_tlv_def_t *d, size_t len);

typedef struct {
    uint8_t flags, type;
    uint16_t len;  /* value length */
    size_t off;    /* offset of the TLV header */
} stamp_tlv_t;

/**
 * Walk TLVs in buf[*pos..len). Returns 1 with *t filled and *pos advanced,
 * 0 at the end, -1 when the next TLV's header or value runs past the buffer
 * (*t then holds what could be read; t->len may exceed the rest).
 */
STAMP_API int stamp_tlv_next(const uint8_t *buf, size_t len, size_t *pos, stamp_tlv_t *t);

STAMP_API uint64_t stamp_field_get(const uint8_t *v, size_t vlen, const stamp_tlv_field_t *f);
STAMP_API void stamp_field_set(uint8_t *v, size_t vlen, const stamp_tlv_field_t *f, uint64_t x);

/**
 * Reflector side: process the TLV area of a reply in place (reply[base..len)),
 * per RFC 8972 4: U cleared on what is understood and filled, kept on the
 * rest, M and stop at a malformed TLV, I on all when the HMAC TLV fails.
 * Trust rule (RFC 8972 4.8): in authenticated mode (base == STAMP_AUTH_BASE_LEN)
 * and with pol->verify_hmac, TLVs other than one lone Extra Padding TLV are
 * acted on only when one valid HMAC TLV covers them all (only Extra Padding
 * after it); otherwise every TLV is returned with I set, none acted on, and
 * STAMP_TLV_I is returned (the reflector counts tlv_integrity).
 * Fallback rule: a request that cannot be honoured is answered with its TLV
 * flagged (U, or C for type 12), never by dropping the reply.
 * `hmac` may be NULL. Returns the OR of the flags set, or STAMP_TLV_DROP to
 * discard the packet (Micro-session ID or Address Group not ours).
 */
STAMP_API int stamp_tlv_reflect(stamp_tlv_ctx_t *c, stamp_hmac_t *hmac, uint8_t *pkt, size_t base, size_t len,
                                int *hmac_tlv_off);
/**
 * Type 12 (RFC 10052 3): make the reply in pkt[0..len) exactly `target` octets
 * long (the ctx's want_len): the request's Extra Padding TLVs are dropped, the
 * other TLVs kept in order, and one Extra Padding TLV (zero-filled) is appended
 * for the difference. Where `target` cannot be met exactly (the difference is
 * 1..3 octets, or more than `cap`), the reply keeps the nearest length below it
 * and C is set on the type 12 TLV. `*hmac_tlv_off` follows the HMAC TLV when it
 * moves. A TLV area that does not parse is left as it is. Returns the new length.
 */
STAMP_API size_t stamp_tlv_fit(uint8_t *pkt, size_t cap, size_t base, size_t len, size_t target, int *hmac_tlv_off);
/**
 * Type 12 (RFC 10052 3: each reply built per RFC 8762 4.3): refill, in a copy of a
 * reply about to leave as an extra reply, the fields that belong to each reply:
 * Direct Measurement R_RxC/R_TxC (c->sess_rx, c->sess_tx) and Follow-Up Telemetry
 * (c->prev_seq, c->prev_tx of the reply sent just before; zero when stateless).
 * Only TLVs the walk acted on (no U, M or I; none after an M) are touched.
 * Returns how many TLVs were refilled.
 */
STAMP_API int stamp_tlv_refill(stamp_tlv_ctx_t *c, uint8_t *pkt, size_t base, size_t len);
/** Compute the HMAC TLV whose header is at `off`: over the sequence number (octets 0..3) and the TLVs before it. */
STAMP_API int stamp_tlv_sign(stamp_hmac_t *hmac, uint8_t *pkt, size_t base, size_t off);
/** Check it. Returns 0 when it verifies, STAMP_EAUTH otherwise. */
STAMP_API int stamp_tlv_verify(stamp_hmac_t *hmac, const uint8_t *pkt, size_t base, size_t off);

/* ------------------------------------------------------------------ */
/* Reflector: keys, configuration, counters                            */
/* ------------------------------------------------------------------ */

/** Session admission (RFC 8972 3): every SSID answered (open), or only provisioned sessions. */
typedef enum { STAMP_ADMIT_OPEN = 0, STAMP_ADMIT_PROVISIONED = 1 } stamp_admission_t;

/** One provisioned session: an SSID and, optionally, the Session-Sender's address (peer.len 0: any address;
 * port 0: any port). A packet matching none is dropped (drop_unprovisioned) in provisioned mode. */
typedef struct {
    uint16_t ssid;
    stamp_addr_t peer;
} stamp_provisioned_t;

/** One per-SSID key (octets copied when a key table is built). */
typedef struct {
    uint16_t ssid;
    const uint8_t *key;
    size_t keylen; /* 1..STAMP_KEY_MAX */
} stamp_key_t;

typedef struct {
    stamp_mode_t mode;
    const uint8_t *key; /* default key: authenticated mode, HMAC TLV (NULL: only per-SSID keys) */
    size_t keylen;
    const stamp_key_t *keys; /* per-SSID keys (override the default key for their SSID), copied */
    size_t n_keys;
    stamp_clock_t clock;
    int stateful;
    double session_timeout; /* seconds, idle sessions reaped after it (> 0; values past ~292 years mean never) */
    unsigned max_sessions;  /* 0 = default (65536); when full the session idle longest is evicted */
    int strict_packets;     /* drop packets shorter than the base */
    stamp_sock_opts_t sock; /* socket engine only; the machine ignores it */
    stamp_tlv_policy_t tlv; /* TLV processing (tlv.process = 1 for RFC 8972 behaviour) */
    int batch;              /* datagrams per recvmmsg/sendmmsg, 1..STAMP_BATCH (0 = STAMP_BATCH) */
    /* abuse resistance */
    double max_pps;         /* per source address (all ports): packets/s answered, 0 = unlimited */
    unsigned rate_burst;    /* packets a source may send back to back above max_pps (0 = max(1, max_pps/10)) */
    unsigned rate_sources;  /* source addresses tracked for max_pps, 0 = 65536 (least recently seen evicted) */
    /* replay protection (authenticated mode): a window of the last 64 sequence numbers per session */
    double replay_max_age;  /* seconds: a Sender Timestamp further than this from the receive time is a replay (0 = off) */
    int drop_replayed;      /* 1: replays are counted and not answered; 0: counted and answered */
    unsigned max_bursts;    /* Type 12: bursts in progress at once (one per session), 0 = 1024 */
    int workers;            /* socket engine: 2..64 = that many SO_REUSEPORT sockets, each with its own machine;
                               stamp_reflector_step() drives the first, threads the others (0, 1 = one socket) */
    /* session admission (RFC 8972 3) */
    stamp_admission_t admission;
    const stamp_provisioned_t *sessions; /* provisioned mode: the sessions answered (copied), at most 65536 */
    size_t n_sessions;
    /* Type 12 volume limit across all sessions (RFC 10052 3, 5): a token bucket of reply octets; a burst of
       Number replies of L octets costs Number * L and is granted only when the bucket holds that much (else one
       reply, C, counted extra_limited). With workers each worker has its own bucket. */
    double t12_max_rate;    /* octets/s refilled; 0 = unlimited */
    double t12_max_volume;  /* bucket depth in octets (0 = t12_max_rate / 10, at least one largest reply) */
} stamp_reflector_cfg_t;

/**
 * Reflector counters. Every datagram received ends in exactly one of
 * reflected, no_reply or drop_*. The engine updates them with relaxed C11
 * atomic stores (one writer, no lock, no read-modify-write on the packet
 * path); stamp_reflector_counters() / stamp_rmach_counters() read them with
 * relaxed atomic loads, so another thread (a metrics server) may call them at
 * any time while packets flow. Each value is exact; a snapshot of several is
 * not taken at one instant.
 */
typedef struct {
    uint64_t rx;              /* datagrams received */
    uint64_t reflected;       /* replies sent */
    uint64_t short_padded;    /* shorter than the base, answered zero-filled (TWAMP-Light) */
    uint64_t drop_short;      /* too short to answer */
    uint64_t drop_truncated;  /* larger than STAMP_MAX_PKT */
    uint64_t drop_hmac;       /* base HMAC verification failed (or no key for the SSID) */
    uint64_t drop_sessions;   /* stateful: no session could be made (kept for compatibility: eviction makes room) */
    uint64_t drop_tx;         /* the reply could not be sent */
    uint64_t drop_micro;      /* RFC 9534: Reflector Micro-session ID is not ours */
    uint64_t no_reply;        /* RFC 9503: the Return Path asked for no reply */
    uint64_t extra_replies;   /* type 12: replies beyond the first, sent */
    uint64_t tlv_unknown;     /* packets with a TLV left with U set */
    uint64_t tlv_malformed;   /* packets with a TLV marked M */
    uint64_t tlv_integrity;   /* packets whose HMAC TLV failed (I set) */
    uint64_t sessions_active;
    uint64_t sessions_created;
    uint64_t sessions_reaped;  /* idle longer than session_timeout */
    uint64_t drop_group;       /* type 12: Layer-3 Address Group that does not include us */
    uint64_t drop_rate;        /* over max_pps for its source address */
    uint64_t drop_replayed;    /* replays not answered (drop_replayed set) */
    uint64_t replayed;         /* authenticated packets seen as replays (answered or not) */
    uint64_t sessions_evicted; /* max_sessions reached: the session idle longest made room */
    uint64_t extra_refused;    /* type 12: bursts not started for want of a burst slot (answered once, C) */
    uint64_t extra_cancelled;  /* type 12: extra replies not sent (session gone, or a newer burst replaced it) */
    uint64_t drop_unprovisioned; /* provisioned admission: no provisioned session matches (SSID, address, port) */
    uint64_t extra_limited;    /* type 12: bursts over the volume limit (t12_max_rate), answered once with C */
    uint64_t drop_kernel;      /* datagrams the kernel dropped at the socket(s), receive queue full (SO_MEMINFO;
                                  filled by the socket engine, 0 from the I/O-free machine) */
} stamp_reflector_counters_t;

/* ------------------------------------------------------------------ */
/* Reflector machine: the protocol without I/O                         */
/* ------------------------------------------------------------------ */

/*
 * The Session-Reflector as a state machine that owns no socket and reads no
 * clock for its decisions: whoever owns the socket (the socket engine below,
 * a luv/cqueues/OpenResty host, a C program) passes each received datagram
 * with its metadata and the current times, and sends what comes out.
 * Times: `mono` is any monotonic clock in nanoseconds (sessions, rate limits,
 * Type 12 schedules), `now` is UTC nanoseconds written as the reply's
 * transmit timestamp (T3); the receive timestamp (T2) is meta->rx_time.
 * The machine still reads the local clock's Error Estimate and TAI offset and
 * the host's address list (for Destination Node Address) about once a second
 * of `mono`, from stamp_rmach_tick().
 * Not thread-safe except stamp_rmach_counters(): one thread drives a machine.
 */

/** One reply to send. */
typedef struct {
    const uint8_t *buf;  /* the octets; valid until the next call on the machine */
    size_t len;
    stamp_addr_t to;     /* destination (family of the receiving socket) */
    stamp_addr_t from;   /* source to pin (from.len == 0: the kernel's choice) */
    int ifindex;         /* interface to pin with `from`, 0 = any */
    int tos;             /* TOS / Traffic Class, -1 = the socket's default */
    stamp_ns_t due;      /* monotonic time it is due (first reply: the input's mono) */
    int extra;           /* 1 for a Type 12 extra reply */
} stamp_reply_t;

typedef struct stamp_rmach stamp_rmach_t;

/** Create a machine (cfg->sock is ignored). Returns 0 or STAMP_EINVAL / STAMP_ENOMEM / STAMP_ECRYPTO. */
STAMP_API int stamp_rmach_new(const stamp_reflector_cfg_t *cfg, stamp_rmach_t **out);
STAMP_API void stamp_rmach_free(stamp_rmach_t *m);
/**
 * Process one received datagram (`len` octets; len > STAMP_MAX_PKT counts as
 * truncated). meta->src is the peer, meta->dst the local address it was sent
 * to (len 0 if unknown), ifindex/ttl/tos/rx_time as the socket reported.
 * Returns 1 with *out filled (T3 = now), or 0 when nothing is to be sent now.
 * Type 12 extra replies are queued: see stamp_rmach_next_due / stamp_rmach_poll.
 */
STAMP_API int stamp_rmach_input(stamp_rmach_t *m, const uint8_t *pkt, size_t len, const stamp_rxmeta_t *meta,
                                stamp_ns_t mono, stamp_ns_t now, stamp_reply_t *out);
/** Monotonic time of the next queued extra reply, or INT64_MAX when none is queued. */
STAMP_API stamp_ns_t stamp_rmach_next_due(const stamp_rmach_t *m);
/**
 * Up to `max` extra replies due at `mono` (their T3 = now), in due order.
 * Each burst keeps its schedule: the k-th extra reply is due at start + k * interval.
 * Returns the count. out[i].buf stay valid until the next call on the machine.
 */
STAMP_API int stamp_rmach_poll(stamp_rmach_t *m, stamp_ns_t mono, stamp_ns_t now, stamp_reply_t *out, int max);
/** Housekeeping (about once a second of `mono` it refreshes clock and addresses; expiry is incremental). */
STAMP_API void stamp_rmach_tick(stamp_rmach_t *m, stamp_ns_t mono);
/** A host could not send `n` replies it got (extra: Type 12 extra replies): moves them to drop_tx. */
STAMP_API void stamp_rmach_tx_failed(stamp_rmach_t *m, unsigned n, int extra);
/** Counters: safe from any thread at any time (relaxed atomic loads). */
STAMP_API void stamp_rmach_counters(const stamp_rmach_t *m, stamp_reflector_counters_t *c);
/**
 * Replace the key table: the default key (NULL: none) and per-SSID keys.
 * The new table is built first; on failure the old one stays and a negative
 * code is returned. The switch is one atomic pointer store: it may be called
 * from another thread than the one driving the machine (the table it
 * replaces is freed at a later call, or with the machine, never while a
 * packet may still use it).
 * Authenticated-mode packets whose SSID has no key are dropped as drop_hmac.
 */
STAMP_API int stamp_rmach_set_keys(stamp_rmach_t *m, const uint8_t *def, size_t deflen, const stamp_key_t *keys,
                                   size_t n);
/** Change max_pps / rate_burst while running (any thread; each value is switched atomically); 0 = unlimited. */
STAMP_API int stamp_rmach_set_rate(stamp_rmach_t *m, double max_pps, unsigned rate_burst);
/**
 * Replace the session admission (e.g. on SIGHUP): the mode and, for STAMP_ADMIT_PROVISIONED, the sessions
 * answered. Built first (on failure the old table stays, a negative code is returned), switched with one atomic
 * pointer store like stamp_rmach_set_keys (any thread).
 */
STAMP_API int stamp_rmach_set_admission(stamp_rmach_t *m, stamp_admission_t mode, const stamp_provisioned_t *s,
                                        size_t n);
/** Change the Type 12 volume limit (t12_max_rate, t12_max_volume) while running (any thread); 0 = unlimited. */
STAMP_API int stamp_rmach_set_t12_limit(stamp_rmach_t *m, double max_rate, double max_volume);
/**
 * Replace the TLV policy (e.g. on SIGHUP): TLV processing, HMAC TLV verification, CoS refusal, Location
 * hiding, member link, Return Address prefixes and the Type 12 caps (count, size, intervals). The policy is
 * copied; the switch is one atomic pointer store like stamp_rmach_set_keys (any thread; each packet reads
 * the policy once; the one replaced is freed at a later call, or with the machine, never while a packet
 * may still use it). Type 12 bursts already running go on unless the new policy forbids them (their
 * Number, Interval or length over the new caps, Type 12 or TLV processing off, a Return Address no longer
 * allowed): those are cancelled before their next reply, counted extra_cancelled.
 * Returns 0, STAMP_ENOMEM, or STAMP_EINVAL for a policy out of range or one this machine cannot take:
 * Type 12 on (refl_max_count > 0) in a machine created with it off (no burst table); the old policy stays.
 */
STAMP_API int stamp_rmach_set_tlv_policy(stamp_rmach_t *m, const stamp_tlv_policy_t *p);

/* ------------------------------------------------------------------ */
/* Reflector engine: the machine over a socket                         */
/* ------------------------------------------------------------------ */

/*
 * The socket driver: recvmmsg/sendmmsg batches, kernel receive timestamps
 * (T2, SO_TIMESTAMPNS), PKTINFO/TTL/TOS control messages, kernel transmit
 * timestamps for Follow-Up Telemetry (SO_TIMESTAMPING), T3 taken just before
 * each batch leaves, Type 12 extra replies sent when due.
 */
typedef struct stamp_reflector stamp_reflector_t;

STAMP_API int stamp_reflector_new(const stamp_reflector_cfg_t *cfg, stamp_reflector_t **out);
STAMP_API void stamp_reflector_free(stamp_reflector_t *r);
STAMP_API int stamp_reflector_fd(const stamp_reflector_t *r);
STAMP_API int stamp_reflector_local(const stamp_reflector_t *r, stamp_addr_t *a);
/**
 * Wait up to timeout_ms (0: do not wait, <0: forever) for packets, then
 * process everything that is ready. Returns the number of datagrams handled
 * or a negative code (-EINTR when a signal interrupted the wait).
 */
STAMP_API int stamp_reflector_step(stamp_reflector_t *r, int timeout_ms);
/**
 * Wait up to timeout_ms (<0 or over 1000: 1000) until a packet is readable (returns 1) or a queued
 * Type 12 extra reply is due (returns 0): ppoll to the nanosecond (the engine's thread has timer
 * slack 1 ns), the last microseconds spun. stamp_reflector_step() waits with it; hosts that
 * do other work between steps (metrics) call it, then step with 0.
 */
STAMP_API int stamp_reflector_wait(stamp_reflector_t *r, int timeout_ms);
/**
 * Counters: safe from any thread at any time while another thread steps (relaxed atomic loads).
 * With workers, the sum over all of them (sessions_active too: each worker has its own table).
 */
STAMP_API void stamp_reflector_counters(const stamp_reflector_t *r, stamp_reflector_counters_t *c);
/** The engine's (first worker's) machine (to set keys or rates, or read counters). Owned by the engine. */
STAMP_API stamp_rmach_t *stamp_reflector_machine(stamp_reflector_t *r);
/** Same as stamp_rmach_set_keys on the engine's machines (every worker's); e.g. on SIGHUP. */
STAMP_API int stamp_reflector_set_keys(stamp_reflector_t *r, const uint8_t *def, size_t deflen,
                                       const stamp_key_t *keys, size_t n);
/** Same as stamp_rmach_set_rate on the engine's machines (with workers the limit applies per worker). */
STAMP_API int stamp_reflector_set_rate(stamp_reflector_t *r, double max_pps, unsigned rate_burst);
/** Same as stamp_rmach_set_admission on the engine's machines (every worker's). */
STAMP_API int stamp_reflector_set_admission(stamp_reflector_t *r, stamp_admission_t mode,
                                            const stamp_provisioned_t *s, size_t n);
/** Same as stamp_rmach_set_t12_limit on the engine's machines (each worker has its own bucket). */
STAMP_API int stamp_reflector_set_t12_limit(stamp_reflector_t *r, double max_rate, double max_volume);
/** Same as stamp_rmach_set_tlv_policy on the engine's machines (every worker's). */
STAMP_API int stamp_reflector_set_tlv_policy(stamp_reflector_t *r, const stamp_tlv_policy_t *p);
/**
 * Forget the cached interface MTUs (read again at the next packet of each interface; e.g. on SIGHUP). The
 * engine reads the MTU of each arrival interface (SIOCGIFMTU) at most every few seconds.
 */
STAMP_API void stamp_reflector_refresh(stamp_reflector_t *r);

/* ------------------------------------------------------------------ */
/* Sender engine                                                       */
/* ------------------------------------------------------------------ */

typedef struct {
    const char *remote_addr;
    unsigned remote_port;
    stamp_sock_opts_t sock;
    uint64_t count;        /* packets to send, 0 = until stopped */
    stamp_ns_t interval;   /* between packets */
    stamp_ns_t timeout;    /* a reply later than this after sending is lost */
    uint16_t ssid;
    int drop_ssid_zero;    /* RFC 8972 3: with an SSID, 1 drops replies carrying SSID 0 (drop_invalid); 0 accepts them */
    stamp_mode_t mode;
    const uint8_t *key;
    size_t keylen;
    stamp_clock_t clock;
    size_t packet_len;     /* total test packet length, >= base + tlvs_len; extra octets zero */
    const uint8_t *tlvs;   /* TLVs to send after the base packet (flags as given, normally U) */
    size_t tlvs_len;
    int poisson;           /* 1: exponential gaps with mean `interval` (RFC 2330 Poisson sampling) */
    uint64_t seed;         /* for the Poisson schedule, 0 = from the clock */
    stamp_ns_t duration;   /* > 0: send only packets scheduled less than this after the first one (with count: both limits) */
    /* RFC 8972 4.6: with an Access Report TLV in `tlvs`, it goes in the first packet only and a timer
     * is armed; a reply echoing its Access ID and Return Code disarms it; on expiry the next packet
     * carries it again, at most access_retries times. Packets without it carry an Extra Padding TLV
     * of the same size in its place. */
    stamp_ns_t access_timeout; /* 0 = 3 s */
    int access_retries;        /* retransmissions before giving up; < 0 = 4 */
} stamp_sender_cfg_t;

/* How a packet ended: answered, no reply within the timeout, or still outstanding when the
 * run was aborted (stop now) - every packet ends exactly once in one of them. */
enum { STAMP_RES_OK = 0, STAMP_RES_LOST = 1, STAMP_RES_ABORTED = 2,
       STAMP_RES_NO_REPLY = 3 /* no reply in time to a packet that asked for none (Return Path Control Code 0,
                                 RFC 9503 4.1.1; type 12 Number 0, RFC 10052 3): neither received nor lost */ };

/** One per-packet result. */
typedef struct {
    int status;           /* STAMP_RES_OK, STAMP_RES_LOST or STAMP_RES_ABORTED */
    uint32_t seq;         /* sender sequence number */
    uint32_t refl_seq;    /* reflector's sequence number */
    uint16_t ssid;
    stamp_ns_t t1, t2, t3, t4; /* send, reflector receive, reflector send, receive (UTC ns) */
    stamp_ns_t rtt;       /* (t4 - t1) - (t3 - t2) */
    stamp_ns_t fwd, bwd;  /* t2 - t1, t4 - t3 (meaningful with synchronized clocks) */
    stamp_ee_t sender_ee, refl_ee;
    int sender_ttl;       /* Ses-Sender TTL reported by the reflector, -1 unknown (a short TWAMP-Light reply) */
    int reply_ttl;        /* TTL/Hop Limit of the reply as received, -1 unknown */
    int reply_tos;        /* TOS/Traffic Class of the reply as received, -1 unknown */
    int rx_kernel;        /* t4 is a kernel timestamp */
    int tlv_hmac;         /* reply's HMAC TLV: 1 verified, 0 failed, -1 absent or no key */
    const uint8_t *pkt;   /* the reply, valid until the next step (machine: the caller's buffer) */
    size_t pkt_len;
    int tlv_count;        /* TLVs in the reply */
    int clock_error;      /* 1: T4 before T1 or a negative RTT (a clock step): received, but no delay is usable */
    int tlv_usable;       /* how many of them, from the first, the sender may use (RFC 8972 4, 4.8): none when
                             one is marked I or the reply's HMAC TLV is missing or fails where one is due;
                             none from the first marked M on; none after the HMAC TLV */
    int t1_kernel;        /* 1: t1 (and rtt, fwd) use the kernel's transmit timestamp, 0: the user-space time */
    stamp_ns_t t1_user;   /* the user-space send time (also the packet's Timestamp field, sent before the kernel's) */
    uint64_t rx_replies;  /* replies received so far, this one and type 12 extra replies included */
} stamp_result_t;

typedef struct {
    uint64_t sent;
    uint64_t received;   /* distinct replies matched in time */
    uint64_t lost;
    uint64_t duplicates;
    uint64_t late;       /* replies after their packet was declared lost */
    uint64_t drop_hmac;
    uint64_t drop_invalid; /* too short, unknown sequence, Sender Timestamp / Error Estimate not echoed, foreign source, SSID mismatch */
    uint64_t tx_errors;
    uint64_t aborted;    /* outstanding when the run was stopped at once (neither lost nor received) */
    uint64_t extra_replies; /* RFC 10052: the further replies of a granted type 12 burst (not duplicates) */
    uint64_t clock_errors; /* received with T4 before T1 or a negative RTT (in received too) */
    uint64_t t1_kernel;  /* received results whose T1 is the kernel's transmit timestamp */
    uint64_t t1_user;    /* received results whose T1 is the user-space time (no kernel timestamp in time) */
    uint64_t extra_missing; /* RFC 10052: further replies of granted bursts not seen in time (or abandoned at an abort) */
    uint64_t access_sent;        /* RFC 8972 4.6: test packets that carried the Access Report TLV */
    uint64_t access_retransmits; /* ... of them sent again because the timer expired */
    uint64_t access_acked;       /* 1 once a reply echoed its Access ID and Return Code */
    uint64_t access_failed;      /* 1 when it was given up: no echo after access_retries retransmissions */
    uint64_t rx_overflow; /* datagrams the kernel dropped at our socket, its receive queue full (SO_MEMINFO
                             SK_MEMINFO_DROPS; filled by the socket driver, 0 from the I/O-free machine) */
    uint64_t extra_unsupported; /* RFC 10052 / RFC 8972 4: replies whose (usable) type 12 TLV came back with U:
                                   the reflector does not support it, no burst follows */
    uint64_t no_reply;   /* packets that asked for no reply and got none in time (not in lost) */
} stamp_sender_counters_t;

/* After a stall the schedule never shifts: of the grid points that fell due, the newest
 * STAMP_SM_BURST, or those of the last STAMP_SM_CATCHUP_NS of the schedule when that is more, are
 * sent at once; older ones are skipped. (A 100,000 packets/s sender preempted for 2 ms catches up
 * its 200 packets and keeps its rate; one stopped for a second does not send 100,000 at once.) */
#define STAMP_SM_BURST 64
#define STAMP_SM_CATCHUP_NS 10000000LL

/* ---- the I/O-free sender machine ----
 * The protocol without sockets or clocks of its own: the caller owns the
 * socket and gives it the monotonic time (`now`, any ns clock that only moves
 * forward, e.g. stamp_mono()), the send time T1 (UTC ns) and each received
 * datagram. Typical loop:
 *
 *     stamp_sm_new(&cfg, &m);            // cfg.remote_addr and cfg.sock unused
 *     while (!stamp_sm_done(m)) {
 *         now = stamp_mono();
 *         while ((len = stamp_sm_build(m, now, stamp_now(), buf, sizeof buf, &seq)) > 0)
 *             send(fd, buf, len, 0);     // on failure: stamp_sm_tx_error(m)
 *         wait for the socket until stamp_sm_next_deadline(m);
 *         for each datagram: if (stamp_sm_reply(m, pkt, n, &meta, &r) == 1) use(r);
 *         k = stamp_sm_expire(m, stamp_mono(), res, 64);   // lost / aborted records
 *     }
 *
 * Every packet built ends exactly once: in a result of stamp_sm_reply
 * (STAMP_RES_OK) or of stamp_sm_expire (STAMP_RES_LOST, STAMP_RES_ABORTED).
 * No allocation per packet (the ring of outstanding packets doubles when more
 * are in flight than it holds; its size is bounded by rate x timeout). */
typedef struct stamp_sm stamp_sm_t;

/** New machine from a sender configuration (remote_addr, remote_port and sock are not used; the key and TLVs are copied). */
STAMP_API int stamp_sm_new(const stamp_sender_cfg_t *cfg, stamp_sm_t **out);
STAMP_API void stamp_sm_free(stamp_sm_t *m);
/** Replies whose meta->src is set must come from `peer` (NULL: no check, e.g. a connected socket). */
STAMP_API void stamp_sm_set_peer(stamp_sm_t *m, const stamp_addr_t *peer);
/** Length of every test packet this machine builds. */
STAMP_API size_t stamp_sm_packet_len(const stamp_sm_t *m);
/** 1 when a packet is due at monotonic time `now` (the first one is due at once). */
STAMP_API int stamp_sm_due(const stamp_sm_t *m, stamp_ns_t now);
/**
 * Build the due packet into buf (cap octets) with send timestamp t1 (UTC ns):
 * returns its length, 0 when nothing is due, STAMP_ESHORT when cap is too small.
 * The schedule is absolute: deadlines anchored at the first packet, each the
 * previous one plus the interval (or an exponential gap with that mean).
 */
STAMP_API int stamp_sm_build(stamp_sm_t *m, stamp_ns_t now, stamp_ns_t t1, uint8_t *buf, size_t cap, uint32_t *seq);
/** The driver could not send the packet it built (counted in tx_errors; it is still awaited). */
STAMP_API void stamp_sm_tx_error(stamp_sm_t *m);
/**
 * The kernel's transmit time (UTC ns, e.g. from SO_TIMESTAMPING) of the packet with Sequence Number
 * `seq`. If it arrives before the reply is processed, T1 of the result (rtt, fwd) is this time
 * (t1_kernel = 1); otherwise the user-space time given to stamp_sm_build stays. The packet's
 * Timestamp field is always the user-space time (it was sent before this one existed).
 * Returns 1 when used, 0 when not (unknown or already answered packet, or a time before the
 * user-space one, e.g. a clock step).
 */
STAMP_API int stamp_sm_tx_time(stamp_sm_t *m, uint32_t seq, stamp_ns_t t1);
/**
 * One received datagram: returns 1 with *res filled (res->pkt = buf), or 0
 * when it was counted as a drop (drop_invalid, drop_hmac, duplicates, late).
 * meta may be NULL (t4 = now, TTL/TOS unknown); meta->src with family
 * AF_UNSPEC skips the peer check.
 */
STAMP_API int stamp_sm_reply(stamp_sm_t *m, const uint8_t *buf, size_t len, const stamp_rxmeta_t *meta,
                             stamp_result_t *res);
/** Report up to max packets whose timeout passed at `now` (LOST), or all outstanding ones after an abort (ABORTED). */
STAMP_API int stamp_sm_expire(stamp_sm_t *m, stamp_ns_t now, stamp_result_t *res, int max);
/**
 * Monotonic time of the next event: a send or the oldest packet's timeout.
 * INT64_MIN: act now (first packet, aborted packets to report); INT64_MAX: nothing (done).
 */
STAMP_API stamp_ns_t stamp_sm_next_deadline(const stamp_sm_t *m);
/** Stop sending (outstanding packets are awaited up to their timeout); now = 1: abort, they are reported as aborted. */
STAMP_API void stamp_sm_stop(stamp_sm_t *m, int now);
/** 0 running, 1 stopped (draining), 2 aborted. */
STAMP_API int stamp_sm_stopped(const stamp_sm_t *m);
/** 1 when every packet was sent and every one ended (answered, lost or aborted). */
STAMP_API int stamp_sm_done(const stamp_sm_t *m);
/** Packets sent and not yet answered, lost or aborted. */
STAMP_API uint64_t stamp_sm_outstanding(const stamp_sm_t *m);
STAMP_API void stamp_sm_counters(const stamp_sm_t *m, stamp_sender_counters_t *c);

/* ---- the socket engine: a thin driver over the machine ---- */
typedef struct stamp_sender stamp_sender_t;

STAMP_API int stamp_sender_new(const stamp_sender_cfg_t *cfg, stamp_sender_t **out);
STAMP_API void stamp_sender_free(stamp_sender_t *s);
STAMP_API int stamp_sender_fd(const stamp_sender_t *s);
STAMP_API int stamp_sender_local(const stamp_sender_t *s, stamp_addr_t *a);
/**
 * Send what is due, and keep sending on schedule (absolute monotonic
 * deadlines, ns waits) while waiting up to timeout_ms (<0: until a result or
 * about 100 ms) for replies; returns as soon as there are results: up to
 * `max` of them. Returns the number of results or a negative code (-EINTR
 * when a signal interrupted the wait).
 */
STAMP_API int stamp_sender_step(stamp_sender_t *s, int timeout_ms, stamp_result_t *res, int max);
/** 1 when every packet was sent and every one was answered or declared lost. */
/* A consumer of final results (stamp_sender_pump); `r` and what it points to are valid during the call. */
typedef void (*stamp_result_fn)(void *ud, const stamp_result_t *r);
/* Run the sender for up to `timeout_ms` (negative: about 100 ms), handing every final result to `each`
 * as soon as it is known, without returning per packet: the way to run at high rates when the caller
 * needs no per-packet work of its own. Returns early when the sender is done, when a signal interrupts
 * a wait, or when `*watch` (optional: e.g. a count a signal handler bumps) differs from its value at
 * entry, which is checked at every turn of the loop. Returns the number of results handed, or a
 * negative error code (nothing handed). */
STAMP_API int stamp_sender_pump(stamp_sender_t *s, int timeout_ms, stamp_result_fn each, void *ud,
                                const volatile sig_atomic_t *watch);
STAMP_API int stamp_sender_done(const stamp_sender_t *s);
/** Milliseconds until the sender next needs a step (0 = now). */
STAMP_API int stamp_sender_next_timeout(const stamp_sender_t *s);
/** Stop sending; outstanding packets are still awaited until their timeout. */
STAMP_API void stamp_sender_stop(stamp_sender_t *s);
/** Stop at once: the next step reports outstanding packets as STAMP_RES_ABORTED. */
STAMP_API void stamp_sender_abort(stamp_sender_t *s);
/** The engine's machine (for its counters and state; owned by the engine). */
STAMP_API stamp_sm_t *stamp_sender_machine(stamp_sender_t *s);
STAMP_API void stamp_sender_counters(const stamp_sender_t *s, stamp_sender_counters_t *c);

/* ------------------------------------------------------------------ */
/* Statistics: a Lua-free accumulator of per-packet results           */
/* ------------------------------------------------------------------ */
/*
 * What lua/stamp/stats.lua's accumulator (`Acc:add`) computes, without a
 * Lua table per packet: exact running moments of rtt/fwd/bwd and of their
 * IPDV (pairs among the last STAMP_STATS_IPDV_WINDOW sequence numbers),
 * the exact sample of the first STAMP_STATS_SAMPLE_MAX received packets
 * (sequence number and delays rounded to float32, as the Lua packed sample)
 * then log-bucketed histograms (bucket k holds magnitudes in
 * (GAMMA^(k-1), GAMMA^k], GAMMA = 1.005/0.995), loss episodes, RFC 4737
 * reordering (STAMP_STATS_REORDER_WINDOW), one-way delay validity, error
 * bound, stateful-reflector detection, clock errors, T1 sources, refused
 * type 12 bursts and the last record for the loss direction. All storage is
 * allocated by stamp_stats_new (about 3 MB, mostly untouched until used);
 * nothing per packet. The switch from the sample to the histograms is spread
 * over the following adds (STAMP_STATS_CONVERT_STEP sample records each) and
 * finished by stamp_stats_figures. Not thread-safe (one accumulator per sender).
 */
#define STAMP_STATS_SAMPLE_MAX 65536
#define STAMP_STATS_IPDV_WINDOW 4096
#define STAMP_STATS_REORDER_WINDOW 65536
#define STAMP_STATS_HIST_K 4480 /* buckets per sign: |v| < 2^64 ns */
#define STAMP_STATS_CONVERT_STEP 64

typedef struct stamp_stats stamp_stats_t;

/** Running moments (the Lua `mom`): n, mean and m2 (Welford), min, max, sum of |v| (exact). */
typedef struct {
    uint64_t n;
    double mean, m2;
    int64_t min, max; /* meaningless while n == 0 */
    int64_t sabs;
} stamp_moments_t;

/* Distributions, in the order of the Lua keys rtt, fwd, bwd, irtt, ifwd, ibwd. */
enum { STAMP_STATS_RTT, STAMP_STATS_FWD, STAMP_STATS_BWD, STAMP_STATS_IRTT, STAMP_STATS_IFWD, STAMP_STATS_IBWD,
       STAMP_STATS_NDIST };

/** Everything but the distributions' values (see stamp_stats_figures). */
typedef struct {
    uint64_t received, lost, clock_errors, extra_refused, t1_kernel, t1_user;
    stamp_moments_t dist[STAMP_STATS_NDIST];
    int owd_valid;          /* 1 until a packet's one-way delays are unusable ... */
    const char *owd_reason; /* ... the first reason: "no error estimate", "unsynchronized clock", "negative delay" */
    double err_bound;       /* largest sum of the two Error Estimates (ns) */
    int stateful;           /* given, or a reply whose reflector number differs from the sender's */
    uint64_t episodes, longest, burst_total; /* closed loss episodes */
    int in_run;             /* the run of lost numbers being built: run_first..run_last */
    int64_t run_first, run_last;
    uint64_t reordered;
    stamp_moments_t ext;    /* reordering extents */
    int has_last;           /* the received packet with the highest sequence number: */
    uint32_t last_seq, last_refl_seq;
    uint64_t last_rx_replies; /* 0: not known */
    int last_dm;            /* it had a usable Direct Measurement TLV ... */
    int last_dm_u;          /* ... marked U */
    int last_dm_fields;     /* ... of the right length: the three counters below */
    uint32_t last_s_txc, last_r_rxc, last_r_txc;
    int dm_backwards;       /* the reflector's Direct Measurement counters went backwards */
    int hist;               /* 0: the values are the exact sample, 1: histograms */
} stamp_stats_figures_t;

/** A new accumulator (stateful_reflector: the reflector numbers its replies itself). 0 or STAMP_ENOMEM. */
STAMP_API int stamp_stats_new(int stateful_reflector, stamp_stats_t **out);
STAMP_API void stamp_stats_free(stamp_stats_t *st);
/**
 * One final per-packet result as the sender produces it (aborted ones are ignored); `base` = the
 * mode's base packet length (stamp_base_len), so that the TLVs after it can be read (Type 12 C
 * flag, Direct Measurement from the first r->tlv_usable TLVs). Nothing of `r` is kept.
 */
STAMP_API void stamp_stats_add(stamp_stats_t *st, const stamp_result_t *r, size_t base);
/* What a hand-made result (a binding's table) may lack or give otherwise: */
#define STAMP_STATS_NO_EE 1u        /* no Error Estimates: owd "no error estimate", no error bound */
#define STAMP_STATS_NO_T1_SOURCE 2u /* neither t1_kernel nor t1_user counted */
#define STAMP_STATS_ERR_GIVEN 4u    /* err_ns is this result's error bound (else from the Error Estimates) */
STAMP_API void stamp_stats_add_ex(stamp_stats_t *st, const stamp_result_t *r, size_t base, unsigned flags,
                                  double err_ns);
/** The figures so far (finishes a pending switch to histograms first). */
STAMP_API void stamp_stats_figures(stamp_stats_t *st, stamp_stats_figures_t *f);
/** What a live progress line needs: cheap at any time (finishes nothing, unlike stamp_stats_figures). */
typedef struct {
    uint64_t received, lost;
    uint64_t rtt_n;    /* received packets with a usable RTT (clock errors left out) */
    double rtt_mean;   /* ns, meaningless while rtt_n == 0 */
    int64_t rtt_last;  /* ns, the RTT of the packet added last (among rtt_n) */
} stamp_stats_progress_t;
STAMP_API void stamp_stats_progress(const stamp_stats_t *st, stamp_stats_progress_t *p);
/** Sample mode: the number of records in the sample. */
STAMP_API size_t stamp_stats_sample_len(const stamp_stats_t *st);
/**
 * Sample record i (arrival order): its sequence number and delays (rtt, fwd, bwd, float32-rounded);
 * returns 1 with ipdv[3] = its values minus those of the latest record numbered seq - 1, when there is one.
 */
STAMP_API int stamp_stats_sample_get(const stamp_stats_t *st, size_t i, uint32_t *seq, double v[3], double ipdv[3]);
/**
 * Histogram mode: counts of distribution d (STAMP_STATS_RTT..): pos[k] / neg[k] for magnitudes in
 * (GAMMA^(k-1), GAMMA^k], k < STAMP_STATS_HIST_K; *zero for |v| < 1 ns. NULL in sample mode.
 */
STAMP_API const uint64_t *stamp_stats_hist(const stamp_stats_t *st, int d, const uint64_t **neg, uint64_t *zero);

/* ------------------------------------------------------------------ */
/* Operations: Prometheus metrics, privileges, process name, key files */
/* ------------------------------------------------------------------ */

typedef enum { STAMP_METRICS_REFLECTOR = 0, STAMP_METRICS_SENDER = 1 } stamp_metrics_role_t;

/** Counters kept by the metrics object itself (besides the engine's). */
typedef enum { STAMP_METRICS_RELOADS = 0, STAMP_METRICS_RELOAD_FAILURES = 1, STAMP_METRICS_EXTRA_MAX = 2 } stamp_metrics_extra_t;

/**
 * Prometheus metrics of one reflector or sender. One writer (the packet
 * thread) records observations with relaxed atomic stores, no lock and no
 * allocation; renderers on any thread read snapshots.
 */
typedef struct stamp_metrics stamp_metrics_t;

STAMP_API int stamp_metrics_new(stamp_metrics_role_t role, stamp_metrics_t **out);
/** Stops the HTTP endpoint, if any, and frees. */
STAMP_API void stamp_metrics_free(stamp_metrics_t *m);
/** The engine whose counters are rendered (NULL detaches). Freeing the engine detaches it from every
 * metrics object first (its counters then render as 0), so a server thread never reads a freed engine. With
 * reflector workers the processing histogram is the sum over all of them. */
STAMP_API void stamp_metrics_attach_reflector(stamp_metrics_t *m, const stamp_reflector_t *r);
STAMP_API void stamp_metrics_attach_sender(stamp_metrics_t *m, const stamp_sender_t *s);
/** `packets` datagrams handled in `ns` nanoseconds (each observed as ns/packets). */
STAMP_API void stamp_metrics_observe_processing(stamp_metrics_t *m, stamp_ns_t ns, unsigned packets);
STAMP_API void stamp_metrics_observe_rtt(stamp_metrics_t *m, stamp_ns_t rtt);
/** One-way delays; record them only when both clocks are synchronized. */
STAMP_API void stamp_metrics_observe_owd(stamp_metrics_t *m, stamp_ns_t fwd, stamp_ns_t bwd);
/* A sender's final result: its round-trip time, and its one-way delays when both clocks say S = 1
 * (lost, aborted and clock-error results observe nothing). */
STAMP_API void stamp_metrics_observe_result(stamp_metrics_t *m, const stamp_result_t *r);
STAMP_API void stamp_metrics_count(stamp_metrics_t *m, stamp_metrics_extra_t which, uint64_t by);
/**
 * Called on the sender's own thread (e.g. after each step): copy its counters
 * into atomics the renderers read from then on, so no thread reads the
 * sender's plain counters while it writes them.
 */
STAMP_API void stamp_metrics_publish_sender(stamp_metrics_t *m);
/**
 * stamp_reflector_step() that also records the processing time: waits up to
 * timeout_ms for a datagram, then times the step that handles what is ready.
 */
STAMP_API int stamp_metrics_reflector_step(stamp_metrics_t *m, stamp_reflector_t *r, int timeout_ms);
/**
 * Render the Prometheus text exposition format (0.0.4) into buf (cap octets,
 * NUL-terminated when cap > 0). Returns the length of the whole text: when it
 * is >= cap the output was cut and a larger buffer is needed.
 */
STAMP_API size_t stamp_metrics_render(const stamp_metrics_t *m, char *buf, size_t cap);
/** Parse "ADDR:PORT" or "[IPv6]:PORT" (numeric). */
STAMP_API int stamp_metrics_parse_addr(const char *spec, char *host, size_t hostcap, unsigned *port);
/**
 * Serve the text at http://ADDR:PORT/metrics from a thread of its own
 * (libmicrohttpd; the thread blocks every signal). The socket is bound before
 * returning (port 0: any; *bound_port tells). Returns 0 or a negative code.
 * Limits: STAMP_METRICS_MAX_CONNECTIONS at once, STAMP_METRICS_PER_IP_CONNECTIONS
 * from one address, a connection idle for STAMP_METRICS_IDLE_TIMEOUT_S seconds is closed.
 */
#define STAMP_METRICS_MAX_CONNECTIONS 256
#define STAMP_METRICS_PER_IP_CONNECTIONS 8
#define STAMP_METRICS_IDLE_TIMEOUT_S 2
STAMP_API int stamp_metrics_serve(stamp_metrics_t *m, const char *addrport, unsigned *bound_port);
STAMP_API void stamp_metrics_stop(stamp_metrics_t *m);

/**
 * Switch to USER[:GROUP] (names or numbers): supplementary groups, gid, uid.
 * Fails unless every id changed and root cannot be regained. `err` gets one line.
 */
STAMP_API int stamp_drop_privileges(const char *user_group, char *err, size_t errcap);
/**
 * Whether `path` could be written (or created in its directory) by USER[:GROUP] once privileges are
 * dropped to it (NULL: by this process): checked in a child that switches to the user and exits, so a
 * usage problem is found at start, not after a long run. Returns 0, or a negative errno with one line in `err`.
 */
STAMP_API int stamp_path_writable_as(const char *path, const char *user_group, char *err, size_t errcap);
/** Name the process (prctl PR_SET_NAME, 15 characters, and argv as far as it reaches). */
STAMP_API int stamp_set_process_name(const char *name);
/**
 * Read a hex key file, refusing files that group or others may access.
 * Returns the key length or a negative code with one line in `err` (never the key).
 */
STAMP_API int stamp_key_file_read(const char *path, uint8_t *key, size_t cap, char *err, size_t errcap);
/**
 * Look USER[:GROUP] up (names or numbers) without switching: uid, gid and the
 * user's name. Returns 0 or a negative code with one line in `err`.
 */
STAMP_API int stamp_user_lookup(const char *user_group, unsigned *uid, unsigned *gid, char *name, size_t namecap,
                                char *err, size_t errcap);
/**
 * Check a key file (is_dir 0: a regular file no group/other may access) or a
 * key directory (is_dir 1: not writable by group or others); either must be
 * owned by root, by the effective user or by `also_uid` (-1: none).
 * stamp_clock_state_check: 0 when the kernel's clock synchronization state can
 * be read (adjtimex); otherwise every Error Estimate says S = 0 (one line in `err`).
 */
STAMP_API int stamp_clock_state_check(char *err, size_t errcap);
/**
 * The names in `dir` that can hold a key (`XXXX.key`, `default.key`), each
 * followed by a newline, into names[0..cap); *len gets the octets used. No
 * shell, no child process. Returns how many, or a negative code with one line in `err`.
 */
STAMP_API int stamp_key_dir_list(const char *dir, char *names, size_t cap, size_t *len, char *err, size_t errcap);
/**
 * The names in `dir` that look meant as a key but cannot be one: ".key" in any case somewhere in the name
 * (`42.key`, `002a.KEY`, `002a.key.bak`, `002a.key~`) and not `XXXX.key` (4 hex digits) nor `default.key`.
 * Same output as stamp_key_dir_list (names longer than 255 octets are skipped); the names that do not fit
 * in `cap` are counted but not written. Returns how many, or a negative code with one line in `err`.
 */
STAMP_API int stamp_key_dir_misnamed(const char *dir, char *names, size_t cap, size_t *len, char *err, size_t errcap);
STAMP_API int stamp_key_path_check(const char *path, int is_dir, long also_uid, char *err, size_t errcap);

#ifdef __cplusplus
}
#endif
#endif /* STAMP_H */
