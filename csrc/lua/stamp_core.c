/***
 * stamp.core - thin Lua binding of libstamp (the C core).
 *
 * Most users want `require "stamp"`, which wraps this module. Conventions:
 * argument errors raise; runtime and network failures return
 * `nil, message, code`.
 * @module stamp.core
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <unistd.h>
#include <signal.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <openssl/crypto.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "../core/stamp.h"
#include "compat.h"

#define SENDER_MT "stamp.sender"
#define REFLECTOR_MT "stamp.reflector"
#define RESULTS_MAX 64

static void wr16be(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

typedef struct {
    stamp_sender_t *s;
    size_t base; /* base packet length of its mode */
} lsender_t;

typedef struct {
    stamp_reflector_t *r;
} lreflector_t;

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

static int push_fail(lua_State *L, int code)
{
    lua_pushnil(L);
    lua_pushstring(L, stamp_strerror(code));
    lua_pushinteger(L, code);
    return 3;
}

/* Read option `k` of the table at index t as an integer in [lo, hi]. */
static long long opt_int(lua_State *L, int t, const char *k, long long def, long long lo, long long hi)
{
    lua_getfield(L, t, k);
    long long v = def;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1) || !lua_isinteger(L, -1))
            luaL_error(L, "bad option '%s' (integer expected, got %s)", k, luaL_typename(L, -1));
        v = (long long)lua_tonumber(L, -1);
#if LUA_VERSION_NUM >= 503
        v = (long long)lua_tointeger(L, -1);
#endif
        if (v < lo || v > hi) luaL_error(L, "bad option '%s' (%lld out of range %lld..%lld)", k, v, lo, hi);
    }
    lua_pop(L, 1);
    return v;
}

/* String option; the pointer stays valid while the config table is alive. */
static const char *opt_str(lua_State *L, int t, const char *k, const char *def, size_t *len)
{
    lua_getfield(L, t, k);
    const char *v = def;
    if (len) *len = def ? strlen(def) : 0;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "bad option '%s' (string expected, got %s)", k, luaL_typename(L, -1));
        v = lua_tolstring(L, -1, len);
    }
    lua_pop(L, 1); /* the string is anchored in the config table */
    return v;
}

static int opt_bool(lua_State *L, int t, const char *k, int def)
{
    lua_getfield(L, t, k);
    int v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static stamp_clock_t opt_clock(lua_State *L, int t)
{
    const char *c = opt_str(L, t, "clock", "NTP", NULL);
    if (strcmp(c, "NTP") == 0 || strcmp(c, "ntp") == 0) return STAMP_CLOCK_NTP;
    if (strcmp(c, "PTP") == 0 || strcmp(c, "ptp") == 0) return STAMP_CLOCK_PTP;
    luaL_error(L, "bad option 'clock' (NTP or PTP expected, got '%s')", c);
    return STAMP_CLOCK_NTP;
}

static void opt_sock(lua_State *L, int t, stamp_sock_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->addr = opt_str(L, t, "local_addr", NULL, NULL);
    o->port = (unsigned)opt_int(L, t, "local_port", 0, 0, 65535);
    o->family = AF_UNSPEC;
    o->ttl = (int)opt_int(L, t, "ttl", 255, 1, 255);
    o->tos = (int)opt_int(L, t, "tos", -1, -1, 255);
    o->rcvbuf = (int)opt_int(L, t, "rcvbuf", 0, 0, 1 << 30);
}

static void opt_auth(lua_State *L, int t, stamp_mode_t *mode, const uint8_t **key, size_t *keylen)
{
    *mode = opt_bool(L, t, "auth", 0) ? STAMP_MODE_AUTH : STAMP_MODE_OPEN;
    *key = (const uint8_t *)opt_str(L, t, "key", NULL, keylen);
    if (*mode == STAMP_MODE_AUTH && (!*key || *keylen == 0))
        luaL_error(L, "bad option 'key' (authenticated mode needs a non-empty key)");
    if (*key && *keylen > STAMP_KEY_MAX) luaL_error(L, "bad option 'key' (longer than %d octets)", STAMP_KEY_MAX);
}

static void push_addr(lua_State *L, const stamp_addr_t *a)
{
    char host[64];
    unsigned port = 0;
    if (a->len == 0 || stamp_addr_format(a, host, sizeof host, &port) != 0) {
        lua_pushnil(L);
        lua_pushnil(L);
        return;
    }
    lua_pushstring(L, host);
    lua_pushinteger(L, port);
}

static void set_int(lua_State *L, const char *k, long long v)
{
    push_i64(L, v);
    lua_setfield(L, -2, k);
}

static void push_ee(lua_State *L, const stamp_ee_t *ee)
{
    lua_createtable(L, 0, 5);
    set_int(L, "s", ee->s);
    set_int(L, "z", ee->z);
    set_int(L, "scale", ee->scale);
    set_int(L, "mult", ee->mult);
    lua_pushnumber(L, stamp_ee_ns(ee));
    lua_setfield(L, -2, "error_ns");
}

static void check_ee(lua_State *L, int t, const char *k, uint16_t *out)
{
    lua_getfield(L, t, k);
    if (lua_isnil(L, -1)) {
        *out = 0x0001; /* S=0 Z=0 Scale=0 Multiplier=1 */
    } else if (lua_isnumber(L, -1)) {
        long long v = (long long)lua_tonumber(L, -1);
        if (v < 0 || v > 0xffff) luaL_error(L, "bad field '%s' (16-bit value expected)", k);
        *out = (uint16_t)v;
    } else if (lua_istable(L, -1)) {
        int i = lua_gettop(L);
        stamp_ee_t ee;
        ee.s = (unsigned)opt_int(L, i, "s", 0, 0, 1);
        ee.z = (unsigned)opt_int(L, i, "z", 0, 0, 1);
        ee.scale = (unsigned)opt_int(L, i, "scale", 0, 0, 63);
        ee.mult = (unsigned)opt_int(L, i, "mult", 1, 1, 255);
        *out = stamp_ee_pack(&ee);
    } else {
        luaL_error(L, "bad field '%s' (table or integer expected)", k);
    }
    lua_pop(L, 1);
}

/* A timestamp field: `<k>` = UTC ns (encoded per fmt) or `<k>_raw` = 8-octet string. */
static void check_ts(lua_State *L, int t, const char *k, stamp_clock_t fmt, uint8_t out[8])
{
    char raw[64];
    snprintf(raw, sizeof raw, "%s_raw", k);
    size_t n = 0;
    const char *s = opt_str(L, t, raw, NULL, &n);
    if (s) {
        if (n != 8) luaL_error(L, "bad field '%s' (8-octet string expected)", raw);
        memcpy(out, s, 8);
        return;
    }
    lua_getfield(L, t, k);
    long long v = 0;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1)) luaL_error(L, "bad field '%s' (nanoseconds expected)", k);
#if LUA_VERSION_NUM >= 503
        v = lua_isinteger(L, -1) ? (long long)lua_tointeger(L, -1) : (long long)lua_tonumber(L, -1);
#else
        v = (long long)lua_tonumber(L, -1);
#endif
    }
    lua_pop(L, 1);
    stamp_ts_encode(out, v, fmt, 0);
}

static void push_ts(lua_State *L, const uint8_t ts[8], const char *k, stamp_clock_t fmt)
{
    char raw[64];
    stamp_ns_t v;
    stamp_ts_decode(ts, fmt, 0, &v);
    push_i64(L, v);
    lua_setfield(L, -2, k);
    snprintf(raw, sizeof raw, "%s_raw", k);
    lua_pushlstring(L, (const char *)ts, 8);
    lua_setfield(L, -2, raw);
}

static stamp_mode_t check_mode(lua_State *L, int i)
{
    const char *m = luaL_optstring(L, i, "open");
    if (strcmp(m, "open") == 0) return STAMP_MODE_OPEN;
    if (strcmp(m, "auth") == 0) return STAMP_MODE_AUTH;
    luaL_argerror(L, i, "mode must be 'open' or 'auth'");
    return STAMP_MODE_OPEN;
}

static void check_hmac16(lua_State *L, int t, uint8_t out[16])
{
    size_t n = 0;
    const char *h = opt_str(L, t, "hmac", NULL, &n);
    memset(out, 0, 16);
    if (h) {
        if (n != 16) luaL_error(L, "bad field 'hmac' (16-octet string expected)");
        memcpy(out, h, 16);
    }
}

/* ------------------------------------------------------------------ */
/* codec                                                               */
/* ------------------------------------------------------------------ */

/***
 * Encode a Session-Sender test packet.
 * @function encode_test
 * @tparam table p fields `seq`, `timestamp` (UTC ns) or `timestamp_raw`, `ee` (table or integer), `ssid`, `hmac` (16 octets, auth only)
 * @tparam[opt="open"] string mode "open" or "auth"
 * @treturn string the base packet (44 or 112 octets)
 */
static int l_encode_test(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    stamp_mode_t mode = check_mode(L, 2);
    stamp_test_t p;
    memset(&p, 0, sizeof p);
    p.seq = (uint32_t)opt_int(L, 1, "seq", 0, 0, 0xffffffffLL);
    p.ssid = (uint16_t)opt_int(L, 1, "ssid", 0, 0, 0xffff);
    check_ee(L, 1, "ee", &p.ee);
    stamp_ee_t ee;
    stamp_ee_unpack(p.ee, &ee);
    check_ts(L, 1, "timestamp", ee.z ? STAMP_CLOCK_PTP : STAMP_CLOCK_NTP, p.ts);
    check_hmac16(L, 1, p.hmac);
    uint8_t buf[STAMP_AUTH_BASE_LEN];
    int n = stamp_test_encode(buf, sizeof buf, mode, &p);
    lua_pushlstring(L, (const char *)buf, (size_t)n);
    return 1;
}

/***
 * Encode a Session-Reflector test packet.
 * @function encode_reflected
 * @tparam table p fields `seq`, `timestamp`, `ee`, `ssid`, `rx_timestamp`, `sender_seq`, `sender_timestamp`, `sender_ee`, `sender_ttl`, `hmac`
 * @tparam[opt="open"] string mode
 * @treturn string
 */
static int l_encode_reflected(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    stamp_mode_t mode = check_mode(L, 2);
    stamp_reflected_t p;
    memset(&p, 0, sizeof p);
    p.seq = (uint32_t)opt_int(L, 1, "seq", 0, 0, 0xffffffffLL);
    p.ssid = (uint16_t)opt_int(L, 1, "ssid", 0, 0, 0xffff);
    p.sender_seq = (uint32_t)opt_int(L, 1, "sender_seq", 0, 0, 0xffffffffLL);
    p.sender_ttl = (uint8_t)opt_int(L, 1, "sender_ttl", 0, 0, 255);
    check_ee(L, 1, "ee", &p.ee);
    check_ee(L, 1, "sender_ee", &p.sender_ee);
    stamp_ee_t ee, see;
    stamp_ee_unpack(p.ee, &ee);
    stamp_ee_unpack(p.sender_ee, &see);
    check_ts(L, 1, "timestamp", ee.z ? STAMP_CLOCK_PTP : STAMP_CLOCK_NTP, p.ts);
    check_ts(L, 1, "rx_timestamp", ee.z ? STAMP_CLOCK_PTP : STAMP_CLOCK_NTP, p.rx_ts);
    check_ts(L, 1, "sender_timestamp", see.z ? STAMP_CLOCK_PTP : STAMP_CLOCK_NTP, p.sender_ts);
    check_hmac16(L, 1, p.hmac);
    uint8_t buf[STAMP_AUTH_BASE_LEN];
    int n = stamp_reflected_encode(buf, sizeof buf, mode, &p);
    lua_pushlstring(L, (const char *)buf, (size_t)n);
    return 1;
}

/***
 * Decode a Session-Sender test packet.
 * @function decode_test
 * @tparam string s the UDP payload
 * @tparam[opt="open"] string mode
 * @treturn table|nil the fields (see `encode_test`), `length` and `extra` (octets after the base); or nil, message
 */
static int l_decode_test(lua_State *L)
{
    size_t len;
    const uint8_t *b = (const uint8_t *)luaL_checklstring(L, 1, &len);
    stamp_mode_t mode = check_mode(L, 2);
    stamp_test_t p;
    int n = stamp_test_decode(b, len, mode, &p);
    if (n < 0) return push_fail(L, n);
    stamp_ee_t ee;
    stamp_ee_unpack(p.ee, &ee);
    lua_createtable(L, 0, 10);
    set_int(L, "seq", p.seq);
    set_int(L, "ssid", p.ssid);
    push_ee(L, &ee);
    lua_setfield(L, -2, "ee");
    push_ts(L, p.ts, "timestamp", ee.z ? STAMP_CLOCK_PTP : STAMP_CLOCK_NTP);
    if (mode == STAMP_MODE_AUTH) {
        lua_pushlstring(L, (const char *)p.hmac, 16);
        lua_setfield(L, -2, "hmac");
    }
    set_int(L, "length", (long long)len);
    lua_pushlstring(L, (const char *)b + n, len - (size_t)n);
    lua_setfield(L, -2, "extra");
    return 1;
}

static void push_reflected(lua_State *L, const stamp_reflected_t *p, stamp_mode_t mode)
{
    stamp_ee_t ee, see;
    stamp_ee_unpack(p->ee, &ee);
    stamp_ee_unpack(p->sender_ee, &see);
    lua_createtable(L, 0, 16);
    set_int(L, "seq", p->seq);
    set_int(L, "ssid", p->ssid);
    push_ee(L, &ee);
    lua_setfield(L, -2, "ee");
    push_ts(L, p->ts, "timestamp", ee.z ? STAMP_CLOCK_PTP : STAMP_CLOCK_NTP);
    push_ts(L, p->rx_ts, "rx_timestamp", ee.z ? STAMP_CLOCK_PTP : STAMP_CLOCK_NTP);
    set_int(L, "sender_seq", p->sender_seq);
    push_ts(L, p->sender_ts, "sender_timestamp", see.z ? STAMP_CLOCK_PTP : STAMP_CLOCK_NTP);
    push_ee(L, &see);
    lua_setfield(L, -2, "sender_ee");
    set_int(L, "sender_ttl", p->sender_ttl);
    if (mode == STAMP_MODE_AUTH) {
        lua_pushlstring(L, (const char *)p->hmac, 16);
        lua_setfield(L, -2, "hmac");
    }
}

/***
 * Decode a Session-Reflector test packet.
 * @function decode_reflected
 * @tparam string s
 * @tparam[opt="open"] string mode
 * @treturn table|nil the fields (see `encode_reflected`), `length`, `extra`; or nil, message
 */
static int l_decode_reflected(lua_State *L)
{
    size_t len;
    const uint8_t *b = (const uint8_t *)luaL_checklstring(L, 1, &len);
    stamp_mode_t mode = check_mode(L, 2);
    stamp_reflected_t p;
    int n = stamp_reflected_decode(b, len, mode, &p);
    if (n < 0) return push_fail(L, n);
    push_reflected(L, &p, mode);
    set_int(L, "length", (long long)len);
    lua_pushlstring(L, (const char *)b + n, len - (size_t)n);
    lua_setfield(L, -2, "extra");
    return 1;
}

/***
 * HMAC-SHA-256 truncated to 16 octets.
 * @function hmac
 * @tparam string key raw key octets
 * @tparam string data
 * @treturn string 16 octets
 */
static int l_hmac(lua_State *L)
{
    size_t kl, dl;
    const char *k = luaL_checklstring(L, 1, &kl);
    const char *d = luaL_checklstring(L, 2, &dl);
    if (kl > STAMP_KEY_MAX) luaL_argerror(L, 1, "key too long");
    stamp_hmac_t *h = stamp_hmac_new((const uint8_t *)k, kl);
    if (!h) return push_fail(L, STAMP_ECRYPTO);
    uint8_t out[16];
    int rc = stamp_hmac_compute(h, (const uint8_t *)d, dl, out);
    stamp_hmac_free(h);
    if (rc) return push_fail(L, rc);
    lua_pushlstring(L, (const char *)out, 16);
    return 1;
}

/***
 * Sign an authenticated base packet: writes HMAC(octets 0..95) at octet 96.
 * @function auth_sign
 * @tparam string key
 * @tparam string packet at least 112 octets
 * @treturn string the signed packet
 */
static int l_auth_sign(lua_State *L)
{
    size_t kl, dl;
    const char *k = luaL_checklstring(L, 1, &kl);
    const char *d = luaL_checklstring(L, 2, &dl);
    if (dl < STAMP_AUTH_BASE_LEN) luaL_argerror(L, 2, "packet shorter than 112 octets");
    if (kl > STAMP_KEY_MAX) luaL_argerror(L, 1, "key too long");
    stamp_hmac_t *h = stamp_hmac_new((const uint8_t *)k, kl);
    if (!h) return push_fail(L, STAMP_ECRYPTO);
    luaL_Buffer b;
    char *out = malloc(dl);
    if (!out) {
        stamp_hmac_free(h);
        return push_fail(L, STAMP_ENOMEM);
    }
    memcpy(out, d, dl);
    stamp_auth_sign(h, (uint8_t *)out, dl);
    stamp_hmac_free(h);
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, out, dl);
    free(out);
    luaL_pushresult(&b);
    return 1;
}

/***
 * Decode a hexadecimal key.
 * @function hex_decode
 * @tparam string hex e.g. "00112233..."
 * @treturn string|nil the octets, or nil, message
 */
static int l_hex_decode(lua_State *L)
{
    const char *h = luaL_checkstring(L, 1);
    uint8_t out[STAMP_KEY_MAX];
    int n = stamp_hex_decode(h, out, sizeof out);
    if (n < 0) {
        lua_pushnil(L);
        lua_pushstring(L, "not an even-length hexadecimal string of at most 256 octets");
        return 2;
    }
    lua_pushlstring(L, (const char *)out, (size_t)n);
    OPENSSL_cleanse(out, sizeof out);
    return 1;
}

/***
 * Current UTC time in nanoseconds.
 * @function now
 * @treturn integer
 */
static int l_now(lua_State *L)
{
    push_i64(L, stamp_now());
    return 1;
}

/***
 * Monotonic clock in nanoseconds.
 * @function mono
 * @treturn integer
 */
static int l_mono(lua_State *L)
{
    push_i64(L, stamp_mono());
    return 1;
}

/***
 * Encode UTC nanoseconds as an 8-octet wire timestamp.
 * @function ts_encode
 * @tparam integer ns
 * @tparam[opt="NTP"] string format "NTP" or "PTP"
 * @tparam[opt=0] integer tai_offset seconds added for PTP
 * @treturn string 8 octets
 */
static int l_ts_encode(lua_State *L)
{
    long long ns = check_i64(L, 1);
    const char *f = luaL_optstring(L, 2, "NTP");
    int tai = (int)luaL_optinteger(L, 3, 0);
    uint8_t out[8];
    stamp_ts_encode(out, ns, strcmp(f, "PTP") == 0 ? STAMP_CLOCK_PTP : STAMP_CLOCK_NTP, tai);
    lua_pushlstring(L, (const char *)out, 8);
    return 1;
}

/***
 * Decode an 8-octet wire timestamp to UTC nanoseconds.
 * @function ts_decode
 * @tparam string ts 8 octets
 * @tparam[opt="NTP"] string format
 * @tparam[opt=0] integer tai_offset
 * @treturn integer ns
 * @treturn boolean valid (false for a PTP nanoseconds field >= 10^9)
 */
static int l_ts_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    if (n != 8) luaL_argerror(L, 1, "8-octet string expected");
    const char *f = luaL_optstring(L, 2, "NTP");
    int tai = (int)luaL_optinteger(L, 3, 0);
    stamp_ns_t v;
    int rc = stamp_ts_decode((const uint8_t *)s, strcmp(f, "PTP") == 0 ? STAMP_CLOCK_PTP : STAMP_CLOCK_NTP, tai, &v);
    push_i64(L, v);
    lua_pushboolean(L, rc == 0);
    return 2;
}

/***
 * Error Estimate helpers: pack a table, or unpack an integer.
 * @function ee
 * @tparam table|integer v `{s=,z=,scale=,mult=}` or a 16-bit value
 * @treturn integer|table the other form
 */
static int l_ee(lua_State *L)
{
    if (lua_istable(L, 1)) {
        stamp_ee_t ee;
        ee.s = (unsigned)opt_int(L, 1, "s", 0, 0, 1);
        ee.z = (unsigned)opt_int(L, 1, "z", 0, 0, 1);
        ee.scale = (unsigned)opt_int(L, 1, "scale", 0, 0, 63);
        ee.mult = (unsigned)opt_int(L, 1, "mult", 1, 1, 255);
        lua_pushinteger(L, stamp_ee_pack(&ee));
        return 1;
    }
    lua_Integer v = luaL_checkinteger(L, 1);
    luaL_argcheck(L, v >= 0 && v <= 0xffff, 1, "16-bit value expected");
    stamp_ee_t ee;
    stamp_ee_unpack((uint16_t)v, &ee);
    push_ee(L, &ee);
    return 1;
}

/***
 * The local clock's Error Estimate (S from the kernel's sync state).
 * @function local_ee
 * @tparam[opt="NTP"] string format
 * @treturn table
 */
static int l_local_ee(lua_State *L)
{
    const char *f = luaL_optstring(L, 1, "NTP");
    stamp_ee_t ee;
    stamp_ee_local(&ee, strcmp(f, "PTP") == 0 ? STAMP_CLOCK_PTP : STAMP_CLOCK_NTP);
    push_ee(L, &ee);
    return 1;
}

/***
 * TAI - UTC offset in seconds known to the kernel (0 when unset).
 * @function tai_offset
 * @treturn integer
 */
static int l_tai_offset(lua_State *L)
{
    lua_pushinteger(L, stamp_tai_offset());
    return 1;
}


/* ------------------------------------------------------------------ */
/* TLVs: table-driven encode/decode through the core's registry        */
/* ------------------------------------------------------------------ */

static void push_octets_addr(lua_State *L, const uint8_t *v, size_t n)
{
    char buf[INET6_ADDRSTRLEN];
    if ((n == 4 && inet_ntop(AF_INET, v, buf, sizeof buf)) || (n == 16 && inet_ntop(AF_INET6, v, buf, sizeof buf)))
        lua_pushstring(L, buf);
    else
        lua_pushlstring(L, (const char *)v, n);
}

static void push_flags(lua_State *L, uint8_t f)
{
    set_int(L, "flags", f);
    lua_pushboolean(L, (f & STAMP_TLV_U) != 0);
    lua_setfield(L, -2, "u");
    lua_pushboolean(L, (f & STAMP_TLV_M) != 0);
    lua_setfield(L, -2, "m");
    lua_pushboolean(L, (f & STAMP_TLV_I) != 0);
    lua_setfield(L, -2, "i");
    lua_pushboolean(L, (f & STAMP_TLV_C) != 0);
    lua_setfield(L, -2, "c");
}

/* Push the fields of one TLV value into the table on top. */
static void push_fields(lua_State *L, const stamp_tlv_def_t *d, const uint8_t *v, uint16_t len, stamp_clock_t fmt)
{
    for (const stamp_tlv_field_t *f = d->fields; f->name; f++) {
        size_t off = f->bitpos / 8;
        switch (f->kind) {
        case STAMP_F_UINT:
            if ((size_t)(f->bitpos + f->width + 7) / 8 <= len) {
                push_i64(L, (long long)stamp_field_get(v, len, f));
                lua_setfield(L, -2, f->name);
            }
            break;
        case STAMP_F_TS:
            if (off + 8 <= len) {
                static const uint8_t zero[8] = {0};
                if (memcmp(v + off, zero, 8) == 0) { /* "no timestamp": only the raw octets */
                    char raw[64];
                    snprintf(raw, sizeof raw, "%s_raw", f->name);
                    lua_pushlstring(L, (const char *)zero, 8);
                    lua_setfield(L, -2, raw);
                } else {
                    push_ts(L, v + off, f->name, fmt);
                }
            }
            break;
        case STAMP_F_ADDR:
            if (len - off == 4 || len - off == 16) {
                push_octets_addr(L, v + off, len - off);
                lua_setfield(L, -2, f->name);
            }
            break;
        default: {
            size_t n = f->width ? f->width : len - off;
            if (off + n <= len) {
                lua_pushlstring(L, (const char *)v + off, n);
                lua_setfield(L, -2, f->name);
            }
        }
        }
    }
}

static void push_subtlvs(lua_State *L, const stamp_tlv_def_t *d, const uint8_t *v, uint16_t len)
{
    size_t pos = d->sub_off;
    stamp_tlv_t t;
    int i = 0;
    lua_newtable(L); /* subtlvs */
    while (stamp_tlv_next(v, len, &pos, &t) == 1) {
        const uint8_t *sv = v + t.off + STAMP_TLV_HDR;
        const stamp_subtlv_def_t *sd = NULL;
        for (const stamp_subtlv_def_t *x = d->subs; x->type; x++)
            if (x->type == t.type) sd = x;
        lua_createtable(L, 0, 8);
        set_int(L, "type", t.type);
        push_flags(L, t.flags);
        set_int(L, "length", t.len);
        lua_pushlstring(L, (const char *)sv, t.len);
        lua_setfield(L, -2, "value");
        if (sd) {
            lua_pushstring(L, sd->name);
            lua_setfield(L, -2, "name");
            /* also as a field of the parent, e.g. location.src_addr */
            int pushed = 1;
            if (sd->kind == STAMP_F_ADDR) {
                size_t n = sd->width ? sd->width : t.len;
                if (n <= t.len && (n == 4 || n == 16))
                    push_octets_addr(L, sv, n);
                else
                    pushed = 0;
            } else if (sd->kind == STAMP_F_UINT && t.len == 4) {
                push_i64(L, (long long)((uint32_t)sv[0] << 24 | (uint32_t)sv[1] << 16 | (uint32_t)sv[2] << 8 | sv[3]));
            } else {
                lua_pushlstring(L, (const char *)sv, t.len);
            }
            if (pushed) {
                lua_pushvalue(L, -1);
                lua_setfield(L, -3, sd->kind == STAMP_F_ADDR ? "addr" : sd->kind == STAMP_F_UINT ? "uint32" : "data");
                lua_setfield(L, -4, sd->name); /* parent[name], e.g. location.src_addr */
            }
        }
        lua_rawseti(L, -2, ++i);
    }
    lua_setfield(L, -2, "subtlvs");
}

/* Push `list, map` for the TLVs in pkt[base..len). */
static void push_tlvs(lua_State *L, const uint8_t *pkt, size_t base, size_t len, stamp_clock_t fmt)
{
    size_t pos = base;
    stamp_tlv_t t;
    int i = 0, r;
    lua_newtable(L); /* list */
    lua_newtable(L); /* map */
    while ((r = stamp_tlv_next(pkt, len, &pos, &t)) != 0) {
        const stamp_tlv_def_t *d = stamp_tlv_lookup(t.type);
        const uint8_t *v = pkt + t.off + STAMP_TLV_HDR;
        lua_createtable(L, 0, 12);
        set_int(L, "type", t.type);
        push_flags(L, t.flags);
        set_int(L, "length", t.len);
        if (r < 0) { /* runs past the packet */
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "truncated");
        } else {
            lua_pushlstring(L, (const char *)v, t.len);
            lua_setfield(L, -2, "value");
        }
        char keybuf[32];
        const char *key = keybuf;
        if (d) {
            lua_pushstring(L, d->name);
            lua_setfield(L, -2, "name");
            key = d->key;
            if (r > 0 && stamp_tlv_len_ok(d, t.len)) {
                push_fields(L, d, v, t.len, fmt);
                if (d->sub_off != 0xffff && d->sub_off <= t.len) push_subtlvs(L, d, v, t.len);
            }
        } else {
            snprintf(keybuf, sizeof keybuf, "type%u", (unsigned)t.type);
        }
        lua_pushstring(L, key);
        lua_setfield(L, -2, "key");
        lua_pushvalue(L, -1);
        lua_rawseti(L, -4, ++i); /* list[i] */
        lua_getfield(L, -2, key);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_setfield(L, -2, key); /* map[key] = first of its kind */
        } else {
            lua_pop(L, 2);
        }
        if (r < 0) break;
    }
}

/***
 * Decode a TLV area (what follows the base packet).
 * @function tlv_decode
 * @tparam string s the octets after the base packet
 * @tparam[opt="NTP"] string format timestamp format for Follow-Up Telemetry
 * @treturn table list of TLVs in order: `type`, `key`, `name`, `flags`, `u`, `m`, `i`, `c`, `length`, `value`, the type's fields, `subtlvs`
 * @treturn table the same TLVs by key (first of each type)
 */
static int l_tlv_decode(lua_State *L)
{
    size_t len;
    const uint8_t *b = (const uint8_t *)luaL_checklstring(L, 1, &len);
    const char *f = luaL_optstring(L, 2, "NTP");
    push_tlvs(L, b, 0, len, strcmp(f, "PTP") == 0 ? STAMP_CLOCK_PTP : STAMP_CLOCK_NTP);
    return 2;
}

static int parse_ip(const char *s, uint8_t out[16])
{
    if (inet_pton(AF_INET, s, out) == 1) return 4;
    if (inet_pton(AF_INET6, s, out) == 1) return 16;
    return 0;
}

/* Encode one TLV spec (table at index t) into out; returns octets written. */
static size_t encode_one(lua_State *L, int t, uint8_t *out, size_t cap, int idx)
{
    const stamp_tlv_def_t *d = NULL;
    lua_getfield(L, t, "key");
    if (lua_isstring(L, -1)) {
        d = stamp_tlv_by_key(lua_tostring(L, -1));
        if (!d) luaL_error(L, "bad TLV #%d (unknown key '%s')", idx, lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    long long type = opt_int(L, t, "type", d ? d->type : -1, 0, 255);
    if (type < 0) luaL_error(L, "bad TLV #%d (type or key expected)", idx);
    if (!d) d = stamp_tlv_lookup((unsigned)type);
    unsigned flags = (unsigned)opt_int(L, t, "flags", STAMP_TLV_U, 0, 255);
    size_t rawlen = 0;
    const char *raw = opt_str(L, t, "value", NULL, &rawlen);
    if (cap < STAMP_TLV_HDR) luaL_error(L, "TLVs too long");
    uint8_t *v = out + STAMP_TLV_HDR;
    size_t room = cap - STAMP_TLV_HDR;
    size_t len;
    if (raw) {
        len = rawlen;
        if (len > room || len > 0xffff) luaL_error(L, "bad TLV #%d (value too long)", idx);
        memcpy(v, raw, len);
    } else {
        len = d ? d->default_len : 0;
        /* sub-TLVs decide the length when given */
        lua_getfield(L, t, "subtlvs");
        int has_subs = lua_istable(L, -1);
        lua_pop(L, 1);
        if (has_subs) len = d && d->sub_off != 0xffff ? d->sub_off : 0;
        /* an address field decides it too */
        if (d)
            for (const stamp_tlv_field_t *f = d->fields; f->name; f++)
                if (f->kind == STAMP_F_ADDR) {
                    const char *a = opt_str(L, t, f->name, NULL, NULL);
                    uint8_t oct[16];
                    int n = a ? parse_ip(a, oct) : 0;
                    if (a && !n) luaL_error(L, "bad TLV #%d (field '%s': not an IP address)", idx, f->name);
                    if (n) len = f->bitpos / 8 + (size_t)n;
                }
        if (len > room) luaL_error(L, "bad TLV #%d (too long)", idx);
        memset(v, 0, len);
        if (d) {
            for (const stamp_tlv_field_t *f = d->fields; f->name; f++) {
                size_t off = f->bitpos / 8;
                lua_getfield(L, t, f->name);
                int isnil = lua_isnil(L, -1);
                lua_pop(L, 1);
                if (f->kind == STAMP_F_UINT && !isnil) {
                    long long x = opt_int(L, t, f->name, 0, 0, f->width >= 63 ? 0x7fffffffffffffffLL
                                                                              : (1LL << f->width) - 1);
                    stamp_field_set(v, len, f, (uint64_t)x);
                } else if (f->kind == STAMP_F_ADDR && !isnil) {
                    uint8_t oct[16];
                    int n = parse_ip(opt_str(L, t, f->name, NULL, NULL), oct);
                    memcpy(v + off, oct, (size_t)n);
                } else if (f->kind == STAMP_F_TS && off + 8 <= len) {
                    char rawname[64];
                    snprintf(rawname, sizeof rawname, "%s_raw", f->name);
                    lua_getfield(L, t, rawname);
                    int has_raw = !lua_isnil(L, -1);
                    lua_pop(L, 1);
                    if (!isnil || has_raw) check_ts(L, t, f->name, STAMP_CLOCK_NTP, v + off);
                } else if (f->kind == STAMP_F_BYTES && !isnil) {
                    size_t n;
                    const char *b = opt_str(L, t, f->name, NULL, &n);
                    if (off + n > len) luaL_error(L, "bad TLV #%d (field '%s' too long)", idx, f->name);
                    memcpy(v + off, b, n);
                }
            }
        }
        if (has_subs) {
            lua_getfield(L, t, "subtlvs");
            int st = lua_gettop(L);
            size_t n = lua_rawlen(L, st);
            for (size_t k = 1; k <= n; k++) {
                lua_rawgeti(L, st, (int)k);
                int e = lua_gettop(L);
                if (!lua_istable(L, e)) luaL_error(L, "bad TLV #%d (sub-TLV %d is not a table)", idx, (int)k);
                unsigned stype = (unsigned)opt_int(L, e, "type", 0, 0, 255);
                unsigned sflags = (unsigned)opt_int(L, e, "flags", STAMP_TLV_U, 0, 255);
                size_t svl = 0;
                const char *sv = opt_str(L, e, "value", NULL, &svl);
                const char *saddr = opt_str(L, e, "addr", NULL, NULL);
                uint8_t oct[16];
                int an = saddr ? parse_ip(saddr, oct) : 0;
                if (saddr && !an) luaL_error(L, "bad TLV #%d (sub-TLV %d: not an IP address)", idx, (int)k);
                lua_getfield(L, e, "uint32");
                int has_u = !lua_isnil(L, -1);
                lua_pop(L, 1);
                size_t sl = sv ? svl : an ? (size_t)an : has_u ? 4 : 0;
                sl = (size_t)opt_int(L, e, "length", (long long)sl, 0, 0xffff);
                if (len + STAMP_TLV_HDR + sl > room) luaL_error(L, "bad TLV #%d (too long)", idx);
                uint8_t *sp = v + len;
                sp[0] = (uint8_t)sflags;
                sp[1] = (uint8_t)stype;
                wr16be(sp + 2, (uint16_t)sl);
                memset(sp + STAMP_TLV_HDR, 0, sl);
                if (sv) memcpy(sp + STAMP_TLV_HDR, sv, svl < sl ? svl : sl);
                if (an && (size_t)an <= sl) memcpy(sp + STAMP_TLV_HDR, oct, (size_t)an);
                if (has_u && sl >= 4) {
                    uint32_t u = (uint32_t)opt_int(L, e, "uint32", 0, 0, 0xffffffffLL);
                    wr16be(sp + STAMP_TLV_HDR, (uint16_t)(u >> 16));
                    wr16be(sp + STAMP_TLV_HDR + 2, (uint16_t)u);
                }
                len += STAMP_TLV_HDR + sl;
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        len = (size_t)opt_int(L, t, "length", (long long)len, 0, (long long)(room < 0xffff ? room : 0xffff));
    }
    out[0] = (uint8_t)flags;
    out[1] = (uint8_t)type;
    wr16be(out + 2, (uint16_t)len);
    return STAMP_TLV_HDR + len;
}

/***
 * Encode a list of TLV specs (as made by `stamp.tlv`) into octets.
 * Each spec has `type` or `key`, optional `flags` (default U = 0x80), `length`,
 * `value` (raw octets) or the type's named fields, and `subtlvs`.
 * @function tlv_encode
 * @tparam table list
 * @treturn string
 */
static int l_tlv_encode(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t n = lua_rawlen(L, 1), used = 0;
    uint8_t *buf = lua_newuserdata(L, STAMP_MAX_PKT); /* scratch, collected by the GC */
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, (int)i);
        if (!lua_istable(L, -1)) luaL_error(L, "bad TLV #%d (table expected)", (int)i);
        used += encode_one(L, lua_gettop(L), buf + used, STAMP_MAX_PKT - STAMP_AUTH_BASE_LEN - used, (int)i);
        lua_pop(L, 1);
    }
    lua_pushlstring(L, (const char *)buf, used);
    return 1;
}

/***
 * The TLV registry: one entry per known type.
 * @function tlv_registry
 * @treturn table list of `{type=, name=, key=, min_len=, max_len=, default_len=, fields={...}}`
 */
static int l_tlv_registry(lua_State *L)
{
    size_t n;
    const stamp_tlv_def_t *reg = stamp_tlv_registry(&n);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        const stamp_tlv_def_t *d = &reg[i];
        lua_createtable(L, 0, 7);
        set_int(L, "type", d->type);
        lua_pushstring(L, d->name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, d->key);
        lua_setfield(L, -2, "key");
        set_int(L, "min_len", d->min_len);
        set_int(L, "max_len", d->max_len);
        set_int(L, "default_len", d->default_len);
        lua_newtable(L);
        int k = 0;
        for (const stamp_tlv_field_t *f = d->fields; f->name; f++) {
            lua_pushstring(L, f->name);
            lua_rawseti(L, -2, ++k);
        }
        lua_setfield(L, -2, "fields");
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}


/***
 * Wait until one of several file descriptors is readable.
 * @function poll
 * @tparam table fds array of file descriptors
 * @tparam[opt=-1] integer timeout milliseconds (negative: forever)
 * @treturn table|nil array of booleans (readable per fd), or nil, message, code (EINTR gives all false)
 */
static int l_poll(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int t = (int)luaL_optinteger(L, 2, -1);
    size_t n = lua_rawlen(L, 1);
    if (n > 1024) luaL_argerror(L, 1, "at most 1024 descriptors");
    struct pollfd p[1024];
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 1, (int)i + 1);
        p[i].fd = (int)luaL_checkinteger(L, -1);
        p[i].events = POLLIN;
        p[i].revents = 0;
        lua_pop(L, 1);
    }
    int r = poll(p, (nfds_t)n, t);
    if (r < 0 && errno != EINTR) return push_fail(L, -errno);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushboolean(L, r > 0 && (p[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0);
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

/***
 * Is this file descriptor a terminal?
 * @function isatty
 * @tparam integer fd
 * @treturn boolean
 */
static int l_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

/* ------------------------------------------------------------------ */
/* signals (for the CLI's Ctrl-C summary)                              */
/* ------------------------------------------------------------------ */

static volatile sig_atomic_t g_signal = 0;

static void on_signal(int sig) { g_signal = sig; }

/***
 * Catch SIGINT and SIGTERM: a blocking step returns early, and `interrupted`
 * reports the signal. Process-wide; meant for command-line programs.
 * @function trap_signals
 */
static int l_trap_signals(lua_State *L)
{
    (void)L;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: poll() returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return 0;
}

/***
 * The signal caught since `trap_signals`, or false.
 * @function interrupted
 * @treturn integer|boolean
 */
static int l_interrupted(lua_State *L)
{
    if (g_signal)
        lua_pushinteger(L, g_signal);
    else
        lua_pushboolean(L, 0);
    return 1;
}


static void opt_policy(lua_State *L, int t, stamp_tlv_policy_t *p)
{
    memset(p, 0, sizeof *p);
    const char *mode = opt_str(L, t, "tlv_mode", "echo", NULL);
    if (strcmp(mode, "echo") == 0)
        p->process = 1;
    else if (strcmp(mode, "ignore") != 0)
        luaL_error(L, "bad option 'tlv_mode' (echo or ignore expected, got '%s')", mode);
    p->verify_hmac = opt_bool(L, t, "verify_tlv_hmac", 0);
    p->cos_refuse = opt_bool(L, t, "cos_refuse", 0);
    p->location_hide = opt_bool(L, t, "location_hide", 0);
    lua_getfield(L, t, "member_link_id");
    if (!lua_isnil(L, -1)) {
        p->has_member_link = 1;
        p->member_link = (uint16_t)opt_int(L, t, "member_link_id", 0, 1, 0xffff);
    }
    lua_pop(L, 1);
    p->refl_max_count = (unsigned)opt_int(L, t, "reflected_max_count", 0, 0, 1000);
    p->refl_max_size = (size_t)opt_int(L, t, "reflected_max_size", STAMP_MAX_PKT, 0, STAMP_MAX_PKT);
    p->refl_min_interval = opt_int(L, t, "reflected_min_interval_ns", 1000000, 0, 3600LL * STAMP_NS_PER_SEC);
    lua_getfield(L, t, "allow_return_address");
    if (lua_istable(L, -1)) {
        int a = lua_gettop(L);
        size_t n = lua_rawlen(L, a);
        if (n > 16) luaL_error(L, "bad option 'allow_return_address' (at most 16 prefixes)");
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, a, (int)i);
            const char *pfx = lua_tostring(L, -1);
            char host[INET6_ADDRSTRLEN + 1];
            int plen = -1;
            const char *slash = pfx ? strchr(pfx, '/') : NULL;
            size_t hl = slash ? (size_t)(slash - pfx) : (pfx ? strlen(pfx) : 0);
            if (!pfx || hl == 0 || hl >= sizeof host) luaL_error(L, "bad option 'allow_return_address' (prefix expected)");
            memcpy(host, pfx, hl);
            host[hl] = 0;
            int nb = parse_ip(host, p->allow_return[i - 1].addr);
            if (slash) plen = atoi(slash + 1);
            if (!nb || (slash && (plen < 0 || plen > nb * 8 || !slash[1])))
                luaL_error(L, "bad option 'allow_return_address' (bad prefix '%s')", pfx);
            p->allow_return[i - 1].family = nb == 4 ? AF_INET : AF_INET6;
            p->allow_return[i - 1].plen = slash ? plen : nb * 8;
            lua_pop(L, 1);
        }
        p->n_allow_return = (int)n;
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "bad option 'allow_return_address' (list of prefixes expected)");
    }
    lua_pop(L, 1);
}


/* Counters are pushed from tables: name and offset of each uint64_t field. */
typedef struct {
    const char *name;
    size_t off;
} counter_t;

#define RC(f) {#f, offsetof(stamp_reflector_counters_t, f)}
static const counter_t REFLECTOR_COUNTERS[] = {
    RC(rx),           RC(reflected),     RC(short_padded),  RC(drop_short),       RC(drop_truncated),
    RC(drop_hmac),    RC(drop_sessions), RC(drop_tx),       RC(drop_micro),       RC(no_reply),
    RC(extra_replies), RC(tlv_unknown),  RC(tlv_malformed), RC(tlv_integrity),    RC(sessions_active),
    RC(sessions_created), RC(sessions_reaped), {NULL, 0}};
#define SC(f) {#f, offsetof(stamp_sender_counters_t, f)}
static const counter_t SENDER_COUNTERS[] = {SC(sent),      SC(received),     SC(lost),      SC(duplicates), SC(late),
                                            SC(drop_hmac), SC(drop_invalid), SC(tx_errors), {NULL, 0}};

static void push_counters(lua_State *L, const void *c, const counter_t *t)
{
    lua_newtable(L);
    for (; t->name; t++) {
        uint64_t v;
        memcpy(&v, (const char *)c + t->off, sizeof v);
        set_int(L, t->name, (long long)v);
    }
}

/* ------------------------------------------------------------------ */
/* reflector                                                           */
/* ------------------------------------------------------------------ */

static lreflector_t *check_reflector(lua_State *L)
{
    lreflector_t *o = luaL_checkudata(L, 1, REFLECTOR_MT);
    if (!o->r) luaL_error(L, "attempt to use a closed reflector");
    return o;
}

/***
 * Create a Session-Reflector bound to a UDP socket.
 * @function reflector
 * @tparam table cfg `local_addr`, `local_port` (862), `auth`, `key`, `clock`, `stateful`, `session_timeout` (s),
 * `max_sessions`, `strict_packets`, `ttl` (255), `tos`, `batch` (datagrams per system call, 1..32), and the TLV
 * policy: `tlv_mode`, `verify_tlv_hmac`, `cos_refuse`, `location_hide`, `member_link_id`, `allow_return_address`,
 * `reflected_max_count`, `reflected_max_size`, `reflected_min_interval_ns`
 * @return reflector object, or nil, message, code
 */
static int l_reflector(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    stamp_reflector_cfg_t c;
    memset(&c, 0, sizeof c);
    opt_sock(L, 1, &c.sock);
    c.sock.port = (unsigned)opt_int(L, 1, "local_port", 862, 0, 65535);
    opt_auth(L, 1, &c.mode, &c.key, &c.keylen);
    c.clock = opt_clock(L, 1);
    c.stateful = opt_bool(L, 1, "stateful", 0);
    lua_getfield(L, 1, "session_timeout");
    c.session_timeout = luaL_optnumber(L, -1, 300);
    lua_pop(L, 1);
    if (!(c.session_timeout > 0)) luaL_error(L, "bad option 'session_timeout' (positive number expected)");
    c.max_sessions = (unsigned)opt_int(L, 1, "max_sessions", 65536, 1, 1 << 24);
    c.strict_packets = opt_bool(L, 1, "strict_packets", 0);
    opt_policy(L, 1, &c.tlv);
    c.batch = (int)opt_int(L, 1, "batch", STAMP_BATCH, 1, STAMP_BATCH);
    lreflector_t *o = lua_newuserdata(L, sizeof *o);
    o->r = NULL;
    luaL_setmetatable(L, REFLECTOR_MT);
    int rc = stamp_reflector_new(&c, &o->r);
    if (rc) return push_fail(L, rc);
    return 1;
}

/***
 * Process what is ready, waiting up to `timeout` ms first.
 * @function reflector:step
 * @tparam[opt=0] integer timeout milliseconds (negative: wait until something arrives)
 * @treturn integer|nil datagrams handled, or nil, message, code
 */
static int r_step(lua_State *L)
{
    lreflector_t *o = check_reflector(L);
    int t = (int)luaL_optinteger(L, 2, 0);
    int n = stamp_reflector_step(o->r, t);
    if (n == -EINTR) n = 0;
    if (n < 0) return push_fail(L, n);
    lua_pushinteger(L, n);
    return 1;
}

/***
 * The socket's file descriptor, for a host event loop.
 * @function reflector:fd
 * @treturn integer
 */
static int r_fd(lua_State *L)
{
    lua_pushinteger(L, stamp_reflector_fd(check_reflector(L)->r));
    return 1;
}

/***
 * The bound local address and port.
 * @function reflector:local_addr
 * @treturn string
 * @treturn integer
 */
static int r_local(lua_State *L)
{
    stamp_addr_t a;
    stamp_reflector_local(check_reflector(L)->r, &a);
    push_addr(L, &a);
    return 2;
}

/***
 * Counters: rx, reflected, short_padded, drop_short, drop_truncated, drop_hmac, drop_sessions, drop_tx,
 * drop_micro, no_reply, extra_replies, tlv_unknown, tlv_malformed, tlv_integrity, sessions_active,
 * sessions_created, sessions_reaped.
 * @function reflector:counters
 * @treturn table
 */
static int r_counters(lua_State *L)
{
    stamp_reflector_counters_t c;
    stamp_reflector_counters(check_reflector(L)->r, &c);
    push_counters(L, &c, REFLECTOR_COUNTERS);
    return 1;
}

/***
 * Close the socket and free the engine (idempotent).
 * @function reflector:close
 */
static int r_close(lua_State *L)
{
    lreflector_t *o = luaL_checkudata(L, 1, REFLECTOR_MT);
    stamp_reflector_free(o->r);
    o->r = NULL;
    return 0;
}

static int r_tostring(lua_State *L)
{
    lreflector_t *o = luaL_checkudata(L, 1, REFLECTOR_MT);
    if (!o->r) {
        lua_pushstring(L, "stamp.reflector (closed)");
        return 1;
    }
    stamp_addr_t a;
    char host[64] = "?";
    unsigned port = 0;
    stamp_reflector_local(o->r, &a);
    stamp_addr_format(&a, host, sizeof host, &port);
    lua_pushfstring(L, "stamp.reflector (%s port %d)", host, (int)port);
    return 1;
}

/* ------------------------------------------------------------------ */
/* sender                                                              */
/* ------------------------------------------------------------------ */

static lsender_t *check_sender(lua_State *L)
{
    lsender_t *o = luaL_checkudata(L, 1, SENDER_MT);
    if (!o->s) luaL_error(L, "attempt to use a closed sender");
    return o;
}

/***
 * Create a Session-Sender.
 * @function sender
 * @tparam table cfg `remote_addr` (required), `remote_port` (862), `local_addr`, `local_port` (0), `count`, `interval_ns`, `timeout_ns`, `ssid`, `auth`, `key`, `clock`, `ttl` (255), `tos`, `packet_len`
 * @return sender object, or nil, message, code
 */
static int l_sender(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    stamp_sender_cfg_t c;
    memset(&c, 0, sizeof c);
    opt_sock(L, 1, &c.sock);
    c.remote_addr = opt_str(L, 1, "remote_addr", NULL, NULL);
    if (!c.remote_addr) luaL_error(L, "bad option 'remote_addr' (string expected, got nil)");
    c.remote_port = (unsigned)opt_int(L, 1, "remote_port", 862, 1, 65535);
    c.count = (uint64_t)opt_int(L, 1, "count", 1000, 0, 0xffffffffLL);
    c.interval = opt_int(L, 1, "interval_ns", 1000000000LL, 0, 3600LL * STAMP_NS_PER_SEC);
    c.timeout = opt_int(L, 1, "timeout_ns", 5000000000LL, 1, 3600LL * STAMP_NS_PER_SEC);
    c.ssid = (uint16_t)opt_int(L, 1, "ssid", 0, 0, 0xffff);
    opt_auth(L, 1, &c.mode, &c.key, &c.keylen);
    c.clock = opt_clock(L, 1);
    c.packet_len = (size_t)opt_int(L, 1, "packet_len", 0, 0, STAMP_MAX_PKT);
    {
        const char *sched = opt_str(L, 1, "schedule", "periodic", NULL);
        if (strcmp(sched, "poisson") == 0)
            c.poisson = 1;
        else if (strcmp(sched, "periodic") != 0)
            luaL_error(L, "bad option 'schedule' (periodic or poisson expected, got '%s')", sched);
        c.seed = (uint64_t)opt_int(L, 1, "seed", 0, 0, 0x7fffffffffffffffLL);
    }
    c.tlvs = (const uint8_t *)opt_str(L, 1, "tlvs", NULL, &c.tlvs_len);
    if (c.tlvs_len > STAMP_MAX_PKT - stamp_base_len(c.mode)) luaL_error(L, "bad option 'tlvs' (too long)");
    if (c.packet_len && c.packet_len < stamp_base_len(c.mode) + c.tlvs_len)
        luaL_error(L, "bad option 'packet_len' (at least %d octets in this mode)", (int)stamp_base_len(c.mode));
    lsender_t *o = lua_newuserdata(L, sizeof *o);
    o->s = NULL;
    o->base = stamp_base_len(c.mode);
    luaL_setmetatable(L, SENDER_MT);
    int rc = stamp_sender_new(&c, &o->s);
    if (rc) return push_fail(L, rc);
    return 1;
}

static void push_result(lua_State *L, const stamp_result_t *r, size_t base)
{
    lua_createtable(L, 0, 24);
    set_int(L, "seq", r->seq);
    lua_pushboolean(L, r->status == STAMP_RES_LOST);
    lua_setfield(L, -2, "lost");
    set_int(L, "t1", r->t1);
    if (r->status == STAMP_RES_LOST) return;
    set_int(L, "refl_seq", r->refl_seq);
    set_int(L, "ssid", r->ssid);
    set_int(L, "t2", r->t2);
    set_int(L, "t3", r->t3);
    set_int(L, "t4", r->t4);
    set_int(L, "rtt", r->rtt);
    set_int(L, "fwd", r->fwd);
    set_int(L, "bwd", r->bwd);
    set_int(L, "ttl", r->sender_ttl);
    if (r->reply_ttl >= 0) set_int(L, "reply_ttl", r->reply_ttl);
    if (r->reply_tos >= 0) set_int(L, "reply_tos", r->reply_tos);
    lua_pushboolean(L, r->rx_kernel);
    lua_setfield(L, -2, "kernel_rx");
    push_ee(L, &r->sender_ee);
    lua_setfield(L, -2, "sender_ee");
    push_ee(L, &r->refl_ee);
    lua_setfield(L, -2, "refl_ee");
    set_int(L, "length", (long long)r->pkt_len);
    lua_pushlstring(L, (const char *)r->pkt, r->pkt_len);
    lua_setfield(L, -2, "packet");
    if (r->tlv_hmac >= 0) {
        lua_pushboolean(L, r->tlv_hmac);
        lua_setfield(L, -2, "tlv_hmac_ok");
    }
    if (r->pkt_len > base) {
        push_tlvs(L, r->pkt, base, r->pkt_len, r->refl_ee.z ? STAMP_CLOCK_PTP : STAMP_CLOCK_NTP);
        lua_setfield(L, -3, "tlvs");
        lua_setfield(L, -2, "tlv_list");
    }
}

/***
 * Send what is due, wait up to `timeout` ms for replies, and return the
 * per-packet results that became final (answered or lost).
 * @function sender:step
 * @tparam[opt=0] integer timeout milliseconds (negative: until the next deadline)
 * @treturn table|nil array of results (fields seq, lost, t1..t4, rtt, fwd, bwd in ns, ttl, refl_seq, ...), or nil, message, code
 */
static int s_step(lua_State *L)
{
    lsender_t *o = check_sender(L);
    int t = (int)luaL_optinteger(L, 2, 0);
    stamp_result_t res[RESULTS_MAX];
    int n = stamp_sender_step(o->s, t, res, RESULTS_MAX);
    if (n == -EINTR) n = 0;
    if (n < 0) return push_fail(L, n);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        push_result(L, &res[i], o->base);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/***
 * True once every packet was sent and answered or declared lost.
 * @function sender:done
 * @treturn boolean
 */
static int s_done(lua_State *L)
{
    lua_pushboolean(L, stamp_sender_done(check_sender(L)->s));
    return 1;
}

/***
 * Milliseconds until the sender needs the next step (-1: never, it is done).
 * @function sender:next_timeout
 * @treturn integer
 */
static int s_next_timeout(lua_State *L)
{
    lua_pushinteger(L, stamp_sender_next_timeout(check_sender(L)->s));
    return 1;
}

/***
 * Stop sending new packets; those in flight are still awaited.
 * @function sender:stop
 */
static int s_stop(lua_State *L)
{
    stamp_sender_stop(check_sender(L)->s);
    return 0;
}

/***
 * The socket's file descriptor.
 * @function sender:fd
 * @treturn integer
 */
static int s_fd(lua_State *L)
{
    lua_pushinteger(L, stamp_sender_fd(check_sender(L)->s));
    return 1;
}

/***
 * The bound local address and port.
 * @function sender:local_addr
 * @treturn string
 * @treturn integer
 */
static int s_local(lua_State *L)
{
    stamp_addr_t a;
    stamp_sender_local(check_sender(L)->s, &a);
    push_addr(L, &a);
    return 2;
}

/***
 * Counters: sent, received, lost, duplicates, late, drop_hmac, drop_invalid, tx_errors.
 * @function sender:counters
 * @treturn table
 */
static int s_counters(lua_State *L)
{
    stamp_sender_counters_t c;
    stamp_sender_counters(check_sender(L)->s, &c);
    push_counters(L, &c, SENDER_COUNTERS);
    return 1;
}

/***
 * Close the socket and free the engine (idempotent).
 * @function sender:close
 */
static int s_close(lua_State *L)
{
    lsender_t *o = luaL_checkudata(L, 1, SENDER_MT);
    stamp_sender_free(o->s);
    o->s = NULL;
    return 0;
}

static int s_tostring(lua_State *L)
{
    lsender_t *o = luaL_checkudata(L, 1, SENDER_MT);
    if (!o->s) {
        lua_pushstring(L, "stamp.sender (closed)");
        return 1;
    }
    stamp_sender_counters_t c;
    stamp_sender_counters(o->s, &c);
    lua_pushfstring(L, "stamp.sender (%d sent, %d received)", (int)c.sent, (int)c.received);
    return 1;
}

/* ------------------------------------------------------------------ */

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
                      lua_CFunction tostr)
{
    luaL_newmetatable(L, name);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -3, "__gc");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -3, "__close");
    lua_pushcfunction(L, tostr);
    lua_setfield(L, -3, "__tostring");
    lua_pushstring(L, name);
    lua_setfield(L, -3, "__name");
    /* leave the methods table on the stack for core.methods */
    lua_remove(L, -2);
}

int luaopen_stamp_core(lua_State *L) __attribute__((visibility("default")));

int luaopen_stamp_core(lua_State *L)
{
    static const luaL_Reg rmethods[] = {{"step", r_step},         {"fd", r_fd},     {"local_addr", r_local},
                                        {"counters", r_counters}, {"close", r_close}, {NULL, NULL}};
    static const luaL_Reg smethods[] = {{"step", s_step},     {"done", s_done},         {"next_timeout", s_next_timeout},
                                        {"stop", s_stop},     {"fd", s_fd},             {"local_addr", s_local},
                                        {"counters", s_counters}, {"close", s_close}, {NULL, NULL}};
    static const luaL_Reg funcs[] = {{"reflector", l_reflector},
                                     {"sender", l_sender},
                                     {"encode_test", l_encode_test},
                                     {"decode_test", l_decode_test},
                                     {"encode_reflected", l_encode_reflected},
                                     {"decode_reflected", l_decode_reflected},
                                     {"hmac", l_hmac},
                                     {"tlv_encode", l_tlv_encode},
                                     {"tlv_decode", l_tlv_decode},
                                     {"tlv_registry", l_tlv_registry},
                                     {"auth_sign", l_auth_sign},
                                     {"hex_decode", l_hex_decode},
                                     {"now", l_now},
                                     {"mono", l_mono},
                                     {"ts_encode", l_ts_encode},
                                     {"ts_decode", l_ts_decode},
                                     {"ee", l_ee},
                                     {"local_ee", l_local_ee},
                                     {"tai_offset", l_tai_offset},
                                     {"trap_signals", l_trap_signals},
                                     {"poll", l_poll},
                                     {"isatty", l_isatty},
                                     {"interrupted", l_interrupted},
                                     {NULL, NULL}};
    luaL_newlib(L, funcs);
    lua_newtable(L); /* core.methods: lets the Lua layer add methods to the one metatable per class */
    new_class(L, REFLECTOR_MT, rmethods, r_close, r_tostring);
    lua_setfield(L, -2, "reflector");
    new_class(L, SENDER_MT, smethods, s_close, s_tostring);
    lua_setfield(L, -2, "sender");
    lua_setfield(L, -2, "methods");
    lua_pushstring(L, STAMP_VERSION);
    lua_setfield(L, -2, "_VERSION");
    lua_pushinteger(L, STAMP_BASE_LEN);
    lua_setfield(L, -2, "BASE_LEN");
    lua_pushinteger(L, STAMP_AUTH_BASE_LEN);
    lua_setfield(L, -2, "AUTH_BASE_LEN");
    lua_pushinteger(L, STAMP_MAX_PKT);
    lua_setfield(L, -2, "MAX_PKT");
    return 1;
}
