/* bind.h - what the files of the Lua binding (stamp.core) share.
 *
 * Layout of csrc/lua/ (one file per concern, as luv does):
 *   core.c       luaopen_stamp_core and THE registration table (one *_open per file)
 *   bind.c       the helpers below: failures, option readers, field pushers, addresses
 *   class.c      the class machinery: one metatable per class with __index, __gc,
 *                __close, __tostring, __name, and the shared methods close, fd,
 *                local_addr, counters
 *   codec.c      base packets and Error Estimates
 *   crypto.c     HMAC, signing, hexadecimal keys
 *   time.c       clocks and wire timestamps
 *   tlv.c        TLV encode/decode through the core's registry
 *   sys.c        poll, isatty, signals
 *   reflector.c  the stamp.reflector class
 *   sender.c     the stamp.sender class
 *   sender_machine.c  the stamp.sender_machine class (the I/O-free sender)
 *   ops.c        metrics (stamp.metrics class), privileges, process name, key files
 *   stats.c      the stamp.stats class (the C statistics accumulator)
 *
 * Include this header first in every file of the binding. Every symbol it
 * declares has hidden visibility: the module exports luaopen_stamp_core only.
 */
#ifndef STAMP_BIND_H
#define STAMP_BIND_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>

#include "../core/stamp.h"
#include "compat.h"

#define BIND_HIDDEN __attribute__((visibility("hidden")))

/* ---- registration: every file has one *_open, called by core.c ------------
 * Each adds its functions to the module table on top of the stack (and, for a
 * class, its methods table to core.methods); the stack is left as it was. */
BIND_HIDDEN void codec_open(lua_State *L);
BIND_HIDDEN void crypto_open(lua_State *L);
BIND_HIDDEN void time_open(lua_State *L);
BIND_HIDDEN void tlv_open(lua_State *L);
BIND_HIDDEN void sys_open(lua_State *L);
BIND_HIDDEN void reflector_open(lua_State *L);
BIND_HIDDEN void sender_open(lua_State *L);
BIND_HIDDEN void sender_machine_open(lua_State *L);
BIND_HIDDEN void ops_open(lua_State *L); /* ops.c: metrics, privileges, process name, key files */
BIND_HIDDEN void stats_open(lua_State *L); /* stats.c: the stamp.stats class (statistics accumulator) */

/* sys.c: the count of trapped SIGINT/SIGTERM (see trap_signals), which a handler bumps. */
BIND_HIDDEN const volatile sig_atomic_t *sys_signal_count(void);
/* ops.c: the metrics object at index i (raises unless one, open); attached to its engine as it is now. */
BIND_HIDDEN stamp_metrics_t *metrics_check(lua_State *L, int i, int want_sender);

/* ---- helpers (bind.c) ---------------------------------------------------- */

/* Push nil, stamp_strerror(code), code; returns 3 (return it from a function). */
BIND_HIDDEN int push_fail(lua_State *L, int code);
/* Option `k` of the table at index t as an integer in [lo, hi] (default def when
 * nil); anything else (not an integer, NaN, infinite, out of range) raises. */
BIND_HIDDEN const char *range_msg(lua_State *L, long long v, long long lo, long long hi);
BIND_HIDDEN long long opt_int(lua_State *L, int t, const char *k, long long def, long long lo, long long hi);
/* Option `k` as a string (nil: def); *len gets its length. The pointer stays
 * valid while the table is alive. */
BIND_HIDDEN const char *opt_str(lua_State *L, int t, const char *k, const char *def, size_t *len);
/* Option `k` as a boolean (nil: def; any other value by Lua truth). */
BIND_HIDDEN int opt_bool(lua_State *L, int t, const char *k, int def);
/* Option `clock`: "NTP" (default) or "PTP". */
BIND_HIDDEN stamp_clock_t opt_clock(lua_State *L, int t);
/* Socket options local_addr, local_port (0), ttl (255), tos (-1), rcvbuf (0). */
BIND_HIDDEN void opt_sock(lua_State *L, int t, stamp_sock_opts_t *o);
/* Options auth and key (a non-empty key of at most STAMP_KEY_MAX octets in auth mode). */
BIND_HIDDEN void opt_auth(lua_State *L, int t, stamp_mode_t *mode, const uint8_t **key, size_t *keylen);
/* Argument i: "open" (default) or "auth". */
BIND_HIDDEN stamp_mode_t check_mode(lua_State *L, int i);
/* Argument i as an integer in [lo, hi] (luaL_checkinteger that also refuses
 * NaN, infinities and out-of-range numbers with an argument error). */
BIND_HIDDEN long long check_int(lua_State *L, int i, long long lo, long long hi);
/* Same, optional: def when none or nil. */
BIND_HIDDEN long long opt_arg_int(lua_State *L, int i, long long def, long long lo, long long hi);

/* t[k] = v for the table on top. */
BIND_HIDDEN void set_int(lua_State *L, const char *k, long long v);
/* Push host, port (or nil, nil for an unset address). */
BIND_HIDDEN void push_addr(lua_State *L, const stamp_addr_t *a);
/* Push an Error Estimate as {s, z, scale, mult, error_ns}. */
BIND_HIDDEN void push_ee(lua_State *L, const stamp_ee_t *ee);
/* Field `k` of the table at t: an Error Estimate table or 16-bit integer (nil: 0x0001). */
BIND_HIDDEN void check_ee(lua_State *L, int t, const char *k, uint16_t *out);
/* Field `k` (UTC ns, encoded per fmt) or `k`_raw (8 octets) of the table at t. */
BIND_HIDDEN void check_ts(lua_State *L, int t, const char *k, stamp_clock_t fmt, uint8_t out[8]);
/* Set `k` (UTC ns) and `k`_raw (8 octets) in the table on top. */
BIND_HIDDEN void push_ts(lua_State *L, const uint8_t ts[8], const char *k, stamp_clock_t fmt);
/* Field `hmac` (16 octets, default zeros) of the table at t. */
BIND_HIDDEN void check_hmac16(lua_State *L, int t, uint8_t out[16]);
/* Parse an IPv4 or IPv6 literal: 4, 16, or 0 when it is neither. */
BIND_HIDDEN int parse_ip(const char *s, uint8_t out[16]);
/* Store v big-endian at p. */
BIND_HIDDEN void wr16be(uint8_t *p, uint16_t v);
/* "PTP" gives STAMP_CLOCK_PTP, anything else STAMP_CLOCK_NTP. */
BIND_HIDDEN stamp_clock_t clock_of(const char *format);

/* Counters are pushed from tables: the name and offset of each uint64_t field. */
typedef struct {
    const char *name;
    size_t off;
} counter_t;
/* Push a table {name = value} of the counters in the struct at c. */
BIND_HIDDEN void push_counters(lua_State *L, const void *c, const counter_t *t);

/* ---- TLVs (tlv.c) -------------------------------------------------------- */

/* Push `list, map` of the TLVs in pkt[base..len) (as stamp.core.tlv_decode). */
BIND_HIDDEN void push_tlvs(lua_State *L, const uint8_t *pkt, size_t base, size_t len, stamp_clock_t fmt);

/* ---- the sender (sender.c), shared with the I/O-free machine (sender_machine.c) ---- */

/* Sender options of the table at t (remote_addr required when need_remote). */
BIND_HIDDEN void sender_read_cfg(lua_State *L, int t, stamp_sender_cfg_t *c, int need_remote);
/* Push one per-packet result table (base: the base packet length of the mode). */
BIND_HIDDEN void sender_push_result(lua_State *L, const stamp_result_t *r, size_t base);
/* stop(now): argument i true, or a table with now = true. */
BIND_HIDDEN int sender_stop_now_arg(lua_State *L, int i);
BIND_HIDDEN extern const counter_t sender_counter_names[];

/* ---- statistics (stats.c) ------------------------------------------------ */

/* The open stamp.stats accumulator at index i (raises otherwise): a sender's step can add its
 * results to it with stamp_stats_add, without a Lua table per packet. */
BIND_HIDDEN stamp_stats_t *lstats_check(lua_State *L, int i);

/* ---- classes (class.c) ----------------------------------------------------
 * Every object's userdata begins with bind_obj_t: the engine handle, NULL once
 * closed. A class is described once; bind_class_open makes its metatable
 * (__index = methods, __gc = __close = close, __tostring, __name), adds the
 * shared methods for the callbacks it has, then its own, registers the
 * constructor in the module and the methods table as core.methods[short]. */
typedef struct {
    void *h;
} bind_obj_t;

#define BIND_COUNTERS_MAX 512 /* octets: the largest counters struct of a class */

typedef struct bind_class {
    const char *name;  /* metatable name, e.g. "stamp.sender" */
    const char *short_name; /* key in core.methods and the constructor's name, e.g. "sender" */
    size_t size;       /* userdata size, at least sizeof(bind_obj_t) */
    void (*free)(void *h);
    int (*fd)(const void *h);                        /* NULL: no fd method */
    void (*local)(const void *h, stamp_addr_t *a);   /* NULL: no local_addr method */
    void (*counters)(const void *h, void *out);      /* NULL: no counters method */
    const counter_t *counter_names;
    /* push the text between the parentheses of tostring(obj) */
    void (*describe)(lua_State *L, const void *h);
    const luaL_Reg *methods; /* the class's own methods, {NULL, NULL}-terminated */
    lua_CFunction ctor;      /* core[short_name] */
} bind_class_t;

/* New userdata of cls->size octets, zeroed, with the class metatable; on top of the stack. */
BIND_HIDDEN void *bind_new(lua_State *L, const bind_class_t *cls);
/* The object at index i, which must be of class cls and open (else raises). */
BIND_HIDDEN void *bind_check(lua_State *L, int i, const bind_class_t *cls);
/* The object at index i of class cls, open or closed. */
BIND_HIDDEN void *bind_check_any(lua_State *L, int i, const bind_class_t *cls);
BIND_HIDDEN void bind_class_open(lua_State *L, const bind_class_t *cls);

#endif
