/*
 * The Session-Reflector class (stamp.reflector), RFC 8762 §4.3 and RFC 8972.
 * The shared methods (close, fd, local_addr, counters, __gc, __close,
 * __tostring) are in class.c.
 * (Part of the LDoc module stamp.core, described in core.c.)
 */
/*** @submodule stamp.core */
#include "bind.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <sys/socket.h>

typedef struct {
    bind_obj_t obj; /* obj.h: the stamp_reflector_t */
} lreflector_t;

static const bind_class_t REFLECTOR;

#define RC(f) {#f, offsetof(stamp_reflector_counters_t, f)}
static const counter_t REFLECTOR_COUNTERS[] = {
    RC(rx),           RC(reflected),     RC(short_padded),  RC(drop_short),       RC(drop_truncated),
    RC(drop_hmac),    RC(drop_sessions), RC(drop_tx),       RC(drop_micro),       RC(no_reply),
    RC(extra_replies), RC(tlv_unknown),  RC(tlv_malformed), RC(tlv_integrity),    RC(sessions_active),
    RC(sessions_created), RC(sessions_reaped), {NULL, 0}};
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
 * @tparam[opt=0] integer timeout milliseconds (negative: wait until something arrives)
 * @treturn integer|nil datagrams handled, or nil, message, code
 */
static int r_step(lua_State *L)
{
    lreflector_t *o = bind_check(L, 1, &REFLECTOR);
    int t = (int)luaL_optinteger(L, 2, 0);
    int n = stamp_reflector_step(o->obj.h, t);
    if (n == -EINTR) n = 0;
    if (n < 0) return push_fail(L, n);
    lua_pushinteger(L, n);
    return 1;
}

/* ---- the class ----------------------------------------------------------- */

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

static const luaL_Reg REFLECTOR_METHODS[] = {{"step", r_step}, {NULL, NULL}};

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

void reflector_open(lua_State *L) { bind_class_open(L, &REFLECTOR); }
