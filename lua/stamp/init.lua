--- STAMP (RFC 8762 / RFC 8972) Session-Sender and Session-Reflector for Lua.
--
-- Argument errors raise; runtime and network failures return `nil, message, code`.
--
--     local stamp = require "stamp"
--     local r = assert(stamp.reflector{ local_addr = "127.0.0.1", local_port = 8620 })
--     local s = assert(stamp.sender{ remote_addr = "127.0.0.1", remote_port = 8620, count = 10, send_delay = 10 })
--
-- @module stamp
local core = require "stamp.core"
local opts = require "stamp.options"

local M = {
  _VERSION = core._VERSION,
  core = core,
  codec = require "stamp.codec",
  stats = require "stamp.stats",
  tlv = require "stamp.tlv",
  report = require "stamp.report",
  plot = require "stamp.plot",
}

--- Run many sender sessions concurrently (see `stamp.campaign`).
-- @function campaign
-- @tparam table c
M.campaign = function(c) return require("stamp.campaign").run(c) end

local sender_methods = core.methods.sender
local reflector_methods = core.methods.reflector

--- Create a Session-Reflector.
-- @tparam table cfg options:
--   `local_addr` (default "::", dual-stack), `local_port` (862),
--   `auth` (boolean) with `key` (raw octets) or `hmac_key` (hex),
--   `clock` ("NTP" or "PTP"), `stateful` (boolean), `session_timeout` (seconds, 300),
--   `max_sessions`, `strict_packets` (drop packets shorter than the base), `ttl` (255), `tos`.
-- @return a reflector object, or `nil, message, code`
function M.reflector(cfg)
  if type(cfg) ~= "table" then error("bad argument #1 to 'reflector' (table expected, got " .. type(cfg) .. ")", 2) end
  local c = opts.reflector(cfg, 3)
  return core.reflector(c)
end

--- Create a Session-Sender.
-- @tparam table cfg options:
--   `remote_addr` (required), `remote_port` (862), `local_addr`, `local_port` (0 = any),
--   `count` (1000; 0 = until stopped), `send_delay` (ms between packets, 1000), `timeout` (s, 5),
--   `ssid` (0..65535), `auth` with `key` or `hmac_key`, `clock` ("NTP"/"PTP"),
--   `ttl` (1..255, 255), `tos` (0..255), `packet_len` (total test packet octets).
-- @return a sender object, or `nil, message, code`
function M.sender(cfg)
  if type(cfg) ~= "table" then error("bad argument #1 to 'sender' (table expected, got " .. type(cfg) .. ")", 2) end
  local c = opts.sender(cfg, 3)
  return core.sender(c)
end

--- Run the reflector until `opts.duration` seconds have passed, `opts.stop()`
-- returns true, or a trapped signal arrives.
-- @function reflector:run
-- @tparam[opt] table o `duration` (seconds), `stop` (function), `on_tick` (function called about once a second)
-- @treturn table|nil the counters, or `nil, message, code`
function reflector_methods.run(self, o)
  o = o or {}
  local t0 = core.mono()
  local deadline = o.duration and t0 + math.floor(o.duration * 1e9)
  local last_tick = t0
  while true do
    if core.interrupted() or (o.stop and o.stop()) then break end
    local now = core.mono()
    if deadline and now >= deadline then break end
    local wait = 200
    if deadline then wait = math.max(0, math.min(wait, math.ceil((deadline - now) / 1e6))) end
    local n, err, code = self:step(wait)
    if not n then return nil, err, code end
    if o.on_tick and core.mono() - last_tick >= 1e9 then
      last_tick = core.mono()
      o.on_tick(self:counters())
    end
  end
  return self:counters()
end

--- Run the sender to completion (or until a trapped signal / `o.stop()`).
-- @function sender:run
-- @tparam[opt] table o `on_result` (function(result) per final packet), `keep` (keep results, default true),
--   `stop` (function returning true to stop early), `pump` (function called between steps, e.g. to step an
--   in-process reflector), `tick(sender)` (called after every step), `stateful_reflector` (hint for loss direction)
-- @treturn table|nil results (array of per-packet tables, in completion order)
-- @treturn table summary (see `stamp.stats.summary`)
function sender_methods.run(self, o)
  o = o or {}
  local results = {}
  local acc = M.stats.new { stateful_reflector = o.stateful_reflector }
  local keep = o.keep ~= false
  local interrupted = false
  while not self:done() do
    if core.interrupted() or (o.stop and o.stop()) then interrupted = true break end
    local wait = self:next_timeout()
    if o.pump then
      o.pump()
      wait = math.min(wait < 0 and 10 or wait, 1)
    end
    local res, err, code = self:step(wait)
    if not res then return nil, err, code end
    if o.tick then o.tick(self) end
    for i = 1, #res do
      local r = res[i]
      acc:add(r)
      if keep then results[#results + 1] = r end
      if o.on_result then o.on_result(r) end
    end
  end
  local summary = acc:summary(self:counters())
  summary.interrupted = interrupted
  return results, summary
end

return M
