#!/usr/bin/env lua5.4
-- CPU per accumulated result: the Lua accumulator (stamp.stats.new) against the C one
-- (stamp.core.stats, fed here from the same Lua tables: the binding's conversion included; a
-- sender's step adding its results in C needs no table at all). Also the slowest single add, which
-- shows that the switch from the exact sample to histograms (at 65,536 received packets) is spread.
-- Run by hand from the repository root after a build: lua5.4 bench/stats_add.lua [packets]
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local stats = require "stamp.stats"
local core = require "stamp.core"

local N = tonumber(arg[1]) or 200000
local results = {}
local x = 1
for i = 0, N - 1 do
  x = (x * 1103515245 + 12345) % 2147483648
  local fwd = 20000 + x % 3000
  results[i + 1] = { seq = i, lost = false, rtt = fwd + 15000 + x % 5000, fwd = fwd, bwd = 15000 + x % 5000,
    refl_seq = i, t1_source = "kernel", sender_ee = { s = 1, error_ns = 1000.5 }, refl_ee = { s = 1, error_ns = 2000.5 } }
end

local function run(name, acc)
  local worst, at = 0, 0
  local t0 = core.mono()
  for i = 1, N do
    local a = core.mono()
    acc:add(results[i])
    local d = core.mono() - a
    if d > worst then worst, at = d, i end
  end
  local total = core.mono() - t0
  local t1 = core.mono()
  local s = acc:summary()
  local ts = core.mono() - t1
  print(string.format("%-6s %8.0f ns per add (timer included), slowest add %.3f ms (#%d), summary %.1f ms, p99 %.0f",
    name, total / N, worst / 1e6, at, ts / 1e6, s.rtt.p99))
end

print(string.format("%d results", N))
run("Lua", stats.new())
run("C", stats.from_core())
