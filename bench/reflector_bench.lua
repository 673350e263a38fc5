#!/usr/bin/env lua5.4
-- Reflector throughput on loopback: the C engine (recvmmsg/sendmmsg batches)
-- against a one-packet-at-a-time luasocket reflector written in Lua, both
-- answering the same flood from the C sender engine.
-- Run by hand from the repository root:  lua5.4 bench/reflector_bench.lua [packets]
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local stamp = require "stamp"
local codec = stamp.codec
local core = stamp.core
local socket = require "socket"

local N = tonumber(arg[1]) or 50000

-- Flood N packets through `pump` and return packets/second and the received count.
local function flood(port, pump)
  local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = port, count = N, send_delay = 0,
    timeout = 2, rcvbuf = 8 * 1024 * 1024 })
  local t0 = core.mono()
  local _, sum = s:run { keep = false, pump = pump }
  local dt = (core.mono() - t0) / 1e9 - (sum.lost > 0 and 2 or 0)
  s:close()
  return sum.received / dt, sum
end

local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0, rcvbuf = 8 * 1024 * 1024 })
local _, port = r:local_addr()
local c_pps, c_sum = flood(port, function() r:step(0) end)
r:close()

local u = socket.udp()
u:setsockname("127.0.0.1", 0)
u:settimeout(0)
local _, lport = u:getsockname()
local lua_pps, lua_sum = flood(tonumber(lport), function()
  for _ = 1, 64 do
    local data, ip, p = u:receivefrom()
    if not data then return end
    local t = codec.decode_test(data)
    if t then
      local now = core.now()
      u:sendto(codec.encode_reflected { seq = t.seq, sender_seq = t.seq, sender_timestamp_raw = t.timestamp_raw,
        timestamp = now, rx_timestamp = now }, ip, p)
    end
  end
end)
u:close()

print(string.format("packets per run:            %d", N))
print(string.format("C reflector (batched):      %10.0f replies/s  (%d received, %d lost)", c_pps, c_sum.received, c_sum.lost))
print(string.format("Lua/luasocket reflector:    %10.0f replies/s  (%d received, %d lost)", lua_pps, lua_sum.received, lua_sum.lost))
print(string.format("ratio C / Lua:              %10.2f", c_pps / lua_pps))
