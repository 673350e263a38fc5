#!/usr/bin/env lua5.4
-- Multi-target mesh: three reflectors on loopback (IPv4 and IPv6), one sender
-- session to each, all in one process over one event loop.
-- Run from the repository root:  lua5.4 examples/mesh.lua [packets]
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local stamp = require "stamp"

local count = tonumber(arg and arg[1]) or 20
local reflectors, sessions = {}, {}
for i, addr in ipairs { "127.0.0.1", "127.0.0.2", "::1" } do
  local r = assert(stamp.reflector { local_addr = addr, local_port = 0 })
  local _, port = r:local_addr()
  reflectors[i] = r
  sessions[i] = { name = "to-" .. addr, remote_addr = addr, remote_port = port, count = count, send_delay = 5 * i,
    timeout = 1 }
end

local rep = assert(stamp.campaign { sessions = sessions, reflectors = reflectors })
print(string.format("%-14s %6s %6s %6s %10s %10s %10s", "session", "sent", "recv", "loss%", "rtt min", "rtt avg", "rtt p99"))
for _, s in ipairs(rep.sessions) do
  local x = s.summary
  print(string.format("%-14s %6d %6d %6.1f %10.3f %10.3f %10.3f", s.name, x.sent, x.received, x.loss_pct,
    x.rtt.min / 1e6, x.rtt.mean / 1e6, x.rtt.p99 / 1e6))
end
print(string.format("%-14s %6d %6d %6.1f", "overall", rep.overall.sent, rep.overall.received, rep.overall.loss_pct))
for _, r in ipairs(reflectors) do r:close() end
