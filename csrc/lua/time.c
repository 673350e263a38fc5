/*
 * Clocks and wire timestamps (RFC 8762 §4.2.1).
 * (Part of the LDoc module stamp.core, described in core.c.)
 */
/*** @submodule stamp.core */
#include "bind.h"

#include <string.h>

#define TAI_MAX 1000000 /* seconds: any TAI - UTC offset there will be, and no overflow */

/***
 * Current UTC time in nanoseconds.
 * @function now
 * @treturn integer
 */
static int l_now(lua_State *L)
{
    push_i64(L, stamp_now());
    return 1;
}

/***
 * Monotonic clock in nanoseconds.
 * @function mono
 * @treturn integer
 */
static int l_mono(lua_State *L)
{
    push_i64(L, stamp_mono());
    return 1;
}

/***
 * Encode UTC nanoseconds as an 8-octet wire timestamp.
 * @function ts_encode
 * @tparam integer ns
 * @tparam[opt="NTP"] string format "NTP" or "PTP"
 * @tparam[opt=0] integer tai_offset seconds added for PTP
 * @treturn string 8 octets
 */
static int l_ts_encode(lua_State *L)
{
    long long ns = check_int(L, 1, INT64_MIN, INT64_MAX);
    const char *f = luaL_optstring(L, 2, "NTP");
    int tai = (int)opt_arg_int(L, 3, 0, -TAI_MAX, TAI_MAX);
    uint8_t out[8];
    stamp_ts_encode(out, ns, clock_of(f), tai);
    lua_pushlstring(L, (const char *)out, 8);
    return 1;
}

/***
 * Decode an 8-octet wire timestamp to UTC nanoseconds.
 * @function ts_decode
 * @tparam string ts 8 octets
 * @tparam[opt="NTP"] string format
 * @tparam[opt=0] integer tai_offset
 * @treturn integer ns
 * @treturn boolean valid (false for a PTP nanoseconds field >= 10^9)
 */
static int l_ts_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    if (n != 8) luaL_argerror(L, 1, "8-octet string expected");
    const char *f = luaL_optstring(L, 2, "NTP");
    int tai = (int)opt_arg_int(L, 3, 0, -TAI_MAX, TAI_MAX);
    stamp_ns_t v;
    int rc = stamp_ts_decode((const uint8_t *)s, clock_of(f), tai, &v);
    push_i64(L, v);
    lua_pushboolean(L, rc == 0);
    return 2;
}


/***
 * The local clock's Error Estimate (S from the kernel's sync state).
 * @function local_ee
 * @tparam[opt="NTP"] string format
 * @treturn table
 */
static int l_local_ee(lua_State *L)
{
    const char *f = luaL_optstring(L, 1, "NTP");
    stamp_ee_t ee;
    stamp_ee_local(&ee, clock_of(f));
    push_ee(L, &ee);
    return 1;
}

/***
 * TAI - UTC offset in seconds known to the kernel (0 when unset).
 * @function tai_offset
 * @treturn integer
 */
static int l_tai_offset(lua_State *L)
{
    lua_pushinteger(L, stamp_tai_offset());
    return 1;
}



void time_open(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"now", l_now},
        {"mono", l_mono},
        {"ts_encode", l_ts_encode},
        {"ts_decode", l_ts_decode},
        {"local_ee", l_local_ee},
        {"tai_offset", l_tai_offset},
        {NULL, NULL}};
    luaL_setfuncs(L, funcs, 0);
}
