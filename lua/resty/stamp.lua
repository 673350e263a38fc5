--- STAMP Session-Sender for OpenResty / nginx + lua-nginx-module (LuaJIT 2.1, lua-resty-core).
--
-- The protocol is `stamp.sender_machine`, the I/O-free sender of the C core: it builds the
-- test packets, keeps the schedule, matches replies and accounts for loss. This module only
-- owns the socket: an `ngx.socket.udp` cosocket. Every wait is that cosocket's `receive`
-- with a timeout up to the machine's next deadline (the next send or the oldest packet's
-- timeout), so the worker's event loop is never blocked and any number of measurements can
-- run at once in one worker, each in its own request or `ngx.timer` / `ngx.thread`.
--
--     local results, summary = require("resty.stamp").measure {
--       host = "192.0.2.1", port = 862, count = 100, interval = 0.01, timeout = 1,
--     }
--     if not results then ngx.log(ngx.ERR, "stamp: ", summary) end
--     ngx.say(summary.rtt.median / 1e6, " ms")
--
-- Timestamps: T1 is the core's clock (CLOCK_REALTIME, ns) read right before the cosocket's
-- `send`, T4 right after its `receive` returns (exact to the ns in the JSON of `json` and
-- `write_json`, see "Exact timestamps" below); both are user-space times, so T4 includes the
-- time nginx takes to come back to this request (its event loop, other requests' Lua code).
-- There are no kernel timestamps, TTL or TOS of replies through cosockets (`kernel_rx` is false,
-- `reply_ttl`/`reply_tos` absent). The schedule is held to the millisecond of nginx's timers.
-- @module resty.stamp
local stamp = require "stamp"
local core = stamp.core

local ngx = ngx
local udp = ngx.socket.udp
local ceil, floor, min = math.ceil, math.floor, math.min

local _M = { _VERSION = stamp._VERSION }

-- ---------------------------------------------------------------------------
-- DSCP/ECN: ngx.socket.udp has no option for the TOS byte, so the cosocket's descriptor is
-- found and set with setsockopt through the FFI. socket() returns the lowest free descriptor:
-- the lowest free one just before setpeername is the one setpeername's socket gets (nothing in
-- between yields; the host must be numeric for that). It is verified (a UDP socket connected
-- to that very address and port) before anything is set; when it cannot be, measure fails.
-- ---------------------------------------------------------------------------
local ffi = require "ffi"
local C = ffi.C
for _, decl in ipairs {
  "int socket(int domain, int type, int protocol);",
  "int close(int fd);",
  "int getsockopt(int fd, int level, int name, void *val, uint32_t *len);",
  "int setsockopt(int fd, int level, int name, const void *val, uint32_t len);",
  "int getpeername(int fd, void *addr, uint32_t *len);",
  "int inet_pton(int af, const char *src, void *dst);",
  "char *strerror(int errnum);",
} do
  pcall(ffi.cdef, decl) -- already declared by another module: same libc function
end
local AF_INET, AF_INET6, SOCK_DGRAM, SOL_SOCKET, SO_TYPE, SO_ERROR = 2, 10, 2, 1, 3, 4
local IPPROTO_IP, IP_TOS, IP_TTL, IPPROTO_IPV6, IPV6_TCLASS, IPV6_UNICAST_HOPS = 0, 1, 2, 41, 67, 16
local ECONNREFUSED = 111

-- The address family and octets of a numeric host, or nil.
local function numeric(host)
  local buf = ffi.new("uint8_t[16]")
  if C.inet_pton(AF_INET, host, buf) == 1 then return AF_INET, ffi.string(buf, 4) end
  if C.inet_pton(AF_INET6, host, buf) == 1 then return AF_INET6, ffi.string(buf, 16) end
end

-- The lowest free descriptor right now.
local function lowest_free_fd()
  local fd = C.socket(AF_INET, SOCK_DGRAM, 0)
  if fd >= 0 then C.close(fd) end
  return fd
end

-- True when fd is a UDP socket connected to family/octets/port.
local function is_peer(fd, family, octets, port)
  local t, tl = ffi.new("int[1]"), ffi.new("uint32_t[1]", 4)
  if C.getsockopt(fd, SOL_SOCKET, SO_TYPE, t, tl) ~= 0 or t[0] ~= SOCK_DGRAM then return false end
  local sa, sl = ffi.new("uint8_t[128]"), ffi.new("uint32_t[1]", 128)
  if C.getpeername(fd, sa, sl) ~= 0 then return false end
  local fam = sa[0] + sa[1] * 256 -- sa_family, host byte order (little-endian x86/arm)
  if ffi.abi("be") then fam = sa[0] * 256 + sa[1] end
  if fam ~= family or sa[2] * 256 + sa[3] ~= port then return false end
  local off, len = family == AF_INET and 4 or 8, family == AF_INET and 4 or 16
  return ffi.string(sa + off, len) == octets
end

-- Set an int option of fd: IPPROTO_IP's name4 for IPv4, IPPROTO_IPV6's name6 for IPv6.
local function set_ip_int(fd, family, name4, name6, value)
  local v = ffi.new("int[1]", value)
  if family == AF_INET6 then return C.setsockopt(fd, IPPROTO_IPV6, name6, v, 4) == 0 end
  return C.setsockopt(fd, IPPROTO_IP, name4, v, 4) == 0
end

-- Set the TOS / Traffic Class of fd.
local function set_tos(fd, family, tos)
  return set_ip_int(fd, family, IP_TOS, IPV6_TCLASS, tos)
end

-- Set the TTL / Hop Limit of fd's unicast packets.
local function set_ttl(fd, family, ttl)
  return set_ip_int(fd, family, IP_TTL, IPV6_UNICAST_HOPS, ttl)
end

-- Read (and so clear) fd's pending error, e.g. ECONNREFUSED from an ICMP port unreachable:
-- nginx would otherwise log it as an error on the next receive.
local function take_error(fd)
  local v, l = ffi.new("int[1]"), ffi.new("uint32_t[1]", 4)
  if C.getsockopt(fd, SOL_SOCKET, SO_ERROR, v, l) ~= 0 then return 0 end
  return v[0]
end

-- The host without IPv6 brackets, and the form setpeername wants (IPv6 literals in brackets).
local function host_forms(host)
  local bare = host:match("^%[(.*)%]$") or host
  if bare:find(":", 1, true) then return bare, "[" .. bare .. "]" end
  return bare, bare
end

-- ---------------------------------------------------------------------------
-- Exact timestamps. LuaJIT's numbers are doubles: T1..T4 (ns since 1970, about 2^60) would reach
-- the JSON as the nearest multiple of 256 ns. The core's own time functions (the public C API of
-- stamp.h, exported by the shared object of stamp.core) give them as int64 cdata instead: T1 is
-- read by `stamp_now` and handed to the machine in its 8-octet wire form (which `build` takes
-- exactly); T4 is read by the machine itself (`reply` without t4); the JSON then carries T1 as
-- handed over, T2 and T3 decoded from the reply's octets, and T4 = T1 + RTT + (T3 - T2), the
-- inverse of the core's own rtt = (T4 - T1) - (T3 - T2). Where the shared object cannot be found
-- (`package.searchpath` of stamp.core fails), the doubles are kept.
-- ---------------------------------------------------------------------------
local exact -- nil, or { lib, t1 = function(fmt), decode = function(raw, fmt) }
do
  for _, decl in ipairs {
    "int64_t stamp_now(void);",
    "int stamp_tai_offset(void);",
    "void stamp_ts_encode(uint8_t out[8], int64_t t, int fmt, int tai_offset);",
    "int stamp_ts_decode(const uint8_t in[8], int fmt, int tai_offset, int64_t *t);",
  } do
    pcall(ffi.cdef, decl) -- already declared by another module: the same C API
  end
  local path = package.searchpath and package.searchpath("stamp.core", package.cpath)
  local ok, lib = pcall(ffi.load, path)
  if path and ok then
    local wire, out = ffi.new("uint8_t[8]"), ffi.new("int64_t[1]")
    exact = {
      lib = lib,
      -- the time now in wire format fmt (0 NTP, 1 PTP), and the UTC ns that wire form stands for
      -- (decoded as the machine's `build` decodes it)
      t1 = function(fmt)
        local tai = lib.stamp_tai_offset()
        lib.stamp_ts_encode(wire, lib.stamp_now(), fmt, tai)
        lib.stamp_ts_decode(wire, fmt, tai, out)
        return ffi.string(wire, 8), out[0]
      end,
      -- UTC ns (int64) of an 8-octet wire timestamp in format fmt, as the machine decodes replies
      decode = function(raw, fmt)
        lib.stamp_ts_decode(raw, fmt, fmt == 1 and lib.stamp_tai_offset() or 0, out)
        return out[0]
      end,
    }
  end
end

-- Exact integer text of T1..T4 per result (weak keys: gone with the results), for write_json.
local EXACT = setmetatable({}, { __mode = "k" })

-- The integer text of an int64 cdata ("123LL" -> "123").
local function i64text(v)
  return (tostring(v):match("^%-?%d+"))
end

-- Record the exact T1..T4 of result r (T1: the int64 handed to `build`; auth: the packets' mode).
local function record_exact(r, t1, auth)
  local t = { t1 = i64text(t1) }
  if r.packet and not r.lost and not r.aborted then
    local d = stamp.codec.decode_reflected(r.packet, auth and "auth" or "open")
    if d then
      local fmt = r.refl_ee and r.refl_ee.z == 1 and 1 or 0
      local t2, t3 = exact.decode(d.rx_timestamp_raw, fmt), exact.decode(d.timestamp_raw, fmt)
      t.t2, t.t3, t.t4 = i64text(t2), i64text(t3), i64text(t1 + r.rtt + (t3 - t2))
    end
  end
  EXACT[r] = t
end

-- A packet record's JSON text with T1..T4 (the first of each key: the record's own) made exact.
local function with_exact(text, t)
  local done = {}
  return (text:gsub('"(t[1-4])":(%d+)', function(k)
    if done[k] or not t[k] then return nil end
    done[k] = true
    return '"' .. k .. '":' .. t[k]
  end))
end

-- measure{} options: ours (host, port, interval, timeout) and those passed to stamp.sender_machine.
local PASS = { count = true, ssid = true, auth = true, mode = true, key = true, hmac_key = true, clock = true,
  tlvs = true, packet_len = true, schedule = true, seed = true, dscp = true, ecn = true, tos = true,
  stateful_reflector = false, ttl = false }

-- stamp.sender_machine's options from measure{}'s; raises on a bad argument (level 3: measure's caller).
local function machine_options(o)
  if type(o) ~= "table" then error("bad argument #1 to 'measure' (table expected, got " .. type(o) .. ")", 3) end
  if type(o.host) ~= "string" or o.host == "" then error("bad option 'host' (string expected)", 3) end
  local port = o.port == nil and 862 or o.port
  if type(port) ~= "number" or port ~= floor(port) or port < 1 or port > 65535 then
    error("bad option 'port' (integer 1..65535 expected, got " .. tostring(o.port) .. ")", 3)
  end
  local interval = o.interval == nil and 1 or o.interval
  if type(interval) ~= "number" or interval ~= interval or interval < 0.001 or interval > 3600 then
    error("bad option 'interval' (seconds 0.001..3600 expected, got " .. tostring(o.interval) .. ")", 3)
  end
  local c = { send_delay = interval * 1000, timeout = o.timeout == nil and 1 or o.timeout, count = o.count or 100 }
  for k, v in pairs(o) do
    if PASS[k] then
      c[k] = v
    elseif PASS[k] == nil and k ~= "host" and k ~= "port" and k ~= "interval" and k ~= "timeout" then
      error("unknown option '" .. tostring(k) .. "'", 3)
    end
  end
  if c.count == 0 then error("bad option 'count' (1 or more: a request cannot run until stopped)", 3) end
  if o.ttl ~= nil and (type(o.ttl) ~= "number" or o.ttl ~= floor(o.ttl) or o.ttl < 1 or o.ttl > 255) then
    error("bad option 'ttl' (integer 1..255 expected, got " .. tostring(o.ttl) .. ")", 3)
  end
  return c
end

-- Deliver results into the accumulator and the result list (aborted packets are neither
-- received nor lost: kept in the results, left out of the statistics, as in `sender:run`).
-- ex: nil, or { t1 = {[seq] = exact T1}, auth = }: record the exact T1..T4 of kept results.
local function take(res, acc, results, on_result, keep, ex)
  for i = 1, #res do
    local r = res[i]
    if not r.aborted then acc:add(r) end
    if keep then results[#results + 1] = r end
    if ex then
      local t1 = ex.t1[r.seq]
      ex.t1[r.seq] = nil
      if t1 then record_exact(r, t1, ex.auth) end
    end
    if on_result then on_result(r) end
  end
end

--- Run one STAMP measurement from nginx without blocking the worker.
-- Options: `host` (address or name; names need nginx's `resolver`), `port` (862), `count` (100),
-- `interval` (seconds between packets, 1), `timeout` (seconds a reply may take, 1), and the
-- options of `stamp.sender`: `ssid`, `auth` with `key` or `hmac_key`, `clock`, `tlvs`,
-- `packet_len`, `schedule`, `seed`, `dscp` and `ecn` (or `tos`; these need a numeric `host`),
-- `ttl` (TTL / Hop Limit of the test packets, 255 as the command sends them; set for numeric
-- hosts, a name keeps the system's default and refuses an explicit `ttl`);
-- plus, as for `sender:run`: `stateful_reflector` (a hint for the loss direction), `on_result(result)`
-- (called for each packet as it ends), `keep` (false: keep no per-packet results, for long runs)
-- and `stop()` (return true to stop sending and await the packets in flight, `"now"` to stop at
-- once; outstanding packets then end as aborted).
-- Argument errors raise; a socket that cannot be set up returns `nil, err`.
-- @tparam table o options
-- @treturn table|nil results, one per packet in completion order (as `stamp.sender:run` returns them)
-- @treturn table|string summary (as `stamp.sender:run` returns it: `stamp.stats`), or the error
function _M.measure(o)
  local on_result = type(o) == "table" and o.on_result or nil
  if on_result ~= nil and type(on_result) ~= "function" then error("bad option 'on_result' (function expected)", 2) end
  local stop = type(o) == "table" and o.stop or nil
  if stop ~= nil and type(stop) ~= "function" then error("bad option 'stop' (function expected)", 2) end
  local keep = type(o) ~= "table" or o.keep ~= false
  if type(o) == "table" and o.keep ~= nil and type(o.keep) ~= "boolean" then
    error("bad option 'keep' (boolean expected)", 2)
  end
  local copy = {}
  if type(o) == "table" then
    for k, v in pairs(o) do if k ~= "on_result" and k ~= "stop" and k ~= "keep" then copy[k] = v end end
  else
    copy = o
  end
  local c = machine_options(copy)
  -- ours, not the machine's (machine_options leaves them out of c)
  local stateful, ttl = copy.stateful_reflector, copy.ttl
  local m, merr = stamp.sender_machine(c)
  if not m then return nil, "stamp: " .. tostring(merr) end

  -- the TOS byte the options ask for (dscp/ecn, tos, or a Class of Service TLV's DSCP/ECN)
  local copy2 = {}
  for k, v in pairs(c) do copy2[k] = v end
  copy2.remote_addr = o.host
  local norm = require("stamp.options").sender(copy2, 2)
  local tos = norm.tos
  local port = o.port or 862
  local bare, peer = host_forms(o.host)
  local family, octets = numeric(bare)
  if tos and not family then error("bad option 'host' (a numeric address is needed with dscp, ecn or tos)", 2) end
  if ttl and not family then error("bad option 'host' (a numeric address is needed with ttl)", 2) end
  local fd = family and lowest_free_fd() or nil

  local sock = udp()
  local ok, err = sock:setpeername(peer, port)
  if not ok then return nil, "stamp: " .. tostring(err) end
  if family then
    local function fail(msg)
      sock:close()
      return nil, "stamp: " .. msg
    end
    if fd < 0 or not is_peer(fd, family, octets, port) then
      return fail("cannot find the cosocket's descriptor to set the TTL and TOS byte")
    end
    if not set_ttl(fd, family, ttl or 255) then
      return fail("cannot set the TTL: " .. ffi.string(C.strerror(ffi.errno())))
    end
    if tos and not set_tos(fd, family, tos) then
      return fail("cannot set the TOS byte: " .. ffi.string(C.strerror(ffi.errno())))
    end
  end
  -- receive errors (ICMP port unreachable: "connection refused"): counted, logged once
  local rx_errors = 0
  local function rx_error(msg)
    rx_errors = rx_errors + 1
    if rx_errors == 1 then
      ngx.log(ngx.WARN, "stamp: receive from ", peer, " port ", port, ": ", msg,
        " (counted in rx_errors; not logged again for this measurement)")
    end
  end

  local results, acc = {}, stamp.stats.new { stateful_reflector = stateful }
  -- exact T1..T4 for the JSON of kept results (see `exact`)
  local ex = exact and keep and { t1 = {}, auth = norm.auth } or nil
  local fmt = norm.clock == "PTP" and 1 or 0
  local now, mono, exiting = core.now, core.mono, ngx.worker.exiting
  local interrupted, aborting = false, false
  while not m:done() do
    if not aborting and exiting() then
      -- nginx is shutting down or reloading: stop at once, outstanding packets end as aborted
      interrupted, aborting = true, true
      m:stop(true)
    elseif stop and not aborting then
      local want = stop()
      if want == "now" then
        interrupted, aborting = true, true
        m:stop(true)
      elseif want and not interrupted then
        interrupted = true
        m:stop(false)
      end
    end
    -- send what is due; T1 is read right before each send
    while m:due(mono()) do
      local t1w, t1x
      if ex then t1w, t1x = exact.t1(fmt) end
      local pkt, seq = m:build(mono(), t1w or now())
      if not pkt then break end
      if ex then ex.t1[seq] = t1x end
      local sent, serr = sock:send(pkt)
      if not sent then
        m:tx_error()
        ngx.log(ngx.INFO, "stamp: send: ", serr)
      end
    end
    take(m:expire(mono()), acc, results, on_result, keep, ex)
    if m:done() then break end
    -- wait for a reply until the next deadline (whole ms: the resolution of nginx's timers)
    local dl = m:next_deadline() -- nil: nothing left, 0: act now
    local left = dl and dl ~= 0 and dl - mono() or 0
    if left > 0 then
      local wait_ms = min(1000, ceil(left / 1e6))
      local e = fd and take_error(fd) or 0
      if e ~= 0 then rx_error(e == ECONNREFUSED and "connection refused" or ffi.string(C.strerror(e))) end
      sock:settimeout(wait_ms)
      local data, rerr = sock:receive()
      if data then
        -- T4 right after the receive: read by the machine (exact), or here as a double
        local r = m:reply(data, not ex and now() or nil)
        if r then take({ r }, acc, results, on_result, keep, ex) end
      elseif rerr ~= "timeout" then
        -- e.g. "connection refused" (ICMP port unreachable): the packets in flight will be lost
        rx_error(rerr)
        ngx.sleep(wait_ms / 1000)
      end
    end
  end
  sock:close()
  -- the summary as `sender:run` completes it (`stamp.stats.finish`)
  local summary = acc:finish(m:counters(), interrupted)
  -- receive errors: in the summary when there were any (`sender:run` has no such count)
  if rx_errors > 0 then summary.rx_errors = rx_errors end
  return results, summary
end

--- The JSON record `stamp --output-format json` prints, for results and summary of `measure`
-- (`stamp.report`'s encoder and records).
-- @tparam table results
-- @tparam table summary
-- @treturn string JSON text
function _M.json(results, summary)
  local out = {}
  _M.write_json(results, summary, function(s) out[#out + 1] = s end, false)
  return table.concat(out)
end

--- Write the JSON record of `json` in pieces, so a large one never holds up the worker: `write(text)`
-- is called for the head, for every `chunk` packet records and for the tail, and between pieces
-- the request yields (`ngx.sleep(0.001)`: the event loop polls meanwhile) unless `yield` is false. With the default `write`
-- (`ngx.print` then `ngx.flush(true)`) the response is streamed to the client as it is built.
-- @tparam table results
-- @tparam table summary
-- @tparam[opt] function write receives each piece; a false/nil return (with an error) stops
-- @tparam[opt=true] boolean yield
-- @tparam[opt=100] integer chunk packet records per piece
-- @treturn boolean|nil true, or nil and the error of `write`
function _M.write_json(results, summary, write, yield, chunk)
  local report = stamp.report
  write = write or function(s)
    local ok, err = ngx.print(s)
    if not ok then return nil, err end
    ngx.flush(true) -- nil, "buffering" for HTTP/1.0 clients (lua_http10_buffering): not an error
    return true
  end
  chunk = chunk or 100
  local rec = report.run_record({}, summary)
  local function put(s)
    local ok, err = write(s)
    if ok == nil and err then return nil, err end
    return true
  end
  local ok, err = put(report.json_head(rec.summary))
  if not ok then return nil, err end
  local buf, n = {}, #results
  for i = 1, n do
    local text, t = report.packet_json(results[i]), EXACT[results[i]]
    buf[#buf + 1] = report.json_sep(i) .. (t and with_exact(text, t) or text)
    if #buf >= chunk or i == n then
      ok, err = put(table.concat(buf))
      if not ok then return nil, err end
      buf = {}
      if yield ~= false then ngx.sleep(0.001) end -- a timer: the event loop runs (sleep(0) may not poll)
    end
  end
  return put(report.json_tail(n))
end

--- A JSON error record, `{"error": "..."}` (`stamp.report`'s encoder).
-- @tparam string msg
-- @treturn string JSON text
function _M.json_error(msg)
  return stamp.report.json({ error = tostring(msg) })
end

return _M
