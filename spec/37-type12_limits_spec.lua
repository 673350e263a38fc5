-- Type 12 (RFC 10052 §3, §5) limits of the reflector: the egress MTU (the IP datagram, read from the
-- arrival interface, in a network namespace this spec creates) and the volume limit across all sessions
-- (--reflected-control-max-rate/-volume), through real sockets and the I/O-free machine.
local h = require "helper"
local socket = require "socket"
local stamp = require "stamp"
local codec = stamp.codec
local core = stamp.core

local MS = 1000000

-- A base test packet with one type 12 TLV: replies of `len` octets, `num` of them, `ival` ns apart.
local function t12(seq, len, num, ival)
  return codec.encode_test { seq = seq } .. h.hex(string.format("800c000c %04x%04x %08x 00000000", len, num, ival))
end

local function c_flag(d) return math.floor(d:byte(45) / 16) % 2 == 1 end -- C of the first TLV

-- Run `script` (Lua) inside a new network namespace with lo up at MTU 1280; its stdout, or nil, why.
local function in_netns(script, setup)
  if os.execute("unshare -n true >/dev/null 2>&1") ~= true and os.execute("unshare -n true >/dev/null 2>&1") ~= 0 then
    return nil, "cannot create a network namespace here (unshare -n)"
  end
  local f = os.tmpname()
  local fh = assert(io.open(f, "wb"))
  fh:write(string.format("package.path = %q .. package.path\npackage.cpath = %q .. package.cpath\n",
    h.ROOT .. "/lua/?.lua;" .. h.ROOT .. "/lua/?/init.lua;" .. h.ROOT .. "/spec/?.lua;", h.ROOT .. "/build/?.so;"))
  fh:write(script)
  fh:close()
  local _, out, err = h.run("unshare -n sh -c 'ip link set lo up mtu 1280 && " .. (setup or "") .. " lua5.4 " .. f .. "'")
  os.remove(f)
  return out .. err
end

-- Inside the namespace: a reflector (Lua API, or the command when `cli`) and one request; prints
-- "R <replies> <length of each> <C of the first>".
local NS_COMMON = [[
local h = require "helper"
local socket = require "socket"
local stamp = require "stamp"
local codec = stamp.codec
local function t12(seq, len, num, ival)
  return codec.encode_test { seq = seq } .. h.hex(string.format("800c000c %04x%04x %08x 00000000", len, num, ival))
end
local function ask(addr, port, pkt, step)
  local u = addr:find(":") and socket.udp6() or socket.udp()
  assert(u:setsockname(addr, 0))
  u:settimeout(0)
  assert(u:sendto(pkt, addr, port))
  local got, t0 = {}, socket.gettime()
  repeat
    if step then step() else socket.sleep(0.005) end
    local d = u:receive()
    while d do got[#got + 1] = d; d = u:receive() end
  until socket.gettime() - t0 > 0.3
  u:close()
  local lens = {}
  for i, d in ipairs(got) do lens[i] = #d end
  local c = got[1] and math.floor(got[1]:byte(45) / 16) % 2 == 1
  return string.format("R %d %s %s", #got, table.concat(lens, ","), tostring(c))
end
]]

describe("type 12 egress MTU (RFC 10052 3)", function()
  it("lo at MTU 1280: a request for 1400-octet replies gets one reply with C, the datagram exactly 1280", function()
    local out, why = in_netns(NS_COMMON .. [[
for _, a in ipairs { "127.0.0.1", "::1" } do
  local r = assert(stamp.reflector { local_addr = a, local_port = 0, reflected_max_count = 5 })
  local _, port = r:local_addr()
  print(a, ask(a, port, t12(1, 1400, 3, 1000000), function() r:step(5) end), r:counters().extra_replies)
  -- the MTU is cached: a change is seen after refresh() (SIGHUP) or within a few seconds
  os.execute("ip link set lo mtu 1400")
  print(a .. " cached", ask(a, port, t12(2, 1400, 3, 1000000), function() r:step(5) end))
  r:refresh()
  print(a .. " refreshed", ask(a, port, t12(3, 1400, 3, 1000000), function() r:step(5) end))
  os.execute("ip link set lo mtu 1280")
  r:close()
end
]])
    if not out then
      pending(why)
      return
    end
    -- IPv4: 1280 - 20 - 8 = 1252 octets of UDP payload; IPv6: 1280 - 40 - 8 = 1232
    assert.matches("127.0.0.1\tR 1 1252 true\t0", out, 1, true)
    assert.matches("127.0.0.1 cached\tR 1 1252 true", out, 1, true)
    assert.matches("127.0.0.1 refreshed\tR 1 1372 true", out, 1, true)
    assert.matches("::1\tR 1 1232 true\t0", out, 1, true)
    assert.matches("::1 refreshed\tR 1 1352 true", out, 1, true)
  end)

  it("the route's MTU, not only the interface's: a route to 127.0.0.2 locked at 1000 bounds its replies (review 911, 12)", function()
    local out, why = in_netns(NS_COMMON .. [[
local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0, reflected_max_count = 5 })
local _, port = r:local_addr()
for _, from in ipairs { "127.0.0.2", "127.0.0.1" } do
  local u = socket.udp()
  assert(u:setsockname(from, 0))
  u:settimeout(0)
  assert(u:sendto(t12(1, 1100, 2, 1000000), "127.0.0.1", port))
  local got, t0 = {}, socket.gettime()
  repeat
    r:step(5)
    local d = u:receive()
    while d do got[#got + 1] = d; d = u:receive() end
  until socket.gettime() - t0 > 0.3
  u:close()
  local lens = {}
  for i, d in ipairs(got) do lens[i] = #d end
  print(from, #got, table.concat(lens, ","), got[1] and math.floor(got[1]:byte(45) / 16) % 2 == 1)
end
r:close()
]], "ip route replace local 127.0.0.2 dev lo mtu lock 1000 table local &&")
    if not out then
      pending(why)
      return
    end
    -- 1000 - 20 - 8 = 972 octets of UDP payload toward 127.0.0.2; the interface's 1280 toward 127.0.0.1
    assert.matches("127.0.0.2\t1\t972\ttrue", out, 1, true)
    assert.matches("127.0.0.1\t2\t1100,1100\tfalse", out, 1, true)
  end)

  it("the command: --reflected-control-max-size 1500 above the MTU, the MTU wins (one 1280-octet datagram, C)", function()
    local out, why = in_netns(NS_COMMON .. string.format([[
local port = %d
local pid, rout = h.spawn("%s -i --local-addr 127.0.0.1 --local-port " .. port ..
  " --reflected-control-max-count 5 --reflected-control-max-size 1500")
assert(h.wait_for(rout, "listening", 30), "the reflector did not start: " .. h.slurp(rout))
print(ask("127.0.0.1", port, t12(1, 1400, 3, 1000000)))
print(ask("127.0.0.1", port, t12(2, 1000, 3, 1000000)))
os.execute("kill " .. pid)
]], h.free_port(), h.STAMP))
    if not out then
      pending(why)
      return
    end
    assert.matches("R 1 1252 true\n", out, 1, true)
    assert.matches("R 3 1000,1000,1000 false\n", out, 1, true) -- under the MTU: the burst as asked
  end)

  it("reflector_machine: meta.mtu bounds the reply (IPv4 28, IPv6 48 octets of headers)", function()
    local m = assert(core.reflector_machine { reflected_max_count = 5 })
    local r = m:input(t12(1, 1400, 3, MS), { src_addr = "127.0.0.1", src_port = 4000, mtu = 1280 })
    assert.equal(1252, #r.data)
    assert.is_true(c_flag(r.data))
    assert.equal(math.huge, m:next_due() or math.huge)
    r = m:input(t12(1, 1400, 3, MS), { src_addr = "::1", src_port = 4000, mtu = 1280 })
    assert.equal(1232, #r.data)
    r = m:input(t12(1, 1400, 3, MS), { src_addr = "127.0.0.1", src_port = 4001 }) -- unknown MTU: the size limit
    assert.equal(1400, #r.data)
    assert.is_false(c_flag(r.data))
  end)
end)

describe("type 12 volume limit across all sessions (RFC 10052 3, 5)", function()
  it("40 requests for 5 x 1500 octets from 40 ports: total bounded, the excess answered once with C", function()
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 --reflected-control-max-count 10"
      .. " --reflected-control-max-rate 100000 --reflected-control-max-volume 30000")
    local socks = {}
    local t0 = socket.gettime()
    for i = 1, 40 do
      local u = socket.udp()
      assert(u:setsockname("127.0.0.1", 0))
      u:settimeout(0)
      assert(u:sendto(t12(1, 1500, 5, MS), "127.0.0.1", port))
      socks[i] = u
    end
    local elapsed = socket.gettime() - t0
    local got = {}
    local deadline = socket.gettime() + 1
    repeat
      socket.sleep(0.01)
      for i, u in ipairs(socks) do
        local d = u:receive()
        while d do
          got[i] = got[i] or {}
          got[i][#got[i] + 1] = d
          d = u:receive()
        end
      end
    until socket.gettime() > deadline
    h.stop(pid)
    local s = h.slurp(out)
    os.remove(out)
    local granted, limited, octets = 0, 0, 0
    for i = 1, 40 do
      local g = got[i] or {}
      assert.is_true(#g == 1 or #g == 5, "request " .. i .. ": " .. #g .. " replies (never a cut-short burst)")
      for _, d in ipairs(g) do assert.equal(1500, #d) end
      if #g == 5 then
        granted = granted + 1
        octets = octets + 7500
        assert.is_false(c_flag(g[1]))
      else
        limited = limited + 1
        assert.is_true(c_flag(g[1]))
      end
    end
    -- the volume (30000 octets: 4 bursts) and what the rate refilled while the requests came in
    local bound = 30000 + 100000 * (elapsed + 0.05)
    assert.is_true(octets <= bound, octets .. " octets granted, bound " .. bound)
    assert.is_true(granted >= 4, granted .. " bursts granted")
    assert.equal(40, granted + limited)
    assert.matches("Type 12 requests over a limit %(count, interval, size, %-%-reflected%-control%-max%-rate; answered once, C%): " .. limited, s)
  end)

  it("reflector_machine: the budget refills at the rate; the default is 1250000 octets/s, 125000 deep", function()
    local S = 1000000000
    local m = assert(core.reflector_machine { reflected_max_count = 10, reflected_max_rate = 10000,
      reflected_max_volume = 20000, reflected_max_bursts_per_source = 0 }) -- the budget alone, from one address
    local function burst(port, mono) -- 5 replies of 1000 octets = 5000
      local r = m:input(t12(1, 1000, 5, MS), { src_addr = "127.0.0.1", src_port = port }, mono)
      return not c_flag(r.data)
    end
    local mono = 10 * S
    assert.is_true(burst(1, mono))
    assert.is_true(burst(2, mono))
    assert.is_true(burst(3, mono))
    assert.is_true(burst(4, mono))
    assert.is_false(burst(5, mono))            -- 20000 spent
    assert.is_false(burst(6, mono + S / 4))    -- 2500 back
    assert.is_true(burst(7, mono + S / 2))     -- 5000 back
    assert.equal(2, m:counters().extra_limited)
    assert.is_true(m:set_reflected_limit(0))   -- unlimited
    for p = 10, 30 do assert.is_true(burst(p, mono + S / 2)) end
    -- the default with type 12 on: review 11 item 12 (40 x 5 x 1500 at once) is held to 16 bursts
    local d = assert(core.reflector_machine { reflected_max_count = 10, reflected_max_bursts_per_source = 0 })
    local n = 0
    for p = 1, 40 do
      local r = d:input(t12(1, 1500, 5, MS), { src_addr = "127.0.0.1", src_port = p }, mono)
      if not c_flag(r.data) then n = n + 1 end
    end
    assert.equal(16, n)
    assert.equal(24, d:counters().extra_limited)
    assert.has_error(function() m:set_reflected_limit(-1) end)
    assert.has_error(function() core.reflector_machine { reflected_max_rate = "x" } end)
  end)

  it("reflector_machine: a request for one reply (Number 1) spends the budget too (L octets), C over it", function()
    local S = 1000000000
    local m = assert(core.reflector_machine { reflected_max_count = 10, reflected_max_rate = 10000,
      reflected_max_volume = 10000 })
    local mono = 10 * S
    local granted, octets = 0, 0
    for p = 1, 20 do -- 20 x 1500 octets asked by 44-octet requests, at one instant
      local r = m:input(t12(1, 1500, 1, MS), { src_addr = "127.0.0.1", src_port = p }, mono)
      assert.equal(1500, #r.data)            -- always one reply of the computed length (RFC 10052 3)
      if not c_flag(r.data) then granted, octets = granted + 1, octets + #r.data end
    end
    assert.equal(6, granted)                 -- 6 x 1500 = 9000 of 10000
    assert.is_true(octets <= 10000)
    assert.equal(14, m:counters().extra_limited)
  end)

  it("reflector_machine: a burst refused for want of a slot spends nothing of the budget", function()
    local S = 1000000000
    local m = assert(core.reflector_machine { reflected_max_count = 10, reflected_max_rate = 1,
      reflected_max_volume = 10000, max_bursts = 1 })
    local mono = 10 * S
    local function burst(port, at)
      local r = m:input(t12(1, 1000, 5, MS), { src_addr = "127.0.0.1", src_port = port }, at)
      return not c_flag(r.data)
    end
    assert.is_true(burst(1, mono))             -- 5000 of 10000, the only slot
    assert.is_false(burst(2, mono))            -- no slot: one reply, C (extra_refused)
    local sent = 0 -- polled at each due time (a late poll sends one reply per burst: never a shorter gap)
    for k = 1, 4 do sent = sent + #m:poll(mono + k * MS) end
    assert.equal(4, sent)                      -- the first burst ends, its slot is free
    assert.is_true(burst(3, mono + 10 * MS))   -- the 5000 left
    local c = m:counters()
    assert.same({ 1, 0 }, { c.extra_refused, c.extra_limited })
  end)

  it("SIGHUP applies a changed --reflected-control-max-rate from the config file and logs it", function()
    local port = h.free_port()
    local text = "return { is_reflector = true, local_addr = '127.0.0.1', local_port = %d,"
      .. " reflected_control_max_count = 10, reflected_control_max_rate = %d, reflected_control_max_volume = 8000 }"
    local cfg = os.tmpname()
    local f = assert(io.open(cfg, "wb"))
    f:write(string.format(text, port, 1))
    f:close()
    local pid, out = h.spawn(h.STAMP .. " --config " .. cfg)
    assert.is_true(h.wait_for(out, "listening", 5), h.slurp(out))
    local u = socket.udp()
    assert(u:setsockname("127.0.0.1", 0))
    u:settimeout(0.5)
    local function replies(seq)
      assert(u:sendto(t12(seq, 1000, 5, MS), "127.0.0.1", port))
      local n = 0
      local d = u:receive()
      while d do
        n = n + 1
        u:settimeout(0.1)
        d = u:receive()
      end
      u:settimeout(0.5)
      return n
    end
    assert.equal(5, replies(1))  -- 5000 of 8000
    assert.equal(1, replies(2))  -- over: one reply, C
    f = assert(io.open(cfg, "wb"))
    f:write(string.format(text, port, 1000000))
    f:close()
    os.execute("kill -HUP " .. pid)
    assert.is_true(h.wait_for(out, "reflected_control_max_rate 1 -> 1000000", 5), h.slurp(out))
    h.sleep(0.1)
    assert.equal(5, replies(3))
    h.stop(pid)
    os.remove(cfg)
    os.remove(out)
  end)
end)

describe("type 12 burst slots per source address (review 911, 13)", function()
  -- one source holding every burst slot (requests for 100 replies 1 s apart hold one for 99 s): each
  -- address gets at most reflected_max_bursts_per_source (16) bursts at once, the rest one reply with C
  local function req(m, addr, port, seq)
    local r = assert(m:input(t12(seq, 44, 100, 1000 * MS), { src_addr = addr, src_port = port }, 10 * 1000 * MS))
    return c_flag(r.data)
  end

  it("reflector_machine: 16 at once from one address by default, then C (counted extra_limited); others unaffected", function()
    local m = assert(core.reflector_machine { reflected_max_count = 100, reflected_max_rate = 0 })
    local granted = 0
    for p = 1, 40 do if not req(m, "127.0.0.9", 20000 + p, 1) then granted = granted + 1 end end
    assert.equal(16, granted)
    assert.equal(24, m:counters().extra_limited)
    assert.is_false(req(m, "127.0.0.1", 30000, 1)) -- another address: granted
    assert.is_false(req(m, "127.0.0.9", 20001, 2)) -- a session's new request replaces its own burst: granted
  end)

  it("reflector_machine: reflected_max_bursts_per_source = 2; 0 means no per-address bound", function()
    local m = assert(core.reflector_machine { reflected_max_count = 100, reflected_max_rate = 0,
      reflected_max_bursts_per_source = 2 })
    assert.same({ false, false, true }, { req(m, "::1", 1, 1), req(m, "::1", 2, 1), req(m, "::1", 3, 1) })
    local m0 = assert(core.reflector_machine { reflected_max_count = 100, reflected_max_rate = 0,
      reflected_max_bursts_per_source = 0 })
    local granted = 0
    for p = 1, 40 do if not req(m0, "127.0.0.9", 20000 + p, 1) then granted = granted + 1 end end
    assert.equal(40, granted)
    assert.has_error(function() core.reflector_machine { reflected_max_bursts_per_source = -1 } end)
  end)

  local S = 1000000000
  -- a machine with Type 12 on and `max` sessions; pkt(port, mono[, octets]) from 127.0.0.1:port
  local function session_rig(max)
    local m = assert(core.reflector_machine { reflected_max_count = 10, reflected_min_interval_ns = 0,
      reflected_max_rate = 0, max_sessions = max })
    return m, function(port, mono, p)
      return m:input(p or codec.encode_test { seq = 1 }, { src_addr = "127.0.0.1", src_port = port }, mono)
    end
  end

  it("a session sending a burst is not idle: a full session table evicts another one, the burst goes on", function()
    local m, pkt = session_rig(3)
    assert(pkt(1, S, t12(1, 44, 5, 10 * MS)))     -- A: 4 extra replies, 10 ms apart
    assert(pkt(2, S + 5 * MS))                    -- B
    assert(pkt(3, S + 6 * MS))                    -- C
    local extra = #m:poll(S + 10 * MS)            -- A's first extra reply
    assert(pkt(4, S + 11 * MS))                   -- D: the table is full, the session idle longest (B) goes
    for t = S + 12 * MS, S + 100 * MS, MS do extra = extra + #m:poll(t) end
    local c = m:counters()
    assert.same({ 4, 0, 1 }, { extra, c.extra_cancelled, c.sessions_evicted })
  end)

  it("... even when the table fills between two of its replies (review 911b, 3)", function()
    local m, pkt = session_rig(50)
    assert(pkt(1, S, t12(1, 44, 10, 10 * MS)))    -- A: 9 extra replies, 10 ms apart
    local extra = 0
    for t = S + 1 * MS, S + 120 * MS, MS do
      extra = extra + #m:poll(t)
      if t == S + 15 * MS then -- 60 new sessions between its first two extra replies
        for p = 1, 60 do assert(pkt(100 + p, t)) end
      end
    end
    local c = m:counters()
    assert.same({ 9, 0 }, { extra, c.extra_cancelled })
    assert.is_true(c.sessions_evicted >= 10)
  end)
end)

describe("type 12 burst slots per source, the command and the Lua API (review 911, 13)", function()
  it("--reflected-control-max-bursts-per-source 2: a third session from the same address gets one reply with C", function()
    local pid, log, port = h.cli_reflector("--local-addr 127.0.0.1 --reflected-control-max-count 10 "
      .. "--reflected-control-max-bursts-per-source 2")
    finally(function() h.stop(pid) os.remove(log) end)
    local got = {}
    for i = 1, 3 do
      local u = h.udp_peer(0)
      assert(u:sendto(t12(1, 44, 10, 100 * MS), "127.0.0.1", port))
      socket.sleep(0.05)
      local d = u:receive()
      got[i] = d and c_flag(d)
      u:close()
    end
    assert.same({ false, false, true }, got)
  end)

  h.bad_flag_cases(it, { { "-i --reflected-control-max-bursts-per-source -1", "--reflected-control-max-bursts-per-source" } })

  it("the Lua API refuses a maximum interval below the minimum (every burst would get C)", function()
    assert.has_error(function()
      core.reflector_machine { reflected_max_count = 5, reflected_min_interval_ns = 1000, reflected_max_interval_ns = 10 }
    end, "bad option 'reflected_max_interval_ns' (below reflected_min_interval_ns: every burst would get C; 0 = no bound)")
    assert.is_userdata(core.reflector_machine { reflected_max_count = 5, reflected_min_interval_ns = 1000,
      reflected_max_interval_ns = 0 })
  end)
end)
