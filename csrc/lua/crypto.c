/*
 * HMAC-SHA-256 (RFC 8762 §4.4), signing and hexadecimal keys.
 * (Part of the LDoc module stamp.core, described in core.c.)
 */
/*** @submodule stamp.core */
#include "bind.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

/***
 * HMAC-SHA-256 truncated to 16 octets.
 * @function hmac
 * @tparam string key raw key octets
 * @tparam string data
 * @treturn string 16 octets
 */
static int l_hmac(lua_State *L)
{
    size_t kl, dl;
    const char *k = luaL_checklstring(L, 1, &kl);
    const char *d = luaL_checklstring(L, 2, &dl);
    if (kl > STAMP_KEY_MAX) luaL_argerror(L, 1, "key too long");
    stamp_hmac_t *h = stamp_hmac_new((const uint8_t *)k, kl);
    if (!h) return push_fail(L, STAMP_ECRYPTO);
    uint8_t out[16];
    int rc = stamp_hmac_compute(h, (const uint8_t *)d, dl, out);
    stamp_hmac_free(h);
    if (rc) return push_fail(L, rc);
    lua_pushlstring(L, (const char *)out, 16);
    return 1;
}

/***
 * Sign an authenticated base packet: writes HMAC(octets 0..95) at octet 96.
 * @function auth_sign
 * @tparam string key
 * @tparam string packet at least 112 octets
 * @treturn string the signed packet
 */
static int l_auth_sign(lua_State *L)
{
    size_t kl, dl;
    const char *k = luaL_checklstring(L, 1, &kl);
    const char *d = luaL_checklstring(L, 2, &dl);
    if (dl < STAMP_AUTH_BASE_LEN) luaL_argerror(L, 2, "packet shorter than 112 octets");
    if (kl > STAMP_KEY_MAX) luaL_argerror(L, 1, "key too long");
    stamp_hmac_t *h = stamp_hmac_new((const uint8_t *)k, kl);
    if (!h) return push_fail(L, STAMP_ECRYPTO);
    luaL_Buffer b;
    char *out = malloc(dl);
    if (!out) {
        stamp_hmac_free(h);
        return push_fail(L, STAMP_ENOMEM);
    }
    memcpy(out, d, dl);
    stamp_auth_sign(h, (uint8_t *)out, dl);
    stamp_hmac_free(h);
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, out, dl);
    free(out);
    luaL_pushresult(&b);
    return 1;
}

/***
 * Decode a hexadecimal key.
 * @function hex_decode
 * @tparam string hex e.g. "00112233..."
 * @treturn string|nil the octets, or nil, message
 */
static int l_hex_decode(lua_State *L)
{
    const char *h = luaL_checkstring(L, 1);
    uint8_t out[STAMP_KEY_MAX];
    int n = stamp_hex_decode(h, out, sizeof out);
    if (n < 0) {
        lua_pushnil(L);
        lua_pushstring(L, "not an even-length hexadecimal string of at most 256 octets");
        return 2;
    }
    lua_pushlstring(L, (const char *)out, (size_t)n);
    OPENSSL_cleanse(out, sizeof out);
    return 1;
}


void crypto_open(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"hmac", l_hmac},
        {"auth_sign", l_auth_sign},
        {"hex_decode", l_hex_decode},
        {NULL, NULL}};
    luaL_setfuncs(L, funcs, 0);
}
