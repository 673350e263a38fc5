/*
 * TLVs (RFC 8972): table-driven encode and decode through the core's registry.
 * (Part of the LDoc module stamp.core, described in core.c.)
 */
/*** @submodule stamp.core */
#include "bind.h"

#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static void push_octets_addr(lua_State *L, const uint8_t *v, size_t n)
{
    char buf[INET6_ADDRSTRLEN];
    if ((n == 4 && inet_ntop(AF_INET, v, buf, sizeof buf)) || (n == 16 && inet_ntop(AF_INET6, v, buf, sizeof buf)))
        lua_pushstring(L, buf);
    else
        lua_pushlstring(L, (const char *)v, n);
}

static void push_flags(lua_State *L, uint8_t f)
{
    set_int(L, "flags", f);
    lua_pushboolean(L, (f & STAMP_TLV_U) != 0);
    lua_setfield(L, -2, "u");
    lua_pushboolean(L, (f & STAMP_TLV_M) != 0);
    lua_setfield(L, -2, "m");
    lua_pushboolean(L, (f & STAMP_TLV_I) != 0);
    lua_setfield(L, -2, "i");
    lua_pushboolean(L, (f & STAMP_TLV_C) != 0);
    lua_setfield(L, -2, "c");
}

/* Push the fields of one TLV value into the table on top. */
static void push_fields(lua_State *L, const stamp_tlv_def_t *d, const uint8_t *v, uint16_t len, stamp_clock_t fmt)
{
    for (const stamp_tlv_field_t *f = d->fields; f->name; f++) {
        size_t off = f->bitpos / 8;
        switch (f->kind) {
        case STAMP_F_UINT:
            if ((size_t)(f->bitpos + f->width + 7) / 8 <= len) {
                push_i64(L, (long long)stamp_field_get(v, len, f));
                lua_setfield(L, -2, f->name);
            }
            break;
        case STAMP_F_TS:
            if (off + 8 <= len) {
                static const uint8_t zero[8] = {0};
                if (memcmp(v + off, zero, 8) == 0) { /* "no timestamp": only the raw octets */
                    char raw[64];
                    snprintf(raw, sizeof raw, "%s_raw", f->name);
                    lua_pushlstring(L, (const char *)zero, 8);
                    lua_setfield(L, -2, raw);
                } else {
                    push_ts(L, v + off, f->name, fmt);
                }
            }
            break;
        case STAMP_F_ADDR:
            if (len - off == 4 || len - off == 16) {
                push_octets_addr(L, v + off, len - off);
                lua_setfield(L, -2, f->name);
            }
            break;
        default: {
            size_t n = f->width ? f->width : len - off;
            if (off + n <= len) {
                lua_pushlstring(L, (const char *)v + off, n);
                lua_setfield(L, -2, f->name);
            }
        }
        }
    }
}

static void push_subtlvs(lua_State *L, const stamp_tlv_def_t *d, const uint8_t *v, uint16_t len)
{
    size_t pos = d->sub_off;
    stamp_tlv_t t;
    int i = 0;
    lua_newtable(L); /* subtlvs */
    while (stamp_tlv_next(v, len, &pos, &t) == 1) {
        const uint8_t *sv = v + t.off + STAMP_TLV_HDR;
        const stamp_subtlv_def_t *sd = NULL;
        for (const stamp_subtlv_def_t *x = d->subs; x->type; x++)
            if (x->type == t.type) sd = x;
        lua_createtable(L, 0, 8);
        set_int(L, "type", t.type);
        push_flags(L, t.flags);
        set_int(L, "length", t.len);
        lua_pushlstring(L, (const char *)sv, t.len);
        lua_setfield(L, -2, "value");
        if (sd) {
            lua_pushstring(L, sd->name);
            lua_setfield(L, -2, "name");
            /* also as a field of the parent, e.g. location.src_addr */
            int pushed = 1;
            if (sd->kind == STAMP_F_ADDR) {
                size_t n = sd->width ? sd->width : t.len;
                if (n <= t.len && (n == 4 || n == 16))
                    push_octets_addr(L, sv, n);
                else
                    pushed = 0;
            } else if (sd->kind == STAMP_F_UINT && t.len == 4) {
                push_i64(L, (long long)((uint32_t)sv[0] << 24 | (uint32_t)sv[1] << 16 | (uint32_t)sv[2] << 8 | sv[3]));
            } else {
                lua_pushlstring(L, (const char *)sv, t.len);
            }
            if (pushed) {
                lua_pushvalue(L, -1);
                lua_setfield(L, -3, sd->kind == STAMP_F_ADDR ? "addr" : sd->kind == STAMP_F_UINT ? "uint32" : "data");
                lua_setfield(L, -4, sd->name); /* parent[name], e.g. location.src_addr */
            }
        }
        lua_rawseti(L, -2, ++i);
    }
    lua_setfield(L, -2, "subtlvs");
}

/* Push `list, map` for the TLVs in pkt[base..len). */
void push_tlvs(lua_State *L, const uint8_t *pkt, size_t base, size_t len, stamp_clock_t fmt)
{
    size_t pos = base;
    stamp_tlv_t t;
    int i = 0, r;
    lua_newtable(L); /* list */
    lua_newtable(L); /* map */
    while ((r = stamp_tlv_next(pkt, len, &pos, &t)) != 0) {
        const stamp_tlv_def_t *d = stamp_tlv_lookup(t.type);
        const uint8_t *v = pkt + t.off + STAMP_TLV_HDR;
        lua_createtable(L, 0, 12);
        set_int(L, "type", t.type);
        push_flags(L, t.flags);
        set_int(L, "length", t.len);
        if (r < 0) { /* runs past the packet */
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "truncated");
        } else {
            lua_pushlstring(L, (const char *)v, t.len);
            lua_setfield(L, -2, "value");
        }
        char keybuf[32];
        const char *key = keybuf;
        if (d) {
            lua_pushstring(L, d->name);
            lua_setfield(L, -2, "name");
            key = d->key;
            if (r > 0 && stamp_tlv_len_ok(d, t.len)) {
                push_fields(L, d, v, t.len, fmt);
                if (d->sub_off != 0xffff && d->sub_off <= t.len) push_subtlvs(L, d, v, t.len);
            }
        } else {
            snprintf(keybuf, sizeof keybuf, "type%u", (unsigned)t.type);
        }
        lua_pushstring(L, key);
        lua_setfield(L, -2, "key");
        lua_pushvalue(L, -1);
        lua_rawseti(L, -4, ++i); /* list[i] */
        lua_getfield(L, -2, key);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_setfield(L, -2, key); /* map[key] = first of its kind */
        } else {
            lua_pop(L, 2);
        }
        if (r < 0) break;
    }
}

/***
 * Decode a TLV area (what follows the base packet).
 * @function tlv_decode
 * @tparam string s the octets after the base packet
 * @tparam[opt="NTP"] string format timestamp format for Follow-Up Telemetry
 * @treturn table list of TLVs in order: `type`, `key`, `name`, `flags`, `u`, `m`, `i`, `c`, `length`, `value`, the type's fields, `subtlvs`
 * @treturn table the same TLVs by key (first of each type)
 */
static int l_tlv_decode(lua_State *L)
{
    size_t len;
    const uint8_t *b = (const uint8_t *)luaL_checklstring(L, 1, &len);
    const char *f = luaL_optstring(L, 2, "NTP");
    push_tlvs(L, b, 0, len, clock_of(f));
    return 2;
}

/* Encode one TLV spec (table at index t) into out; returns octets written. */
static size_t encode_one(lua_State *L, int t, uint8_t *out, size_t cap, int idx)
{
    const stamp_tlv_def_t *d = NULL;
    lua_getfield(L, t, "key");
    if (lua_isstring(L, -1)) {
        d = stamp_tlv_by_key(lua_tostring(L, -1));
        if (!d) luaL_error(L, "bad TLV #%d (unknown key '%s')", idx, lua_tostring(L, -1));
    }
    lua_pop(L, 1);
    long long type = opt_int(L, t, "type", d ? d->type : -1, 0, 255);
    if (type < 0) luaL_error(L, "bad TLV #%d (type or key expected)", idx);
    if (!d) d = stamp_tlv_lookup((unsigned)type);
    unsigned flags = (unsigned)opt_int(L, t, "flags", STAMP_TLV_U, 0, 255);
    size_t rawlen = 0;
    const char *raw = opt_str(L, t, "value", NULL, &rawlen);
    if (cap < STAMP_TLV_HDR) luaL_error(L, "TLVs too long");
    uint8_t *v = out + STAMP_TLV_HDR;
    size_t room = cap - STAMP_TLV_HDR;
    size_t len;
    if (raw) {
        len = rawlen;
        if (len > room || len > 0xffff) luaL_error(L, "bad TLV #%d (value too long)", idx);
        memcpy(v, raw, len);
    } else {
        len = d ? d->default_len : 0;
        /* sub-TLVs decide the length when given */
        lua_getfield(L, t, "subtlvs");
        int has_subs = lua_istable(L, -1);
        lua_pop(L, 1);
        if (has_subs) len = d && d->sub_off != 0xffff ? d->sub_off : 0;
        /* an address field decides it too */
        if (d)
            for (const stamp_tlv_field_t *f = d->fields; f->name; f++)
                if (f->kind == STAMP_F_ADDR) {
                    const char *a = opt_str(L, t, f->name, NULL, NULL);
                    uint8_t oct[16];
                    int n = a ? parse_ip(a, oct) : 0;
                    if (a && !n) luaL_error(L, "bad TLV #%d (field '%s': not an IP address)", idx, f->name);
                    if (n) len = f->bitpos / 8 + (size_t)n;
                }
        if (len > room) luaL_error(L, "bad TLV #%d (too long)", idx);
        memset(v, 0, len);
        if (d) {
            for (const stamp_tlv_field_t *f = d->fields; f->name; f++) {
                size_t off = f->bitpos / 8;
                lua_getfield(L, t, f->name);
                int isnil = lua_isnil(L, -1);
                lua_pop(L, 1);
                if (f->kind == STAMP_F_UINT && !isnil) {
                    long long x = opt_int(L, t, f->name, 0, 0, f->width >= 63 ? 0x7fffffffffffffffLL
                                                                              : (1LL << f->width) - 1);
                    stamp_field_set(v, len, f, (uint64_t)x);
                } else if (f->kind == STAMP_F_ADDR && !isnil) {
                    uint8_t oct[16];
                    int n = parse_ip(opt_str(L, t, f->name, NULL, NULL), oct);
                    memcpy(v + off, oct, (size_t)n);
                } else if (f->kind == STAMP_F_TS && off + 8 <= len) {
                    char rawname[64];
                    snprintf(rawname, sizeof rawname, "%s_raw", f->name);
                    lua_getfield(L, t, rawname);
                    int has_raw = !lua_isnil(L, -1);
                    lua_pop(L, 1);
                    if (!isnil || has_raw) check_ts(L, t, f->name, STAMP_CLOCK_NTP, v + off);
                } else if (f->kind == STAMP_F_BYTES && !isnil) {
                    size_t n;
                    const char *b = opt_str(L, t, f->name, NULL, &n);
                    if (off + n > len) luaL_error(L, "bad TLV #%d (field '%s' too long)", idx, f->name);
                    memcpy(v + off, b, n);
                }
            }
        }
        if (has_subs) {
            lua_getfield(L, t, "subtlvs");
            int st = lua_gettop(L);
            size_t n = lua_rawlen(L, st);
            for (size_t k = 1; k <= n; k++) {
                lua_rawgeti(L, st, (int)k);
                int e = lua_gettop(L);
                if (!lua_istable(L, e)) luaL_error(L, "bad TLV #%d (sub-TLV %d is not a table)", idx, (int)k);
                unsigned stype = (unsigned)opt_int(L, e, "type", 0, 0, 255);
                unsigned sflags = (unsigned)opt_int(L, e, "flags", STAMP_TLV_U, 0, 255);
                size_t svl = 0;
                const char *sv = opt_str(L, e, "value", NULL, &svl);
                const char *saddr = opt_str(L, e, "addr", NULL, NULL);
                uint8_t oct[16];
                int an = saddr ? parse_ip(saddr, oct) : 0;
                if (saddr && !an) luaL_error(L, "bad TLV #%d (sub-TLV %d: not an IP address)", idx, (int)k);
                lua_getfield(L, e, "uint32");
                int has_u = !lua_isnil(L, -1);
                lua_pop(L, 1);
                size_t sl = sv ? svl : an ? (size_t)an : has_u ? 4 : 0;
                sl = (size_t)opt_int(L, e, "length", (long long)sl, 0, 0xffff);
                if (len + STAMP_TLV_HDR + sl > room) luaL_error(L, "bad TLV #%d (too long)", idx);
                uint8_t *sp = v + len;
                sp[0] = (uint8_t)sflags;
                sp[1] = (uint8_t)stype;
                wr16be(sp + 2, (uint16_t)sl);
                memset(sp + STAMP_TLV_HDR, 0, sl);
                if (sv) memcpy(sp + STAMP_TLV_HDR, sv, svl < sl ? svl : sl);
                if (an && (size_t)an <= sl) memcpy(sp + STAMP_TLV_HDR, oct, (size_t)an);
                if (has_u && sl >= 4) {
                    uint32_t u = (uint32_t)opt_int(L, e, "uint32", 0, 0, 0xffffffffLL);
                    wr16be(sp + STAMP_TLV_HDR, (uint16_t)(u >> 16));
                    wr16be(sp + STAMP_TLV_HDR + 2, (uint16_t)u);
                }
                len += STAMP_TLV_HDR + sl;
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        len = (size_t)opt_int(L, t, "length", (long long)len, 0, (long long)(room < 0xffff ? room : 0xffff));
    }
    out[0] = (uint8_t)flags;
    out[1] = (uint8_t)type;
    wr16be(out + 2, (uint16_t)len);
    return STAMP_TLV_HDR + len;
}

/***
 * Encode a list of TLV specs (as made by `stamp.tlv`) into octets.
 * Each spec has `type` or `key`, optional `flags` (default U = 0x80), `length`,
 * `value` (raw octets) or the type's named fields, and `subtlvs`.
 * @function tlv_encode
 * @tparam table list
 * @treturn string
 */
static int l_tlv_encode(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t n = lua_rawlen(L, 1), used = 0;
    uint8_t *buf = lua_newuserdata(L, STAMP_MAX_PKT); /* scratch, collected by the GC */
    /* zeroed where it is made: a TLV whose `length` exceeds its content (padding)
     * carries zeros, never octets of freed Lua strings */
    memset(buf, 0, STAMP_MAX_PKT);
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, (int)i);
        if (!lua_istable(L, -1)) luaL_error(L, "bad TLV #%d (table expected)", (int)i);
        used += encode_one(L, lua_gettop(L), buf + used, STAMP_MAX_PKT - STAMP_AUTH_BASE_LEN - used, (int)i);
        lua_pop(L, 1);
    }
    lua_pushlstring(L, (const char *)buf, used);
    return 1;
}

/***
 * The TLV registry: one entry per known type.
 * @function tlv_registry
 * @treturn table list of `{type=, name=, key=, min_len=, max_len=, default_len=, fields={...}}`
 */
static int l_tlv_registry(lua_State *L)
{
    size_t n;
    const stamp_tlv_def_t *reg = stamp_tlv_registry(&n);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        const stamp_tlv_def_t *d = &reg[i];
        lua_createtable(L, 0, 7);
        set_int(L, "type", d->type);
        lua_pushstring(L, d->name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, d->key);
        lua_setfield(L, -2, "key");
        set_int(L, "min_len", d->min_len);
        set_int(L, "max_len", d->max_len);
        set_int(L, "default_len", d->default_len);
        lua_newtable(L);
        int k = 0;
        for (const stamp_tlv_field_t *f = d->fields; f->name; f++) {
            lua_pushstring(L, f->name);
            lua_rawseti(L, -2, ++k);
        }
        lua_setfield(L, -2, "fields");
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}



void tlv_open(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"tlv_encode", l_tlv_encode},
        {"tlv_decode", l_tlv_decode},
        {"tlv_registry", l_tlv_registry},
        {NULL, NULL}};
    luaL_setfuncs(L, funcs, 0);
}
