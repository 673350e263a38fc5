--- A STAMP reflector and sender as cqueues coroutines (Debian's lua-cqueues), beside other work.
--
-- Each stamp object is wrapped as a cqueues pollable (`pollfd`, `events`, `timeout`); its
-- coroutine yields in `cqueues.poll` until the socket is readable or the sender's next packet
-- is due, then calls `step(0)`, which never blocks.
--
--     lua5.4 examples/cqueues.lua [count] [interval_ms]
--
-- Run after building (`build/`, or `build-luajit/` for LuaJIT), from any directory.
-- Loaded with `loadfile("examples/cqueues.lua")("lib")` it returns the drivers instead of running.
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "_common.lua")
if ... ~= "lib" then common.setup() end -- run as a program: find lua/ and the build from here
local cqueues = require "cqueues"
local stamp = require "stamp"

local M = {}

-- A pollable for a stamp object: readable fd, optional timeout (seconds).
local function pollable(obj, timeout)
  return {
    pollfd = function() return obj:fd() end,
    events = function() return "r" end,
    timeout = function() return timeout end,
  }
end

--- A reflector loop, for `controller:wrap`; runs until `stop()` returns true.
-- @param r a `stamp.reflector`
-- @tparam function stop
-- @tparam[opt=0.05] number check seconds between looks at `stop`
function M.reflector(r, stop, check)
  local p = pollable(r, check or 0.05)
  while not stop() do
    cqueues.poll(p)
    assert(r:step(0))
  end
end

--- A sender loop, for `controller:wrap`; returns when the sender is done.
-- @param s a `stamp.sender`
-- @tparam[opt] function on_result called with each final result
-- @treturn table results
-- @treturn table summary (the shape `sender:run` returns)
function M.sender(s, on_result)
  local collect = common.collector(on_result)
  local p = pollable(s)
  while not s:done() do
    local t = s:next_timeout()
    p.timeout = function() return t >= 0 and t / 1000 or nil end
    cqueues.poll(p)
    collect.take(assert(s:step(0)))
  end
  return collect.finish(s:counters())
end

--- Run a reflector and a sender in one controller with a 5 ms "other work" coroutine.
-- @tparam table o `count`, `send_delay` (ms), `tick` (ms, the other coroutine's period)
-- @treturn table results
-- @treturn table summary
-- @treturn table ticks (`cqueues.monotime()` of every other-work wake-up, seconds)
function M.pair(o)
  local r, opts = common.loopback(o)
  local s = assert(stamp.sender(opts))
  local cq = cqueues.new()
  local done, results, summary = false, nil, nil
  local ticks = {}
  cq:wrap(function() M.reflector(r, function() return done end) end)
  cq:wrap(function()
    results, summary = M.sender(s)
    done = true
  end)
  cq:wrap(function()
    while not done do
      cqueues.sleep((o.tick or 5) / 1000)
      ticks[#ticks + 1] = cqueues.monotime()
    end
  end)
  assert(cq:loop())
  s:close()
  r:close()
  return results, summary, ticks
end

if ... == "lib" then return M end
common.main(M.pair, "other coroutine woke %d times")
