/*
 * Operations: Prometheus metrics (the one renderer of the exposition format,
 * an HTTP endpoint on its own thread), privilege drop, process name, key files.
 * (Part of the LDoc module stamp.core, described in core.c.)
 */
/*** @submodule stamp.core */
#include "bind.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_MT "stamp.metrics"
#define SENDER_MT "stamp.sender"
#define REFLECTOR_MT "stamp.reflector"


typedef struct {
    stamp_metrics_t *m;
    int ref;  /* registry reference to the attached engine's userdata */
    void *ud; /* that userdata */
    int is_reflector;
} lmetrics_t;

static int fail(lua_State *L, int code, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg ? msg : stamp_strerror(code));
    lua_pushinteger(L, code);
    return 3;
}

static lmetrics_t *check_metrics(lua_State *L)
{
    lmetrics_t *o = luaL_checkudata(L, 1, METRICS_MT);
    if (!o->m) luaL_error(L, "attempt to use closed metrics");
    return o;
}

/* Point the core at the engine as it is now (NULL once the engine is closed). */
static void reattach(lmetrics_t *o)
{
    if (!o->ud) return;
    if (o->is_reflector)
        stamp_metrics_attach_reflector(o->m, ((bind_obj_t *)o->ud)->h);
    else
        stamp_metrics_attach_sender(o->m, ((bind_obj_t *)o->ud)->h);
}

/* The metrics at index i (attached or not) for stamp_metrics_observe_result; raises when it is not a
 * metrics object, is closed, or (want_sender) is a reflector's. */
stamp_metrics_t *metrics_check(lua_State *L, int i, int want_sender)
{
    lmetrics_t *o = luaL_checkudata(L, i, METRICS_MT);
    if (!o->m) luaL_error(L, "attempt to use closed metrics");
    if (want_sender && o->is_reflector) luaL_error(L, "sender metrics expected, got reflector metrics");
    reattach(o);
    return o->m;
}

/***
 * Prometheus metrics of a reflector or a sender.
 * @function metrics
 * @tparam string role "reflector" or "sender"
 * @return metrics object
 */
static int l_metrics(lua_State *L)
{
    static const char *const roles[] = {"reflector", "sender", NULL};
    int role = luaL_checkoption(L, 1, NULL, roles);
    lmetrics_t *o = lua_newuserdata(L, sizeof *o);
    memset(o, 0, sizeof *o);
    o->ref = LUA_NOREF;
    luaL_setmetatable(L, METRICS_MT);
    int rc = stamp_metrics_new(role == 0 ? STAMP_METRICS_REFLECTOR : STAMP_METRICS_SENDER, &o->m);
    if (rc) return fail(L, rc, NULL);
    o->is_reflector = role == 0;
    return 1;
}

/***
 * Render the counters of this engine from now on; the metrics keep it alive.
 * @function metrics:attach
 * @param engine a `stamp.reflector` (reflector metrics) or `stamp.sender` (sender metrics)
 * @return the metrics object
 */
static int m_attach(lua_State *L)
{
    lmetrics_t *o = check_metrics(L);
    void *ud = luaL_checkudata(L, 2, o->is_reflector ? REFLECTOR_MT : SENDER_MT);
    luaL_unref(L, LUA_REGISTRYINDEX, o->ref);
    lua_pushvalue(L, 2);
    o->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    o->ud = ud;
    reattach(o);
    lua_settop(L, 1);
    return 1;
}

/***
 * The Prometheus text exposition (format 0.0.4), e.g. for an OpenResty location.
 * @function metrics:render
 * @treturn string
 */
static int m_render(lua_State *L)
{
    lmetrics_t *o = check_metrics(L);
    reattach(o);
    size_t need = stamp_metrics_render(o->m, NULL, 0);
    for (int tries = 0; tries < 4; tries++) {
        char *p = malloc(need + 1);
        if (!p) return luaL_error(L, "out of memory");
        size_t got = stamp_metrics_render(o->m, p, need + 1);
        if (got <= need) {
            lua_pushlstring(L, p, got);
            free(p);
            return 1;
        }
        free(p);
        need = got + 256;
    }
    return luaL_error(L, "metrics text keeps growing");
}

/***
 * Serve the text at http://ADDR:PORT/metrics from a thread of its own.
 * @function metrics:serve
 * @tparam string addr "ADDR:PORT" or "[IPv6]:PORT" (port 0: any free port)
 * @treturn integer|nil the bound port, or nil, message, code
 */
static int m_serve(lua_State *L)
{
    lmetrics_t *o = check_metrics(L);
    const char *addr = luaL_checkstring(L, 2);
    unsigned port = 0;
    reattach(o);
    int rc = stamp_metrics_serve(o->m, addr, &port);
    if (rc) return fail(L, rc, NULL);
    lua_pushinteger(L, (lua_Integer)port);
    return 1;
}

/***
 * Record one sender result: its round-trip time, and its one-way delays when
 * both Error Estimates say the clocks are synchronized (S = 1); publish the
 * attached sender's counters for the HTTP thread (call it on the sender's thread).
 * @function metrics:observe
 * @tparam table r a result of `sender:step` (lost results are ignored)
 */
static int m_observe(lua_State *L)
{
    lmetrics_t *o = check_metrics(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (o->is_reflector) return luaL_error(L, "sender metrics expected, got reflector metrics");
    if (o->ud) {
        reattach(o);
        stamp_metrics_publish_sender(o->m); /* the counters as of this result, for the HTTP thread */
    }
    lua_getfield(L, 2, "lost");
    int lost = lua_toboolean(L, -1);
    lua_getfield(L, 2, "clock_error"); /* T4 before T1: no delay is usable (as stamp_metrics_observe_result) */
    lost = lost || lua_toboolean(L, -1);
    lua_getfield(L, 2, "aborted");
    lost = lost || lua_toboolean(L, -1);
    lua_getfield(L, 2, "rtt");
    if (lost || !lua_isnumber(L, -1)) {
        lua_settop(L, 1);
        return 0;
    }
    stamp_metrics_observe_rtt(o->m, (stamp_ns_t)lua_tonumber(L, -1));
    int synced = 1;
    const char *ee[] = {"sender_ee", "refl_ee"};
    for (int i = 0; i < 2; i++) {
        lua_getfield(L, 2, ee[i]);
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "s");
            synced = synced && lua_tonumber(L, -1) == 1;
            lua_pop(L, 1);
        } else {
            synced = 0;
        }
        lua_pop(L, 1);
    }
    lua_getfield(L, 2, "fwd");
    lua_getfield(L, 2, "bwd");
    if (synced && lua_isnumber(L, -1) && lua_isnumber(L, -2))
        stamp_metrics_observe_owd(o->m, (stamp_ns_t)lua_tonumber(L, -2), (stamp_ns_t)lua_tonumber(L, -1));
    lua_settop(L, 1);
    return 0;
}

/***
 * `reflector:step(timeout)` that also records the processing time per packet.
 * @function metrics:reflector_step
 * @param r the attached reflector
 * @tparam[opt=0] integer timeout milliseconds to wait for a datagram
 * @treturn integer|nil datagrams handled, or nil, message, code
 */
static int m_reflector_step(lua_State *L)
{
    lmetrics_t *o = check_metrics(L);
    bind_obj_t *u = luaL_checkudata(L, 2, REFLECTOR_MT);
    if (!u->h) luaL_error(L, "attempt to use a closed reflector");
    int n = stamp_metrics_reflector_step(o->m, u->h, (int)luaL_optinteger(L, 3, 0));
    if (n == -EINTR) n = 0;
    if (n < 0) return fail(L, n, NULL);
    lua_pushinteger(L, n);
    return 1;
}

/***
 * Count a configuration reload.
 * @function metrics:reloaded
 * @tparam boolean ok applied (true) or refused (false)
 */
static int m_reloaded(lua_State *L)
{
    lmetrics_t *o = check_metrics(L);
    stamp_metrics_count(o->m, lua_toboolean(L, 2) ? STAMP_METRICS_RELOADS : STAMP_METRICS_RELOAD_FAILURES, 1);
    return 0;
}

/***
 * Stop the HTTP endpoint and free (idempotent). Either order with the engine is safe: a closed
 * engine is detached first, and the metrics then render zeros for it.
 * @function metrics:close
 */
static int m_close(lua_State *L)
{
    lmetrics_t *o = luaL_checkudata(L, 1, METRICS_MT);
    if (o->m) {
        stamp_metrics_free(o->m);
        o->m = NULL;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, o->ref);
    o->ref = LUA_NOREF;
    o->ud = NULL;
    return 0;
}

static int m_tostring(lua_State *L)
{
    lmetrics_t *o = luaL_checkudata(L, 1, METRICS_MT);
    lua_pushfstring(L, "stamp.metrics (%s%s)", o->is_reflector ? "reflector" : "sender", o->m ? "" : ", closed");
    return 1;
}

/***
 * Switch to USER[:GROUP] for good (supplementary groups, gid, uid).
 * @function drop_privileges
 * @tparam string spec "USER" or "USER:GROUP", names or numbers
 * @treturn true|nil true, or nil, message, code
 */
static int l_drop_privileges(lua_State *L)
{
    char err[256] = "";
    int rc = stamp_drop_privileges(luaL_checkstring(L, 1), err, sizeof err);
    if (rc) return fail(L, rc, err);
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- the config file sandbox: a Lua state of its own, memory and instructions bounded ---- */

typedef struct {
    size_t used, cap;
    int over; /* an allocation was refused for the cap */
} capalloc_t;

static void *cap_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    capalloc_t *c = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        c->used -= old;
        return NULL;
    }
    if (nsize > old && c->used - old + nsize > c->cap) {
        c->over = 1;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (p) c->used = c->used - old + nsize;
    return p;
}

static void too_long(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    luaL_error(L, "the config file runs too long");
}

/* Copy the value at index i of S (a number, string, boolean, or a table of them, `depth` levels) onto L;
 * 0, or -1 with a message in err. */
static int copy_value(lua_State *S, int i, lua_State *L, int depth, char *err, size_t cap)
{
    switch (lua_type(S, i)) {
    case LUA_TNUMBER:
#if LUA_VERSION_NUM >= 503
        if (lua_isinteger(S, i)) {
            lua_pushinteger(L, lua_tointeger(S, i));
            break;
        }
#endif
        lua_pushnumber(L, lua_tonumber(S, i));
        break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(S, i, &n);
        lua_pushlstring(L, s, n);
        break;
    }
    case LUA_TBOOLEAN:
        lua_pushboolean(L, lua_toboolean(S, i));
        break;
    case LUA_TTABLE:
        if (depth <= 0) {
            snprintf(err, cap, "a table nested too deep");
            return -1;
        }
        if (i < 0) i = lua_gettop(S) + i + 1;
        lua_newtable(L);
        lua_pushnil(S);
        while (lua_next(S, i)) {
            if (copy_value(S, -2, L, 0, err, cap) || copy_value(S, -1, L, depth - 1, err, cap)) return -1;
            lua_rawset(L, -3);
            lua_pop(S, 1);
        }
        break;
    default:
        snprintf(err, cap, "a %s (settings are strings, numbers, booleans or lists)", lua_typename(S, lua_type(S, i)));
        return -1;
    }
    return 0;
}

/***
 * Run the text of a config file in a Lua state of its own: no libraries, an empty environment, text only,
 * at most `max_bytes` of memory and about `max_instructions` instructions. A program whose allocations pass
 * the bound fails there, before the host's memory is touched.
 * @function config_eval
 * @tparam string text the file's text
 * @tparam string name chunk name for messages ("@path")
 * @tparam integer max_bytes memory bound of the state
 * @tparam integer max_instructions instruction bound
 * @treturn table|nil|false the returned table (numbers, strings, booleans and tables of them), or nil, message;
 * false when this Lua cannot make a state with a bounded allocator (LuaJIT on 64-bit hosts)
 */
static int l_config_eval(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    const char *name = luaL_checkstring(L, 2);
    lua_Integer max_bytes = luaL_checkinteger(L, 3), max_ins = luaL_checkinteger(L, 4);
    luaL_argcheck(L, max_bytes >= 65536, 3, "at least 65536 expected");
    luaL_argcheck(L, max_ins >= 1 && max_ins <= 0x7fffffff, 4, "1..2^31-1 expected");
    if (len && text[0] == 27) {
        lua_pushnil(L);
        lua_pushstring(L, "binary chunks are not accepted");
        return 2;
    }
    capalloc_t ca = {0, (size_t)max_bytes, 0};
    lua_State *S = lua_newstate(cap_alloc, &ca);
    if (!S) { /* LuaJIT on 64-bit hosts makes no state with another allocator: the caller falls back */
        lua_pushboolean(L, 0);
        lua_pushstring(L, "no Lua state of its own here");
        return 2;
    }
    char err[256] = "";
    int rc = luaL_loadbuffer(S, text, len, name);
    if (rc == 0) {
        lua_newtable(S); /* the empty environment */
#if LUA_VERSION_NUM >= 502
        if (!lua_setupvalue(S, -2, 1)) lua_pop(S, 1);
#else
        lua_setfenv(S, -2);
#endif
        lua_sethook(S, too_long, LUA_MASKCOUNT, (int)max_ins);
        rc = lua_pcall(S, 0, 1, 0);
    }
    if (rc == 0 && lua_type(S, -1) != LUA_TTABLE) {
        snprintf(err, sizeof err, "it must return a table of settings");
    } else if (rc == 0) {
        lua_sethook(S, NULL, 0, 0);
        if (copy_value(S, -1, L, 2, err, sizeof err)) lua_settop(L, 4);
    } else if (ca.over || rc == LUA_ERRMEM) {
        snprintf(err, sizeof err, "the config file needs more than %lld octets of memory", (long long)max_bytes);
    } else {
        const char *m = lua_tostring(S, -1);
        snprintf(err, sizeof err, "%s", m ? m : "error");
    }
    lua_close(S);
    if (err[0]) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return 1;
}

/***
 * Whether a file could be written (or created) by USER[:GROUP] once privileges are dropped to it.
 * @function path_writable_as
 * @tparam string path
 * @tparam[opt] string user "USER" or "USER:GROUP"; nil: this process
 * @treturn true|nil true, or nil, message, code
 */
static int l_path_writable_as(lua_State *L)
{
    char err[512] = "";
    int rc = stamp_path_writable_as(luaL_checkstring(L, 1), luaL_optstring(L, 2, NULL), err, sizeof err);
    if (rc) return fail(L, rc, err);
    lua_pushboolean(L, 1);
    return 1;
}

/***
 * Name the process for `ps` and `top` (PR_SET_NAME and the argument area).
 * @function set_process_name
 * @tparam string name
 * @treturn boolean whether both parts worked
 */
static int l_set_process_name(lua_State *L)
{
    lua_pushboolean(L, stamp_set_process_name(luaL_checkstring(L, 1)) == 0);
    return 1;
}

/***
 * Read a hex key file; files that group or others may read are refused.
 * @function key_file_read
 * @tparam string path
 * @treturn string|nil the key octets, or nil, message (never the key), code
 */
static int l_key_file_read(lua_State *L)
{
    uint8_t key[STAMP_KEY_MAX];
    char err[512] = "";
    int n = stamp_key_file_read(luaL_checkstring(L, 1), key, sizeof key, err, sizeof err);
    if (n < 0) return fail(L, n, err);
    lua_pushlstring(L, (const char *)key, (size_t)n);
    memset(key, 0, sizeof key);
    return 1;
}

/***
 * Look a `USER[:GROUP]` up without switching to it.
 * @function user_lookup
 * @tparam string user
 * @treturn integer|nil uid, or nil, message, code
 * @treturn integer gid
 */
static int l_user_lookup(lua_State *L)
{
    char err[256] = "";
    unsigned uid, gid;
    int rc = stamp_user_lookup(luaL_checkstring(L, 1), &uid, &gid, NULL, 0, err, sizeof err);
    if (rc) return fail(L, rc, err);
    lua_pushinteger(L, (lua_Integer)uid);
    lua_pushinteger(L, (lua_Integer)gid);
    return 2;
}

/***
 * Check the owner and mode of a key file or key directory.
 * @function key_path_check
 * @tparam string path
 * @tparam string kind "file" or "dir"
 * @tparam[opt] integer uid another owner to accept (the `--user` one)
 * @treturn boolean|nil true, or nil, message, code
 */
static int l_key_path_check(lua_State *L)
{
    static const char *const kinds[] = {"file", "dir", NULL};
    const char *path = luaL_checkstring(L, 1);
    int is_dir = luaL_checkoption(L, 2, NULL, kinds);
    lua_Integer also = luaL_optinteger(L, 3, -1);
    char err[512] = "";
    int rc = stamp_key_path_check(path, is_dir, (long)also, err, sizeof err);
    if (rc) return fail(L, rc, err);
    lua_pushboolean(L, 1);
    return 1;
}

/***
 * Whether the clock's synchronization state can be read (a seccomp filter or
 * systemd's ProtectClock= makes adjtimex fail: every reply then says S = 0).
 * @function clock_state_check
 * @treturn boolean|nil true, or nil, message, code
 */
static int l_clock_state_check(lua_State *L)
{
    char err[256] = "";
    int rc = stamp_clock_state_check(err, sizeof err);
    if (rc) return fail(L, rc, err);
    lua_pushboolean(L, 1);
    return 1;
}

/* A '\n'-separated name list from `list` (stamp_key_dir_list / stamp_key_dir_misnamed) as a Lua array. */
static int push_dir_names(lua_State *L, int (*list)(const char *, char *, size_t, size_t *, char *, size_t),
                          size_t cap)
{
    const char *dir = luaL_checkstring(L, 1);
    size_t len = 0;
    char *names = malloc(cap);
    if (!names) return luaL_error(L, "out of memory");
    char err[512] = "";
    int n = list(dir, names, cap, &len, err, sizeof err);
    if (n < 0) {
        free(names);
        return fail(L, n, err);
    }
    lua_createtable(L, n, 0);
    size_t start = 0;
    int i = 0;
    for (size_t k = 0; k < len; k++) {
        if (names[k] != '\n') continue;
        lua_pushlstring(L, names + start, k - start);
        lua_rawseti(L, -2, ++i);
        start = k + 1;
    }
    free(names);
    return 1;
}

/***
 * The names in a key directory that can hold a key (`XXXX.key`, `default.key`),
 * read with opendir/readdir (no shell, no child process).
 * @function key_dir_list
 * @tparam string dir
 * @treturn table|nil the names, or nil, message, code
 */
static int l_key_dir_list(lua_State *L) { return push_dir_names(L, stamp_key_dir_list, 65537u * 12u); }

/***
 * The names in a key directory that look meant as a key but are not `XXXX.key` (4 hex digits) nor
 * `default.key` (`42.key`, `002a.KEY`, `002a.key.bak`, `002a.key~`): the reflector ignores them.
 * @function key_dir_misnamed
 * @tparam string dir
 * @treturn table|nil the names (in directory order), or nil, message, code
 */
static int l_key_dir_misnamed(lua_State *L) { return push_dir_names(L, stamp_key_dir_misnamed, 64u * 1024u); }

void ops_open(lua_State *L)
{
    static const luaL_Reg mmethods[] = {{"attach", m_attach},   {"render", m_render},
                                        {"serve", m_serve},     {"observe", m_observe},
                                        {"reflector_step", m_reflector_step},
                                        {"reloaded", m_reloaded}, {"close", m_close},
                                        {NULL, NULL}};
    static const luaL_Reg funcs[] = {{"metrics", l_metrics},
                                     {"drop_privileges", l_drop_privileges},
                                     {"path_writable_as", l_path_writable_as},
                                     {"config_eval", l_config_eval},
                                     {"set_process_name", l_set_process_name},
                                     {"key_file_read", l_key_file_read},
                                     {"user_lookup", l_user_lookup},
                                     {"key_dir_list", l_key_dir_list},
                                     {"key_dir_misnamed", l_key_dir_misnamed},
                                     {"clock_state_check", l_clock_state_check},
                                     {"key_path_check", l_key_path_check},
                                     {NULL, NULL}};
    if (luaL_newmetatable(L, METRICS_MT)) {
        lua_newtable(L);
        luaL_setfuncs(L, mmethods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, m_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, m_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, m_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    luaL_setfuncs(L, funcs, 0);
}
