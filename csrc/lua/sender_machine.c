/***
 * The I/O-free Session-Sender machine (stamp.sender_machine): the sender's
 * protocol without a socket, for event loops that own theirs (OpenResty
 * cosockets, luv, cqueues). It is given the time and the datagrams, and hands
 * out the packets to send and results with exactly the shape of
 * `stamp.sender` results.
 *
 *     local core = require "stamp.core"
 *     local m = core.sender_machine { count = 10, interval_ns = 1e7, timeout_ns = 1e9 }
 *     -- (stamp.sender_machine{ send_delay = 10, ... } takes the stamp.sender options)
 *     while not m:done() do
 *       local now = core.mono()
 *       for _, pkt in ipairs(m:build_due(now)) do udp:send(pkt) end  -- T1 = core.now() per packet
 *       local wait_ns = (m:next_deadline() or now) - core.mono()
 *       local data = udp:receive(wait_ns)                          -- the host's wait, never ours
 *       if data then local r = m:reply(data, core.now()) if r then use(r) end end
 *       for _, r in ipairs(m:expire(core.mono())) do use(r) end     -- lost / aborted
 *     end
 *
 * `now` is always monotonic nanoseconds (stamp.core.mono), T1/T4 UTC
 * nanoseconds (stamp.core.now). Every packet built ends exactly once: in a
 * result of `reply` or of `expire`.
 * @module stamp.core
 */
#include "bind.h"

#include <errno.h>
#include <string.h>

#define EXPIRE_MAX 256
#define NS_MAX 0x3fffffffffffffffLL

typedef struct {
    bind_obj_t obj; /* obj.h: the stamp_sm_t */
    size_t base;
    size_t plen;
    stamp_clock_t clock;
    uint8_t buf[STAMP_MAX_PKT]; /* the packet being built */
} lmachine_t;

static const bind_class_t MACHINE;

static lmachine_t *check_m(lua_State *L) { return bind_check(L, 1, &MACHINE); }

/***
 * Create an I/O-free sender machine.
 * @function sender_machine
 * @tparam table cfg the options of `stamp.core.sender` (`count`, `interval_ns`, `timeout_ns`, `ssid`, `auth`,
 *   `key`, `clock`, `packet_len`, `tlvs`, `schedule`, `seed`); `remote_addr`/`remote_port` are optional:
 *   when given, `reply` refuses datagrams whose source is given and differs
 * @return machine object, or nil, message, code
 */
static int l_sender_machine(lua_State *L)
{
    stamp_sender_cfg_t c;
    sender_read_cfg(L, 1, &c, 0);
    stamp_addr_t peer;
    memset(&peer, 0, sizeof peer);
    if (c.remote_addr) {
        int rc = stamp_addr_parse(&peer, c.remote_addr, c.remote_port);
        if (rc) return push_fail(L, rc);
    }
    lmachine_t *o = bind_new(L, &MACHINE);
    o->base = stamp_base_len(c.mode);
    o->clock = c.clock;
    stamp_sm_t *m = NULL;
    int rc = stamp_sm_new(&c, &m);
    if (rc) return push_fail(L, rc);
    o->plen = stamp_sm_packet_len(m);
    o->obj.h = m;
    if (c.remote_addr) stamp_sm_set_peer(m, &peer);
    return 1;
}

/***
 * Build the packet due at `now`.
 * @function sender_machine:build
 * @tparam[opt] integer now monotonic ns (default `stamp.core.mono()`)
 * @tparam[opt] integer|string t1 send timestamp: UTC ns, or its 8-octet wire form (exact on Lua 5.1/LuaJIT too);
 *   default `stamp.core.now()`, read right before building
 * @treturn string|nil the packet's octets, or nil when none is due
 * @treturn integer its sequence number
 */
static int m_build(lua_State *L)
{
    lmachine_t *o = check_m(L);
    stamp_ns_t now = opt_arg_int(L, 2, stamp_mono(), 0, NS_MAX);
    stamp_ns_t t1;
    if (lua_isnoneornil(L, 3)) {
        t1 = stamp_now();
    } else if (lua_type(L, 3) == LUA_TSTRING) { /* a raw wire timestamp: exact on every Lua */
        size_t tl;
        const char *raw = lua_tolstring(L, 3, &tl);
        if (tl != 8) return luaL_argerror(L, 3, "8-octet wire timestamp or UTC ns expected");
        stamp_ts_decode((const uint8_t *)raw, o->clock, stamp_tai_offset(), &t1);
    } else {
        t1 = opt_arg_int(L, 3, 0, 0, NS_MAX);
    }
    uint32_t seq = 0;
    int n = stamp_sm_build(o->obj.h, now, t1, o->buf, o->plen, &seq);
    if (n < 0) return push_fail(L, n);
    if (n == 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushlstring(L, (const char *)o->buf, (size_t)n);
    lua_pushinteger(L, (lua_Integer)seq);
    return 2;
}

/***
 * Build every packet due at `now` (each with T1 = `stamp.core.now()` read right before it).
 * @function sender_machine:build_due
 * @tparam[opt] integer now monotonic ns (default `stamp.core.mono()`)
 * @tparam[opt=64] integer max at most this many
 * @treturn table array of packets (strings), possibly empty
 */
static int m_build_due(lua_State *L)
{
    lmachine_t *o = check_m(L);
    stamp_ns_t now = opt_arg_int(L, 2, stamp_mono(), 0, NS_MAX);
    int max = (int)opt_arg_int(L, 3, 64, 1, 1 << 20);
    lua_newtable(L);
    for (int i = 1; i <= max; i++) {
        int n = stamp_sm_build(o->obj.h, now, stamp_now(), o->buf, o->plen, NULL);
        if (n < 0) return push_fail(L, n);
        if (n == 0) break;
        lua_pushlstring(L, (const char *)o->buf, (size_t)n);
        lua_rawseti(L, -2, i);
    }
    return 1;
}

/***
 * One received datagram.
 * @function sender_machine:reply
 * @tparam string data the datagram
 * @tparam[opt] integer t4 receive time, UTC ns (default `stamp.core.now()`)
 * @tparam[opt] integer ttl TTL / Hop Limit it arrived with (-1 or nil: unknown)
 * @tparam[opt] integer tos TOS / Traffic Class it arrived with (-1 or nil: unknown)
 * @tparam[opt] string host its source address (checked against `remote_addr` when both are given)
 * @tparam[opt] integer port its source port
 * @treturn table|boolean the result (as `sender:step` gives them), or false when it was counted as a drop
 *   (invalid, HMAC failure, duplicate or late: see `counters`)
 */
static int m_reply(lua_State *L)
{
    lmachine_t *o = check_m(L);
    size_t len;
    if (lua_type(L, 2) != LUA_TSTRING) return luaL_argerror(L, 2, "string expected (the datagram)");
    const char *data = lua_tolstring(L, 2, &len);
    stamp_rxmeta_t meta;
    memset(&meta, 0, sizeof meta);
    meta.rx_time = opt_arg_int(L, 3, 0, 0, NS_MAX);
    if (lua_isnoneornil(L, 3)) meta.rx_time = stamp_now();
    meta.ttl = (int)opt_arg_int(L, 4, -1, -1, 255);
    meta.tos = (int)opt_arg_int(L, 5, -1, -1, 255);
    if (!lua_isnoneornil(L, 6)) {
        const char *host = luaL_checkstring(L, 6);
        unsigned port = (unsigned)check_int(L, 7, 0, 65535);
        if (stamp_addr_parse(&meta.src, host, port) != STAMP_OK) luaL_argerror(L, 6, "numeric address expected");
    }
    stamp_result_t r;
    if (stamp_sm_reply(o->obj.h, (const uint8_t *)data, len, &meta, &r) != 1) {
        lua_pushboolean(L, 0);
        return 1;
    }
    sender_push_result(L, &r, o->base);
    return 1;
}

/***
 * The packets whose timeout passed at `now` (lost), or after `stop{now = true}` every one still
 * outstanding (aborted).
 * @function sender_machine:expire
 * @tparam[opt] integer now monotonic ns (default `stamp.core.mono()`)
 * @treturn table array of results, possibly empty
 */
static int m_expire(lua_State *L)
{
    lmachine_t *o = check_m(L);
    stamp_ns_t now = opt_arg_int(L, 2, stamp_mono(), 0, NS_MAX);
    stamp_result_t res[EXPIRE_MAX];
    lua_newtable(L);
    int k = 0, n;
    do {
        n = stamp_sm_expire(o->obj.h, now, res, EXPIRE_MAX);
        for (int i = 0; i < n; i++) {
            sender_push_result(L, &res[i], o->base);
            lua_rawseti(L, -2, ++k);
        }
    } while (n == EXPIRE_MAX);
    return 1;
}

/***
 * When the machine next needs attention: a send or the oldest packet's timeout.
 * @function sender_machine:next_deadline
 * @treturn integer|nil monotonic ns (0: now), or nil when nothing is left (done)
 */
static int m_next_deadline(lua_State *L)
{
    stamp_ns_t d = stamp_sm_next_deadline(check_m(L)->obj.h);
    if (d == INT64_MAX) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushinteger(L, d < 0 ? 0 : (lua_Integer)d);
    return 1;
}

/***
 * Is a packet due at `now`?
 * @function sender_machine:due
 * @tparam[opt] integer now monotonic ns (default `stamp.core.mono()`)
 * @treturn boolean
 */
static int m_due(lua_State *L)
{
    lmachine_t *o = check_m(L);
    stamp_ns_t now = opt_arg_int(L, 2, stamp_mono(), 0, NS_MAX);
    lua_pushboolean(L, stamp_sm_due(o->obj.h, now));
    return 1;
}

/***
 * Stop sending; outstanding packets are still awaited up to their timeout. With `now`
 * (`stop(true)` or `stop{ now = true }`), stop at once: `expire` reports them as aborted.
 * @function sender_machine:stop
 * @tparam[opt] boolean|table now
 */
static int m_stop(lua_State *L)
{
    lmachine_t *o = check_m(L);
    stamp_sm_stop(o->obj.h, sender_stop_now_arg(L, 2));
    return 0;
}

/***
 * True once every packet was sent and each one answered, lost or aborted.
 * @function sender_machine:done
 * @treturn boolean
 */
static int m_done(lua_State *L)
{
    lua_pushboolean(L, stamp_sm_done(check_m(L)->obj.h));
    return 1;
}

/***
 * Packets sent and not yet answered, lost or aborted.
 * @function sender_machine:outstanding
 * @treturn integer
 */
static int m_outstanding(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)stamp_sm_outstanding(check_m(L)->obj.h));
    return 1;
}

/***
 * Tell the machine that the packet it built last could not be sent (counted in `tx_errors`).
 * @function sender_machine:tx_error
 */
static int m_tx_error(lua_State *L)
{
    stamp_sm_tx_error(check_m(L)->obj.h);
    return 0;
}

/***
 * The kernel's transmit time of a packet (e.g. from SO_TIMESTAMPING on the host's socket): when it
 * comes before the reply, the result's T1 (rtt, fwd) is this time and `t1_source` is "kernel".
 * The packet's Timestamp field stays the time given to `build` (it was sent before this one existed).
 * @function sender_machine:tx_time
 * @tparam integer seq the packet's Sequence Number (as `build` returned it)
 * @tparam integer|string t1 UTC nanoseconds, or its 8-octet wire form (exact on Lua 5.1/LuaJIT too)
 * @treturn boolean true when it was used (false: unknown or already answered packet, or earlier than
 *   the user-space time)
 */
static int m_tx_time(lua_State *L)
{
    lmachine_t *o = check_m(L);
    lua_Integer seq = luaL_checkinteger(L, 2);
    luaL_argcheck(L, seq >= 0 && seq <= 0xffffffffLL, 2, "0..2^32-1 expected");
    stamp_ns_t t;
    if (lua_type(L, 3) == LUA_TSTRING) { /* a raw wire timestamp: exact on every Lua */
        size_t tl;
        const char *raw = lua_tolstring(L, 3, &tl);
        if (tl != 8) return luaL_argerror(L, 3, "8-octet wire timestamp or UTC ns expected");
        stamp_ts_decode((const uint8_t *)raw, o->clock, stamp_tai_offset(), &t);
    } else {
        lua_Integer v = luaL_checkinteger(L, 3);
        luaL_argcheck(L, v > 0 && v <= NS_MAX, 3, "positive nanoseconds expected");
        t = (stamp_ns_t)v;
    }
    lua_pushboolean(L, stamp_sm_tx_time(o->obj.h, (uint32_t)seq, t));
    return 1;
}

/***
 * The length of every packet it builds.
 * @function sender_machine:packet_len
 * @treturn integer
 */
static int m_packet_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)check_m(L)->plen);
    return 1;
}

/* ---- the class ----------------------------------------------------------- */

static void m_free(void *h) { stamp_sm_free(h); }
static void m_counters(const void *h, void *out) { stamp_sm_counters(h, out); }

static void m_describe(lua_State *L, const void *h)
{
    stamp_sender_counters_t c;
    stamp_sm_counters(h, &c);
    lua_pushfstring(L, "%d sent, %d received", (int)c.sent, (int)c.received);
}

static const luaL_Reg MACHINE_METHODS[] = {
    {"build", m_build},   {"build_due", m_build_due},   {"reply", m_reply},
    {"expire", m_expire}, {"next_deadline", m_next_deadline}, {"due", m_due},
    {"stop", m_stop},     {"done", m_done},             {"outstanding", m_outstanding},
    {"tx_error", m_tx_error}, {"packet_len", m_packet_len}, {"tx_time", m_tx_time}, {NULL, NULL}};

static const bind_class_t MACHINE = {
    .name = "stamp.sender_machine",
    .short_name = "sender_machine",
    .size = sizeof(lmachine_t),
    .free = m_free,
    .fd = NULL,
    .local = NULL,
    .counters = m_counters,
    .counter_names = sender_counter_names,
    .describe = m_describe,
    .methods = MACHINE_METHODS,
    .ctor = l_sender_machine,
};

void sender_machine_open(lua_State *L) { bind_class_open(L, &MACHINE); }
