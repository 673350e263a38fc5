--- Encode and decode STAMP packets between Lua tables and byte strings.
--
-- Timestamps are UTC nanoseconds since 1970 (`timestamp`) or the raw 8 wire
-- octets (`timestamp_raw`); Error Estimates are `{s=, z=, scale=, mult=}`.
-- @module stamp.codec
local core = require "stamp.core"

local M = {
  BASE_LEN = core.BASE_LEN,
  AUTH_BASE_LEN = core.AUTH_BASE_LEN,
}

-- TLVs given as a list of specs (stamp.tlv builders) or as octets.
local function tlv_octets(t)
  if t == nil then return "" end
  if type(t) == "string" then return t end
  return core.tlv_encode(t)
end

-- Decoded TLVs for what follows the base packet.
local function with_tlvs(p, err, code)
  if not p then return nil, err, code end
  if p.extra and #p.extra > 0 then p.tlvs, p.tlv_map = core.tlv_decode(p.extra) end
  return p
end

local function mode_of(m, fname)
  if m == nil or m == "open" or m == false then return "open" end
  if m == "auth" or m == true then return "auth" end
  error("bad argument #2 to '" .. fname .. "' (\"open\" or \"auth\" expected)", 3)
end

--- Encode a Session-Sender test packet (44 or 112 octets).
-- @tparam table p `seq`, `timestamp`|`timestamp_raw`, `ee`, `ssid`, `hmac`, `tlvs` (list of `stamp.tlv` specs, or octets)
-- @tparam[opt="open"] string mode "open" or "auth"
-- @tparam[opt] string key with "auth": sign the packet with this key
-- @treturn string
function M.encode_test(p, mode, key)
  mode = mode_of(mode, "encode_test")
  local s = core.encode_test(p, mode) .. tlv_octets(p.tlvs)
  if key and mode == "auth" then s = core.auth_sign(key, s) end
  return s
end

--- Encode a Session-Reflector test packet (44 or 112 octets).
-- @tparam table p `seq`, `timestamp`, `ee`, `ssid`, `rx_timestamp`, `sender_seq`, `sender_timestamp`, `sender_ee`,
--   `sender_ttl`, `hmac`, `tlvs`
-- @tparam[opt="open"] string mode
-- @tparam[opt] string key sign with this key (auth mode)
-- @treturn string
function M.encode_reflected(p, mode, key)
  mode = mode_of(mode, "encode_reflected")
  local s = core.encode_reflected(p, mode) .. tlv_octets(p.tlvs)
  if key and mode == "auth" then s = core.auth_sign(key, s) end
  return s
end

--- Decode a Session-Sender test packet.
-- @tparam string s
-- @tparam[opt="open"] string mode
-- @treturn table|nil fields (with `tlvs`, the decoded TLV list, and `tlv_map` by key), or nil, message
function M.decode_test(s, mode)
  return with_tlvs(core.decode_test(s, mode_of(mode, "decode_test")))
end

--- Decode a Session-Reflector test packet.
-- @tparam string s
-- @tparam[opt="open"] string mode
-- @treturn table|nil fields (with `tlvs` and `tlv_map`), or nil, message
function M.decode_reflected(s, mode)
  return with_tlvs(core.decode_reflected(s, mode_of(mode, "decode_reflected")))
end

--- Encode a list of TLV specs (see `stamp.tlv`) into octets.
-- @function encode_tlvs
M.encode_tlvs = core.tlv_encode

--- Decode the TLV octets that follow a base packet.
-- @function decode_tlvs
-- @treturn table list in order
-- @treturn table map by key
M.decode_tlvs = core.tlv_decode

--- Check the base HMAC of an authenticated packet (either direction).
-- @tparam string key raw key
-- @tparam string s packet (at least 112 octets)
-- @treturn boolean
function M.verify(key, s)
  if #s < core.AUTH_BASE_LEN then return false end
  return core.hmac(key, s:sub(1, 96)) == s:sub(97, 112)
end

--- HMAC-SHA-256 truncated to 16 octets.
-- @function hmac
M.hmac = core.hmac

return M
