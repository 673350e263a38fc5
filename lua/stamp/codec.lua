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

local function mode_of(m, fname)
  if m == nil or m == "open" or m == false then return "open" end
  if m == "auth" or m == true then return "auth" end
  error("bad argument #2 to '" .. fname .. "' (\"open\" or \"auth\" expected)", 3)
end

--- Encode a Session-Sender test packet (44 or 112 octets).
-- @tparam table p `seq`, `timestamp`|`timestamp_raw`, `ee`, `ssid`, `hmac`
-- @tparam[opt="open"] string mode "open" or "auth"
-- @tparam[opt] string key with "auth": sign the packet with this key
-- @treturn string
function M.encode_test(p, mode, key)
  mode = mode_of(mode, "encode_test")
  local s = core.encode_test(p, mode)
  if key then s = core.auth_sign(key, s) end
  return s
end

--- Encode a Session-Reflector test packet (44 or 112 octets).
-- @tparam table p `seq`, `timestamp`, `ee`, `ssid`, `rx_timestamp`, `sender_seq`, `sender_timestamp`, `sender_ee`, `sender_ttl`, `hmac`
-- @tparam[opt="open"] string mode
-- @tparam[opt] string key sign with this key (auth mode)
-- @treturn string
function M.encode_reflected(p, mode, key)
  mode = mode_of(mode, "encode_reflected")
  local s = core.encode_reflected(p, mode)
  if key then s = core.auth_sign(key, s) end
  return s
end

--- Decode a Session-Sender test packet.
-- @tparam string s
-- @tparam[opt="open"] string mode
-- @treturn table|nil fields, or nil, message
function M.decode_test(s, mode)
  return core.decode_test(s, mode_of(mode, "decode_test"))
end

--- Decode a Session-Reflector test packet.
-- @tparam string s
-- @tparam[opt="open"] string mode
-- @treturn table|nil fields, or nil, message
function M.decode_reflected(s, mode)
  return core.decode_reflected(s, mode_of(mode, "decode_reflected"))
end

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
