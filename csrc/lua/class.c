/*
 * The methods every class of stamp.core shares (written once, see bind.h).
 * (Part of the LDoc module stamp.core, described in core.c.)
 */
/*** @submodule stamp.core */
#include "bind.h"

#include <string.h>

static const bind_class_t *upclass(lua_State *L)
{
    return (const bind_class_t *)lua_touserdata(L, lua_upvalueindex(1));
}

void *bind_new(lua_State *L, const bind_class_t *cls)
{
    void *o = lua_newuserdata(L, cls->size);
    memset(o, 0, cls->size);
    luaL_setmetatable(L, cls->name);
    return o;
}

void *bind_check_any(lua_State *L, int i, const bind_class_t *cls)
{
    return luaL_checkudata(L, i, cls->name);
}

void *bind_check(lua_State *L, int i, const bind_class_t *cls)
{
    bind_obj_t *o = luaL_checkudata(L, i, cls->name);
    if (!o->h) luaL_error(L, "attempt to use a closed %s", cls->short_name);
    return o;
}

/***
 * Close the socket and free the engine (idempotent; also `__gc` and `__close`).
 * @function reflector:close
 */
/***
 * Close the socket and free the engine (idempotent; also `__gc` and `__close`).
 * @function sender:close
 */
static int obj_close(lua_State *L)
{
    const bind_class_t *cls = upclass(L);
    bind_obj_t *o = luaL_checkudata(L, 1, cls->name);
    if (o->h) cls->free(o->h);
    o->h = NULL;
    return 0;
}

static int obj_tostring(lua_State *L)
{
    const bind_class_t *cls = upclass(L);
    bind_obj_t *o = luaL_checkudata(L, 1, cls->name);
    if (!o->h) {
        lua_pushfstring(L, "%s (closed)", cls->name);
        return 1;
    }
    cls->describe(L, o->h);
    lua_pushfstring(L, "%s (%s)", cls->name, lua_tostring(L, -1));
    return 1;
}

/***
 * The socket's file descriptor, for a host event loop.
 * @function reflector:fd
 * @treturn integer
 */
/***
 * The socket's file descriptor, for a host event loop.
 * @function sender:fd
 * @treturn integer
 */
static int obj_fd(lua_State *L)
{
    const bind_class_t *cls = upclass(L);
    bind_obj_t *o = bind_check(L, 1, cls);
    lua_pushinteger(L, cls->fd(o->h));
    return 1;
}

/***
 * The bound local address and port.
 * @function reflector:local_addr
 * @treturn string
 * @treturn integer
 */
/***
 * The bound local address and port.
 * @function sender:local_addr
 * @treturn string
 * @treturn integer
 */
static int obj_local(lua_State *L)
{
    const bind_class_t *cls = upclass(L);
    bind_obj_t *o = bind_check(L, 1, cls);
    stamp_addr_t a;
    memset(&a, 0, sizeof a);
    cls->local(o->h, &a);
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
/***
 * Counters: sent, received, lost, duplicates, late, drop_hmac, drop_invalid, tx_errors, extra_replies.
 * @function sender:counters
 * @treturn table
 */
static int obj_counters(lua_State *L)
{
    const bind_class_t *cls = upclass(L);
    bind_obj_t *o = bind_check(L, 1, cls);
    _Alignas(8) unsigned char buf[BIND_COUNTERS_MAX];
    memset(buf, 0, sizeof buf);
    cls->counters(o->h, buf);
    push_counters(L, buf, cls->counter_names);
    return 1;
}

/* Set t[name] = closure(f, upvalue cls) for the table on top. */
static void setmethod(lua_State *L, const bind_class_t *cls, const char *name, lua_CFunction f)
{
    lua_pushlightuserdata(L, (void *)cls);
    lua_pushcclosure(L, f, 1);
    lua_setfield(L, -2, name);
}

void bind_class_open(lua_State *L, const bind_class_t *cls)
{
    int mod = lua_gettop(L);
    luaL_newmetatable(L, cls->name);
    int mt = lua_gettop(L);
    lua_newtable(L); /* methods */
    setmethod(L, cls, "close", obj_close);
    if (cls->fd) setmethod(L, cls, "fd", obj_fd);
    if (cls->local) setmethod(L, cls, "local_addr", obj_local);
    if (cls->counters) setmethod(L, cls, "counters", obj_counters);
    for (const luaL_Reg *r = cls->methods; r && r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, -2, r->name);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, mt, "__index");
    lua_pushvalue(L, mt);
    setmethod(L, cls, "__gc", obj_close);
    setmethod(L, cls, "__close", obj_close);
    setmethod(L, cls, "__tostring", obj_tostring);
    lua_pushstring(L, cls->name);
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1); /* the metatable copy */
    /* core.methods[short_name] = methods: the Lua layer adds methods to the one metatable */
    lua_getfield(L, mod, "methods");
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, cls->short_name);
    lua_pop(L, 3); /* methods holder, methods, metatable */
    lua_pushcfunction(L, cls->ctor);
    lua_setfield(L, mod, cls->short_name);
}
