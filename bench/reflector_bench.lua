#!/usr/bin/env lua5.4
-- Reflector throughput on loopback, the reflector in its own process:
--   * the C engine with recvmmsg/sendmmsg batches of 32,
--   * the same engine with batches of 1 (one system call per datagram),
--   * a one-packet-at-a-time reflector written in Lua over luasocket.
-- A C sender engine floods each one (no gap between packets) and counts replies; the reflector
-- process's CPU time (from /proc) gives the cost per packet, which does not depend on how fast the
-- sender can go.
-- Run by hand from the repository root after building:  lua5.4 bench/reflector_bench.lua [packets]
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local stamp = require "stamp"
local core = stamp.core

local N = tonumber(arg[1]) or 100000

local PRELUDE = [[package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local stamp = require "stamp"
]]

local REFLECTORS = {
  { "C engine, batches of 32", [[
local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = PORT, rcvbuf = 8388608, batch = 32 })
stamp.core.trap_signals()
r:run()]] },
  { "C engine, batches of 1", [[
local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = PORT, rcvbuf = 8388608, batch = 1 })
stamp.core.trap_signals()
r:run()]] },
  { "Lua over luasocket", [[
local socket = require "socket"
local codec = stamp.codec
local u = socket.udp()
assert(u:setsockname("127.0.0.1", PORT))
u:settimeout(0.2)
stamp.core.trap_signals()
while not stamp.core.interrupted() do
  local data, ip, p = u:receivefrom()
  if data then
    local t = codec.decode_test(data)
    if t then
      local now = stamp.core.now()
      u:sendto(codec.encode_reflected { seq = t.seq, sender_seq = t.seq, sender_timestamp_raw = t.timestamp_raw, sender_ee = t.ee,
        timestamp = now, rx_timestamp = now, sender_ttl = 64 }, ip, p)
    end
  end
end]] },
}

local TICK = 100 -- USER_HZ: /proc times are in 1/100 s on Linux
local function cpu_seconds(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local line = f:read("*l")
  f:close()
  local rest = line:match("%) (.*)$")
  local fields = {}
  for x in rest:gmatch("%S+") do fields[#fields + 1] = x end
  -- after the command: state is field 3 of stat, utime 14 and stime 15 -> 12 and 13 here
  return (tonumber(fields[12]) + tonumber(fields[13])) / TICK
end

local function run_one(body, port)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(PRELUDE, (body:gsub("PORT", tostring(port))))
  f:close()
  local p = io.popen("lua5.4 " .. script .. " >/dev/null 2>&1 & echo $!")
  local pid = p:read("*l")
  p:close()
  require("socket").sleep(0.5)
  local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = port, count = N, send_delay = 0, timeout = 1,
    rcvbuf = 8388608 })
  local cpu0 = cpu_seconds(pid)
  local t0 = core.mono()
  local last = t0
  local _, sum = s:run { keep = false, on_result = function(r) if not r.lost then last = core.mono() end end }
  local cpu = cpu_seconds(pid) - cpu0
  s:close()
  os.execute("kill -INT " .. pid .. " 2>/dev/null; sleep 0.3; kill -9 " .. pid .. " 2>/dev/null")
  os.remove(script)
  return sum.received / ((last - t0) / 1e9), sum, cpu * 1e6 / math.max(1, sum.received) -- per packet answered
end

print(string.format("%d test packets per run, sender flooding from this process\n", N))
print(string.format("%-26s %12s %14s %18s %16s", "reflector", "replies/s", "received", "CPU us/reply", "CPU vs batched"))
local base
for i, r in ipairs(REFLECTORS) do
  local pps, sum, us = run_one(r[2], 28600 + i)
  base = base or us
  print(string.format("%-26s %12.0f %14s %18.2f %15.2fx", r[1], pps, sum.received .. "/" .. sum.sent, us, us / base))
end
