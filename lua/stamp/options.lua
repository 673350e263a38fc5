--- Option tables for `stamp.sender` and `stamp.reflector`: one table-driven
-- validator, so each option's type, range and default is written once.
-- @module stamp.options
local core = require "stamp.core"

local M = {}

local function isint(v)
  return type(v) == "number" and v == math.floor(v) and v > -math.huge and v < math.huge
end

-- 64.0 is the integer 64 (C wants integers); 64.5 is refused by `isint` before this.
local toint = math.tointeger or function(v) return v end

--- Shortest HMAC key accepted, in octets.
M.MIN_KEY = 16

-- Each entry: kind, [min, max], [default], [values]
local COMMON = {
  local_addr = { kind = "string" },
  local_port = { kind = "integer", min = 0, max = 65535 },
  auth = { kind = "boolean", default = false },
  mode = { kind = "enum", values = { open = false, auth = true, O = false, A = true } },
  key = { kind = "string" },
  hmac_key = { kind = "string" },
  clock = { kind = "enum", values = { NTP = "NTP", PTP = "PTP", ntp = "NTP", ptp = "PTP" }, default = "NTP" },
  ttl = { kind = "integer", min = 1, max = 255, default = 255 },
  tos = { kind = "integer", min = 0, max = 255 },
  rcvbuf = { kind = "integer", min = 0, max = 1073741824 },
}

local SENDER = {
  remote_addr = { kind = "string", required = true },
  remote_port = { kind = "integer", min = 1, max = 65535, default = 862 },
  count = { kind = "integer", min = 0, max = 4294967295, default = 1000 },
  send_delay = { kind = "number", min = 0, max = 3600000, default = 1000 },
  timeout = { kind = "number", min = 0.001, max = 3600, default = 5 },
  duration = { kind = "number", min = 0.000001, max = 31536000 }, -- seconds of sending; count then defaults to 0
  ssid = { kind = "integer", min = 0, max = 65535, default = 0 },
  drop_ssid_zero = { kind = "boolean", default = false },
  packet_len = { kind = "integer", min = 0, max = core.MAX_PKT },
  tlvs = { kind = "tlvs" },
  schedule = { kind = "enum", values = { periodic = "periodic", poisson = "poisson" }, default = "periodic" },
  seed = { kind = "integer", min = 0, max = 2 ^ 53 },
  dscp = { kind = "integer", min = 0, max = 63 },
  ecn = { kind = "integer", min = 0, max = 3 },
  -- RFC 8972 4.6: the Access Report TLV's retransmission timer (seconds) and how often it is retried
  access_report_timeout = { kind = "number", min = 0.001, max = 3600, default = 3 },
  access_report_retries = { kind = "integer", min = 0, max = 1000, default = 4 },
}

local REFLECTOR = {
  stateful = { kind = "boolean", default = false },
  session_timeout = { kind = "number", min = 0.001, max = 31536000, default = 300 },
  max_sessions = { kind = "integer", min = 1, max = 16777216 },
  strict_packets = { kind = "boolean", default = false },
  batch = { kind = "integer", min = 1, max = 32 },
  tlv_mode = { kind = "enum", values = { echo = "echo", ignore = "ignore" }, default = "echo" },
  verify_tlv_hmac = { kind = "boolean", default = false },
  cos_refuse = { kind = "boolean", default = false },
  location_hide = { kind = "boolean", default = false },
  member_link_id = { kind = "integer", min = 1, max = 65535 },
  allow_return_address = { kind = "list" },
  reflected_max_count = { kind = "integer", min = 0, max = 1000, default = 0 },
  reflected_max_size = { kind = "integer", min = 0, max = core.MAX_PKT },
  reflected_min_interval_ns = { kind = "integer", min = 0, max = 3600e9 },
  reflected_max_interval_ns = { kind = "integer", min = 0, max = 4294967295 },
  reflected_max_bursts_per_source = { kind = "integer", min = 0, max = 1048576 },
  reflected_max_rate = { kind = "number", min = 0, max = 1e12 },
  reflected_max_volume = { kind = "number", min = 0, max = 1e12 },
  session_admission = { kind = "enum", values = { open = "open", provisioned = "provisioned" }, default = "open" },
  sessions = { kind = "list" },
  -- abuse resistance, replay protection, per-SSID keys (the reflector's C core; see stamp.core.reflector)
  keys = { kind = "list" },
  max_pps = { kind = "number", min = 0, max = 1e9 },
  rate_burst = { kind = "integer", min = 0, max = 1e9 },
  rate_sources = { kind = "integer", min = 1, max = 16777216 },
  replay_max_age = { kind = "number", min = 0, max = 1e9 },
  drop_replayed = { kind = "boolean" },
  max_bursts = { kind = "integer", min = 1, max = 1048576 },
  workers = { kind = "integer", min = 1, max = 64 },
}

local function check(name, spec, v, level)
  local function bad(what)
    error(string.format("bad option '%s' (%s expected, got %s)", name, what,
      type(v) == "string" and ("'" .. v .. "'") or tostring(v)), level + 1)
  end
  if spec.kind == "string" then
    if type(v) ~= "string" then bad("string") end
  elseif spec.kind == "boolean" then
    if type(v) ~= "boolean" then bad("boolean") end
  elseif spec.kind == "list" then
    if type(v) ~= "table" then bad("list") end
  elseif spec.kind == "tlvs" then
    if type(v) ~= "table" and type(v) ~= "string" then bad("list of TLVs or octets") end
  elseif spec.kind == "enum" then
    if spec.values[v] == nil then
      local keys = {}
      for k in pairs(spec.values) do keys[#keys + 1] = k end
      table.sort(keys)
      bad("one of " .. table.concat(keys, ", "))
    end
    v = spec.values[v]
  else
    local ok = spec.kind == "integer" and isint(v) or (spec.kind == "number" and type(v) == "number" and v == v)
    if not ok or (spec.min and v < spec.min) or (spec.max and v > spec.max) then
      bad(string.format("%s %s..%s", spec.kind, tostring(spec.min), tostring(spec.max)))
    end
    if spec.kind == "integer" then v = toint(v) or v end
  end
  return v
end

-- Validate `cfg` against the merged specs; unknown keys are errors too.
local function validate(cfg, specs, level)
  local out = {}
  for k, v in pairs(cfg) do
    local spec
    for _, s in ipairs(specs) do spec = spec or s[k] end
    if not spec then error(string.format("unknown option '%s'", tostring(k)), level + 1) end
    out[k] = check(k, spec, v, level + 1)
  end
  for _, s in ipairs(specs) do
    for k, spec in pairs(s) do
      if out[k] == nil then
        if spec.required then error(string.format("bad option '%s' (required)", k), level + 1) end
        out[k] = spec.default
      end
    end
  end
  -- authentication: mode/auth and the key
  if out.mode ~= nil then out.auth = out.mode end
  out.mode = nil
  if out.hmac_key then
    if out.key then error("give either 'key' or 'hmac_key', not both", level + 1) end
    local key, err = core.hex_decode(out.hmac_key)
    if not key then error("bad option 'hmac_key' (" .. err .. ")", level + 1) end
    out.key, out.hmac_key = key, nil
  end
  if out.auth and (not out.key or #out.key == 0) and not out.keys then
    error("authenticated mode needs 'key' or 'hmac_key'", level + 1)
  end
  if out.key and #out.key < M.MIN_KEY then
    error(string.format("bad option '%s' (a key of at least %d octets expected, got %d)", cfg.hmac_key and "hmac_key" or "key",
      M.MIN_KEY, #out.key), level + 1)
  end
  return out
end

--- Normalize sender options into what `stamp.core.sender` takes.
-- @tparam table cfg
-- @tparam number level error level
-- @treturn table
function M.sender(cfg, level)
  local c = validate(cfg, { COMMON, SENDER }, level or 2)
  if c.duration then
    if cfg.count == nil then c.count = 0 end -- a duration alone: as many packets as fit in it
    c.duration_ns, c.duration = math.floor(c.duration * 1e9 + 0.5), nil
  end
  c.interval_ns = math.floor(c.send_delay * 1e6 + 0.5)
  local send_delay_ms = c.send_delay
  c.timeout_ns = math.floor(c.timeout * 1e9 + 0.5)
  c.send_delay, c.timeout = nil, nil
  c.access_timeout_ns = math.floor(c.access_report_timeout * 1e9 + 0.5)
  c.access_retries, c.access_report_timeout, c.access_report_retries = c.access_report_retries, nil, nil
  if c.dscp or c.ecn then
    if c.tos then error("give either 'tos' or 'dscp'/'ecn', not both", (level or 2) + 1) end
    c.tos = (c.dscp or 0) * 4 + (c.ecn or 0)
  end
  c.dscp, c.ecn = nil, nil
  if type(c.tlvs) == "table" then
    local no_reply, t12, n_rp = false, false, 0
    for i, t in ipairs(c.tlvs) do
      if type(t) ~= "table" then error(string.format("bad option 'tlvs' (TLV #%d is not a table)", i), (level or 2) + 1) end
      if t.packet_tos and c.tos == nil then c.tos = t.packet_tos end -- the CoS TLV's DSCP/ECN
      if (t.type == 8 or t.key == "hmac") and not c.key then
        error("bad option 'tlvs' (the HMAC TLV needs 'key' or 'hmac_key')", (level or 2) + 1)
      end
      if t.type == 10 or t.key == "return_path" then
        n_rp = n_rp + 1
        if n_rp > 1 then error("bad option 'tlvs' (at most one Return Path TLV, RFC 9503 4)", (level or 2) + 1) end
      end
      if (t.type == 10 or t.key == "return_path") and type(t.subtlvs) == "table" then
        for _, st in ipairs(t.subtlvs) do if st.type == 1 and st.uint32 == 0 then no_reply = true end end
      end
      if (t.type == 12 or t.key == "reflected_control") and t.count ~= 0 then
        t12 = true
        -- RFC 10052 5: the next request should not start before the previous burst ends
        local n, gap = t.count or 1, t.interval or 0
        if n > 1 and (n - 1) * gap > c.interval_ns then
          error(string.format("bad option 'send_delay' (%g ms: the type 12 burst of %d replies %d ns apart lasts %g ms; "
            .. "the next request must not start before it ends, RFC 10052 5)", send_delay_ms, n, gap,
            (n - 1) * gap / 1e6), (level or 2) + 1)
        end
      end
      if (t.type == 9 or t.key == "destination") and (c.ssid or 0) == 0 then
        error("bad option 'ssid' (the Destination Node Address TLV needs a non-zero SSID, RFC 9503 3)", (level or 2) + 1)
      end
    end
    if no_reply and t12 then
      error("bad option 'tlvs' (a Return Path 'no reply' never goes with a type 12 request, RFC 10052 4.3)", (level or 2) + 1)
    end
    -- RFC 8972 4.8: in authenticated mode TLVs other than a lone Extra Padding go with an HMAC TLV
    -- (placed after the last TLV that is not Extra Padding); a reflector obeys none of them without it
    if c.auth then
      local has_hmac, last = false, 0
      for i, t in ipairs(c.tlvs) do
        if t.type == 8 or t.key == "hmac" then has_hmac = true end
        if not (t.type == 1 or t.key == "padding") then last = i end
      end
      if last > 0 and not has_hmac then
        local list = {}
        for i, t in ipairs(c.tlvs) do
          list[#list + 1] = t
          if i == last then list[#list + 1] = { type = 8 } end
        end
        c.tlvs = list
      end
    end
    local ok, bytes = pcall(core.tlv_encode, c.tlvs)
    if not ok then error("bad option 'tlvs' (" .. tostring(bytes):gsub("^.-: ", "") .. ")", (level or 2) + 1) end
    c.tlvs = bytes
  end
  -- a larger packet_len is made of an Extra Padding TLV, never of bare octets that would parse as TLVs
  local base = c.auth and core.AUTH_BASE_LEN or core.BASE_LEN
  local have = base + #(c.tlvs or "")
  if c.packet_len and c.packet_len > have then
    if c.packet_len - have < 4 then
      error(string.format("bad option 'packet_len' (%d: needs at least %d for a padding TLV)", c.packet_len, have + 4), (level or 2) + 1)
    end
    -- zero octets, written here: the padding never depends on what the encoder's buffers held before
    local n = c.packet_len - have - 4
    c.tlvs = (c.tlvs or "") .. core.tlv_encode { { type = 1, value = string.rep("\0", n) } }
  elseif c.packet_len and c.packet_len < have then
    error(string.format("bad option 'packet_len' (%d: at least %d octets needed)", c.packet_len, have), (level or 2) + 1)
  end
  c.packet_len = nil
  return c
end

--- Normalize reflector options into what `stamp.core.reflector` takes.
-- @tparam table cfg
-- @tparam number level error level
-- @treturn table
function M.reflector(cfg, level)
  local c = validate(cfg, { COMMON, REFLECTOR }, level or 2)
  if c.local_port == nil then c.local_port = 862 end
  for ssid, k in pairs(c.keys or {}) do
    if type(k) ~= "string" or #k < M.MIN_KEY then
      error(string.format("bad option 'keys' (key for %s: at least %d octets expected)", tostring(ssid), M.MIN_KEY), (level or 2) + 1)
    end
  end
  return c
end

return M
