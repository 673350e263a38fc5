--- What the event-loop examples (`luv.lua`, `cqueues.lua`, `luv_machine.lua`) share: finding the
-- module and the build when run as a program, a reflector on loopback, collecting a sender's
-- results into the summary `sender:run` returns, and the command line with its one summary line.
--
-- Each example loads this file by its own folder's path, so each still runs alone:
--
--     local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "_common.lua")
local C = {}

-- the repository root: this file's folder, then ..
local ROOT = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "../"

--- Run as a program: find `lua/` and the build of this interpreter (`build/` for Lua 5.4,
-- `build-luajit/`, `build-5.3/`, `build-5.1/`) from the repository the example sits in, so it runs
-- from any directory. Loaded as a library (`("lib")`), an example leaves the paths to its host.
function C.setup()
  local jit = rawget(_G, "jit")
  local build = jit and "build-luajit" or _VERSION == "Lua 5.4" and "build" or "build-" .. _VERSION:sub(5)
  package.path = ROOT .. "lua/?.lua;" .. ROOT .. "lua/?/init.lua;" .. package.path
  package.cpath = ROOT .. build .. "/?.so;" .. package.cpath
end

--- A reflector on an ephemeral loopback port, and the sender options that measure against it.
-- @tparam table o `count` (default 200), `send_delay` (ms, default 10)
-- @return the `stamp.reflector`
-- @treturn table sender options: `remote_addr`, `remote_port`, `count`, `send_delay`, `timeout` (1 s)
function C.loopback(o)
  local stamp = require "stamp"
  local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0 })
  local host, port = r:local_addr()
  return r, { remote_addr = host, remote_port = port, count = o.count or 200,
    send_delay = o.send_delay or 10, timeout = 1 }
end

--- Collect a sender's final per-packet results; complete the summary as `sender:run` does.
-- @tparam[opt] function on_result called with each final result
-- @treturn table `take(list)` for each list `step` or `expire` returns, and `finish(counters)`,
--   which returns the results and the summary (`stamp.stats.finish`: never stopped early here)
function C.collector(on_result)
  local stamp = require "stamp"
  local results, acc = {}, stamp.stats.new {}
  local c = {}
  function c.take(list)
    for i = 1, #list do
      acc:add(list[i]) -- aborted results are left out of the figures
      results[#results + 1] = list[i]
      if on_result then on_result(list[i]) end
    end
  end
  function c.finish(counters)
    return results, acc:finish(counters, false)
  end
  return c
end

--- Run as a program: `[count] [interval_ms]` from the command line (200, 10), `pair`, one line.
-- @tparam function pair the example's `M.pair`: returns results, summary, ticks
-- @tparam string other how the other work's ticks read, with one `%d`
function C.main(pair, other)
  local count, delay = tonumber(arg and arg[1]) or 200, tonumber(arg and arg[2]) or 10
  local _, summary, ticks = pair { count = count, send_delay = delay }
  print(string.format("sent %d, received %d, lost %d, RTT median %.3f ms; " .. other,
    summary.sent, summary.received, summary.lost, (summary.rtt and summary.rtt.median or 0) / 1e6, #ticks))
end

return C
