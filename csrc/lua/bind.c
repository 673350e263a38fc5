/* bind.c - helpers shared by the files of the Lua binding (see bind.h). */
#include "bind.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

void wr16be(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

int push_fail(lua_State *L, int code)
{
    lua_pushnil(L);
    lua_pushstring(L, stamp_strerror(code));
    lua_pushinteger(L, code);
    return 3;
}

stamp_clock_t clock_of(const char *format)
{
    return strcmp(format, "PTP") == 0 ? STAMP_CLOCK_PTP : STAMP_CLOCK_NTP;
}

/* "V out of range LO..HI", pushed on the stack (lua_pushfstring has no %lld). */
const char *range_msg(lua_State *L, long long v, long long lo, long long hi)
{
    char msg[96];
    snprintf(msg, sizeof msg, "%lld out of range %lld..%lld", v, lo, hi);
    lua_pushstring(L, msg); /* returns void on Lua 5.1 */
    return lua_tostring(L, -1);
}

/* Read option `k` of the table at index t as an integer in [lo, hi]. */
long long opt_int(lua_State *L, int t, const char *k, long long def, long long lo, long long hi)
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
        if (v < lo || v > hi) luaL_error(L, "bad option '%s' (%s)", k, range_msg(L, v, lo, hi));
    }
    lua_pop(L, 1);
    return v;
}

long long check_int(lua_State *L, int i, long long lo, long long hi)
{
    long long v;
#if LUA_VERSION_NUM >= 503
    if (lua_isinteger(L, i)) {
        v = (long long)lua_tointeger(L, i);
    } else
#endif
    {
        lua_Number n = luaL_checknumber(L, i);
        /* NaN fails both comparisons; +-inf and huge values fail one of them */
        if (!(n >= -9223372036854775808.0 && n < 9223372036854775808.0) || n != floor(n))
            return luaL_argerror(L, i, "integer expected (NaN, infinite, fractional or huge number given)");
        v = (long long)n;
    }
    if (v < lo || v > hi) return luaL_argerror(L, i, range_msg(L, v, lo, hi));
    return v;
}

long long opt_arg_int(lua_State *L, int i, long long def, long long lo, long long hi)
{
    if (lua_isnoneornil(L, i)) return def;
    return check_int(L, i, lo, hi);
}

/* String option; the pointer stays valid while the config table is alive. */
const char *opt_str(lua_State *L, int t, const char *k, const char *def, size_t *len)
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

int opt_bool(lua_State *L, int t, const char *k, int def)
{
    lua_getfield(L, t, k);
    int v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

stamp_clock_t opt_clock(lua_State *L, int t)
{
    const char *c = opt_str(L, t, "clock", "NTP", NULL);
    if (strcmp(c, "NTP") == 0 || strcmp(c, "ntp") == 0) return STAMP_CLOCK_NTP;
    if (strcmp(c, "PTP") == 0 || strcmp(c, "ptp") == 0) return STAMP_CLOCK_PTP;
    luaL_error(L, "bad option 'clock' (NTP or PTP expected, got '%s')", c);
    return STAMP_CLOCK_NTP;
}

void opt_sock(lua_State *L, int t, stamp_sock_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->addr = opt_str(L, t, "local_addr", NULL, NULL);
    o->port = (unsigned)opt_int(L, t, "local_port", 0, 0, 65535);
    o->family = AF_UNSPEC;
    o->ttl = (int)opt_int(L, t, "ttl", 255, 1, 255);
    o->tos = (int)opt_int(L, t, "tos", -1, -1, 255);
    o->rcvbuf = (int)opt_int(L, t, "rcvbuf", 0, 0, 1 << 30);
}

void opt_auth(lua_State *L, int t, stamp_mode_t *mode, const uint8_t **key, size_t *keylen)
{
    *mode = opt_bool(L, t, "auth", 0) ? STAMP_MODE_AUTH : STAMP_MODE_OPEN;
    *key = (const uint8_t *)opt_str(L, t, "key", NULL, keylen);
    if (*mode == STAMP_MODE_AUTH && (!*key || *keylen == 0))
        luaL_error(L, "bad option 'key' (authenticated mode needs a non-empty key)");
    if (*key && *keylen > STAMP_KEY_MAX) luaL_error(L, "bad option 'key' (longer than %d octets)", STAMP_KEY_MAX);
}

stamp_mode_t check_mode(lua_State *L, int i)
{
    const char *m = luaL_optstring(L, i, "open");
    if (strcmp(m, "open") == 0) return STAMP_MODE_OPEN;
    if (strcmp(m, "auth") == 0) return STAMP_MODE_AUTH;
    luaL_argerror(L, i, "mode must be 'open' or 'auth'");
    return STAMP_MODE_OPEN;
}

void push_addr(lua_State *L, const stamp_addr_t *a)
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

void set_int(lua_State *L, const char *k, long long v)
{
    push_i64(L, v);
    lua_setfield(L, -2, k);
}

void push_ee(lua_State *L, const stamp_ee_t *ee)
{
    lua_createtable(L, 0, 5);
    set_int(L, "s", ee->s);
    set_int(L, "z", ee->z);
    set_int(L, "scale", ee->scale);
    set_int(L, "mult", ee->mult);
    lua_pushnumber(L, stamp_ee_ns(ee));
    lua_setfield(L, -2, "error_ns");
}

void check_ee(lua_State *L, int t, const char *k, uint16_t *out)
{
    lua_getfield(L, t, k);
    if (lua_isnil(L, -1)) {
        *out = 0x0001; /* S=0 Z=0 Scale=0 Multiplier=1 */
    } else if (lua_isnumber(L, -1)) {
        if (!lua_isinteger(L, -1)) luaL_error(L, "bad field '%s' (16-bit value expected)", k);
        long long v = (long long)lua_tointeger(L, -1);
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
void check_ts(lua_State *L, int t, const char *k, stamp_clock_t fmt, uint8_t out[8])
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
        if (lua_isinteger(L, -1)) {
            v = (long long)lua_tointeger(L, -1);
        } else
#endif
        {
            lua_Number x = lua_tonumber(L, -1); /* a float: finite and in range, fraction dropped */
            if (!(x >= -9223372036854775808.0 && x < 9223372036854775808.0))
                luaL_error(L, "bad field '%s' (nanoseconds expected, got %f)", k, (double)x);
            v = (long long)x;
        }
    }
    lua_pop(L, 1);
    stamp_ts_encode(out, v, fmt, 0);
}

void push_ts(lua_State *L, const uint8_t ts[8], const char *k, stamp_clock_t fmt)
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

void check_hmac16(lua_State *L, int t, uint8_t out[16])
{
    size_t n = 0;
    const char *h = opt_str(L, t, "hmac", NULL, &n);
    memset(out, 0, 16);
    if (h) {
        if (n != 16) luaL_error(L, "bad field 'hmac' (16-octet string expected)");
        memcpy(out, h, 16);
    }
}

int parse_ip(const char *s, uint8_t out[16])
{
    if (inet_pton(AF_INET, s, out) == 1) return 4;
    if (inet_pton(AF_INET6, s, out) == 1) return 16;
    return 0;
}

void push_counters(lua_State *L, const void *c, const counter_t *t)
{
    lua_newtable(L);
    for (; t->name; t++) {
        uint64_t v;
        memcpy(&v, (const char *)c + t->off, sizeof v);
        set_int(L, t->name, (long long)v);
    }
}
