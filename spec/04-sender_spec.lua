local stamp = require "stamp"
local codec = stamp.codec
local socket = require "socket"
local h = require "helper"
local tlv = stamp.tlv

local KEY = h.hex(string.rep("c3", 32))

local pair = h.loopback_pair

local function run(r, s)
  return s:run { pump = function() r:step(0) end }
end

describe("sender and reflector in one process", function()
  it("measures 20 packets with no loss and consistent timestamps", function()
    local r, s = pair({}, { count = 20 })
    local results, sum = run(r, s)
    assert.equal(20, #results)
    assert.same({ 20, 20, 0 }, { sum.sent, sum.received, sum.lost })
    local seen = {}
    for _, x in ipairs(results) do
      assert.is_false(x.lost)
      seen[x.seq] = true
      assert.equal(x.seq, x.refl_seq) -- stateless reflector
      assert.is_true(x.t1 <= x.t2 + 1000 and x.t2 <= x.t3 and x.t3 <= x.t4 + 1000)
      assert.is_true(x.rtt > 0 and x.rtt < 1e9)
      -- exact on Lua 5.3+; absolute times are doubles (~256 ns steps) on Lua 5.1/LuaJIT
      assert.is_true(math.abs(x.t4 - x.t1 - (x.t3 - x.t2) - x.rtt) <= (math.type and 0 or 1024))
      assert.equal(255, x.ttl) -- we send with TTL 255 by default
      assert.equal(255, x.reply_ttl) -- so does the reflector
      assert.equal(44, x.length)
    end
    for i = 0, 19 do assert.is_true(seen[i]) end
    assert.equal(20, r:counters().reflected)
    r:close()
    s:close()
  end)

  it("reports the TTL the reflector saw when the sender uses ttl = 37", function()
    local r, s = pair({}, { count = 3, ttl = 37 })
    local results = run(r, s)
    for _, x in ipairs(results) do assert.equal(37, x.ttl) end
    r:close()
    s:close()
  end)

  it("authenticated mode with the same key on both sides", function()
    local r, s = pair({ auth = true, key = KEY }, { count = 10, auth = true, key = KEY, ssid = 99 })
    local results, sum = run(r, s)
    assert.equal(10, sum.received)
    assert.equal(99, results[1].ssid)
    assert.equal(112, results[1].length)
    assert.is_true(codec.verify(KEY, results[1].packet))
    r:close()
    s:close()
  end)

  it("a wrong key gives 100% loss and the reflector counts every HMAC failure", function()
    local r, s = pair({ auth = true, key = KEY }, { count = 10, auth = true, hmac_key = string.rep("ab", 32), timeout = 0.2 })
    local results, sum = run(r, s)
    assert.same({ 10, 0, 10 }, { sum.sent, sum.received, sum.lost })
    for _, x in ipairs(results) do assert.is_true(x.lost) end
    assert.equal(10, r:counters().drop_hmac)
    r:close()
    s:close()
  end)

  it("declares packets lost after the timeout when nobody answers", function()
    local r, s = pair({}, { count = 5, timeout = 0.1 })
    r:close() -- nobody listens any more
    local results, sum = s:run()
    assert.equal(5, #results)
    assert.same({ 5, 0, 5, 100 }, { sum.sent, sum.received, sum.lost, sum.loss_pct })
    s:close()
  end)

  it("counts duplicate and late replies without reporting them twice", function()
    local u = socket.udp()
    u:setsockname("127.0.0.1", 0)
    u:settimeout(0)
    local _, port = u:getsockname()
    port = tonumber(port)
    local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = port, count = 3, send_delay = 1, timeout = 0.3 })
    local pending_late
    local results = s:run { pump = function()
      local data, ip, p = u:receivefrom()
      if not data then return end
      local t = codec.decode_test(data)
      local reply = codec.encode_reflected { seq = t.seq, sender_seq = t.seq, sender_timestamp_raw = t.timestamp_raw, sender_ee = t.ee,
        timestamp = stamp.core.now(), rx_timestamp = stamp.core.now() }
      if t.seq == 2 then
        pending_late = { reply, ip, p } -- answer only after it was declared lost
      else
        u:sendto(reply, ip, p)
        u:sendto(reply, ip, p) -- duplicate
      end
    end }
    assert(pending_late)
    u:sendto(table.unpack(pending_late))
    h.sleep(0.05)
    s:step(10)
    local c = s:counters()
    assert.equal(3, #results)
    assert.same({ 2, 1, 2, 1 }, { c.received, c.lost, c.duplicates, c.late })
    u:close()
    s:close()
  end)

  it("ignores replies from another address and replies with another SSID", function()
    local u, other = socket.udp(), socket.udp()
    u:setsockname("127.0.0.1", 0)
    other:setsockname("127.0.0.2", 0)
    u:settimeout(0)
    local _, port = u:getsockname()
    local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = tonumber(port), count = 2, send_delay = 1,
      timeout = 0.2, ssid = 7 })
    local results = s:run { pump = function()
      local data, ip, p = u:receivefrom()
      if not data then return end
      local t = codec.decode_test(data)
      local function reply(ssid)
        return codec.encode_reflected { seq = t.seq, sender_seq = t.seq, ssid = ssid, sender_timestamp_raw = t.timestamp_raw, sender_ee = t.ee,
          timestamp = stamp.core.now(), rx_timestamp = stamp.core.now() }
      end
      if t.seq == 0 then
        other:sendto(reply(7), ip, p) -- right packet, wrong source address
      else
        u:sendto(reply(8), ip, p) -- right source, wrong SSID
      end
    end }
    local c = s:counters()
    assert.same({ 2, 0, 2, 2 }, { #results, c.received, c.lost, c.drop_invalid })
    u:close()
    other:close()
    s:close()
  end)

  it("PTP timestamps on both sides, and a PTP reflector for an NTP sender", function()
    for _, clocks in ipairs { { "PTP", "PTP" }, { "NTP", "PTP" }, { "PTP", "NTP" } } do
      local r, s = pair({ clock = clocks[2] }, { count = 3, clock = clocks[1] })
      local results = run(r, s)
      for _, x in ipairs(results) do
        assert.equal(clocks[1] == "PTP" and 1 or 0, x.sender_ee.z)
        assert.equal(clocks[2] == "PTP" and 1 or 0, x.refl_ee.z)
        assert.is_true(math.abs(x.fwd) < 1e8, "one-way delay across formats: " .. x.fwd)
      end
      r:close()
      s:close()
    end
  end)

  it("IPv6 loopback, and an IPv4 reflector reached from a dual-stack sender", function()
    local r, s = pair({ local_addr = "::1" }, { count = 3 })
    local _, sum = run(r, s)
    assert.equal(3, sum.received)
    r:close()
    s:close()
    r, s = pair({}, { count = 3, local_addr = "::" })
    _, sum = run(r, s)
    assert.equal(3, sum.received)
    r:close()
    s:close()
  end)

  it("stop() ends an endless run once its packets are answered", function()
    local r, s = pair({}, { count = 0, send_delay = 1 })
    local n = 0
    local results, sum = s:run { pump = function() r:step(0) end, on_result = function()
      n = n + 1
      if n == 5 then s:stop() end
    end }
    assert.is_true(#results >= 5)
    assert.equal(sum.sent, sum.received)
    r:close()
    s:close()
  end)

  it("exposes its fd and next_timeout for a host event loop", function()
    local r, s = pair({}, { count = 2, send_delay = 50 })
    assert.is_true(s:fd() > 2)
    assert.is_true(r:fd() > 2)
    local got = 0
    while not s:done() do
      local t = s:next_timeout()
      assert.is_true(t >= 0)
      r:step(0)
      got = got + #s:step(math.min(t, 5))
    end
    assert.equal(2, got)
    assert.equal(-1, s:next_timeout())
    r:close()
    s:close()
  end)

  it("raises on bad arguments, returns nil, message for unresolvable addresses", function()
    assert.has_error(function() stamp.sender {} end, "bad option 'remote_addr' (required)")
    assert.has_error(function() stamp.sender { remote_addr = "127.0.0.1", count = -5 } end)
    assert.has_error(function() stamp.sender { remote_addr = "127.0.0.1", ttl = 0 } end)
    assert.has_error(function() stamp.sender { remote_addr = "127.0.0.1", clock = "GPS" } end)
    assert.has_error(function() stamp.sender { remote_addr = "127.0.0.1", hmac_key = "xyz" } end)
    assert.has_error(function() stamp.sender("x") end)
    local s, err = stamp.sender { remote_addr = "no-such-host.invalid", remote_port = 9 }
    assert.is_nil(s)
    assert.is_string(err)
  end)

  it("supports to-be-closed variables", function()
    if _VERSION ~= "Lua 5.4" then pending("Lua 5.4 only") return end
    local chunk = assert(load([[
      local stamp = ...
      local r <close> = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0 })
      return r
    ]]))
    local r = chunk(stamp)
    assert.equal("stamp.reflector (closed)", tostring(r))
  end)
end)

describe("every packet accounted for", function()
  local function silent_port()
    local u = socket.udp()
    assert(u:setsockname("127.0.0.1", 0))
    local _, port = u:getsockname()
    return u, tonumber(port)
  end

  it("a flood of 300,000 packets to a silent port gives 300,000 loss records, counters equal to records", function()
    local u, port = silent_port()
    local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = port, count = 300000, send_delay = 0,
      timeout = 0.2 })
    local seen, n, lost = {}, 0, 0
    local results, sum = s:run { keep = false, on_result = function(r)
      assert(not seen[r.seq], "reported twice")
      seen[r.seq] = true
      n = n + 1
      if r.lost then lost = lost + 1 end
    end }
    local c = s:counters()
    assert.equal(0, #results)
    assert.same({ 300000, 300000 }, { n, lost })
    assert.same({ 300000, 0, 300000 }, { c.sent, c.received, c.lost })
    assert.same({ 300000, 300000 }, { sum.sent, sum.lost })
    u:close()
    s:close()
  end)

  it("stop() waits for the packets in flight; stop 'now' reports them as aborted, each once", function()
    local u, port = silent_port()
    local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = port, count = 0, send_delay = 1, timeout = 5 })
    local seen, aborted = {}, 0
    local t0 = stamp.core.mono()
    local results, sum = s:run { stop = function()
      if s:counters().sent >= 20 then return "now" end
    end, on_result = function(r)
      assert(not seen[r.seq])
      seen[r.seq] = true
      if r.aborted then aborted = aborted + 1 end
    end }
    assert.is_true(stamp.core.mono() - t0 < 2e9) -- did not wait for the 5 s timeout
    assert.equal(sum.sent, #results)
    assert.equal(sum.sent, aborted)
    assert.same({ true, 0, 0, sum.sent }, { sum.interrupted, sum.received, sum.lost, sum.aborted })
    for _, r in ipairs(results) do assert.is_false(r.lost) end
    u:close()
    s:close()
  end)

  it("a first stop lets the packets in flight be answered (interrupted, nothing lost)", function()
    local r, s = pair({}, { count = 0, send_delay = 1, timeout = 1 })
    local results, sum = s:run { pump = function() r:step(0) end, stop = function() return s:counters().sent >= 10 end }
    assert.is_true(sum.interrupted)
    assert.same({ sum.sent, 0, 0 }, { sum.received, sum.lost, sum.aborted })
    assert.equal(sum.sent, #results)
    r:close()
    s:close()
  end)

  it("SIGINT waits for outstanding packets; a second SIGINT stops at once with them aborted", function()
    local u, port = silent_port()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(string.format([[
      package.path = %q .. "/lua/?.lua;" .. %q .. "/lua/?/init.lua;" .. package.path
      package.cpath = %q .. "/build/?.so;" .. package.cpath
      local stamp = require "stamp"
      stamp.core.trap_signals()
      local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = %d, count = 0, send_delay = 5,
        timeout = tonumber(arg[1]) })
      print("running")
      io.stdout:flush()
      local _, sum = s:run()
      print(string.format("sent=%%d lost=%%d aborted=%%d interrupted=%%s", sum.sent, sum.lost, sum.aborted,
        tostring(sum.interrupted)))
    ]], h.ROOT, h.ROOT, h.ROOT, port))
    f:close()
    -- one SIGINT: sending stops, the outstanding packets are awaited (0.3 s) and then lost
    local pid, out = h.spawn("lua5.4 " .. script .. " 0.3")
    assert.is_true(h.wait_for(out, "running", 5))
    h.sleep(0.2)
    os.execute("kill -INT " .. pid)
    assert.is_true(h.wait_for(out, "interrupted", 5), h.slurp(out))
    local sent, lost, ab, intr = h.slurp(out):match("sent=(%d+) lost=(%d+) aborted=(%d+) interrupted=(%a+)")
    assert.equal("true", intr)
    assert.is_true(tonumber(sent) > 0)
    assert.same({ sent, "0" }, { lost, ab })
    -- two SIGINTs: stops at once although the timeout is 30 s
    pid, out = h.spawn("lua5.4 " .. script .. " 30")
    assert.is_true(h.wait_for(out, "running", 5))
    h.sleep(0.2)
    os.execute("kill -INT " .. pid)
    h.sleep(0.1)
    os.execute("kill -INT " .. pid)
    assert.is_true(h.wait_for(out, "interrupted", 5), h.slurp(out))
    sent, lost, ab, intr = h.slurp(out):match("sent=(%d+) lost=(%d+) aborted=(%d+) interrupted=(%a+)")
    assert.equal("true", intr)
    assert.same({ sent, "0" }, { ab, lost })
    os.remove(script)
    u:close()
  end)

  it("an error in on_result leaves the rest of the batch queued; the next run() completes the measurement", function()
    local r, s = pair({}, { count = 10, send_delay = 0 })
    local calls = 0
    local ok, err = pcall(s.run, s, { pump = function() r:step(0) end, on_result = function()
      calls = calls + 1
      if calls == 3 then error("boom") end
    end })
    assert.is_false(ok)
    assert.matches("boom", err)
    local seen = {}
    local results, sum = s:run { pump = function() r:step(0) end, on_result = function(x)
      calls = calls + 1
      assert(not seen[x.seq])
      seen[x.seq] = true
    end }
    assert.equal(10, calls) -- 3 before the error (the third raised), 7 after
    assert.equal(10, #results)
    assert.same({ 10, 10, 0 }, { sum.sent, sum.received, sum.lost })
    r:close()
    s:close()
  end)

  it("keep = false: the run keeps no result (nor its octets and decoded TLVs) once on_result returns", function()
    local r, s = pair({}, { count = 2000, send_delay = 0.02, tlvs = { tlv.direct_measurement(), tlv.padding { length = 64 } } })
    local alive = setmetatable({}, { __mode = "k" })
    local n = 0
    local results, sum = s:run { keep = false, pump = function() r:step(0) end, on_result = function(x)
      alive[x] = true
      n = n + 1
    end }
    assert.same({ 0, 2000, 2000 }, { #results, n, sum.received })
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(alive))
    r:close()
    s:close()
  end)

  it("refuses wait times C cannot hold and NaN", function()
    local r, s = pair({}, { count = 1 })
    assert.has_error(function() s:step(2 ^ 31) end)
    assert.has_error(function() s:step(0 / 0) end)
    assert.has_error(function() s:step(1.5) end)
    r:close()
    s:close()
  end)
end)

describe("duration", function()
  it("duration alone sends the packets scheduled within it; with count, the first limit wins", function()
    local r, s = pair({}, { duration = 0.1, send_delay = 10 })
    local results, sum = run(r, s)
    assert.same({ 10, 10 }, { sum.sent, #results })
    r:close()
    s:close()
    r, s = pair({}, { duration = 10, count = 3, send_delay = 1 })
    sum = select(2, run(r, s))
    assert.equal(3, sum.sent)
    r:close()
    s:close()
    assert.has_error(function() stamp.sender { remote_addr = "127.0.0.1", duration = 0 / 0 } end)
    assert.has_error(function() stamp.sender { remote_addr = "127.0.0.1", duration = -1 } end)
  end)

  it("stamp --duration S sends for S seconds instead of --count packets", function()
    local pid, out, port = h.cli_reflector()
    local code, o = h.run(string.format("%s -r 127.0.0.1 -p %d -o 0 --duration 0.3 -d 10", h.STAMP, port))
    assert.equal(0, code, o)
    assert.matches("Packets sent: 30\n", o)
    code, o = h.run(string.format("%s -r 127.0.0.1 -p %d -o 0 --duration 5 -c 4 -d 1", h.STAMP, port))
    assert.equal(0, code, o)
    assert.matches("Packets sent: 4\n", o)
    code = h.run(string.format("%s -r 127.0.0.1 -p %d --duration nan", h.STAMP, port))
    assert.equal(2, code)
    h.stop(pid)
    os.remove(out)
  end)
end)

describe("sender conformance (RFC 8762 / TWAMP-Light, RFC 9534, RFC 8972 reply flags)", function()
  -- A scripted reflector: answer(test, data) returns the reply octets (or nil for none).
  local function scripted(scfg, answer)
    local u = socket.udp()
    assert(u:setsockname("127.0.0.1", 0))
    u:settimeout(0)
    local _, port = u:getsockname()
    scfg.remote_addr, scfg.remote_port = "127.0.0.1", tonumber(port)
    scfg.send_delay = scfg.send_delay or 1
    scfg.timeout = scfg.timeout or 0.3
    local s = assert(stamp.sender(scfg))
    local results, sum = s:run { pump = function()
      local data, ip, p = u:receivefrom()
      if not data then return end
      local t = codec.decode_test(data)
      local reply = answer(t, data)
      if reply then u:sendto(reply, ip, p) end
    end }
    u:close()
    local c = s:counters()
    s:close()
    return results, sum, c
  end

  local function reflected(t, extra)
    local p = { seq = t.seq, sender_seq = t.seq, sender_timestamp_raw = t.timestamp_raw, sender_ee = t.ee, timestamp = stamp.core.now(),
      rx_timestamp = stamp.core.now(), sender_ttl = 64 }
    for k, v in pairs(extra or {}) do p[k] = v end
    return codec.encode_reflected(p)
  end

  it("accepts TWAMP-Light replies of 38 octets (zero-filled, Sender TTL unknown), refuses 35", function()
    local results, sum = scripted({ count = 5 }, function(t) return reflected(t):sub(1, 38) end)
    assert.same({ 5, 5, 0 }, { sum.sent, sum.received, sum.lost })
    for _, r in ipairs(results) do
      assert.equal(38, r.length)
      assert.is_nil(r.ttl)
      assert.is_true(r.rtt >= 0 and r.rtt < 1e9)
    end
    local _, sum2, c = scripted({ count = 3, timeout = 0.1 }, function(t) return reflected(t):sub(1, 35) end)
    assert.same({ 0, 3, 3 }, { sum2.received, sum2.lost, c.drop_invalid })
  end)

  it("RFC 9534: discards replies whose Micro-session IDs do not match what it sent", function()
    local ids = { { 5, 9 }, { 6, 9 }, { 5, 8 }, { 5, 9 } } -- right, wrong sender ID, wrong reflector ID, right
    local results, _, c = scripted({ count = 4, timeout = 0.2, tlvs = { tlv.micro_session { sender_id = 5, reflector_id = 9 } } },
      function(t)
        local id = ids[t.seq + 1]
        return reflected(t, { tlvs = { { type = 11, flags = 0, sender_id = id[1], reflector_id = id[2] } } })
      end)
    local got = {}
    for _, r in ipairs(results) do if not r.lost then got[#got + 1] = r.seq end end
    table.sort(got)
    assert.same({ 0, 3 }, got)
    assert.equal(2, c.drop_invalid)
    -- a reflector ID of 0 sent (unknown) accepts the reflector's own
    local _, sum = scripted({ count = 2, tlvs = { tlv.micro_session { sender_id = 5 } } }, function(t)
      return reflected(t, { tlvs = { { type = 11, flags = 0, sender_id = 5, reflector_id = 77 } } })
    end)
    assert.equal(2, sum.received)
  end)

  it("RFC 8972 reply flags: a TLV marked I makes every TLV unusable, after M none that follow", function()
    local dm = { type = 5, flags = 0, s_txc = 1, r_rxc = 1, r_txc = 1 }
    local cases = {
      { { dm }, 1 },                                                        -- usable
      { { { type = 5, flags = tlv.I, s_txc = 1, r_rxc = 1, r_txc = 1 } }, 0 }, -- I: none
      { { { type = 3, flags = tlv.M }, dm }, 0 },                           -- M first: nothing after it
      { { dm, { type = 3, flags = tlv.M } }, 1 },                           -- M after DM: DM still usable
      { { dm, { type = 4, flags = tlv.I } }, 0 },                           -- I anywhere: none
    }
    for _, case in ipairs(cases) do
      local results = scripted({ count = 1, tlvs = { tlv.direct_measurement() } }, function(t)
        return reflected(t, { tlvs = case[1] })
      end)
      local r = results[1]
      assert.is_false(r.lost)
      assert.equal(#case[1], #r.tlv_list) -- every TLV is shown
      assert.equal(case[2] == 1, r.tlvs.direct_measurement ~= nil)
      assert.equal(#case[1] - case[2], r.tlv_ignored or 0)
    end
    -- the loss direction does not come from a Direct Measurement TLV marked I
    local _, sum = scripted({ count = 3, tlvs = { tlv.direct_measurement() } }, function(t)
      return reflected(t, { tlvs = { { type = 5, flags = tlv.I, s_txc = 1, r_rxc = 1, r_txc = 1 } } })
    end)
    local d = sum.loss and sum.loss.direction
    assert.is_true(d == nil or d.method ~= "direct_measurement")
  end)

  it("a truncated last TLV: tlv_ignored never exceeds the TLVs listed (review 10, finding 13)", function()
    local results = scripted({ count = 1, tlvs = { tlv.direct_measurement() } }, function(t)
      -- a Direct Measurement TLV marked M, then a header announcing 14,780 octets that are not there
      return reflected(t, { tlvs = { { type = 5, flags = tlv.M, s_txc = 1, r_rxc = 1, r_txc = 1 } } }) .. "\0\163\57\188"
        .. "\64\5\0\16" .. string.rep("Z", 10) -- and a Direct Measurement TLV marked M, 10 of its 16 octets
    end)
    local r = results[1]
    assert.is_false(r.lost)
    assert.is_true((r.tlv_ignored or 0) <= #r.tlv_list, (r.tlv_ignored or 0) .. " ignored of " .. #r.tlv_list)
    local acc = stamp.stats.from_core()
    acc:add(r) -- the C accumulator takes every result the sender produces
    assert.equal(1, acc:summary().received)
  end)

  it("authenticated mode: reply TLVs without a valid HMAC TLV are not used", function()
    local results = scripted({ count = 1, auth = true, key = KEY, tlvs = { tlv.direct_measurement(), tlv.hmac() } },
      function(_, data)
        local tt = codec.decode_test(data, "auth")
        local p = { seq = tt.seq, sender_seq = tt.seq, sender_timestamp_raw = tt.timestamp_raw, sender_ee = tt.ee,
          timestamp = stamp.core.now(), rx_timestamp = stamp.core.now(), sender_ttl = 64,
          tlvs = { { type = 5, flags = 0, s_txc = 1, r_rxc = 1, r_txc = 1 } } } -- HMAC TLV stripped
        return codec.encode_reflected(p, "auth", KEY)
      end)
    local r = results[1]
    assert.is_false(r.lost)
    assert.is_nil(r.tlvs.direct_measurement)
    assert.equal(1, r.tlv_ignored)
  end)
end)
