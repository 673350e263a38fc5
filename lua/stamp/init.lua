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
--   `ttl` (1..255, 255), `tos` (0..255), `packet_len` (total test packet octets),
--   `access_report_timeout` (s, 3) and `access_report_retries` (4): with an Access Report TLV in `tlvs`,
--   it is sent in the first packet, again when no reply echoed it within the timeout, at most that many
--   times more (RFC 8972 4.6); the other packets carry an Extra Padding TLV of its size in its place.
-- @return a sender object, or `nil, message, code`
function M.sender(cfg)
  if type(cfg) ~= "table" then error("bad argument #1 to 'sender' (table expected, got " .. type(cfg) .. ")", 2) end
  local c = opts.sender(cfg, 3)
  return core.sender(c)
end

--- Create an I/O-free Session-Sender machine (`stamp.core.sender_machine`): the sender's protocol for
-- event loops that own the socket (OpenResty cosockets, luv, cqueues). It takes the options of
-- `stamp.sender` (`remote_addr` is optional here: when given, `reply` checks a source address it is given).
-- @tparam table cfg options as for `sender`
-- @return a machine object, or `nil, message, code`
function M.sender_machine(cfg)
  if type(cfg) ~= "table" then error("bad argument #1 to 'sender_machine' (table expected, got " .. type(cfg) .. ")", 2) end
  local copy = {}
  for k, v in pairs(cfg) do copy[k] = v end
  copy.remote_addr = cfg.remote_addr or "127.0.0.1"
  local c = opts.sender(copy, 3)
  if cfg.remote_addr == nil then c.remote_addr = nil end
  return core.sender_machine(c)
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

-- Per sender: the state of a run that an error in a callback interrupted (results not yet
-- delivered, the statistics so far), resumed by the next run(). Weak keys: nothing outlives the sender.
local resumable = setmetatable({}, { __mode = "k" })

-- How many trapped signals arrived (SIGINT/SIGTERM), as `stamp.core.interrupted` reports them.
local function signals()
  local sig, n = core.interrupted()
  if not sig then return 0 end
  return n or 1
end

-- sender:run without per-packet results (`keep = false`, no `on_result`): `sender:pump` hands every
-- result to a C accumulator (and the metrics, `o.metrics`) and Lua runs only between pumps.
-- A user callback of a run: if it raises, the next run() resumes with `st`.
local function guarded(self, st, f, ...)
  resumable[self] = st
  f(...)
  resumable[self] = nil
end

-- Before each step of a run: `o.stop()` or a trapped signal since the run began stops sending
-- (a second signal, or "now", at once).
local function check_stop(self, o, st)
  st.n0 = st.n0 or signals()
  local want = o.stop and o.stop()
  local nsig = signals() - st.n0
  if want or nsig > 0 then
    st.interrupted = true
    self:stop(want == "now" or nsig >= 2)
  end
end

local function run_quiet(self, o, st)
  local sinks = { stats = st.cacc.core, metrics = o.metrics }
  while not self:done() do
    check_stop(self, o, st)
    if o.pump then guarded(self, st, o.pump) end
    local n, err, code = self:pump(o.pump and 1 or 100, sinks)
    if not n then return nil, err, code end
    if o.tick then guarded(self, st, o.tick, self, st.cacc) end
  end
  return {}, st.cacc:finish(self:counters(), st.interrupted)
end

--- Run the sender to completion (or until stopped).
--
-- Stopping: a trapped signal (SIGINT/SIGTERM, see `stamp.core.trap_signals`) or `o.stop()` returning
-- true stops sending; packets in flight are still awaited up to the timeout. A second signal, `o.stop()`
-- returning `"now"`, or `sender:stop(true)` stops at once: the packets still outstanding end as results
-- with `aborted = true` (neither received nor lost). Every packet ends exactly once. `summary.interrupted`
-- tells whether the run was stopped early, `summary.aborted` how many packets were abandoned.
--
-- Errors raised by `on_result` (or `tick`, `pump`) propagate out of `run`; the results of that step not yet
-- delivered stay queued in the sender and the next `run()` delivers them first and completes the same
-- measurement (same statistics).
--
-- With `keep = false` and no `on_result` nothing is done in Lua per packet: `sender:pump` hands every
-- result to a C accumulator (`stamp.core.stats`) and to `o.metrics`, the way to run at 100,000 packets/s.
-- A run resumed after an error goes on the way it started (with or without per-packet results).
-- A sender measures once: `run` on a sender that is done raises.
-- @function sender:run
-- @tparam[opt] table o `on_result` (function(result) per final packet), `keep` (keep results, default true;
--   `false` keeps nothing per packet), `metrics` (a sender's `stamp.core.metrics`: every result is
--   observed, in C without `on_result`), `stop` (function returning true to stop, `"now"` to stop at once),
--   `pump` (function called between steps, e.g. to step an in-process reflector), `tick(sender, acc)` (called
--   after every step with the run's statistics so far: `acc:progress()` is cheap, e.g. for a live line),
--   `stateful_reflector` (hint for loss direction)
-- @treturn table|nil results (array of per-packet tables, in completion order; empty with `keep = false`)
-- @treturn table summary (see `stamp.stats.summary`) with `interrupted` and `aborted`
function sender_methods.run(self, o)
  o = o or {}
  local st = resumable[self]
  resumable[self] = nil
  if not st and self:done() then error("sender:run: this sender is done (a sender measures once)", 2) end
  local keep = o.keep ~= false
  -- nobody wants the packets one by one: the results stay in C (statistics, metrics), no Lua per packet
  local quiet = not keep and not o.on_result
  if st then quiet = st.cacc ~= nil end -- a resumed run goes on the way it started (its accumulator)
  if not st then
    st = { results = {}, queue = {}, qi = 1, interrupted = false }
    if quiet then
      st.cacc = M.stats.from_core { stateful_reflector = o.stateful_reflector }
    else
      st.acc = M.stats.new { stateful_reflector = o.stateful_reflector }
    end
  end
  if quiet then return run_quiet(self, o, st) end
  local on_result, acc, results, metrics = o.on_result, st.acc, st.results, o.metrics
  local function deliver()
    local q = st.queue
    while st.qi <= #q do
      local r = q[st.qi]
      q[st.qi] = false
      st.qi = st.qi + 1
      if not r.aborted then acc:add(r) end
      if metrics then metrics:observe(r) end
      if keep then results[#results + 1] = r end
      if on_result then guarded(self, st, on_result, r) end -- if it raises, the next run() resumes here
    end
    st.queue, st.qi = {}, 1
  end
  deliver()
  while not self:done() do
    check_stop(self, o, st)
    local wait = self:next_timeout()
    if o.pump then
      guarded(self, st, o.pump)
      wait = math.min(wait < 0 and 10 or wait, 1)
    elseif wait < 0 or wait > 100 then
      wait = 100
    end
    local res, err, code = self:step(wait)
    if not res then return nil, err, code end
    st.queue = res
    deliver()
    if o.tick then guarded(self, st, o.tick, self, acc) end
  end
  return results, acc:finish(self:counters(), st.interrupted) -- aborted packets are neither received nor lost
end


return M
