#!/usr/bin/env lua5.4
-- Poisson-scheduled run (RFC 2330 / RFC 3432 practice: exponential gaps with a
-- given mean) writing one JSON object per packet as it completes, then one
-- summary object.
-- Run from the repository root:  lua5.4 examples/poisson_jsonl.lua [packets] [file.jsonl]
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local stamp = require "stamp"
local report = stamp.report

local count = tonumber(arg and arg[1]) or 50
local out = arg and arg[2] and assert(io.open(arg[2], "w")) or io.stdout

local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0 })
local host, port = r:local_addr()
local s = assert(stamp.sender { remote_addr = host, remote_port = port, count = count, send_delay = 4,
  schedule = "poisson", timeout = 1 })
local _, summary = s:run {
  pump = function() r:step(0) end,
  on_result = function(res) out:write(report.json(report.packet_record(res)), "\n") end,
}
out:write(report.json(report.summary_record(summary)), "\n")
if out ~= io.stdout then out:close() end
s:close()
r:close()
