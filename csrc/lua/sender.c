/*
 * The Session-Sender class (stamp.sender), RFC 8762 §4.2 and RFC 8972.
 * The shared methods (close, fd, local_addr, counters, __gc, __close,
 * __tostring) are in class.c.
 * (Part of the LDoc module stamp.core, described in core.c.)
 */
/*** @submodule stamp.core */
#include "bind.h"

#include <errno.h>
#include <string.h>

#define RESULTS_MAX 64

typedef struct {
    bind_obj_t obj; /* obj.h: the stamp_sender_t */
    size_t base;    /* base packet length of its mode */
} lsender_t;

static const bind_class_t SENDER;

/* The open sender at argument 1. */
static stamp_sender_t *bind_check_h(lua_State *L)
{
    return ((lsender_t *)bind_check(L, 1, &SENDER))->obj.h;
}

#define SC(f) {#f, offsetof(stamp_sender_counters_t, f)}
const counter_t sender_counter_names[] = {SC(sent),       SC(received),  SC(lost),   SC(duplicates), SC(late),
                                          SC(drop_hmac),  SC(drop_invalid), SC(tx_errors), SC(aborted), SC(extra_replies), SC(clock_errors),
                                          SC(t1_kernel), SC(t1_user), SC(extra_missing),
                                          SC(access_sent), SC(access_retransmits), SC(access_acked), SC(access_failed), SC(rx_overflow),
                                          SC(extra_unsupported), SC(no_reply),
                                          {NULL, 0}};
_Static_assert(sizeof(stamp_sender_counters_t) <= BIND_COUNTERS_MAX, "BIND_COUNTERS_MAX too small");

void sender_read_cfg(lua_State *L, int t, stamp_sender_cfg_t *c, int need_remote)
{
    luaL_checktype(L, t, LUA_TTABLE);
    memset(c, 0, sizeof *c);
    opt_sock(L, t, &c->sock);
    c->remote_addr = opt_str(L, t, "remote_addr", NULL, NULL);
    if (!c->remote_addr && need_remote) luaL_error(L, "bad option 'remote_addr' (string expected, got nil)");
    c->remote_port = (unsigned)opt_int(L, t, "remote_port", 862, 1, 65535);
    c->count = (uint64_t)opt_int(L, t, "count", 1000, 0, 0xffffffffLL);
    c->interval = opt_int(L, t, "interval_ns", 1000000000LL, 0, 3600LL * STAMP_NS_PER_SEC);
    c->timeout = opt_int(L, t, "timeout_ns", 5000000000LL, 1, 3600LL * STAMP_NS_PER_SEC);
    c->duration = opt_int(L, t, "duration_ns", 0, 0, 366LL * 86400 * STAMP_NS_PER_SEC);
    if (c->interval == 0 && c->count == 0)
        luaL_error(L, "bad option 'interval_ns' (0 needs a count: it would send without end)");
    c->ssid = (uint16_t)opt_int(L, t, "ssid", 0, 0, 0xffff);
    c->drop_ssid_zero = opt_bool(L, t, "drop_ssid_zero", 0);
    opt_auth(L, t, &c->mode, &c->key, &c->keylen);
    c->clock = opt_clock(L, t);
    c->packet_len = (size_t)opt_int(L, t, "packet_len", 0, 0, STAMP_MAX_PKT);
    const char *sched = opt_str(L, t, "schedule", "periodic", NULL);
    if (strcmp(sched, "poisson") == 0)
        c->poisson = 1;
    else if (strcmp(sched, "periodic") != 0)
        luaL_error(L, "bad option 'schedule' (periodic or poisson expected, got '%s')", sched);
    c->seed = (uint64_t)opt_int(L, t, "seed", 0, 0, 0x7fffffffffffffffLL);
    c->access_timeout = opt_int(L, t, "access_timeout_ns", 3000000000LL, 1, 3600LL * STAMP_NS_PER_SEC);
    c->access_retries = (int)opt_int(L, t, "access_retries", 4, 0, 1000);
    c->tlvs = (const uint8_t *)opt_str(L, t, "tlvs", NULL, &c->tlvs_len);
    if (c->tlvs_len > STAMP_MAX_PKT - stamp_base_len(c->mode)) luaL_error(L, "bad option 'tlvs' (too long)");
    if (c->packet_len && c->packet_len < stamp_base_len(c->mode) + c->tlvs_len)
        luaL_error(L, "bad option 'packet_len' (at least %d octets in this mode)", (int)stamp_base_len(c->mode));
}

int sender_stop_now_arg(lua_State *L, int i)
{
    if (lua_istable(L, i)) {
        lua_getfield(L, i, "now");
        int now = lua_toboolean(L, -1);
        lua_pop(L, 1);
        return now;
    }
    return lua_toboolean(L, i);
}

/***
 * Create a Session-Sender.
 * @function sender
 * @tparam table cfg `remote_addr` (required), `remote_port` (862), `local_addr`, `local_port` (0), `count`, `interval_ns`, `timeout_ns`, `duration_ns`, `ssid`, `auth`, `key`, `clock`, `ttl` (255), `tos`, `packet_len`, `tlvs`, `schedule`, `seed`,
 *   `access_timeout_ns` (3 s) and `access_retries` (4): the Access Report TLV's retransmission timer (RFC 8972 4.6)
 * @return sender object, or nil, message, code
 */
static int l_sender(lua_State *L)
{
    stamp_sender_cfg_t c;
    sender_read_cfg(L, 1, &c, 1);
    lsender_t *o = bind_new(L, &SENDER);
    o->base = stamp_base_len(c.mode);
    stamp_sender_t *s = NULL;
    int rc = stamp_sender_new(&c, &s);
    o->obj.h = s;
    if (rc) return push_fail(L, rc);
    return 1;
}

void sender_push_result(lua_State *L, const stamp_result_t *r, size_t base)
{
    lua_createtable(L, 0, 24);
    set_int(L, "seq", r->seq);
    lua_pushboolean(L, r->status == STAMP_RES_LOST);
    lua_setfield(L, -2, "lost");
    set_int(L, "t1", r->t1);
    lua_pushstring(L, r->t1_kernel ? "kernel" : "user");
    lua_setfield(L, -2, "t1_source");
    set_int(L, "t1_user", r->t1_user);
    if (r->status == STAMP_RES_ABORTED) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "aborted");
    }
    if (r->status == STAMP_RES_NO_REPLY) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "no_reply");
    }
    if (r->status != STAMP_RES_OK) return;
    set_int(L, "refl_seq", r->refl_seq);
    set_int(L, "rx_replies", (long long)r->rx_replies);
    set_int(L, "ssid", r->ssid);
    set_int(L, "t2", r->t2);
    set_int(L, "t3", r->t3);
    set_int(L, "t4", r->t4);
    set_int(L, "rtt", r->rtt);
    set_int(L, "fwd", r->fwd);
    set_int(L, "bwd", r->bwd);
    if (r->clock_error) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "clock_error");
    }
    if (r->sender_ttl >= 0) set_int(L, "ttl", r->sender_ttl);
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
    set_int(L, "tlv_offset", (long long)base); /* where the TLVs of `packet` begin: the mode's base length */
    if (r->tlv_hmac >= 0) {
        lua_pushboolean(L, r->tlv_hmac);
        lua_setfield(L, -2, "tlv_hmac_ok");
    }
    if (r->pkt_len > base) {
        push_tlvs(L, r->pkt, base, r->pkt_len, r->refl_ee.z ? STAMP_CLOCK_PTP : STAMP_CLOCK_NTP);
        if (r->tlv_usable < r->tlv_count) {
            /* `tlvs` (what consumers act on) holds only the usable ones; `tlv_list` shows them all */
            lua_pop(L, 1);
            lua_newtable(L);
            for (int i = 1; i <= r->tlv_usable; i++) {
                lua_rawgeti(L, -2, i);
                lua_getfield(L, -1, "key");
                lua_pushvalue(L, -1);
                lua_rawget(L, -4);
                int have = !lua_isnil(L, -1);
                lua_pop(L, 1);
                if (have) {
                    lua_pop(L, 2);
                } else {
                    lua_insert(L, -2); /* key, entry */
                    lua_rawset(L, -3);
                }
            }
            /* never more than listed: a truncated last TLV counts in tlv_count but is not in the list */
            int listed = (int)lua_rawlen(L, -2), ignored = r->tlv_count - r->tlv_usable;
            lua_pushinteger(L, ignored > listed ? listed : ignored);
            lua_setfield(L, -4, "tlv_ignored"); /* result, list, map, n */
        }
        lua_setfield(L, -3, "tlvs");
        lua_setfield(L, -2, "tlv_list");
    }
}

/***
 * Send what is due and keep to the schedule while waiting up to `timeout` ms for replies; return the
 * per-packet results that became final (answered, lost, or aborted after `stop(true)`) as soon as there are any.
 * @function sender:step
 * @tparam[opt=0] integer timeout milliseconds, -2^31..2^31-1 (negative: until a result, at most about 100 ms)
 * @treturn table|nil array of results (fields seq, lost, t1..t4, rtt, fwd, bwd in ns, ttl, refl_seq, ...;
 *   `t1_source` "kernel" when T1 is the kernel's transmit timestamp, "user" otherwise; `t1_user` the
 *   user-space time, also sent in the packet's Timestamp field; `packet` the reply's octets and `tlv_offset`
 *   where its TLVs begin, 44 or 112), or nil, message, code
 */
static int s_step(lua_State *L)
{
    lsender_t *o = bind_check(L, 1, &SENDER);
    int t = (int)opt_arg_int(L, 2, 0, -2147483648LL, 2147483647LL);
    stamp_result_t res[RESULTS_MAX];
    int n = stamp_sender_step(o->obj.h, t, res, RESULTS_MAX);
    if (n == -EINTR) n = 0;
    if (n < 0) return push_fail(L, n);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        sender_push_result(L, &res[i], o->base);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* Where sender:pump hands each result (all in C). */
typedef struct {
    stamp_stats_t *stats;
    stamp_metrics_t *metrics;
    size_t base;
    int n;
} pump_sink_t;

static void pump_each(void *ud, const stamp_result_t *r)
{
    pump_sink_t *k = ud;
    if (k->stats) stamp_stats_add(k->stats, r, k->base);
    if (k->metrics) stamp_metrics_observe_result(k->metrics, r);
    k->n++;
}

/***
 * Run the sender for up to `timeout` ms without building a result table per packet: every final
 * result goes, in C, to the sinks given (a statistics accumulator, Prometheus metrics) and is then
 * dropped. The way to run at high rates when no per-packet output is wanted (`sender:run` uses it when
 * it has no `on_result` and `keep = false`). Returns early when the sender is done or a trapped signal
 * (`trap_signals`) arrives.
 * @function sender:pump
 * @tparam[opt=-1] integer timeout milliseconds (negative: about 100 ms)
 * @tparam[opt] table sinks `stats` (a `stamp.core.stats` accumulator) and `metrics` (a `stamp.core.metrics`
 *   object of role sender)
 * @treturn integer|nil results handled, or nil, message, code
 */
static int s_pump(lua_State *L)
{
    lsender_t *o = bind_check(L, 1, &SENDER);
    int t = (int)opt_arg_int(L, 2, -1, -2147483648LL, 2147483647LL);
    pump_sink_t k = {.stats = NULL, .metrics = NULL, .base = o->base, .n = 0};
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "stats");
        if (!lua_isnil(L, -1)) k.stats = lstats_check(L, lua_gettop(L));
        lua_pop(L, 1);
        lua_getfield(L, 3, "metrics");
        if (!lua_isnil(L, -1)) k.metrics = metrics_check(L, lua_gettop(L), 1);
        lua_pop(L, 1);
    }
    /* a trapped SIGINT/SIGTERM ends the pump at the next turn of its loop, wherever it arrives */
    int n = stamp_sender_pump(o->obj.h, t, pump_each, &k, sys_signal_count());
    if (n < 0 && n != -EINTR) return push_fail(L, n);
    if (k.metrics) stamp_metrics_publish_sender(k.metrics);
    lua_pushinteger(L, k.n);
    return 1;
}

/***
 * True once every packet was sent and answered, declared lost or aborted.
 * @function sender:done
 * @treturn boolean
 */
static int s_done(lua_State *L)
{
    lua_pushboolean(L, stamp_sender_done(bind_check_h(L)));
    return 1;
}

/***
 * Milliseconds until the sender needs the next step (-1: never, it is done).
 * @function sender:next_timeout
 * @treturn integer
 */
static int s_next_timeout(lua_State *L)
{
    lua_pushinteger(L, stamp_sender_next_timeout(bind_check_h(L)));
    return 1;
}

/***
 * Stop sending new packets; those in flight are still awaited up to the timeout. With `now`
 * (`stop(true)` or `stop{ now = true }`) stop at once: the next step reports the packets still
 * outstanding as results with `aborted = true` (neither received nor lost).
 * @function sender:stop
 * @tparam[opt] boolean|table now
 */
static int s_stop(lua_State *L)
{
    stamp_sender_t *s = bind_check_h(L);
    if (sender_stop_now_arg(L, 2))
        stamp_sender_abort(s);
    else
        stamp_sender_stop(s);
    return 0;
}

/* ---- the class ----------------------------------------------------------- */

static void s_free(void *h) { stamp_sender_free(h); }
static int s_fd(const void *h) { return stamp_sender_fd(h); }
static void s_local(const void *h, stamp_addr_t *a) { stamp_sender_local(h, a); }
static void s_counters(const void *h, void *out) { stamp_sender_counters(h, out); }

static void s_describe(lua_State *L, const void *h)
{
    stamp_sender_counters_t c;
    stamp_sender_counters(h, &c);
    lua_pushfstring(L, "%d sent, %d received", (int)c.sent, (int)c.received);
}

static const luaL_Reg SENDER_METHODS[] = {
    {"step", s_step}, {"pump", s_pump}, {"done", s_done}, {"next_timeout", s_next_timeout}, {"stop", s_stop}, {NULL, NULL}};

static const bind_class_t SENDER = {
    .name = "stamp.sender",
    .short_name = "sender",
    .size = sizeof(lsender_t),
    .free = s_free,
    .fd = s_fd,
    .local = s_local,
    .counters = s_counters,
    .counter_names = sender_counter_names,
    .describe = s_describe,
    .methods = SENDER_METHODS,
    .ctor = l_sender,
};

void sender_open(lua_State *L) { bind_class_open(L, &SENDER); }
