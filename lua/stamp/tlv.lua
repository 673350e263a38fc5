--- TLV builders for `stamp.sender{ tlvs = {...} }`, and TLV decoding.
--
-- Each builder returns a plain table (a "TLV spec") that the C core's
-- table-driven registry encodes; the reflector's answers come back decoded
-- in each result as `r.tlvs.<key>` (e.g. `r.tlvs.cos.dscp2`,
-- `r.tlvs.location.src_addr`) and in order as `r.tlv_list`.
-- @module stamp.tlv
local core = require "stamp.core"

local M = {}

--- The registry: `{type=, name=, key=, min_len=, max_len=, default_len=, fields=}` per known type.
M.registry = core.tlv_registry()

--- Type numbers by key (`M.types.cos == 4`).
M.types = {}
for _, d in ipairs(M.registry) do M.types[d.key] = d.type end

--- Flag bit U (Unrecognized) of the TLV flags octet.
M.U = 0x80
--- Flag bit M (Malformed).
M.M = 0x40
--- Flag bit I (Integrity check failed).
M.I = 0x20
--- Flag bit C (Conformant reflected packet, type 12).
M.C = 0x10

local function opt(o, fname)
  if o == nil then return {} end
  if type(o) ~= "table" then error("bad argument #1 to '" .. fname .. "' (table expected, got " .. type(o) .. ")", 3) end
  return o
end

local function int_arg(o, k, lo, hi, fname, default)
  local v = o[k]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= math.floor(v) or v < lo or v > hi then
    error(string.format("bad option '%s' to '%s' (integer %d..%d expected, got %s)", k, fname, lo, hi, tostring(v)), 3)
  end
  return v
end

--- Extra Padding (type 1): `length` octets of pseudo-random content.
-- @tparam[opt] table o `length` (default 32)
function M.padding(o)
  o = opt(o, "padding")
  local n = int_arg(o, "length", 0, 9000, "padding", 32)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return { type = 1, value = table.concat(t) }
end

--- Location (type 2): asks for the destination and source addresses and ports as the reflector sees them.
-- @tparam[opt] table o `mac = true` also asks for the source MAC address
function M.location(o)
  o = opt(o, "location")
  local subs = { { type = 4, length = 16 }, { type = 7, length = 16 } }
  if o.mac then subs[#subs + 1] = { type = 1, length = 8 } end
  return { type = 2, subtlvs = subs }
end

--- Timestamp Information (type 3): the reflector's sync sources and timestamping methods.
function M.timestamp_info() return { type = 3 } end

--- Class of Service (type 4). `dscp` is DSCP1, the DSCP wanted on the reflected packet; `dscp` and
-- `ecn` are also what the test packets carry unless the sender sets `tos`, `dscp` or `ecn` itself.
-- @tparam[opt] table o `dscp` (0..63), `ecn` (0..3)
function M.cos(o)
  o = opt(o, "cos")
  local dscp = int_arg(o, "dscp", 0, 63, "cos", 0)
  local ecn = int_arg(o, "ecn", 0, 3, "cos", 0)
  return { type = 4, dscp1 = dscp, packet_tos = dscp * 4 + ecn }
end

--- Direct Measurement (type 5): the sender's transmit counter; the reflector adds its receive and
-- transmit counters for the session.
function M.direct_measurement() return { type = 5 } end

--- Access Report (type 6).
-- @tparam[opt] table o `id` (1 = 3GPP, 2 = non-3GPP), `return_code` (1 = available, 2 = unavailable)
function M.access_report(o)
  o = opt(o, "access_report")
  return { type = 6, id = int_arg(o, "id", 0, 15, "access_report", 1),
    return_code = int_arg(o, "return_code", 0, 255, "access_report", 1) }
end

--- Follow-Up Telemetry (type 7): the reflector reports when it really sent its previous reply.
function M.follow_up() return { type = 7 } end

--- HMAC (type 8): protects the sequence number and the TLVs before it; needs the sender's key.
-- Put it after every other TLV (Extra Padding may follow).
function M.hmac() return { type = 8 } end

--- Destination Node Address (type 9, RFC 9503).
-- @tparam table o `addr`: the IPv4 or IPv6 address of the intended reflector
function M.destination(o)
  o = opt(o, "destination")
  if type(o.addr) ~= "string" then error("bad option 'addr' to 'destination' (address expected)", 2) end
  return { type = 9, addr = o.addr }
end

--- Return Path (type 10, RFC 9503).
-- RFC 9503 4.1: a Control Code never goes with a Return Address or a segment list, and one
-- segment list at most; such combinations raise.
-- @tparam table o `no_reply = true` (Control Code 0: one-way, no reply), `reply_same_link = true`
--   (Control Code 1), `return_addr` (send the reply there: the reflector must allow it),
--   `srv6` (list of IPv6 segments), `mpls` (list of label stack entries, 32-bit)
function M.return_path(o)
  o = opt(o, "return_path")
  if o.no_reply and o.reply_same_link then
    error("bad argument #1 to 'return_path' (no_reply and reply_same_link exclude each other)", 2)
  end
  if (o.no_reply or o.reply_same_link) and (o.return_addr or o.srv6 or o.mpls) then
    error("bad argument #1 to 'return_path' (a Control Code goes with no Return Address or segment list, RFC 9503 4.1)", 2)
  end
  if o.srv6 and o.mpls then
    error("bad argument #1 to 'return_path' (one segment list: srv6 or mpls, RFC 9503 4.1.3)", 2)
  end
  local subs = {}
  if o.no_reply then subs[#subs + 1] = { type = 1, uint32 = 0 } end
  if o.reply_same_link then subs[#subs + 1] = { type = 1, uint32 = 1 } end
  if o.return_addr then subs[#subs + 1] = { type = 2, addr = o.return_addr } end
  if o.mpls then
    local t = {}
    for i, e in ipairs(o.mpls) do
      t[i] = string.char(math.floor(e / 2 ^ 24) % 256, math.floor(e / 2 ^ 16) % 256, math.floor(e / 256) % 256, e % 256)
    end
    subs[#subs + 1] = { type = 3, value = table.concat(t) }
  end
  if o.srv6 then
    local segs = {}
    for i, a in ipairs(o.srv6) do
      local oct = core.tlv_encode { { type = 9, addr = a } }
      if #oct ~= 20 then error("bad option 'srv6' to 'return_path' (IPv6 addresses expected)", 2) end
      segs[i] = oct:sub(5)
    end
    subs[#subs + 1] = { type = 4, value = table.concat(segs) }
  end
  if #subs == 0 then error("bad argument #1 to 'return_path' (no_reply, reply_same_link, return_addr, srv6 or mpls expected)", 2) end
  return { type = 10, subtlvs = subs }
end

--- Micro-session ID (type 11, RFC 9534).
-- @tparam table o `sender_id` (our member link), `reflector_id` (expected reflector member link, 0 = any)
function M.micro_session(o)
  o = opt(o, "micro_session")
  return { type = 11, sender_id = int_arg(o, "sender_id", 0, 65535, "micro_session", 0),
    reflector_id = int_arg(o, "reflector_id", 0, 65535, "micro_session", 0) }
end

--- Reflected Test Packet Control (type 12, RFC 10052): ask for `count` replies of `length` octets,
-- `interval_ns` apart. The Value is 12 octets (the last 4 zero: no Address Group sub-TLV). A reflector
-- answers a request over its limits with one reply and the C flag; `count = 0` asks for no reply.
-- @tparam table o `count`, `length`, `interval_ns`
function M.reflected_control(o)
  o = opt(o, "reflected_control")
  return { type = 12, count = int_arg(o, "count", 0, 65535, "reflected_control", 1),
    reflected_length = int_arg(o, "length", 0, 65535, "reflected_control", 0),
    interval = int_arg(o, "interval_ns", 0, 4294967295, "reflected_control", 0) }
end

--- Any TLV given as raw octets (for experiments and tests).
-- @tparam table o `type`, `value` (octets), `flags` (default U)
function M.raw(o)
  o = opt(o, "raw")
  return { type = int_arg(o, "type", 0, 255, "raw"), value = o.value or "", flags = o.flags }
end

--- Encode a list of TLV specs into octets.
-- @function encode
M.encode = core.tlv_encode

--- Decode the octets after a base packet.
-- @function decode
-- @treturn table list in order
-- @treturn table map by key
M.decode = core.tlv_decode

return M
