--- A STAMP reflector and sender driven by a libuv loop (Debian's lua-luv), beside other work.
--
-- The stamp objects never block here: a `uv.new_poll` on each object's `fd()` says when
-- replies or test packets are waiting, and a `uv.new_timer` armed with the sender's
-- `next_timeout()` says when the next packet is due; every callback calls `step(0)`.
--
--     lua5.4 examples/luv.lua [count] [interval_ms]
--
-- Run after building (`build/`, or `build-luajit/` for LuaJIT), from any directory.
-- Loaded with `loadfile("examples/luv.lua")("lib")` it returns the drivers instead of running.
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "_common.lua")
if ... ~= "lib" then common.setup() end -- run as a program: find lua/ and the build from here
local uv = require "luv"
local stamp = require "stamp"

local M = {}

--- Drive a reflector from the loop: step it whenever its socket is readable.
-- @param r a `stamp.reflector`
-- @treturn function stop (closes the poll handle)
function M.reflector(r)
  local poll = uv.new_poll(r:fd())
  poll:start("r", function(err)
    assert(not err, err)
    assert(r:step(0))
  end)
  return function()
    poll:stop()
    poll:close()
  end
end

--- Drive a sender from the loop until it is done.
-- @param s a `stamp.sender`
-- @tparam table o `on_result(r)` per final result, `on_done(results, summary)` at the end,
--   `on_error(msg)` when a step fails
function M.sender(s, o)
  local collect = common.collector(o.on_result)
  local poll, timer = uv.new_poll(s:fd()), uv.new_timer()
  local finished = false
  local function finish(err)
    finished = true
    poll:stop()
    poll:close()
    timer:stop()
    timer:close()
    if err then
      if o.on_error then o.on_error(err) else error(err) end
      return
    end
    if o.on_done then o.on_done(collect.finish(s:counters())) end
  end
  local function pump()
    if finished then return end
    local res, err = s:step(0) -- sends what is due, reads what arrived, never waits
    if not res then return finish(err) end
    collect.take(res)
    if s:done() then return finish() end
    -- next_timeout() rounds up to whole milliseconds, the resolution of libuv's timers
    timer:start(s:next_timeout(), 0, pump)
  end
  local function watch()
    poll:start("r", function(err)
      if err == "EBADF" and not finished then
        -- libuv reports POLLERR as EBADF and stops the handle; on this socket POLLERR means a kernel
        -- transmit timestamp waits in its error queue (T1), which the next step reads: step, watch again
        -- (a socket that is really gone makes the step fail, and that ends the sender)
        pump()
        if not finished then watch() end
        return
      end
      if err then return finish(err) end
      pump()
    end)
  end
  watch()
  timer:start(0, 0, pump)
end

--- Run a reflector and a sender in one loop with a 5 ms "other work" timer.
-- @tparam table o `count`, `send_delay` (ms), `tick` (ms, the other timer's period)
-- @treturn table results
-- @treturn table summary
-- @treturn table ticks (uv.hrtime() of every other-timer callback, ns)
function M.pair(o)
  local r, opts = common.loopback(o)
  local s = assert(stamp.sender(opts))
  local stop_reflector = M.reflector(r)
  local ticks, results, summary = {}, nil, nil
  local other = uv.new_timer()
  other:start(o.tick or 5, o.tick or 5, function() ticks[#ticks + 1] = uv.hrtime() end)
  M.sender(s, {
    on_done = function(res, sum)
      results, summary = res, sum
      other:stop()
      other:close()
      stop_reflector()
    end,
    on_error = function(err)
      other:stop()
      other:close()
      stop_reflector()
      error(err)
    end,
  })
  uv.run()
  s:close()
  r:close()
  return results, summary, ticks
end

if ... == "lib" then return M end
common.main(M.pair, "other timer fired %d times")
