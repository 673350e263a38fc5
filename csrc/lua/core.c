/***
 * stamp.core - thin Lua binding of libstamp (the C core).
 *
 * Most users want `require "stamp"`, which wraps this module. Conventions:
 * argument errors raise; runtime and network failures return
 * `nil, message, code`.
 * @module stamp.core
 */
#include "bind.h"

/* THE registration table: one entry per file of the binding (see bind.h). */
static void (*const PARTS[])(lua_State *L) = {
    codec_open, crypto_open, time_open, tlv_open, sys_open, reflector_open, sender_open, sender_machine_open,
    ops_open, stats_open,
};

int luaopen_stamp_core(lua_State *L) __attribute__((visibility("default")));

int luaopen_stamp_core(lua_State *L)
{
    lua_newtable(L);
    lua_newtable(L); /* core.methods: lets the Lua layer add methods to the one metatable per class */
    lua_setfield(L, -2, "methods");
    for (size_t i = 0; i < sizeof PARTS / sizeof PARTS[0]; i++) PARTS[i](L);
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
