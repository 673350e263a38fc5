local stamp = require "stamp"
local codec = stamp.codec
local socket = require "socket"
local h = require "helper"

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
      local reply = codec.encode_reflected { seq = t.seq, sender_seq = t.seq, sender_timestamp_raw = t.timestamp_raw,
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
        return codec.encode_reflected { seq = t.seq, sender_seq = t.seq, ssid = ssid, sender_timestamp_raw = t.timestamp_raw,
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
