--- The I/O-free sender (`stamp.sender_machine`) on libuv's own UDP socket (Debian's lua-luv).
--
-- libuv owns the socket (`uv.new_udp`) and the timer; the machine only builds packets, keeps
-- the schedule and matches replies. T1 and T4 are user-space times taken around libuv's calls
-- (`stamp.core.now()`), as in OpenResty; `examples/luv.lua` drives the socket objects instead and
-- keeps the kernel's receive timestamps. The reflector here is the socket object on a poll.
--
--     lua5.4 examples/luv_machine.lua [count] [interval_ms]
--
-- Run after building (`build/`, or `build-luajit/` for LuaJIT), from any directory.
-- Loaded with `loadfile("examples/luv_machine.lua")("lib")` it returns the driver instead of running.
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "_common.lua")
if ... ~= "lib" then common.setup() end -- run as a program: find lua/ and the build from here
local uv = require "luv"
local stamp = require "stamp"
local core = stamp.core

local M = {}

--- Measure with a sender machine over a libuv UDP socket.
-- @tparam table o the options of `stamp.sender_machine` (`remote_addr`, `remote_port`, `count`,
--   `send_delay`, ...)
-- @tparam function on_done called with the results and the summary at the end
function M.sender(o, on_done)
  local m = assert(stamp.sender_machine(o))
  local host, port = o.remote_addr, o.remote_port
  local udp, timer = uv.new_udp(), uv.new_timer()
  assert(udp:bind(host:find(":") and "::" or "0.0.0.0", 0))
  local collect, finished = common.collector(), false
  local take = collect.take

  local function finish()
    finished = true
    udp:recv_stop()
    udp:close()
    timer:stop()
    timer:close()
    on_done(collect.finish(m:counters()))
  end

  local function pump()
    if finished then return end
    while m:due(core.mono()) do
      local pkt = m:build(core.mono(), core.now()) -- T1 right before the send
      if not pkt then break end
      if not udp:try_send(pkt, host, port) then m:tx_error() end
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
  local r, opts = common.loopback(o)
  local poll = uv.new_poll(r:fd())
  poll:start("r", function() assert(r:step(0)) end)
  local ticks, other = {}, uv.new_timer()
  other:start(o.tick or 5, o.tick or 5, function() ticks[#ticks + 1] = uv.hrtime() end)
  local results, summary
  M.sender(opts, function(res, sum)
    results, summary = res, sum
    other:stop()
    other:close()
    poll:stop()
    poll:close()
  end)
  uv.run()
  r:close()
  return results, summary, ticks
end

if ... == "lib" then return M end
common.main(M.pair, "other timer fired %d times")
