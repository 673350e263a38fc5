#!/usr/bin/env lua5.4
-- A reflector and a sender in one process, using only the Lua API.
-- Run from the repository root after building:  lua5.4 examples/loopback.lua [count]
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath

local stamp = require "stamp"
local report = require "stamp.report"

local count = tonumber(arg and arg[1]) or 10

-- The reflector listens on an ephemeral loopback port.
local reflector = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0 })
local host, port = reflector:local_addr()
print(string.format("reflector on %s port %d", host, port))

local sender = assert(stamp.sender {
  remote_addr = host, remote_port = port,
  count = count, send_delay = 10, timeout = 1, ssid = 4242,
})

-- One loop drives both: the reflector is stepped between the sender's steps.
local results, summary = sender:run {
  pump = function() reflector:step(0) end,
  on_result = function(r) print(report.packet_line(r)) end,
}
assert(results, summary)

print()
print(report.text_summary(summary))
print(report.reflector_counters(reflector:counters()))
sender:close()
reflector:close()
