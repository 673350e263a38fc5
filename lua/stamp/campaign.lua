--- Measurement campaigns: many sender sessions at once in one process, over
-- one event loop (the engines' fds and steps), with results per session and
-- overall.
--
--     local report = stamp.campaign {
--       sessions = {
--         { name = "a", remote_addr = "127.0.0.1", remote_port = 8620, count = 100, send_delay = 10 },
--         { name = "b", remote_addr = "::1", remote_port = 8620, count = 50, send_delay = 20, dscp = 46,
--           tlvs = { stamp.tlv.cos { dscp = 46 } } },
--       },
--       schedule = "poisson",
--       on_result = function(name, r) end,
--       on_summary = function(name, summary) end,
--     }
-- @module stamp.campaign
local core = require "stamp.core"
local stats = require "stamp.stats"
local tlv = require "stamp.tlv"

local M = {}

local CAMPAIGN_KEYS = { sessions = true, duration = true, schedule = true, reflectors = true, on_result = true,
  on_summary = true, on_tick = true, keep = true, stop = true }

--- Run a campaign.
-- @tparam table c `sessions` (array of sender option tables, each with an optional `name` and `padding`),
--   `duration` (seconds: stop sending after it), `schedule` ("periodic" or "poisson", the sessions' default),
--   `reflectors` (objects stepped in the same loop), `on_result(name, result, session)`,
--   `on_summary(name, summary)`, `on_tick(campaign_state)` (about once a loop), `stop()` (true: stop sending and
--   await the packets in flight, as a first Ctrl-C does; `"now"`: stop at once, as a second one does),
--   `keep` (keep per-packet results, default true; `false`: memory does not grow with the packet count)
-- @treturn table|nil `{ sessions = { {name=, summary=, results=, counters=, remote=}... }, overall = summary, interrupted = bool }`,
--   or `nil, message` when a session cannot start
function M.run(c)
  if type(c) ~= "table" then error("bad argument #1 to 'campaign' (table expected, got " .. type(c) .. ")", 2) end
  for k in pairs(c) do
    if not CAMPAIGN_KEYS[k] then error("bad option '" .. tostring(k) .. "' to 'campaign' (unknown)", 2) end
  end
  if type(c.sessions) ~= "table" or #c.sessions == 0 then
    error("bad option 'sessions' to 'campaign' (non-empty list expected)", 2)
  end
  if c.duration ~= nil and (type(c.duration) ~= "number" or c.duration <= 0) then
    error("bad option 'duration' to 'campaign' (positive number expected)", 2)
  end
  local stamp = require "stamp"
  local keep = c.keep ~= false
  local sessions = {}
  local function close_all()
    for _, s in ipairs(sessions) do s.sender:close() end
  end
  for i, cfg in ipairs(c.sessions) do
    if type(cfg) ~= "table" then error(string.format("bad session #%d (table expected)", i), 2) end
    local o = {}
    for k, v in pairs(cfg) do o[k] = v end
    local name = o.name or ("session" .. i)
    o.name = nil
    if o.padding then
      local copy = {}
      for j, t in ipairs(o.tlvs or {}) do copy[j] = t end
      o.tlvs = copy
      o.tlvs[#o.tlvs + 1] = tlv.padding { length = o.padding }
      o.padding = nil
    end
    o.schedule = o.schedule or c.schedule
    if c.duration and o.count == nil then o.count = 0 end
    local ok, s, err = pcall(stamp.sender, o)
    if not ok then
      close_all()
      error(string.format("bad session #%d ('%s'): %s", i, name, tostring(s):gsub("^.-:%d+: ", "")), 2)
    end
    if not s then
      close_all()
      return nil, string.format("session '%s': %s", name, err)
    end
    sessions[#sessions + 1] = { name = name, sender = s, acc = stats.new(), results = keep and {} or nil,
      remote = string.format("%s:%d", o.remote_addr, o.remote_port or 862) }
  end

  local reflectors = c.reflectors or {}
  local t0 = core.mono()
  local deadline = c.duration and t0 + math.floor(c.duration * 1e9)
  local stopped, interrupted, aborted = false, false, false
  local function signals()
    local sig, n = core.interrupted()
    return sig and (n or 1) or 0
  end
  local n0 = signals()
  local fds = {}
  while true do
    local active = 0
    for _, s in ipairs(sessions) do if not s.sender:done() then active = active + 1 end end
    if active == 0 then break end
    -- a first signal (or stop() true) ends sending and awaits the packets in flight; a second one
    -- (or stop() returning "now") ends at once, the outstanding packets come out as aborted
    local want, nsig = c.stop and c.stop(), signals() - n0
    if (want or nsig > 0) and not aborted then
      local now = want == "now" or nsig >= 2
      if not interrupted or now then
        for _, s in ipairs(sessions) do s.sender:stop(now) end
      end
      interrupted, aborted = true, now
    end
    if deadline and not stopped and core.mono() >= deadline then
      for _, s in ipairs(sessions) do s.sender:stop() end
      stopped = true
    end
    local wait = 100
    for _, s in ipairs(sessions) do
      local t = s.sender:next_timeout()
      if t >= 0 and t < wait then wait = t end
    end
    if deadline and not stopped then
      wait = math.min(wait, math.max(0, math.ceil((deadline - core.mono()) / 1e6)))
    end
    local n = 0
    for _, s in ipairs(sessions) do n = n + 1 fds[n] = s.sender:fd() end
    for _, r in ipairs(reflectors) do n = n + 1 fds[n] = r:fd() end
    for k = n + 1, #fds do fds[k] = nil end
    local ok, err = core.poll(fds, wait)
    if not ok then close_all() return nil, err end
    for _, r in ipairs(reflectors) do r:step(0) end
    for _, s in ipairs(sessions) do
      local res, serr = s.sender:step(0)
      if not res then
        close_all()
        return nil, string.format("session '%s': %s", s.name, serr)
      end
      for _, r in ipairs(res) do
        s.acc:add(r)
        if keep then s.results[#s.results + 1] = r end
        if c.on_result then c.on_result(s.name, r, s) end
      end
    end
    if c.on_tick then c.on_tick { sessions = sessions, elapsed = (core.mono() - t0) / 1e9 } end
  end

  local out = { sessions = {}, interrupted = interrupted }
  local accs, counters_list = {}, {}
  for i, s in ipairs(sessions) do
    local counters = s.sender:counters()
    local summary = s.acc:summary(counters)
    summary.interrupted = interrupted
    out.sessions[i] = { name = s.name, remote = s.remote, summary = summary, counters = counters,
      results = keep and s.results or nil }
    accs[i], counters_list[i] = s.acc, counters
    if c.on_summary then c.on_summary(s.name, summary) end
    s.sender:close()
  end
  -- each session's figures on their own, then combined (IPDV and loss episodes never span two sessions)
  out.overall = stats.merge(accs, counters_list)
  out.overall.interrupted = interrupted
  return out
end

return M
