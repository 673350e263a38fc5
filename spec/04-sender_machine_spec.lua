-- The I/O-free sender machine (stamp.sender_machine): the sender's protocol without a socket.
local stamp = require "stamp"
local core = stamp.core
local codec = stamp.codec
local tlv = stamp.tlv
local socket = require "socket"
local h = require "helper"

local KEY = h.hex(string.rep("5a", 32))
local MS = 1000000

-- A reflected packet answering test packet `data` (open or authenticated mode).
local function reflect(data, mode, key, extra)
  local t = codec.decode_test(data, mode)
  local p = { seq = t.seq, sender_seq = t.seq, ssid = t.ssid, sender_timestamp_raw = t.timestamp_raw, sender_ee = t.ee,
    timestamp = core.now(), rx_timestamp = core.now(), sender_ttl = 64 }
  for k, v in pairs(extra or {}) do p[k] = v end
  return codec.encode_reflected(p, mode, key)
end

local function udp_sink()
  local u = socket.udp()
  assert(u:setsockname("127.0.0.1", 0))
  local _, port = u:getsockname()
  return u, tonumber(port)
end

describe("stamp.sender_machine", function()
  it("builds byte-identical packets to the socket engine for the same inputs and times", function()
    local configs = {
      {},
      -- padding as given octets: each config is encoded once per object, so the octets must not depend on it
      { ssid = 4242, tlvs = "\128\1\0\72" .. string.rep("\0", 72), packet_len = 120 },
      { auth = true, key = KEY, ssid = 7, tlvs = { tlv.direct_measurement(), tlv.hmac() } },
      { clock = "PTP", schedule = "poisson", seed = 99, tlvs = { tlv.timestamp_info(), tlv.cos { dscp = 10 } } },
    }
    for _, cfg in ipairs(configs) do
      local u, port = udp_sink()
      u:settimeout(1)
      local sc = { remote_addr = "127.0.0.1", remote_port = port, count = 6, send_delay = 1, timeout = 0.05 }
      for k, v in pairs(cfg) do sc[k] = v end
      local s = assert(stamp.sender(sc))
      local _, sum = s:run()
      assert.equal(6, sum.sent)
      s:close()
      local m = assert(stamp.sender_machine(sc))
      local mode = cfg.auth and "auth" or "open"
      for i = 0, 5 do
        local wire = assert(u:receive())
        local t = codec.decode_test(wire, mode)
        assert.equal(i, t.seq)
        local pkt, seq = m:build((i + 1) * 1e9, t.timestamp_raw)
        assert.equal(i, seq)
        assert.equal(h.tohex(wire), h.tohex(pkt))
      end
      u:close()
    end
  end)

  it("runs a measurement through a socket the caller owns, with the results of stamp.sender", function()
    local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0 })
    local _, rport = r:local_addr()
    local m = assert(stamp.sender_machine { remote_addr = "127.0.0.1", remote_port = rport, count = 20,
      send_delay = 2, timeout = 1, ssid = 3 })
    local u = socket.udp()
    assert(u:setpeername("127.0.0.1", rport))
    u:settimeout(0)
    local results = {}
    local guard = 0
    while not m:done() and guard < 100000 do
      guard = guard + 1
      for _, pkt in ipairs(m:build_due(core.mono())) do assert(u:send(pkt)) end
      r:step(1)
      local data = u:receive()
      if data then
        local x = m:reply(data, core.now(), 255, 0)
        if x then results[#results + 1] = x end
      end
      for _, x in ipairs(m:expire(core.mono())) do results[#results + 1] = x end
    end
    assert.is_true(m:done())
    assert.equal(20, #results)
    local c = m:counters()
    assert.same({ 20, 20, 0 }, { c.sent, c.received, c.lost })
    -- exactly the keys of a stamp.sender result
    local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = rport, count = 1, send_delay = 1, ssid = 3 })
    local sres = s:run { pump = function() r:step(0) end }
    local function keys(t)
      local k = {}
      for name in pairs(t) do k[#k + 1] = name end
      table.sort(k)
      return table.concat(k, " ")
    end
    assert.equal(keys(sres[1]), keys(results[1]))
    assert.is_true(results[1].rtt > 0)
    assert.is_nil(m:next_deadline())
    assert.matches("^stamp.sender_machine %(20 sent, 20 received%)$", tostring(m))
    s:close()
    r:close()
  end)

  it("keeps an exact schedule on the caller's clock: periodic grid anchored at the first packet", function()
    local m = assert(stamp.sender_machine { count = 10, send_delay = 0.25, timeout = 1 })
    local t0 = 5 * 1e9
    assert.equal(0, m:next_deadline()) -- the first packet is due at once
    assert.is_string((m:build(t0)))
    assert.equal(t0 + 250000, m:next_deadline())
    assert.is_nil((m:build(t0 + 249999)))
    assert.is_false(m:due(t0 + 249999))
    assert.is_string((m:build(t0 + 250007))) -- a late wake-up does not shift the grid
    assert.equal(t0 + 500000, m:next_deadline())
    assert.equal(3, #m:build_due(t0 + 1000000)) -- catching up sends what is due (0.5, 0.75, 1 ms), no more
    assert.equal(t0 + 1250000, m:next_deadline())
  end)

  it("duration: sends exactly the packets scheduled before the first one plus the duration", function()
    local m = assert(stamp.sender_machine { duration = 0.001, send_delay = 0.25, timeout = 1 })
    assert.is_string((m:build(1e9)))
    assert.equal(3, #m:build_due(1e9 + 5 * MS)) -- offsets 0.25, 0.5 and 0.75 ms; 1 ms is past the duration
    assert.is_false(m:due(1e9 + 10 * MS))
    assert.equal(1e9 + 1e9, m:next_deadline()) -- only the timeout of the first packet is left
  end)

  it("draws Poisson gaps exactly from the exponential distribution (median ln 2 of the mean)", function()
    local m = assert(stamp.sender_machine { count = 0, send_delay = 1, timeout = 3600, schedule = "poisson", seed = 12345 })
    local now = 1e9
    local gaps, sum = {}, 0
    m:build(now)
    for _ = 1, 4000 do
      local d = m:next_deadline()
      gaps[#gaps + 1] = d - now
      sum = sum + (d - now)
      now = d
      assert.is_string((m:build(now)))
      m:expire(now)
    end
    table.sort(gaps)
    local mean, median = sum / #gaps, gaps[math.floor(#gaps / 2)]
    assert.is_true(math.abs(mean - MS) < 0.06 * MS, "mean " .. mean)
    assert.is_true(math.abs(median - math.log(2) * MS) < 0.06 * MS, "median " .. median)
    assert.is_true(gaps[1] < 0.01 * MS) -- gaps well below a millisecond, no rounding
  end)

  it("ends every packet exactly once: answered, duplicate and late counted, lost after the timeout", function()
    local m = assert(stamp.sender_machine { count = 4, send_delay = 0, timeout = 0.5 })
    local now = 1e9
    local pkts = m:build_due(now)
    assert.equal(4, #pkts)
    local r0 = m:reply(reflect(pkts[1]), nil, 61, 32)
    assert.is_table(r0)
    assert.same({ 0, false, 61, 32, 64 }, { r0.seq, r0.lost, r0.reply_ttl, r0.reply_tos, r0.ttl })
    assert.is_false(m:reply(reflect(pkts[1]))) -- duplicate
    assert.is_false(m:reply("short")) -- invalid
    assert.equal(0, #m:expire(now + 0.5e9 - 1))
    local lost = m:expire(now + 0.5e9)
    assert.equal(3, #lost)
    for i, x in ipairs(lost) do
      assert.same({ i, true }, { x.seq, x.lost })
    end
    assert.is_false(m:reply(reflect(pkts[2]))) -- late
    local c = m:counters()
    assert.same({ 4, 1, 3, 1, 1, 1, 0 }, { c.sent, c.received, c.lost, c.duplicates, c.late, c.drop_invalid, c.aborted })
    assert.is_true(m:done())
  end)

  it("stop() drains outstanding packets; stop{now = true} reports them as aborted, not lost", function()
    local m = assert(stamp.sender_machine { count = 0, send_delay = 1, timeout = 5 })
    local now = 1e9
    local sent = {}
    for i = 0, 9 do sent[#sent + 1] = m:build(now + i * MS) end
    m:stop()
    assert.is_nil((m:build(now + 10 * MS)))
    assert.is_false(m:done())
    assert.is_table(m:reply(reflect(sent[3])))
    assert.equal(9, m:outstanding())
    m:stop { now = true }
    local ab = m:expire(now + 11 * MS)
    assert.equal(9, #ab)
    for _, x in ipairs(ab) do
      assert.is_false(x.lost)
      assert.is_true(x.aborted)
    end
    assert.is_true(m:done())
    local c = m:counters()
    assert.same({ 10, 1, 0, 9 }, { c.sent, c.received, c.lost, c.aborted })
    assert.is_false(m:reply(reflect(sent[5]))) -- after the abort: late
  end)

  it("keeps a record of every packet when far more are in flight than its ring starts with", function()
    local m = assert(stamp.sender_machine { count = 300000, send_delay = 0, timeout = 1 })
    local n = 0
    while true do
      local b = m:build_due(1e9, 100000)
      if #b == 0 then break end
      n = n + #b
    end
    assert.equal(300000, n)
    assert.equal(300000, m:outstanding())
    local lost = m:expire(3e9)
    assert.equal(300000, #lost)
    assert.equal(299999, lost[300000].seq)
    assert.equal(300000, m:counters().lost)
  end)

  it("checks its arguments", function()
    local m = assert(stamp.sender_machine { count = 1 })
    assert.has_error(function() m:build(0 / 0) end)
    assert.has_error(function() m:build(1e300) end)
    assert.has_error(function() m:build(nil, "short") end)
    assert.has_error(function() m:reply(42) end)
    assert.has_error(function() m:reply(string.rep("\0", 44), 0 / 0) end)
    assert.has_error(function() m:reply(string.rep("\0", 44), nil, 300) end)
    assert.has_error(function() m:expire(-1) end)
    assert.has_error(function() stamp.sender_machine { count = -1 } end)
    m:close()
    assert.equal("stamp.sender_machine (closed)", tostring(m))
    assert.has_error(function() m:build() end)
  end)
end)
