#!/usr/bin/env lua5.4
-- The stamp reflector as bench/run measures it: stamp_reflector.lua PORT MODE, MODE one of
-- open (RFC 8972 TLV processing on, the default), chain (the same; the load carries the TLVs),
-- auth (authenticated mode with the bench key, HMAC TLV verified), stateful (per-session
-- sequence numbers, room for 2^21 sessions); an optional third argument WORKERS runs that many
-- SO_REUSEPORT sockets and threads (`--workers`). Prints "ready PORT", runs until SIGINT/SIGTERM,
-- then prints its counters as one line.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local stamp = require "stamp"

local port, mode = tonumber(arg[1]), arg[2] or "open"
local KEY = "000102030405060708090a0b0c0d0e0f"
local o = { local_addr = "127.0.0.1", local_port = port, rcvbuf = 8388608, workers = tonumber(arg[3]) }
if mode == "auth" then
  o.mode = "auth"
  o.hmac_key = KEY
  o.verify_tlv_hmac = true
elseif mode == "stateful" then
  o.stateful = true
  o.max_sessions = 2097152
  o.session_timeout = 3600
elseif mode ~= "open" and mode ~= "chain" then
  error("mode: open, chain, auth or stateful")
end
local r = assert(stamp.reflector(o))
stamp.core.trap_signals()
local _, p = r:local_addr()
io.write("ready ", p, "\n")
io.flush()
r:run()
local c = r:counters()
io.write(string.format("rx %d reflected %d sessions %d\n", c.rx, c.reflected, c.sessions_active or 0))
r:close()
