/*
 * The statistics accumulator class (stamp.stats): the C core's stamp_stats_t,
 * which computes what lua/stamp/stats.lua's accumulator computes without a Lua
 * table per packet. `stats.from_core` renders its summary.
 * (Part of the LDoc module stamp.core, described in core.c.)
 */
/*** @submodule stamp.core */
#include "bind.h"

#include <math.h>
#include <string.h>

typedef struct {
    bind_obj_t obj; /* obj.h: the stamp_stats_t */
    size_t base;    /* base packet length of the mode: the TLVs of `packet` follow it */
} lstats_t;

static const bind_class_t STATS;

stamp_stats_t *lstats_check(lua_State *L, int i) { return ((lstats_t *)bind_check(L, i, &STATS))->obj.h; }

/***
 * A statistics accumulator in C: `stats.from_core(acc)` (module stamp.stats) renders the very summary
 * a Lua accumulator (`stats.new`) gives for the same results.
 * @function stats
 * @tparam[opt] table opts `stateful_reflector` (boolean: the reflector numbers its replies itself),
 *   `auth` ("open" or "auth": the mode, whose base packet length tells where the TLVs of `packet` begin)
 * @return stats object, or nil, message, code
 */
static int l_stats(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    int stateful = opt_bool(L, 1, "stateful_reflector", 0);
    const char *auth = opt_str(L, 1, "auth", "open", NULL);
    if (strcmp(auth, "open") != 0 && strcmp(auth, "auth") != 0)
        luaL_error(L, "bad option 'auth' (open or auth expected, got '%s')", auth);
    lstats_t *o = bind_new(L, &STATS);
    o->base = stamp_base_len(strcmp(auth, "auth") == 0 ? STAMP_MODE_AUTH : STAMP_MODE_OPEN);
    stamp_stats_t *st = NULL;
    int rc = stamp_stats_new(stateful, &st);
    o->obj.h = st;
    if (rc) return push_fail(L, rc);
    return 1;
}

/* Field k of the result table at t as an integer in [lo, hi] (integral floats too); `def` when nil,
 * unless required. */
static long long field_int(lua_State *L, int t, const char *k, long long def, long long lo, long long hi, int required)
{
    lua_getfield(L, t, k);
    long long v = def;
    if (lua_isnil(L, -1)) {
        if (required) luaL_error(L, "bad field '%s' of the result (integer expected, got nil)", k);
    } else {
        lua_Number n = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : NAN;
        int ok = n >= -9223372036854775808.0 && n < 9223372036854775808.0 && n == floor(n);
#if LUA_VERSION_NUM >= 503
        if (lua_isinteger(L, -1)) ok = 1;
        if (ok) v = (long long)lua_tointeger(L, -1);
#else
        if (ok) v = (long long)n;
#endif
        if (lua_type(L, -1) != LUA_TNUMBER || !ok)
            luaL_error(L, "bad field '%s' of the result (integer expected, got %s)", k, luaL_typename(L, -1));
        if (v < lo || v > hi) luaL_error(L, "bad field '%s' of the result (%s)", k, range_msg(L, v, lo, hi));
    }
    lua_pop(L, 1);
    return v;
}

static int field_bool(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* Error Estimate table field k: S into *ee, its error (error_ns, or from scale and mult) into *err.
 * Returns 0 when the field is not a table. */
static int field_ee(lua_State *L, int t, const char *k, stamp_ee_t *ee, double *err)
{
    lua_getfield(L, t, k);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    int e = lua_gettop(L);
    memset(ee, 0, sizeof *ee);
    ee->s = (unsigned)field_int(L, e, "s", 0, 0, 1, 0);
    ee->z = (unsigned)field_int(L, e, "z", 0, 0, 1, 0);
    ee->scale = (unsigned)field_int(L, e, "scale", 0, 0, 63, 0);
    ee->mult = (unsigned)field_int(L, e, "mult", 0, 0, 255, 0);
    lua_getfield(L, e, "error_ns");
    if (lua_type(L, -1) == LUA_TNUMBER)
        *err = lua_tonumber(L, -1);
    else if (!lua_isnil(L, -1))
        luaL_error(L, "bad field '%s.error_ns' of the result (number expected, got %s)", k, luaL_typename(L, -1));
    else
        *err = stamp_ee_ns(ee);
    lua_pop(L, 2);
    return 1;
}

/***
 * Add one per-packet result table, as `sender:step` returns them (aborted ones are ignored). The TLVs
 * are read from `packet` from `tlv_offset` on (the result's own, else the `auth` option's base length) and
 * `tlv_ignored`, as the sender's own results give them; nothing is kept.
 * Fields: `seq`, `lost`, `aborted`, `t1_source`, `clock_error`, `rtt`, `fwd`, `bwd`, `refl_seq`,
 * `rx_replies`, `sender_ee` and `refl_ee` (`s`, `error_ns` or `scale`/`mult`), `packet`, `tlv_offset`,
 * `tlv_ignored`.
 * @function stats:add
 * @tparam table r
 */
static int st_add(lua_State *L)
{
    lstats_t *o = bind_check(L, 1, &STATS);
    luaL_checktype(L, 2, LUA_TTABLE);
    stamp_result_t r;
    memset(&r, 0, sizeof r);
    unsigned flags = 0;
    double err = 0;
    size_t base = o->base;
    r.seq = (uint32_t)field_int(L, 2, "seq", 0, 0, 0xffffffffLL, 1);
    r.status = field_bool(L, 2, "aborted")    ? STAMP_RES_ABORTED
               : field_bool(L, 2, "no_reply") ? STAMP_RES_NO_REPLY
               : field_bool(L, 2, "lost")  ? STAMP_RES_LOST
                                           : STAMP_RES_OK;
    if (r.status == STAMP_RES_OK) {
        lua_getfield(L, 2, "t1_source");
        const char *src = lua_tostring(L, -1);
        if (src && strcmp(src, "kernel") == 0)
            r.t1_kernel = 1;
        else if (!src || strcmp(src, "user") != 0)
            flags |= STAMP_STATS_NO_T1_SOURCE;
        lua_pop(L, 1);
        r.clock_error = field_bool(L, 2, "clock_error");
        if (!r.clock_error) {
            r.rtt = field_int(L, 2, "rtt", 0, INT64_MIN, INT64_MAX, 1);
            r.fwd = field_int(L, 2, "fwd", 0, INT64_MIN, INT64_MAX, 1);
            r.bwd = field_int(L, 2, "bwd", 0, INT64_MIN, INT64_MAX, 1);
            r.refl_seq = (uint32_t)field_int(L, 2, "refl_seq", 0, 0, 0xffffffffLL, 1);
            r.rx_replies = (uint64_t)field_int(L, 2, "rx_replies", 0, 0, INT64_MAX, 0);
            double e1 = 0, e2 = 0;
            if (field_ee(L, 2, "sender_ee", &r.sender_ee, &e1) & field_ee(L, 2, "refl_ee", &r.refl_ee, &e2)) {
                flags |= STAMP_STATS_ERR_GIVEN;
                err = e1 + e2;
            } else {
                flags |= STAMP_STATS_NO_EE;
            }
        }
        lua_getfield(L, 2, "tlv_offset"); /* a result says where its TLVs begin (a sender's results do) */
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TNUMBER)
                luaL_error(L, "bad field 'tlv_offset' of the result (%d or %d expected, got %s)", STAMP_BASE_LEN,
                           STAMP_AUTH_BASE_LEN, luaL_typename(L, -1));
            lua_Number off = lua_tonumber(L, -1);
            if (off != STAMP_BASE_LEN && off != STAMP_AUTH_BASE_LEN)
                luaL_error(L, "bad field 'tlv_offset' of the result (%d or %d expected, got %s)", STAMP_BASE_LEN,
                           STAMP_AUTH_BASE_LEN, lua_tostring(L, -1));
            base = (size_t)off;
        }
        lua_pop(L, 1);
        lua_getfield(L, 2, "packet");
        size_t len = 0;
        const char *pkt = lua_tolstring(L, -1, &len);
        if (pkt && lua_type(L, -1) == LUA_TSTRING) {
            r.pkt = (const uint8_t *)pkt;
            r.pkt_len = len;
            size_t pos = base;
            stamp_tlv_t t;
            int rc;
            while (len > base && (rc = stamp_tlv_next(r.pkt, len, &pos, &t)) != 0) {
                r.tlv_count++;
                if (rc < 0) break;
            }
            long long ignored = field_int(L, 2, "tlv_ignored", 0, 0, r.tlv_count, 0);
            r.tlv_usable = r.tlv_count - (int)ignored;
        }
        /* the packet string stays referenced by the table at 2 while stamp_stats_add_ex reads it */
        lua_pop(L, 1);
    }
    stamp_stats_add_ex(o->obj.h, &r, base, flags, err);
    return 0;
}

static void push_mom(lua_State *L, const stamp_moments_t *m)
{
    lua_createtable(L, 0, 6);
    set_int(L, "n", (long long)m->n);
    set_int(L, "sabs", m->sabs);
    if (m->n == 0) {
        set_int(L, "mean", 0);
        set_int(L, "m2", 0);
        lua_pushnumber(L, HUGE_VAL);
        lua_setfield(L, -2, "min");
        lua_pushnumber(L, -HUGE_VAL);
        lua_setfield(L, -2, "max");
        return;
    }
    lua_pushnumber(L, m->mean);
    lua_setfield(L, -2, "mean");
    lua_pushnumber(L, m->m2);
    lua_setfield(L, -2, "m2");
    set_int(L, "min", m->min);
    set_int(L, "max", m->max);
}

static const char *const DIST_KEYS[STAMP_STATS_NDIST] = {"rtt", "fwd", "bwd", "irtt", "ifwd", "ibwd"};

static void push_hist_side(lua_State *L, const uint64_t *c)
{
    lua_newtable(L);
    for (int k = 0; k < STAMP_STATS_HIST_K; k++)
        if (c[k]) {
            lua_pushinteger(L, (lua_Integer)c[k]);
            lua_rawseti(L, -2, k);
        }
}

/***
 * The accumulator's state, from which `stats.from_core` builds a summary (the fields of a Lua
 * accumulator: counts, moments, loss episodes, reordering, the last record, and `vals`, the exact
 * sample's values, or `hist`, the histograms).
 * @function stats:snapshot
 * @treturn table
 */
static int st_snapshot(lua_State *L)
{
    lstats_t *o = bind_check(L, 1, &STATS);
    stamp_stats_t *st = o->obj.h;
    stamp_stats_figures_t f;
    stamp_stats_figures(st, &f);
    lua_createtable(L, 0, 32);
    set_int(L, "n", (long long)f.received);
    set_int(L, "lost", (long long)f.lost);
    set_int(L, "clock_errors", (long long)f.clock_errors);
    set_int(L, "extra_refused", (long long)f.extra_refused);
    set_int(L, "t1_kernel", (long long)f.t1_kernel);
    set_int(L, "t1_user", (long long)f.t1_user);
    for (int d = 0; d < STAMP_STATS_NDIST; d++) {
        push_mom(L, &f.dist[d]);
        lua_setfield(L, -2, DIST_KEYS[d]);
    }
    lua_pushboolean(L, f.owd_valid);
    lua_setfield(L, -2, "owd_valid");
    if (f.owd_reason) {
        lua_pushstring(L, f.owd_reason);
        lua_setfield(L, -2, "owd_reason");
    }
    if (f.err_bound > 0)
        lua_pushnumber(L, f.err_bound);
    else
        lua_pushinteger(L, 0);
    lua_setfield(L, -2, "err_bound");
    lua_pushboolean(L, f.stateful);
    lua_setfield(L, -2, "stateful");
    set_int(L, "episodes", (long long)f.episodes);
    set_int(L, "longest", (long long)f.longest);
    set_int(L, "burst_total", (long long)f.burst_total);
    if (f.in_run) {
        set_int(L, "run_first", f.run_first);
        set_int(L, "run_last", f.run_last);
    }
    set_int(L, "reordered", (long long)f.reordered);
    push_mom(L, &f.ext);
    lua_setfield(L, -2, "ext");
    if (f.has_last) {
        lua_createtable(L, 0, 4);
        set_int(L, "seq", f.last_seq);
        set_int(L, "refl_seq", f.last_refl_seq);
        if (f.last_rx_replies) set_int(L, "rx_replies", (long long)f.last_rx_replies);
        if (f.last_dm) {
            lua_createtable(L, 0, 4);
            lua_pushboolean(L, f.last_dm_u);
            lua_setfield(L, -2, "u");
            if (f.last_dm_fields) {
                set_int(L, "s_txc", f.last_s_txc);
                set_int(L, "r_rxc", f.last_r_rxc);
                set_int(L, "r_txc", f.last_r_txc);
            }
            lua_setfield(L, -2, "dm");
        }
        lua_setfield(L, -2, "last");
    }
    if (f.dm_backwards) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "dm_backwards");
    }
    lua_createtable(L, 0, STAMP_STATS_NDIST);
    if (!f.hist) {
        size_t n = stamp_stats_sample_len(st);
        int top = lua_gettop(L);
        for (int d = 0; d < STAMP_STATS_NDIST; d++) lua_createtable(L, d < 3 ? (int)n : 0, 0);
        lua_Integer np = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t seq;
            double v[3], iv[3];
            int pair = stamp_stats_sample_get(st, i, &seq, v, iv);
            if (pair) np++;
            for (int k = 0; k < 3; k++) {
                lua_pushnumber(L, v[k]);
                lua_rawseti(L, top + 1 + k, (lua_Integer)i + 1);
                if (pair) {
                    lua_pushnumber(L, iv[k]);
                    lua_rawseti(L, top + 4 + k, np);
                }
            }
        }
        for (int d = STAMP_STATS_NDIST - 1; d >= 0; d--) lua_setfield(L, top, DIST_KEYS[d]);
        lua_setfield(L, -2, "vals");
    } else {
        for (int d = 0; d < STAMP_STATS_NDIST; d++) {
            const uint64_t *neg;
            uint64_t zero, n;
            const uint64_t *pos = stamp_stats_hist(st, d, &neg, &zero);
            n = zero;
            for (int k = 0; k < STAMP_STATS_HIST_K; k++) n += pos[k] + neg[k];
            lua_createtable(L, 0, 4);
            push_hist_side(L, pos);
            lua_setfield(L, -2, "pos");
            push_hist_side(L, neg);
            lua_setfield(L, -2, "neg");
            set_int(L, "zero", (long long)zero);
            set_int(L, "n", (long long)n);
            lua_setfield(L, -2, DIST_KEYS[d]);
        }
        lua_setfield(L, -2, "hist");
    }
    return 1;
}

/* ---- the class ----------------------------------------------------------- */

static void st_free(void *h) { stamp_stats_free(h); }

static void st_describe(lua_State *L, const void *h)
{
    stamp_stats_figures_t f;
    stamp_stats_figures((stamp_stats_t *)h, &f);
    lua_pushfstring(L, "%d received, %d lost", (int)f.received, (int)f.lost);
}

/***
 * What a live progress line needs, cheap at any time (unlike `snapshot`, it finishes nothing).
 * @function stats:progress
 * @treturn table `received`, `lost`, and when a received packet had a usable RTT: `rtt_mean` and
 *   `rtt_last` (ns, the packet added last)
 */
static int st_progress(lua_State *L)
{
    lstats_t *o = bind_check(L, 1, &STATS);
    stamp_stats_progress_t p;
    stamp_stats_progress(o->obj.h, &p);
    lua_createtable(L, 0, 4);
    set_int(L, "received", (long long)p.received);
    set_int(L, "lost", (long long)p.lost);
    if (p.rtt_n) {
        lua_pushnumber(L, p.rtt_mean);
        lua_setfield(L, -2, "rtt_mean");
        set_int(L, "rtt_last", p.rtt_last);
    }
    return 1;
}

static const luaL_Reg STATS_METHODS[] = {{"add", st_add}, {"snapshot", st_snapshot}, {"progress", st_progress},
                                         {NULL, NULL}};

static const bind_class_t STATS = {
    .name = "stamp.stats",
    .short_name = "stats",
    .size = sizeof(lstats_t),
    .free = st_free,
    .describe = st_describe,
    .methods = STATS_METHODS,
    .ctor = l_stats,
};

void stats_open(lua_State *L) { bind_class_open(L, &STATS); }
