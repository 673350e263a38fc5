--- The I/O-free sender (`stamp.sender_machine`) on libuv's own UDP socket (Debian's lua-luv).
--
-- libuv owns the socket (`uv.new_udp`) and the timer; the machine only builds packets, keeps
-- the schedule and matches replies. T1 and T4 are user-space times taken around libuv's calls
-- (`stamp.core.now()`), as in OpenResty; `examples/luv.lua` drives the socket objects instead and
-- keeps the kernel's receive timestamps. The reflector here is the socket object on a poll.
--
--     lua5.4 examples/luv_machine.lua [count] [interval_ms]
--
-- Run from the repository root after building (`build/`, or `build-luajit/` for LuaJIT).
-- Loaded with `loadfile("examples/luv_machine.lua")("lib")` it returns the driver instead of running.
if ... ~= "lib" then -- run as a program from the repository root, after building
  local jit = rawget(_G, "jit")
  package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
  package.cpath = (jit and "build-luajit/?.so;" or _VERSION == "Lua 5.4" and "build/?.so;"
    or "build-" .. _VERSION:sub(5) .. "/?.so;") .. package.cpath
end
local uv = require "luv"
local stamp = require "stamp"
local core = stamp.core

local M = {}

--- Measure with a sender machine over a libuv UDP socket.
-- @tparam table o `host`, `port`, and the options of `stamp.sender_machine` (`count`, `send_delay`, ...);
--   `on_done(results, summary)` at the end
function M.sender(o)
  local cfg = {}
  for k, v in pairs(o) do if k ~= "host" and k ~= "port" and k ~= "on_done" then cfg[k] = v end end
  cfg.remote_addr, cfg.remote_port = o.host, o.port
  local m = assert(stamp.sender_machine(cfg))
  local udp, timer = uv.new_udp(), uv.new_timer()
  assert(udp:bind(o.host:find(":") and "::" or "0.0.0.0", 0))
  local results, acc, finished = {}, stamp.stats.new {}, false

  local function take(res)
    for i = 1, #res do
      if not res[i].aborted then acc:add(res[i]) end
      results[#results + 1] = res[i]
    end
  end

  local function finish()
    finished = true
    udp:recv_stop()
    udp:close()
    timer:stop()
    timer:close()
    local summary = acc:finish(m:counters(), false) -- as sender:run
    o.on_done(results, summary)
  end

  local function pump()
    if finished then return end
    while m:due(core.mono()) do
      local pkt = m:build(core.mono(), core.now()) -- T1 right before the send
      if not pkt then break end
      if not udp:try_send(pkt, o.host, o.port) then m:tx_error() end
    end
    take(m:expire(core.mono()))
    if m:done() then return finish() end
    local dl = m:next_deadline() -- 0: now
    local ms = dl == 0 and 0 or math.max(0, math.ceil((dl - core.mono()) / 1e6))
    timer:start(ms, 0, pump) -- libuv's timers count whole milliseconds
  end

  udp:recv_start(function(err, data, addr)
    if finished or err or not data then return end
    local r = m:reply(data, core.now(), nil, nil, addr and addr.ip, addr and addr.port)
    if r then take({ r }) end
    pump() -- expire() moves the machine past answered packets; the next deadline changes

  end)
  pump()
end

--- A reflector (socket object on a poll) and a machine sender in one loop, with a 5 ms timer.
-- @tparam table o `count`, `send_delay` (ms), `tick` (ms)
-- @treturn table results
-- @treturn table summary
-- @treturn table ticks (`uv.hrtime()` of each other-timer callback, ns)
function M.pair(o)
  local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0 })
  local host, port = r:local_addr()
  local poll = uv.new_poll(r:fd())
  poll:start("r", function() assert(r:step(0)) end)
  local ticks, other = {}, uv.new_timer()
  other:start(o.tick or 5, o.tick or 5, function() ticks[#ticks + 1] = uv.hrtime() end)
  local results, summary
  M.sender { host = host, port = port, count = o.count or 200, send_delay = o.send_delay or 10, timeout = 1,
    on_done = function(res, sum)
      results, summary = res, sum
      other:stop()
      other:close()
      poll:stop()
      poll:close()
    end }
  uv.run()
  r:close()
  return results, summary, ticks
end

if ... == "lib" then return M end

local count, delay = tonumber(arg and arg[1]) or 200, tonumber(arg and arg[2]) or 10
local _, summary, ticks = M.pair { count = count, send_delay = delay }
print(string.format("sent %d, received %d, lost %d, RTT median %.3f ms; other timer fired %d times",
  summary.sent, summary.received, summary.lost, (summary.rtt and summary.rtt.median or 0) / 1e6, #ticks))
