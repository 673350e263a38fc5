/*
 * The Session-Reflector classes: stamp.reflector (a UDP socket engine) and
 * stamp.reflector_machine (the same protocol without I/O, for hosts that own
 * the socket), RFC 8762 §4.3, RFC 8972, RFC 9503, RFC 9534, RFC 10052.
 * The shared methods (close, fd, local_addr, counters, __gc, __close,
 * __tostring) are in class.c.
 * (Part of the LDoc module stamp.core, described in core.c.)
 */
/*** @submodule stamp.core */
#include "bind.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <sys/socket.h>

typedef struct {
    bind_obj_t obj; /* obj.h: the stamp_reflector_t */
} lreflector_t;

typedef struct {
    bind_obj_t obj; /* obj.h: the stamp_rmach_t */
    stamp_clock_t clock; /* its timestamp format, for times given in wire form */
} lrmach_t;

static const bind_class_t REFLECTOR, RMACH;

#define NS_MAX 9007199254740992LL /* 2^53: exact in every Lua */

#define RC(f) {#f, offsetof(stamp_reflector_counters_t, f)}
static const counter_t REFLECTOR_COUNTERS[] = {
    RC(rx),           RC(reflected),     RC(short_padded),  RC(drop_short),       RC(drop_truncated),
    RC(drop_hmac),    RC(drop_sessions), RC(drop_tx),       RC(drop_micro),       RC(no_reply),
    RC(extra_replies), RC(tlv_unknown),  RC(tlv_malformed), RC(tlv_integrity),    RC(sessions_active),
    RC(sessions_created), RC(sessions_reaped), RC(drop_group), RC(drop_rate),     RC(drop_replayed),
    RC(replayed),     RC(sessions_evicted), RC(extra_refused), RC(extra_cancelled),
    RC(drop_unprovisioned), RC(extra_limited), RC(drop_kernel), {NULL, 0}};
_Static_assert(sizeof(stamp_reflector_counters_t) <= BIND_COUNTERS_MAX, "BIND_COUNTERS_MAX too small");

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
    p->refl_max_interval = opt_int(L, t, "reflected_max_interval_ns", STAMP_NS_PER_SEC, 0, 0xffffffffLL);
    p->refl_max_bursts_src = (unsigned)opt_int(L, t, "reflected_max_bursts_per_source", 16, 0, 1 << 20);
    if (p->refl_max_interval && p->refl_max_interval < p->refl_min_interval) /* every burst would get C */
        luaL_error(L, "bad option 'reflected_max_interval_ns' (below reflected_min_interval_ns: every burst would "
                   "get C; 0 = no bound)");
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

/* A finite number option in [lo, hi] (nil: def); NaN, infinities and out-of-range values raise. */
static double opt_num(lua_State *L, int t, const char *k, double def, double lo, double hi)
{
    lua_getfield(L, t, k);
    double v = def;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1)) luaL_error(L, "bad option '%s' (number expected, got %s)", k, luaL_typename(L, -1));
        v = (double)lua_tonumber(L, -1);
        if (!(v >= lo && v <= hi)) luaL_error(L, "bad option '%s' (%f out of range %g..%g)", k, v, lo, hi);
    }
    lua_pop(L, 1);
    return v;
}

/* A key table at index t: { default = "octets", [ssid] = "octets", ... }. The stamp_key_t array lives in a
 * userdata pushed on the stack (collected with it); key octets stay in the table's strings. */
static void read_keys(lua_State *L, int t, const char *what, const uint8_t **def, size_t *deflen, stamp_key_t **keys,
                      size_t *n)
{
    if (t < 0) t = lua_gettop(L) + t + 1;
    *def = NULL;
    *deflen = 0;
    *n = 0;
    size_t count = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        count++;
        lua_pop(L, 1);
    }
    *keys = lua_newuserdata(L, (count ? count : 1) * sizeof **keys);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        size_t len = 0;
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (!k || len == 0 || len > STAMP_KEY_MAX)
            luaL_error(L, "bad %s (keys of 1..%d octets expected)", what, STAMP_KEY_MAX);
        if (lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), "default") == 0) {
            *def = (const uint8_t *)k;
            *deflen = len;
        } else {
            int isint = lua_type(L, -2) == LUA_TNUMBER && lua_isinteger(L, -2);
            lua_Number s = isint ? lua_tonumber(L, -2) : -1;
            if (!isint || !(s >= 0 && s <= 65535))
                luaL_error(L, "bad %s (SSIDs 0..65535 or 'default' expected as keys)", what);
            (*keys)[*n].ssid = (uint16_t)s;
            (*keys)[*n].key = (const uint8_t *)k;
            (*keys)[*n].keylen = len;
            (*n)++;
        }
        lua_pop(L, 1);
    }
}

/* One provisioned session "SSID[@ADDR[:PORT]]" (an IPv6 address with a port in brackets: "7@[::1]:862"), or a
 * table {ssid =, addr =, port =}, at stack index i, into *p; 0, -1 when it does not parse, -2 when an IPv6
 * address without brackets ends in a group that could be a port ("7@::1:5": ::1 port 5, or ::1:5?). */
static int read_session(lua_State *L, int i, stamp_provisioned_t *p)
{
    memset(p, 0, sizeof *p);
    char host[INET6_ADDRSTRLEN + 1] = "";
    long ssid = -1, port = 0;
    if (lua_type(L, i) == LUA_TTABLE) {
        lua_getfield(L, i, "ssid");
        ssid = lua_isnumber(L, -1) ? (long)lua_tointeger(L, -1) : -1;
        lua_getfield(L, i, "addr");
        const char *a = lua_tostring(L, -1);
        if (a && strlen(a) < sizeof host) strcpy(host, a);
        else if (a) return -1;
        lua_getfield(L, i, "port");
        port = lua_isnil(L, -1) ? 0 : lua_isnumber(L, -1) ? (long)lua_tointeger(L, -1) : -1;
        lua_pop(L, 3);
        if (port && !host[0]) return -1;
    } else if (lua_type(L, i) == LUA_TSTRING) {
        const char *s = lua_tostring(L, i);
        char *end;
        if (*s < '0' || *s > '9') return -1;
        ssid = strtol(s, &end, 10);
        if (*end == '@') {
            const char *h = end + 1, *pe = NULL;
            size_t hl;
            if (*h == '[') { /* [IPv6]:PORT */
                const char *rb = strchr(h, ']');
                if (!rb) return -1;
                h++;
                hl = (size_t)(rb - h);
                if (rb[1] == ':') pe = rb + 2;
                else if (rb[1]) return -1;
            } else {
                const char *c = strchr(h, ':');
                if (c && !strchr(c + 1, ':')) { /* IPv4:PORT */
                    hl = (size_t)(c - h);
                    pe = c + 1;
                } else {
                    hl = strlen(h);
                    const char *last = strrchr(h, ':');
                    if (c && last && last[1] && strspn(last + 1, "0123456789") == strlen(last + 1) &&
                        (size_t)(last - h) < sizeof host) {
                        uint8_t tmp6[16];
                        memcpy(host, h, (size_t)(last - h));
                        host[last - h] = 0;
                        if (parse_ip(host, tmp6) == 16 && atol(last + 1) <= 65535) return -2;
                    }
                }
            }
            if (hl == 0 || hl >= sizeof host) return -1;
            memcpy(host, h, hl);
            host[hl] = 0;
            if (pe) {
                if (*pe < '0' || *pe > '9') return -1;
                port = strtol(pe, &end, 10);
                if (*end || port == 0) return -1;
            }
        } else if (*end) {
            return -1;
        }
    } else {
        return -1;
    }
    uint8_t tmp[16];
    if (ssid < 0 || ssid > 65535 || port < 0 || port > 65535) return -1;
    if (host[0] && (!parse_ip(host, tmp) || stamp_addr_parse(&p->peer, host, (unsigned)port) != STAMP_OK)) return -1;
    p->ssid = (uint16_t)ssid;
    return 0;
}

/* The admission mode string at index i (what names the value in errors). */
static stamp_admission_t check_admission(lua_State *L, const char *mode, const char *what)
{
    if (strcmp(mode, "open") == 0) return STAMP_ADMIT_OPEN;
    if (strcmp(mode, "provisioned") == 0) return STAMP_ADMIT_PROVISIONED;
    luaL_error(L, "bad %s (open or provisioned expected, got '%s')", what, mode);
    return STAMP_ADMIT_OPEN;
}

/* The list of provisioned sessions at index t into an array in a userdata pushed on the stack. */
static void read_sessions(lua_State *L, int t, const char *what, stamp_provisioned_t **out, size_t *n)
{
    if (t < 0) t = lua_gettop(L) + t + 1;
    *n = lua_istable(L, t) ? (size_t)lua_rawlen(L, t) : 0;
    if (!lua_istable(L, t) && !lua_isnil(L, t)) luaL_error(L, "bad %s (list of sessions expected)", what);
    if (*n > 65536) luaL_error(L, "bad %s (at most 65536 sessions)", what);
    *out = lua_newuserdata(L, (*n ? *n : 1) * sizeof **out);
    for (size_t i = 0; i < *n; i++) {
        lua_rawgeti(L, t, (int)(i + 1));
        int rc = read_session(L, lua_gettop(L), &(*out)[i]);
        if (rc == -2)
            luaL_error(L, "bad %s ('%s' is ambiguous: an IPv6 address with a port goes in brackets, SSID@[ADDR]:PORT)",
                       what, lua_tostring(L, -1));
        if (rc)
            luaL_error(L, "bad %s (SSID[@ADDR[:PORT]] expected, got '%s')", what,
                       lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1));
        lua_pop(L, 1);
    }
}

/* Default Type 12 volume limit when Type 12 is on: 10 Mbit/s of reply octets. */
#define T12_RATE_DEFAULT 1250000.0

/* The reflector options of the table at t into c (the socket options too when sock). Pushes two values
 * (the key and session array holders) that must stay on the stack while c is used. */
static void read_cfg(lua_State *L, int t, stamp_reflector_cfg_t *c, int sock)
{
    memset(c, 0, sizeof *c);
    if (sock) {
        opt_sock(L, t, &c->sock);
        c->sock.port = (unsigned)opt_int(L, t, "local_port", 862, 0, 65535);
    }
    c->mode = opt_bool(L, t, "auth", 0) ? STAMP_MODE_AUTH : STAMP_MODE_OPEN;
    c->key = (const uint8_t *)opt_str(L, t, "key", NULL, &c->keylen);
    if (c->key && (c->keylen == 0 || c->keylen > STAMP_KEY_MAX))
        luaL_error(L, "bad option 'key' (1..%d octets expected)", STAMP_KEY_MAX);
    lua_getfield(L, t, "keys");
    if (lua_istable(L, -1)) {
        const uint8_t *def;
        size_t deflen, n;
        stamp_key_t *keys;
        read_keys(L, -1, "option 'keys'", &def, &deflen, &keys, &n);
        if (def) {
            if (c->key) luaL_error(L, "bad option 'keys' (a default key beside option 'key')");
            c->key = def;
            c->keylen = deflen;
        }
        c->keys = keys;
        c->n_keys = n;
        lua_remove(L, -2); /* the table stays referenced by cfg; the holder stays on the stack */
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "bad option 'keys' (table expected, got %s)", luaL_typename(L, -1));
    }
    if (c->mode == STAMP_MODE_AUTH && !c->key && !c->n_keys)
        luaL_error(L, "bad option 'key' (authenticated mode needs a non-empty key or option 'keys')");
    c->clock = opt_clock(L, t);
    c->stateful = opt_bool(L, t, "stateful", 0);
    c->session_timeout = opt_num(L, t, "session_timeout", 300, 0.000001, 1e300);
    c->max_sessions = (unsigned)opt_int(L, t, "max_sessions", 65536, 1, 1 << 24);
    c->strict_packets = opt_bool(L, t, "strict_packets", 0);
    opt_policy(L, t, &c->tlv);
    /* the smallest reply to a type 12 request: the base packet and the type 12 TLV (4 + 12 octets) */
    size_t smallest = stamp_base_len(c->mode) + STAMP_TLV_HDR + 12;
    if (c->tlv.refl_max_size && c->tlv.refl_max_size < smallest)
        luaL_error(L, "bad option 'reflected_max_size' (0 = no limit, or at least %d octets: the smallest reply to a "
                      "type 12 request, got %d)", (int)smallest, (int)c->tlv.refl_max_size);
    c->batch = (int)opt_int(L, t, "batch", STAMP_BATCH, 1, STAMP_BATCH);
    c->max_pps = opt_num(L, t, "max_pps", 0, 0, 1e9);
    c->rate_burst = (unsigned)opt_int(L, t, "rate_burst", 0, 0, 1000000000);
    c->rate_sources = (unsigned)opt_int(L, t, "rate_sources", 65536, 1, 1 << 24);
    c->replay_max_age = opt_num(L, t, "replay_max_age", 0, 0, 1e9);
    c->drop_replayed = opt_bool(L, t, "drop_replayed", 0);
    c->max_bursts = (unsigned)opt_int(L, t, "max_bursts", 1024, 1, 1 << 20);
    c->admission = check_admission(L, opt_str(L, t, "session_admission", "open", NULL), "option 'session_admission'");
    lua_getfield(L, t, "sessions");
    stamp_provisioned_t *ps;
    read_sessions(L, -1, "option 'sessions'", &ps, &c->n_sessions);
    lua_remove(L, -2);
    c->sessions = ps;
    c->t12_max_rate = opt_num(L, t, "reflected_max_rate", c->tlv.refl_max_count ? T12_RATE_DEFAULT : 0, 0, 1e12);
    c->t12_max_volume = opt_num(L, t, "reflected_max_volume", 0, 0, 1e12);
    if (sock) c->workers = (int)opt_int(L, t, "workers", 1, 1, 64);
}

/* ---- methods of both classes ------------------------------------------------
 * One function per method serves stamp.reflector and stamp.reflector_machine: the engine call behind it is
 * picked by the class of the object (the engine applies it to every worker's machine). */

typedef struct {
    int (*set_keys)(void *h, const uint8_t *def, size_t deflen, const stamp_key_t *keys, size_t n);
    int (*set_rate)(void *h, double max_pps, unsigned burst);
    int (*set_admission)(void *h, stamp_admission_t mode, const stamp_provisioned_t *s, size_t n);
    int (*set_t12_limit)(void *h, double rate, double volume);
    int (*set_tlv_policy)(void *h, const stamp_tlv_policy_t *p);
} refl_ops_t;

static int eng_set_keys(void *h, const uint8_t *d, size_t dl, const stamp_key_t *k, size_t n)
{
    return stamp_reflector_set_keys(h, d, dl, k, n);
}
static int eng_set_rate(void *h, double pps, unsigned burst) { return stamp_reflector_set_rate(h, pps, burst); }
static int eng_set_admission(void *h, stamp_admission_t mode, const stamp_provisioned_t *s, size_t n)
{
    return stamp_reflector_set_admission(h, mode, s, n);
}
static int eng_set_t12_limit(void *h, double r, double v) { return stamp_reflector_set_t12_limit(h, r, v); }
static int eng_set_tlv_policy(void *h, const stamp_tlv_policy_t *p) { return stamp_reflector_set_tlv_policy(h, p); }
static int mach_set_keys(void *h, const uint8_t *d, size_t dl, const stamp_key_t *k, size_t n)
{
    return stamp_rmach_set_keys(h, d, dl, k, n);
}
static int mach_set_rate(void *h, double pps, unsigned burst) { return stamp_rmach_set_rate(h, pps, burst); }
static int mach_set_admission(void *h, stamp_admission_t mode, const stamp_provisioned_t *s, size_t n)
{
    return stamp_rmach_set_admission(h, mode, s, n);
}
static int mach_set_t12_limit(void *h, double r, double v) { return stamp_rmach_set_t12_limit(h, r, v); }
static int mach_set_tlv_policy(void *h, const stamp_tlv_policy_t *p) { return stamp_rmach_set_tlv_policy(h, p); }

static const refl_ops_t ENGINE_OPS = {eng_set_keys, eng_set_rate, eng_set_admission, eng_set_t12_limit,
                                      eng_set_tlv_policy};
static const refl_ops_t MACHINE_OPS = {mach_set_keys, mach_set_rate, mach_set_admission, mach_set_t12_limit,
                                       mach_set_tlv_policy};

/* The open reflector or reflector machine at index 1 (else raises): its handle, and in *ops its engine calls. */
static void *refl_self(lua_State *L, const refl_ops_t **ops)
{
    int engine = luaL_testudata(L, 1, REFLECTOR.name) != NULL;
    *ops = engine ? &ENGINE_OPS : &MACHINE_OPS;
    bind_obj_t *o = bind_check(L, 1, engine ? &REFLECTOR : &RMACH);
    return o->h;
}

/* true, or nil, message, code */
static int push_rc(lua_State *L, int rc)
{
    if (rc) return push_fail(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

/***
 * Replace the key table at once (e.g. on SIGHUP): the next packet uses the new keys, none is dropped for it.
 * On failure the old keys stay.
 * @function reflector:set_keys
 * @tparam table keys `{ [ssid] = octets, default = octets }` (no `default`: SSIDs without a key fail HMAC checks)
 * @treturn boolean|nil true, or nil, message, code
 */
/***
 * Replace the key table at once (see `reflector:set_keys`).
 * @function reflector_machine:set_keys
 * @tparam table keys `{ [ssid] = octets, default = octets }`
 * @treturn boolean|nil true, or nil, message, code
 */
static int o_set_keys(lua_State *L)
{
    const refl_ops_t *ops;
    void *h = refl_self(L, &ops);
    luaL_checktype(L, 2, LUA_TTABLE);
    const uint8_t *def;
    size_t deflen, n;
    stamp_key_t *keys;
    read_keys(L, 2, "argument #1 to 'set_keys'", &def, &deflen, &keys, &n);
    return push_rc(L, ops->set_keys(h, def, deflen, keys, n));
}

/***
 * Change the per-source rate limit while running.
 * @function reflector:set_rate
 * @tparam number max_pps packets/s per source address, 0 = unlimited
 * @tparam[opt=0] integer burst packets a source may send back to back (0 = max(1, max_pps/10))
 * @treturn boolean true
 */
/***
 * Change the per-source rate limit (see `reflector:set_rate`).
 * @function reflector_machine:set_rate
 * @tparam number max_pps packets/s per source address, 0 = unlimited
 * @tparam[opt=0] integer burst
 * @treturn boolean true
 */
static int o_set_rate(lua_State *L)
{
    const refl_ops_t *ops;
    void *h = refl_self(L, &ops);
    lua_Number v = luaL_checknumber(L, 2);
    if (!(v >= 0 && v <= 1e9)) return luaL_argerror(L, 2, "packets/s in 0..1e9 expected");
    unsigned burst = (unsigned)opt_arg_int(L, 3, 0, 0, 1000000000);
    return push_rc(L, ops->set_rate(h, (double)v, burst));
}

/***
 * Replace the session admission while running (e.g. on SIGHUP; RFC 8972 §3). On failure the old one stays.
 * @function reflector:set_admission
 * @tparam string mode `"open"` (every SSID answered) or `"provisioned"` (only the sessions listed)
 * @tparam[opt] table sessions provisioned sessions: `"SSID[@ADDR[:PORT]]"` strings (`"7@[::1]:862"` for IPv6 with a
 * port) or tables `{ssid =, addr =, port =}`; without an address any sender, without a port any port
 * @treturn boolean|nil true, or nil, message, code
 */
/***
 * Replace the session admission (see `reflector:set_admission`).
 * @function reflector_machine:set_admission
 * @tparam string mode `"open"` or `"provisioned"`
 * @tparam[opt] table sessions provisioned sessions
 * @treturn boolean|nil true, or nil, message, code
 */
static int o_set_admission(lua_State *L)
{
    const refl_ops_t *ops;
    void *h = refl_self(L, &ops);
    stamp_admission_t mode = check_admission(L, luaL_checkstring(L, 2), "argument #1 to 'set_admission'");
    stamp_provisioned_t *ps;
    size_t n;
    lua_settop(L, 3);
    read_sessions(L, 3, "argument #2 to 'set_admission'", &ps, &n);
    return push_rc(L, ops->set_admission(h, mode, ps, n));
}

/***
 * Change the Type 12 volume limit while running (across all sessions; RFC 10052 §3, §5): a burst of Number
 * replies of L octets is granted only while the budget holds Number × L octets, else it gets one reply with C.
 * @function reflector:set_reflected_limit
 * @tparam number rate octets/s, 0 = unlimited
 * @tparam[opt=0] number volume the budget's depth in octets (0 = max(rate/10, 9216))
 * @treturn boolean|nil true, or nil, message, code
 */
/***
 * Change the Type 12 volume limit (see `reflector:set_reflected_limit`).
 * @function reflector_machine:set_reflected_limit
 * @tparam number rate octets/s, 0 = unlimited
 * @tparam[opt=0] number volume octets
 * @treturn boolean|nil true, or nil, message, code
 */
static int o_set_reflected_limit(lua_State *L)
{
    const refl_ops_t *ops;
    void *h = refl_self(L, &ops);
    lua_Number rate = luaL_checknumber(L, 2), vol = luaL_optnumber(L, 3, 0);
    if (!(rate >= 0 && rate <= 1e12)) return luaL_argerror(L, 2, "octets/s in 0..1e12 expected");
    if (!(vol >= 0 && vol <= 1e12)) return luaL_argerror(L, 3, "octets in 0..1e12 expected");
    return push_rc(L, ops->set_t12_limit(h, (double)rate, (double)vol));
}

/***
 * Replace the TLV policy while running (e.g. on SIGHUP): the next packet is processed with it, none is
 * dropped for it. The table takes the policy options of `stamp.reflector`, and describes the whole policy
 * (an option left out takes its default, as at creation): `tlv_mode`, `verify_tlv_hmac`, `cos_refuse`,
 * `location_hide`, `member_link_id`, `allow_return_address`, `reflected_max_count`, `reflected_max_size`,
 * `reflected_min_interval_ns`, `reflected_max_interval_ns`, `reflected_max_bursts_per_source`. Type 12 bursts
 * already running go on unless the
 * new policy forbids them (Number, Interval or length over the new caps, Type 12 off, a Return Address no
 * longer allowed): those stop before their next reply, counted `extra_cancelled`.
 * A bad option raises; a policy this reflector cannot take returns nil and a message and keeps the old
 * one: Type 12 turned on in a reflector created with it off (`reflected_max_count` 0: it has no burst table).
 * @function reflector:set_tlv_policy
 * @tparam table policy
 * @treturn boolean|nil true, or nil, message, code
 */
/***
 * Replace the TLV policy (see `reflector:set_tlv_policy`).
 * @function reflector_machine:set_tlv_policy
 * @tparam table policy
 * @treturn boolean|nil true, or nil, message, code
 */
static int o_set_tlv_policy(lua_State *L)
{
    const refl_ops_t *ops;
    void *h = refl_self(L, &ops);
    luaL_checktype(L, 2, LUA_TTABLE);
    stamp_tlv_policy_t p;
    opt_policy(L, 2, &p);
    /* the smallest reply to a type 12 request (open mode; authenticated: 128, checked by the core) */
    size_t smallest = STAMP_BASE_LEN + STAMP_TLV_HDR + 12;
    if (p.refl_max_size && p.refl_max_size < smallest)
        return luaL_error(L, "bad option 'reflected_max_size' (0 = no limit, or at least %d octets: the smallest reply "
                             "to a type 12 request, got %d)", (int)smallest, (int)p.refl_max_size);
    int rc = ops->set_tlv_policy(h, &p);
    if (rc == STAMP_EINVAL && p.refl_max_count && (!p.refl_max_size || p.refl_max_size >= STAMP_AUTH_BASE_LEN + 16)) {
        lua_pushnil(L);
        lua_pushstring(L, "type 12 was off when this reflector was created (reflected_max_count 0): it has no burst "
                          "table, so it cannot turn type 12 on while it runs (restart it with type 12 on)");
        lua_pushinteger(L, rc);
        return 3;
    }
    return push_rc(L, rc);
}

/* ---- stamp.reflector ------------------------------------------------------- */

/***
 * Create a Session-Reflector bound to a UDP socket.
 * @function reflector
 * @tparam table cfg `local_addr`, `local_port` (862), `auth`, `key` (default key), `keys` (per-SSID keys:
 * `{ [ssid] = octets, default = octets }`), `clock`, `stateful`, `session_timeout` (s), `max_sessions` (the session
 * idle longest is evicted when full), `strict_packets`, `ttl` (255), `tos`, `batch` (datagrams per system call,
 * 1..32), abuse resistance: `max_pps` (per source address, 0 = unlimited), `rate_burst` (0 = max(1, max_pps/10)),
 * `rate_sources` (source addresses tracked, 65536); replay protection (authenticated mode): `replay_max_age` (s, 0 =
 * off), `drop_replayed`; Type 12: `max_bursts` (bursts in progress at once, 1024); `workers` (1..64: SO_REUSEPORT
 * sockets, the first stepped by `step`, the others by their own threads; counters summed); and the TLV policy: `tlv_mode`,
 * `verify_tlv_hmac`, `cos_refuse`, `location_hide`, `member_link_id`, `allow_return_address`,
 * `reflected_max_count`, `reflected_max_size`, `reflected_min_interval_ns`, `reflected_max_interval_ns` (ns, 1 s;
 * 0 = no bound; over it one reply with C, counted `extra_limited` like every per-request limit),
 * `reflected_max_bursts_per_source` (Type 12 bursts running at once from one source address, 16; 0 = no bound;
 * over it one reply with C, counted `extra_limited`), the Type 12 volume limit across all
 * sessions `reflected_max_rate` (octets/s; 1250000 when `reflected_max_count` > 0, 0 = unlimited) and
 * `reflected_max_volume` (octets, 0 = max(rate/10, 9216)); session admission (RFC 8972 §3): `session_admission`
 * (`"open"`, or `"provisioned"`: only `sessions` are answered, the others dropped and counted `drop_unprovisioned`)
 * and `sessions` (see `reflector:set_admission`)
 * @return reflector object, or nil, message, code
 */
static int l_reflector(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    stamp_reflector_cfg_t c;
    read_cfg(L, 1, &c, 1);
    lreflector_t *o = bind_new(L, &REFLECTOR);
    stamp_reflector_t *r = NULL;
    int rc = stamp_reflector_new(&c, &r);
    o->obj.h = r;
    if (rc) return push_fail(L, rc);
    return 1;
}

/***
 * Process what is ready, waiting up to `timeout` ms first.
 * @function reflector:step
 * @tparam[opt=0] integer timeout milliseconds, at most 2^31-1 (negative: until something arrives, but at most
 * about a second, for housekeeping)
 * @treturn integer|nil datagrams handled, or nil, message, code
 */
static int r_step(lua_State *L)
{
    lreflector_t *o = bind_check(L, 1, &REFLECTOR);
    int t = (int)opt_arg_int(L, 2, 0, INT_MIN, INT_MAX);
    int n = stamp_reflector_step(o->obj.h, t);
    if (n == -EINTR) n = 0;
    if (n < 0) return push_fail(L, n);
    lua_pushinteger(L, n);
    return 1;
}

/***
 * Forget the cached MTUs of the arrival interfaces (read again at the next packet; e.g. on SIGHUP). A Type 12
 * reply is at most one IP datagram of the MTU of the interface its request arrived on (RFC 10052 §3); the MTU
 * is read at most every 5 s.
 * @function reflector:refresh
 */
static int r_refresh(lua_State *L)
{
    lreflector_t *o = bind_check(L, 1, &REFLECTOR);
    stamp_reflector_refresh(o->obj.h);
    return 0;
}

static void r_free(void *h) { stamp_reflector_free(h); }
static int r_fd(const void *h) { return stamp_reflector_fd(h); }
static void r_local(const void *h, stamp_addr_t *a) { stamp_reflector_local(h, a); }
static void r_counters(const void *h, void *out) { stamp_reflector_counters(h, out); }

static void r_describe(lua_State *L, const void *h)
{
    stamp_addr_t a;
    char host[64] = "?";
    unsigned port = 0;
    memset(&a, 0, sizeof a);
    stamp_reflector_local(h, &a);
    stamp_addr_format(&a, host, sizeof host, &port);
    lua_pushfstring(L, "%s port %d", host, (int)port);
}

static const luaL_Reg REFLECTOR_METHODS[] = {
    {"step", r_step},         {"set_keys", o_set_keys},
    {"set_rate", o_set_rate}, {"set_admission", o_set_admission},
    {"set_reflected_limit", o_set_reflected_limit}, {"set_tlv_policy", o_set_tlv_policy},
    {"refresh", r_refresh}, {NULL, NULL}};

static const bind_class_t REFLECTOR = {
    .name = "stamp.reflector",
    .short_name = "reflector",
    .size = sizeof(lreflector_t),
    .free = r_free,
    .fd = r_fd,
    .local = r_local,
    .counters = r_counters,
    .counter_names = REFLECTOR_COUNTERS,
    .describe = r_describe,
    .methods = REFLECTOR_METHODS,
    .ctor = l_reflector,
};

/* ---- stamp.reflector_machine ---------------------------------------------- */

/***
 * Create an I/O-free Session-Reflector: the host owns the socket and the clock, passes each datagram to
 * `reflector_machine:input` and sends what comes back (see stamp.h, "Reflector machine").
 * @function reflector_machine
 * @tparam table cfg the options of `reflector` without the socket ones (`local_addr`, `local_port`, `ttl`, `tos`,
 * `batch` are ignored)
 * @return machine object, or nil, message, code
 */
static int l_rmach(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    stamp_reflector_cfg_t c;
    read_cfg(L, 1, &c, 0);
    lrmach_t *o = bind_new(L, &RMACH);
    o->clock = c.clock;
    stamp_rmach_t *m = NULL;
    int rc = stamp_rmach_new(&c, &m);
    o->obj.h = m;
    if (rc) return push_fail(L, rc);
    return 1;
}

/* A UTC time at stack index i: integer ns, or the 8-octet wire timestamp in the machine's format (exact on
 * Lua 5.1/LuaJIT too, where integers beyond 2^53 are not); def when none or nil. */
static stamp_ns_t arg_time(lua_State *L, int i, const lrmach_t *o, stamp_ns_t def)
{
    if (lua_type(L, i) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, i, &len);
        stamp_ns_t t;
        if (len != 8) luaL_argerror(L, i, "UTC ns or an 8-octet wire timestamp expected");
        stamp_ts_decode((const uint8_t *)s, o->clock, stamp_tai_offset(), &t);
        return t;
    }
    return opt_arg_int(L, i, def, 0, INT64_MAX);
}

/* Field k (address) and kp (port) of the table at t into a; 0 when absent. */
static int meta_addr(lua_State *L, int t, const char *k, const char *kp, stamp_addr_t *a)
{
    memset(a, 0, sizeof *a);
    const char *host = opt_str(L, t, k, NULL, NULL);
    unsigned port = (unsigned)opt_int(L, t, kp, 0, 0, 65535);
    if (!host) return 0;
    uint8_t tmp[16];
    if (!parse_ip(host, tmp) || stamp_addr_parse(a, host, port) != STAMP_OK)
        luaL_error(L, "bad field '%s' (numeric IPv4 or IPv6 address expected, got '%s')", k, host);
    return 1;
}

static void push_reply(lua_State *L, const stamp_reply_t *r)
{
    lua_createtable(L, 0, 10);
    lua_pushlstring(L, (const char *)r->buf, r->len);
    lua_setfield(L, -2, "data");
    push_addr(L, &r->to);
    lua_setfield(L, -3, "to_port");
    lua_setfield(L, -2, "to_addr");
    if (r->from.len) {
        push_addr(L, &r->from);
        lua_setfield(L, -3, "from_port");
        lua_setfield(L, -2, "from_addr");
    }
    set_int(L, "ifindex", r->ifindex);
    set_int(L, "tos", r->tos);
    set_int(L, "due", (long long)r->due);
    lua_pushboolean(L, r->extra);
    lua_setfield(L, -2, "extra");
}

/***
 * Process one received datagram.
 * @function reflector_machine:input
 * @tparam string data the datagram
 * @tparam table meta `src_addr`, `src_port` (the peer, required), `dst_addr`, `dst_port` (the local address it was
 * sent to, if known), `ifindex` (0), `ttl` (-1 unknown), `tos` (-1 unknown), `mtu` (of the arrival interface, 0
 * unknown: a Type 12 reply is then at most this IP datagram, RFC 10052 §3), `rx_time` (receive time T2, UTC ns
 * or its 8-octet wire form; default `stamp.core.now()`)
 * @tparam[opt] integer mono monotonic ns (default `stamp.core.mono()`)
 * @tparam[opt] integer|string now transmit time T3 written into the reply: UTC ns, or its 8-octet wire form in
 * the machine's clock format (exact on Lua 5.1/LuaJIT too; default `stamp.core.now()`)
 * @treturn table|boolean the reply `{data, to_addr, to_port, from_addr, from_port, ifindex, tos, due, extra}`
 * (send `data` to `to_addr`/`to_port`, from `from_addr` and through `ifindex` where the host can), or false when
 * nothing is to be sent now (counted)
 */
static int m_input(lua_State *L)
{
    lrmach_t *o = bind_check(L, 1, &RMACH);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    luaL_checktype(L, 3, LUA_TTABLE);
    stamp_ns_t mono = opt_arg_int(L, 4, stamp_mono(), 0, INT64_MAX);
    stamp_ns_t now = arg_time(L, 5, o, stamp_now());
    stamp_rxmeta_t meta;
    memset(&meta, 0, sizeof meta);
    if (!meta_addr(L, 3, "src_addr", "src_port", &meta.src)) luaL_argerror(L, 3, "field 'src_addr' expected");
    meta_addr(L, 3, "dst_addr", "dst_port", &meta.dst);
    meta.ifindex = (int)opt_int(L, 3, "ifindex", 0, 0, INT_MAX);
    meta.ttl = (int)opt_int(L, 3, "ttl", -1, -1, 255);
    meta.tos = (int)opt_int(L, 3, "tos", -1, -1, 255);
    meta.mtu = (int)opt_int(L, 3, "mtu", 0, 0, 1 << 20);
    lua_getfield(L, 3, "rx_time");
    meta.rx_time = arg_time(L, lua_gettop(L), o, stamp_now());
    lua_pop(L, 1);
    stamp_reply_t r;
    if (!stamp_rmach_input(o->obj.h, (const uint8_t *)data, len, &meta, mono, now, &r)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    push_reply(L, &r);
    return 1;
}

/***
 * Type 12 extra replies due at `mono`, in due order (each burst keeps its own schedule).
 * @function reflector_machine:poll
 * @tparam[opt] integer mono monotonic ns (default `stamp.core.mono()`)
 * @tparam[opt] integer|string now their transmit time T3, UTC ns or its wire form (default `stamp.core.now()`)
 * @tparam[opt=32] integer max at most this many (1..32)
 * @treturn table array of replies as `reflector_machine:input` gives them (`extra` = true), possibly empty
 */
static int m_poll(lua_State *L)
{
    lrmach_t *o = bind_check(L, 1, &RMACH);
    stamp_ns_t mono = opt_arg_int(L, 2, stamp_mono(), 0, INT64_MAX);
    stamp_ns_t now = arg_time(L, 3, o, stamp_now());
    int max = (int)opt_arg_int(L, 4, 32, 1, 32);
    stamp_reply_t r[32];
    int n = stamp_rmach_poll(o->obj.h, mono, now, r, max);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        push_reply(L, &r[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/***
 * When the next Type 12 extra reply is due.
 * @function reflector_machine:next_due
 * @treturn integer|nil monotonic ns, or nil when none is queued
 */
static int m_next_due(lua_State *L)
{
    lrmach_t *o = bind_check(L, 1, &RMACH);
    stamp_ns_t d = stamp_rmach_next_due(o->obj.h);
    if (d == INT64_MAX)
        lua_pushnil(L);
    else
        lua_pushinteger(L, (lua_Integer)d);
    return 1;
}

/***
 * Housekeeping: call it about once a second (clock Error Estimate, local addresses, idle sessions).
 * @function reflector_machine:tick
 * @tparam[opt] integer mono monotonic ns (default `stamp.core.mono()`)
 */
static int m_tick(lua_State *L)
{
    lrmach_t *o = bind_check(L, 1, &RMACH);
    stamp_rmach_tick(o->obj.h, opt_arg_int(L, 2, stamp_mono(), 0, INT64_MAX));
    return 0;
}

/***
 * Tell the machine that replies it gave could not be sent (they move from reflected to drop_tx).
 * @function reflector_machine:tx_failed
 * @tparam[opt=1] integer n how many
 * @tparam[opt=false] boolean extra they were Type 12 extra replies
 */
static int m_tx_failed(lua_State *L)
{
    lrmach_t *o = bind_check(L, 1, &RMACH);
    unsigned n = (unsigned)opt_arg_int(L, 2, 1, 0, 1 << 30);
    stamp_rmach_tx_failed(o->obj.h, n, lua_toboolean(L, 3));
    return 0;
}

static void m_free(void *h) { stamp_rmach_free(h); }
static void m_counters(const void *h, void *out) { stamp_rmach_counters(h, out); }
static void m_describe(lua_State *L, const void *h)
{
    stamp_reflector_counters_t c;
    stamp_rmach_counters(h, &c);
    lua_pushfstring(L, "%d received, %d sessions", (int)c.rx, (int)c.sessions_active);
}

static const luaL_Reg RMACH_METHODS[] = {{"input", m_input},       {"poll", m_poll},         {"next_due", m_next_due},
                                         {"tick", m_tick},         {"tx_failed", m_tx_failed}, {"set_keys", o_set_keys},
                                         {"set_rate", o_set_rate}, {"set_admission", o_set_admission},
                                         {"set_reflected_limit", o_set_reflected_limit},
                                         {"set_tlv_policy", o_set_tlv_policy}, {NULL, NULL}};

static const bind_class_t RMACH = {
    .name = "stamp.reflector_machine",
    .short_name = "reflector_machine",
    .size = sizeof(lrmach_t),
    .free = m_free,
    .fd = NULL,
    .local = NULL,
    .counters = m_counters,
    .counter_names = REFLECTOR_COUNTERS,
    .describe = m_describe,
    .methods = RMACH_METHODS,
    .ctor = l_rmach,
};

void reflector_open(lua_State *L)
{
    bind_class_open(L, &REFLECTOR);
    bind_class_open(L, &RMACH);
}
