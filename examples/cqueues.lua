--- A STAMP reflector and sender as cqueues coroutines (Debian's lua-cqueues), beside other work.
--
-- Each stamp object is wrapped as a cqueues pollable (`pollfd`, `events`, `timeout`); its
-- coroutine yields in `cqueues.poll` until the socket is readable or the sender's next packet
-- is due, then calls `step(0)`, which never blocks.
--
--     lua5.4 examples/cqueues.lua [count] [interval_ms]
--
-- Run from the repository root after building (`build/`, or `build-luajit/` for LuaJIT).
-- Loaded with `loadfile("examples/cqueues.lua")("lib")` it returns the drivers instead of running.
if ... ~= "lib" then -- run as a program from the repository root, after building
  local jit = rawget(_G, "jit")
  package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
  package.cpath = (jit and "build-luajit/?.so;" or _VERSION == "Lua 5.4" and "build/?.so;"
    or "build-" .. _VERSION:sub(5) .. "/?.so;") .. package.cpath
end
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
  local results, acc = {}, stamp.stats.new {}
  local p = pollable(s)
  while not s:done() do
    local t = s:next_timeout()
    p.timeout = function() return t >= 0 and t / 1000 or nil end
    cqueues.poll(p)
    local res = assert(s:step(0))
    for i = 1, #res do
      acc:add(res[i])
      results[#results + 1] = res[i]
      if on_result then on_result(res[i]) end
    end
  end
  local summary = acc:finish(s:counters(), false) -- as sender:run: never stopped early here
  return results, summary
end

--- Run a reflector and a sender in one controller with a 5 ms "other work" coroutine.
-- @tparam table o `count`, `send_delay` (ms), `tick` (ms, the other coroutine's period)
-- @treturn table results
-- @treturn table summary
-- @treturn table ticks (`cqueues.monotime()` of every other-work wake-up, seconds)
function M.pair(o)
  local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0 })
  local host, port = r:local_addr()
  local s = assert(stamp.sender { remote_addr = host, remote_port = port, count = o.count or 200,
    send_delay = o.send_delay or 10, timeout = 1 })
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

local count, delay = tonumber(arg and arg[1]) or 200, tonumber(arg and arg[2]) or 10
local _, summary, ticks = M.pair { count = count, send_delay = delay }
print(string.format("sent %d, received %d, lost %d, RTT median %.3f ms; other coroutine woke %d times",
  summary.sent, summary.received, summary.lost, (summary.rtt and summary.rtt.median or 0) / 1e6, #ticks))
