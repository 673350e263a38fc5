/*
 * Base packets and Error Estimates (RFC 8762 §4).
 * (Part of the LDoc module stamp.core, described in core.c.)
 */
/*** @submodule stamp.core */
#include "bind.h"

#include <string.h>
/* The timestamp format an Error Estimate's Z bit names (RFC 8762 §4.2.1). */
static stamp_clock_t ee_clock(const stamp_ee_t *ee)
{
    return ee->z ? STAMP_CLOCK_PTP : STAMP_CLOCK_NTP;
}

/* The fields both packets open with, read from the table at index 1:
 * `seq`, `ssid`, `ee` and `timestamp` (in the format `ee` names). */
static void check_head(lua_State *L, uint32_t *seq, uint16_t *ssid, uint16_t *ee_raw,
                       stamp_ee_t *ee, uint8_t ts[8])
{
    *seq = (uint32_t)opt_int(L, 1, "seq", 0, 0, 0xffffffffLL);
    *ssid = (uint16_t)opt_int(L, 1, "ssid", 0, 0, 0xffff);
    check_ee(L, 1, "ee", ee_raw);
    stamp_ee_unpack(*ee_raw, ee);
    check_ts(L, 1, "timestamp", ee_clock(ee), ts);
}

/* Push the n octets an encoder wrote (n is never negative: the buffer fits the auth base). */
static int push_encoded(lua_State *L, const uint8_t *buf, int n)
{
    lua_pushlstring(L, (const char *)buf, (size_t)n);
    return 1;
}

/***
 * Encode a Session-Sender test packet.
 * @function encode_test
 * @tparam table p fields `seq`, `timestamp` (UTC ns) or `timestamp_raw`, `ee` (table or integer), `ssid`, `hmac` (16 octets, auth only)
 * @tparam[opt="open"] string mode "open" or "auth"
 * @treturn string the base packet (44 or 112 octets)
 */
static int l_encode_test(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    stamp_mode_t mode = check_mode(L, 2);
    stamp_test_t p;
    memset(&p, 0, sizeof p);
    stamp_ee_t ee;
    check_head(L, &p.seq, &p.ssid, &p.ee, &ee, p.ts);
    check_hmac16(L, 1, p.hmac);
    uint8_t buf[STAMP_AUTH_BASE_LEN];
    return push_encoded(L, buf, stamp_test_encode(buf, sizeof buf, mode, &p));
}

/***
 * Encode a Session-Reflector test packet.
 * @function encode_reflected
 * @tparam table p fields `seq`, `timestamp`, `ee`, `ssid`, `rx_timestamp`, `sender_seq`, `sender_timestamp`, `sender_ee`, `sender_ttl`, `hmac`
 * @tparam[opt="open"] string mode
 * @treturn string
 */
static int l_encode_reflected(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    stamp_mode_t mode = check_mode(L, 2);
    stamp_reflected_t p;
    memset(&p, 0, sizeof p);
    stamp_ee_t ee, see;
    check_head(L, &p.seq, &p.ssid, &p.ee, &ee, p.ts);
    check_ts(L, 1, "rx_timestamp", ee_clock(&ee), p.rx_ts);
    p.sender_seq = (uint32_t)opt_int(L, 1, "sender_seq", 0, 0, 0xffffffffLL);
    p.sender_ttl = (uint8_t)opt_int(L, 1, "sender_ttl", 0, 0, 255);
    check_ee(L, 1, "sender_ee", &p.sender_ee);
    stamp_ee_unpack(p.sender_ee, &see);
    check_ts(L, 1, "sender_timestamp", ee_clock(&see), p.sender_ts);
    check_hmac16(L, 1, p.hmac);
    uint8_t buf[STAMP_AUTH_BASE_LEN];
    return push_encoded(L, buf, stamp_reflected_encode(buf, sizeof buf, mode, &p));
}

/* A new table with the fields both packets open with: `seq`, `ssid`, `ee`, `timestamp`. */
static void push_head(lua_State *L, int nrec, uint32_t seq, uint16_t ssid,
                      const stamp_ee_t *ee, const uint8_t ts[8])
{
    lua_createtable(L, 0, nrec);
    set_int(L, "seq", seq);
    set_int(L, "ssid", ssid);
    push_ee(L, ee);
    lua_setfield(L, -2, "ee");
    push_ts(L, ts, "timestamp", ee_clock(ee));
}

static void push_test(lua_State *L, const stamp_test_t *p)
{
    stamp_ee_t ee;
    stamp_ee_unpack(p->ee, &ee);
    push_head(L, 10, p->seq, p->ssid, &ee, p->ts);
}

static void push_reflected(lua_State *L, const stamp_reflected_t *p)
{
    stamp_ee_t ee, see;
    stamp_ee_unpack(p->ee, &ee);
    stamp_ee_unpack(p->sender_ee, &see);
    push_head(L, 16, p->seq, p->ssid, &ee, p->ts);
    push_ts(L, p->rx_ts, "rx_timestamp", ee_clock(&ee));
    set_int(L, "sender_seq", p->sender_seq);
    push_ts(L, p->sender_ts, "sender_timestamp", ee_clock(&see));
    push_ee(L, &see);
    lua_setfield(L, -2, "sender_ee");
    set_int(L, "sender_ttl", p->sender_ttl);
}

/* decode_test (reflected == 0) and decode_reflected: the packet's fields, then `hmac`
 * (auth mode), `length` and `extra` (the octets after the base packet). */
static int decode(lua_State *L, int reflected)
{
    size_t len;
    const uint8_t *b = (const uint8_t *)luaL_checklstring(L, 1, &len);
    stamp_mode_t mode = check_mode(L, 2);
    stamp_test_t t;
    stamp_reflected_t r;
    int n = reflected ? stamp_reflected_decode(b, len, mode, &r)
                      : stamp_test_decode(b, len, mode, &t);
    if (n < 0) return push_fail(L, n);
    if (reflected) push_reflected(L, &r);
    else push_test(L, &t);
    if (mode == STAMP_MODE_AUTH) {
        lua_pushlstring(L, (const char *)(reflected ? r.hmac : t.hmac), 16);
        lua_setfield(L, -2, "hmac");
    }
    set_int(L, "length", (long long)len);
    lua_pushlstring(L, (const char *)b + n, len - (size_t)n);
    lua_setfield(L, -2, "extra");
    return 1;
}

/***
 * Decode a Session-Sender test packet.
 * @function decode_test
 * @tparam string s the UDP payload
 * @tparam[opt="open"] string mode
 * @treturn table|nil the fields (see `encode_test`), `length` and `extra` (octets after the base); or nil, message
 */
static int l_decode_test(lua_State *L)
{
    return decode(L, 0);
}

/***
 * Decode a Session-Reflector test packet.
 * @function decode_reflected
 * @tparam string s
 * @tparam[opt="open"] string mode
 * @treturn table|nil the fields (see `encode_reflected`), `length`, `extra`; or nil, message
 */
static int l_decode_reflected(lua_State *L)
{
    return decode(L, 1);
}

/***
 * Error Estimate helpers: pack a table, or unpack an integer.
 * @function ee
 * @tparam table|integer v `{s=,z=,scale=,mult=}` or a 16-bit value
 * @treturn integer|table the other form
 */
static int l_ee(lua_State *L)
{
    if (lua_istable(L, 1)) {
        stamp_ee_t ee;
        ee.s = (unsigned)opt_int(L, 1, "s", 0, 0, 1);
        ee.z = (unsigned)opt_int(L, 1, "z", 0, 0, 1);
        ee.scale = (unsigned)opt_int(L, 1, "scale", 0, 0, 63);
        ee.mult = (unsigned)opt_int(L, 1, "mult", 1, 1, 255);
        lua_pushinteger(L, stamp_ee_pack(&ee));
        return 1;
    }
    long long v = check_int(L, 1, 0, 0xffff);
    stamp_ee_t ee;
    stamp_ee_unpack((uint16_t)v, &ee);
    push_ee(L, &ee);
    return 1;
}


void codec_open(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"encode_test", l_encode_test},
        {"decode_test", l_decode_test},
        {"encode_reflected", l_encode_reflected},
        {"decode_reflected", l_decode_reflected},
        {"ee", l_ee},
        {NULL, NULL}};
    luaL_setfuncs(L, funcs, 0);
}
