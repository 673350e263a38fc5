/* libFuzzer target: the TLV codec of the Lua binding (stamp.core.tlv_decode
 * and tlv_encode, table-driven through the core's registry), run in an
 * embedded Lua 5.4 on arbitrary TLV areas.
 *
 * Invariants: decode never raises on any octets and reads only the string;
 * the TLVs it returns tile the input (values are the input's octets); raw
 * re-encoding ({type, flags, value}) gives the input back; for every TLV
 * of a known type, encoding its decoded fields and sub-TLVs and decoding
 * again gives the same fields (decode(encode(x)) = x), and encode accepts
 * everything decode produces. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "fuzz.h"

int luaopen_stamp_core(lua_State *L);

static const char SCRIPT[] =
    "local core = ...\n"
    "local META = {type=1, key=1, name=1, flags=1, u=1, m=1, i=1, c=1, length=1, value=1, truncated=1, subtlvs=1}\n"
    "local function fail(fmt, ...) error(string.format(fmt, ...), 0) end\n"
    "local function subs_of(t)\n"
    "  if not t.subtlvs then return nil end\n"
    "  local r = {}\n"
    "  for i, st in ipairs(t.subtlvs) do r[i] = {type = st.type, flags = st.flags, value = st.value} end\n"
    "  return r\n"
    "end\n"
    "local function same_subs(a, b, ty)\n"
    "  if (a == nil) ~= (b == nil) then fail('type %d: sub-TLVs present on one side only', ty) end\n"
    "  if not a then return end\n"
    "  if #a ~= #b then fail('type %d: %d sub-TLVs, %d after the round trip', ty, #a, #b) end\n"
    "  for i = 1, #a do\n"
    "    for _, k in ipairs {'type', 'flags', 'value'} do\n"
    "      if a[i][k] ~= b[i][k] then fail('type %d: sub-TLV %d: %s differs', ty, i, k) end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return function(s)\n"
    "  local list, map = core.tlv_decode(s)\n"
    "  assert(type(list) == 'table' and type(map) == 'table')\n"
    "  local used = 0\n"
    "  for i, t in ipairs(list) do\n"
    "    if map[t.key] == nil then fail('map lacks %s', tostring(t.key)) end\n"
    "    if t.truncated then\n"
    "      if i ~= #list then fail('a truncated TLV before the end') end\n"
    "      if t.value ~= nil then fail('a truncated TLV with a value') end\n"
    "      break\n"
    "    end\n"
    "    if #t.value ~= t.length then fail('value of %d octets, length %d', #t.value, t.length) end\n"
    "    if s:sub(used + 1, used + 4) ~= string.pack('>BBI2', t.flags, t.type, t.length) then fail('header %d', i) end\n"
    "    if s:sub(used + 5, used + 4 + t.length) ~= t.value then fail('value %d is not the input', i) end\n"
    "    used = used + 4 + t.length\n"
    "  end\n"
    "  if used < #s and not (list[#list] and list[#list].truncated) then fail('%d octets left undecoded', #s - used) end\n"
    "  local raw = {}\n"
    "  for _, t in ipairs(list) do\n"
    "    if not t.truncated then raw[#raw + 1] = {type = t.type, flags = t.flags, value = t.value} end\n"
    "  end\n"
    "  if core.tlv_encode(raw) ~= s:sub(1, used) then fail('raw round trip differs') end\n"
    "  for i, t in ipairs(list) do\n"
    "    if t.name and not t.truncated then\n"
    "      local spec = {type = t.type, flags = t.flags, subtlvs = subs_of(t)}\n"
    "      if not t.subtlvs then spec.length = t.length end\n"
    "      for k, v in pairs(t) do if not META[k] then spec[k] = v end end\n"
    "      local ok, enc = pcall(core.tlv_encode, {spec})\n"
    "      if not ok then fail('TLV %d (type %d): encode refuses what decode made: %s', i, t.type, enc) end\n"
    "      local back = core.tlv_decode(enc)\n"
    "      if #back ~= 1 then fail('type %d: %d TLVs after the round trip', t.type, #back) end\n"
    "      back = back[1]\n"
    "      -- an empty sub-TLV list encodes to the bare fixed part, which may be shorter than the type allows\n"
    "      if spec.subtlvs and #spec.subtlvs == 0 and not back.subtlvs and back.length < t.length then goto next end\n"
    "      for k, v in pairs(t) do\n"
    "        if not META[k] and back[k] ~= v then\n"
    "          fail('type %d: field %s: %s, after the round trip %s', t.type, k, tostring(v), tostring(back[k]))\n"
    "        end\n"
    "      end\n"
    "      for k in pairs(back) do\n"
    "        if not META[k] and t[k] == nil then fail('type %d: field %s appears in the round trip', t.type, k) end\n"
    "      end\n"
    "      if back.type ~= t.type or back.flags ~= t.flags then fail('type %d: header differs', t.type) end\n"
    "      same_subs(t.subtlvs, back.subtlvs, t.type)\n"
    "    end\n"
    "    ::next::\n"
    "  end\n"
    "end\n";

static lua_State *L;
static int fn_ref;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L) {
        L = luaL_newstate();
        CHECK(L);
        luaL_openlibs(L);
        luaL_requiref(L, "stamp.core", luaopen_stamp_core, 0);
        if (luaL_loadbuffer(L, SCRIPT, sizeof SCRIPT - 1, "=fuzz_lua_codec") != LUA_OK) {
            fprintf(stderr, "%s\n", lua_tostring(L, -1));
            abort();
        }
        lua_insert(L, -2);
        CHECK(lua_pcall(L, 1, 1, 0) == LUA_OK);
        fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    if (size > 8192) return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "fuzz_lua_codec: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, 0);
    if ((size & 0x3f) == 0) lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
