/* compat.h - the few Lua 5.2+ API calls we use, for Lua 5.1 and LuaJIT. */
#ifndef STAMP_LUA_COMPAT_H
#define STAMP_LUA_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM < 502 && !defined(luaL_newlib) /* LuaJIT 2.1 has these */
#define luaL_newlib(L, l) (lua_newtable(L), luaL_register(L, NULL, l))
static inline void luaL_setfuncs(lua_State *L, const luaL_Reg *l, int nup)
{
    (void)nup; /* we never use upvalues */
    for (; l->name; l++) {
        lua_pushcfunction(L, l->func);
        lua_setfield(L, -2, l->name);
    }
}
static inline void luaL_setmetatable(lua_State *L, const char *tname)
{
    luaL_getmetatable(L, tname);
    lua_setmetatable(L, -2);
}
static inline void *luaL_testudata(lua_State *L, int i, const char *tname)
{
    void *p = lua_touserdata(L, i);
    if (!p || !lua_getmetatable(L, i)) return NULL;
    luaL_getmetatable(L, tname);
    int ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return ok ? p : NULL;
}
#endif

#if LUA_VERSION_NUM < 502 && !defined(lua_rawlen)
#define lua_rawlen(L, i) lua_objlen(L, i)
#endif

#if LUA_VERSION_NUM < 503
static inline int lua_isinteger(lua_State *L, int i)
{
    if (lua_type(L, i) != LUA_TNUMBER) return 0;
    lua_Number n = lua_tonumber(L, i);
    /* range first: converting NaN, an infinity or a huge value is undefined */
    return n >= -9223372036854775808.0 && n < 9223372036854775808.0 && n == (lua_Number)(lua_Integer)n;
}
#endif

/* 64-bit values: exact integers on 5.3+, doubles (exact to 2^53) before. */
static inline void push_i64(lua_State *L, long long v)
{
#if LUA_VERSION_NUM >= 503
    lua_pushinteger(L, (lua_Integer)v);
#else
    lua_pushnumber(L, (lua_Number)v);
#endif
}

static inline long long check_i64(lua_State *L, int i)
{
#if LUA_VERSION_NUM >= 503
    return (long long)luaL_checkinteger(L, i);
#else
    lua_Number n = luaL_checknumber(L, i);
    if (!(n >= -9223372036854775808.0 && n < 9223372036854775808.0))
        luaL_argerror(L, i, "number has no integer representation");
    return (long long)n;
#endif
}

#endif
