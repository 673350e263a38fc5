#!/usr/bin/env lua5.4
-- DSCP sweep with the Class of Service TLV: for each DSCP, what the reflector
-- saw (DSCP2) and what the reply carried back (read from the reply's IP header).
-- Run from the repository root:  lua5.4 examples/dscp_sweep.lua [packets]
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local stamp = require "stamp"
local tlv = stamp.tlv

local count = tonumber(arg and arg[1]) or 5
local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0 })
local host, port = r:local_addr()

local sessions = {}
for _, dscp in ipairs { 0, 10, 18, 26, 34, 46, 48 } do
  sessions[#sessions + 1] = { name = "dscp" .. dscp, remote_addr = host, remote_port = port, count = count,
    send_delay = 5, timeout = 1, tlvs = { tlv.cos { dscp = dscp } } }
end

local seen = {}
local rep = assert(stamp.campaign {
  sessions = sessions, reflectors = { r },
  on_result = function(name, res)
    if not res.lost then
      seen[name] = { dscp2 = res.tlvs.cos.dscp2, rp = res.tlvs.cos.rp, reply = res.reply_tos and math.floor(res.reply_tos / 4) }
    end
  end,
})
print(string.format("%-8s %8s %8s %8s %6s %10s", "session", "DSCP1", "DSCP2", "reply", "RP", "rtt avg ms"))
for i, s in ipairs(rep.sessions) do
  local v = seen[s.name] or {}
  print(string.format("%-8s %8d %8s %8s %6s %10.3f", s.name, sessions[i].tlvs[1].dscp1, tostring(v.dscp2),
    tostring(v.reply), tostring(v.rp), s.summary.rtt and s.summary.rtt.mean / 1e6 or 0))
end
r:close()
