#!/usr/bin/env lua5.4
-- Packet size / MTU sweep: test packets grown with the Extra Padding TLV, from
-- the 44-octet base to a jumbo frame; the reflector answers with the same size.
-- Run from the repository root:  lua5.4 examples/padding_sweep.lua [packets]
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local stamp = require "stamp"

local count = tonumber(arg and arg[1]) or 5
local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0 })
local host, port = r:local_addr()

local sizes = { 44, 128, 512, 1024, 1472, 4000, 8972 }
local sessions = {}
for _, size in ipairs(sizes) do
  sessions[#sessions + 1] = { name = tostring(size), remote_addr = host, remote_port = port, count = count,
    send_delay = 5, timeout = 1, packet_len = size > 44 and size or nil }
end
local got = {}
local rep = assert(stamp.campaign {
  sessions = sessions, reflectors = { r },
  on_result = function(name, res) if not res.lost then got[name] = res.length end end,
})
print(string.format("%8s %8s %6s %10s %10s", "size", "reply", "loss%", "rtt avg", "rtt max"))
for _, s in ipairs(rep.sessions) do
  local x = s.summary
  print(string.format("%8s %8s %6.1f %10.3f %10.3f", s.name, tostring(got[s.name]), x.loss_pct,
    x.rtt and x.rtt.mean / 1e6 or 0, x.rtt and x.rtt.max / 1e6 or 0))
end
r:close()
