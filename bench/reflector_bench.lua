#!/usr/bin/env lua5.4
-- Reflector throughput on loopback, the reflector in its own process:
--   * the C engine with recvmmsg/sendmmsg batches of 32,
--   * the same engine with batches of 1 (one system call per datagram),
--   * a one-packet-at-a-time reflector written in Lua over luasocket.
-- A C sender engine floods each one (no gap between packets) and counts replies.
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
      u:sendto(codec.encode_reflected { seq = t.seq, sender_seq = t.seq, sender_timestamp_raw = t.timestamp_raw,
        timestamp = now, rx_timestamp = now, sender_ttl = 64 }, ip, p)
    end
  end
end]] },
}

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
  local t0 = core.mono()
  local last = t0
  local _, sum = s:run { keep = false, on_result = function(r) if not r.lost then last = core.mono() end end }
  s:close()
  os.execute("kill -INT " .. pid .. " 2>/dev/null; sleep 0.3; kill -9 " .. pid .. " 2>/dev/null")
  os.remove(script)
  return sum.received / ((last - t0) / 1e9), sum
end

print(string.format("%d test packets per run, sender flooding from this process\n", N))
local base
for i, r in ipairs(REFLECTORS) do
  local pps, sum = run_one(r[2], 28600 + i)
  base = base or pps
  print(string.format("%-26s %10.0f replies/s  received %d/%d  ratio to batched C %.2f", r[1], pps, sum.received, sum.sent,
    pps / base))
end
