#!/usr/bin/env lua5.4
-- By hand, not in CI: how much a cosocket sender's user-space timestamps add to the RTT.
-- Starts nginx with examples/openresty/nginx.conf (through the spec harness, stamp installed into a
-- temporary prefix) and a `stamp -i` reflector on loopback, then measures 500 packets at 4 ms with
-- resty.stamp (alone, then four at once in the worker) and with the command's sender (kernel T4).
--
--     lua5.4 examples/openresty/accuracy.lua        # from the repository root, after building
package.path = "spec/?.lua;lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local h = require "helper"
local ngxh = require "nginx_helper"
local report = require "stamp.report"

local install = ngxh.install()
local rpid, rout, rport = h.cli_reflector()
local http_port = ngxh.free_tcp_port()
local n = ngxh.start(ngxh.example_conf(http_port, h.free_port(), install), http_port)
local url = string.format("/stamp?host=127.0.0.1&port=%d&count=500&interval_ms=4", rport)

local function command()
  local _, out = h.run(h.STAMP .. " -r 127.0.0.1 -p " .. rport .. " -c 500 -d 4 --output-format json")
  return report.json_decode(out).summary
end

local function line(what, s)
  print(string.format("%-34s RTT median %.3f ms  p99 %.3f ms  received %d", what, s.rtt_ms.median, s.rtt_ms.p99,
    s.received))
end

local ok, err = pcall(function()
  local _, body = n.get(url, 60)
  line("resty.stamp, alone", report.json_decode(body).summary)
  line("stamp command (kernel T4), alone", command())
  local pending = {}
  for i = 1, 4 do pending[i] = n.start_get(url, 60) end
  line("stamp command beside them", command())
  for i = 1, 4 do
    local _, b = pending[i]()
    line("resty.stamp, " .. i .. " of 4 at once", report.json_decode(b).summary)
  end
end)
n.cleanup()
h.stop(rpid)
os.remove(rout)
os.execute("rm -rf " .. install)
assert(ok, err)
