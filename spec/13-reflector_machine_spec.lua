-- The I/O-free reflector machine (stamp.reflector_machine), and the reflector's trust,
-- abuse-resistance, key, Type 12 and session-table behaviour, mostly driven with exact
-- times through the machine (time is an input), some over loopback sockets.
local stamp = require "stamp"
local core = stamp.core
local codec = stamp.codec
local tlv = stamp.tlv
local socket = require "socket"
local h = require "helper"

local KEY = h.hex(string.rep("5a", 32))
local KEY2 = h.hex(string.rep("a5", 32))
local KEY3 = h.hex(string.rep("33", 32))
local MS, S = 1000000, 1000000000
local T0 = 1800000000 * S -- a fixed UTC time (2027)

-- flag bit test that works on Lua 5.1 too
local function has(flags, bit) return math.floor(flags / bit) % 2 == 1 end

local function machine(cfg)
  return assert(core.reflector_machine(cfg or {}))
end

local function meta(port, o)
  local m = { src_addr = "127.0.0.1", src_port = port or 40000, dst_addr = "127.0.0.1", dst_port = 862, ttl = 64,
    tos = 0, rx_time = T0 }
  for k, v in pairs(o or {}) do m[k] = v end
  return m
end

local function test_packet(p, mode, key)
  return codec.encode_test(p, mode, key)
end

-- TLV flags of the reply, by type
local function flags_of(reply, mode)
  local d = assert(codec.decode_reflected(reply, mode))
  local f = {}
  for _, t in ipairs(d.tlvs or {}) do f[t.type] = t.flags end
  return f
end

describe("stamp.reflector_machine", function()
  it("is a class: one metatable, close, __close, __tostring, counters", function()
    local m = machine()
    assert.matches("^stamp.reflector_machine %(", tostring(m))
    assert.equal(getmetatable(m), getmetatable(machine()))
    assert.is_table(m:counters())
    m:close()
    m:close()
    assert.equal("stamp.reflector_machine (closed)", tostring(m))
    assert.has_error(function() m:input("x", meta()) end)
  end)

  it("answers one datagram with its metadata; time is an input", function()
    local m = machine()
    local req = test_packet { seq = 7, ssid = 0x1234 }
    local r = assert(m:input(req, meta(40001), 5 * S, T0 + 1000))
    assert.equal("127.0.0.1", r.to_addr)
    assert.equal(40001, r.to_port)
    assert.equal("127.0.0.1", r.from_addr)
    assert.equal(0, r.ifindex)
    assert.equal(5 * S, r.due)
    assert.is_false(r.extra)
    local d = assert(codec.decode_reflected(r.data))
    assert.same({ 7, 7, 0x1234, 64 }, { d.seq, d.sender_seq, d.ssid, d.sender_ttl })
    assert.equal(T0, d.rx_timestamp - d.rx_timestamp % 1000 + (d.rx_timestamp % 1000 > 500 and 1000 or 0))
    local c = m:counters()
    assert.same({ 1, 1 }, { c.rx, c.reflected })
    assert.is_false(m:input("short", meta()))
    assert.equal(1, m:counters().drop_short)
  end)

  it("produces byte-identical replies to the socket engine for the same inputs and times", function()
    local configs = {
      {},
      { clock = "PTP" },
      { clock = "PTP", stateful = true },
      { clock = "PTP", auth = true, key = KEY, stateful = true },
      { clock = "PTP", key = KEY },
    }
    local tlvsets = {
      {},
      { tlv.timestamp_info(), tlv.cos { dscp = 10 }, tlv.direct_measurement() },
      { tlv.location(), tlv.direct_measurement(), tlv.hmac() },
    }
    for ci, cfg in ipairs(configs) do
      local mode = cfg.auth and "auth" or "open"
      local rcfg = { local_addr = "127.0.0.1", local_port = 0 }
      for k, v in pairs(cfg) do rcfg[k] = v end
      local r = assert(stamp.reflector(rcfg))
      local m = machine(cfg)
      local host, rport = r:local_addr()
      local u = socket.udp()
      assert(u:setsockname("127.0.0.1", 0))
      local _, uport = u:getsockname()
      u:settimeout(0)
      local n = 0
      for ti, tl in ipairs(tlvsets) do
        for seq = 1, 3 do
          local req = test_packet({ seq = seq + 10 * ti, ssid = 42, timestamp = core.now(), tlvs = tl }, mode, cfg.auth and KEY)
          assert(u:sendto(req, host, rport))
          local reply
          for _ = 1, 100 do
            r:step(10)
            reply = u:receive()
            if reply then break end
          end
          assert.is_string(reply, "config " .. ci)
          local d = assert(codec.decode_reflected(reply, mode))
          local mr = assert(m:input(req, meta(tonumber(uport), { dst_port = rport, ttl = d.sender_ttl, rx_time = d.rx_timestamp_raw }),
            core.mono(), d.timestamp_raw))
          assert.equal(h.tohex(reply), h.tohex(mr.data), "config " .. ci .. " tlvs " .. ti .. " seq " .. seq)
          n = n + 1
        end
      end
      assert.equal(9, n)
      u:close()
      r:close()
    end
  end)

  it("checks its arguments: NaN, huge and fractional numbers raise", function()
    local m = machine()
    local req = test_packet { seq = 1 }
    assert.has_error(function() m:input(req, meta(), 0 / 0) end)
    assert.has_error(function() m:input(req, meta(), 2 ^ 70) end)
    assert.has_error(function() m:input(req, meta(), 1.5) end)
    assert.has_error(function() m:input(req, { src_port = 1 }) end)
    assert.has_error(function() m:input(req, meta(nil, { src_addr = "not an address" })) end)
    assert.has_error(function() m:poll(0, 0, 33) end)
    assert.has_error(function() core.reflector_machine { session_timeout = 0 / 0 } end)
    assert.has_error(function() core.reflector_machine { max_pps = -1 } end)
    assert.has_error(function() core.reflector_machine { keys = { [70000] = KEY } } end)
    assert.has_error(function() core.reflector_machine { auth = true } end)
  end)
end)

describe("reflector trust", function()
  it("step(2^31) and step(NaN) raise instead of blocking forever", function()
    local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0 })
    assert.has_error(function() r:step(2 ^ 31) end)
    assert.has_error(function() r:step(0 / 0) end)
    assert.has_error(function() r:step(math.huge) end)
    assert.equal(0, r:step(0))
    r:close()
  end)

  it("session_timeout 1e10 keeps sessions (no overflow reaping them each second)", function()
    local m = machine { stateful = true, session_timeout = 1e10 }
    assert(m:input(test_packet { seq = 1 }, meta(), 1 * S, T0))
    m:tick(3 * S)
    m:tick(100 * S)
    local c = m:counters()
    assert.same({ 1, 0 }, { c.sessions_active, c.sessions_reaped })
    -- and the socket engine with the same option, over a real second and more
    local r = assert(core.reflector { local_addr = "127.0.0.1", local_port = 0, stateful = true, session_timeout = 1e10 })
    local host, port = r:local_addr()
    local u = socket.udp()
    u:settimeout(0)
    assert(u:sendto(test_packet { seq = 1 }, host, port))
    local t = core.mono()
    while core.mono() - t < 2.2 * S do r:step(100) end
    c = r:counters()
    assert.same({ 1, 1, 0 }, { c.reflected, c.sessions_active, c.sessions_reaped })
    u:close()
    r:close()
  end)

  it("an IPv4 test naming a local IPv6 address as Destination Node is answered, the TLV flagged U", function()
    local r = stamp.reflector { local_addr = "::", local_port = 0 }
    if not r then pending("no dual-stack socket here") return end
    local _, port = r:local_addr()
    local u = socket.udp()
    u:settimeout(0)
    local req = test_packet { seq = 3, ssid = 9, tlvs = { tlv.destination { addr = "::1" } } }
    assert(u:sendto(req, "127.0.0.1", port))
    local reply
    for _ = 1, 100 do
      r:step(10)
      reply = u:receive()
      if reply then break end
    end
    assert.is_string(reply)
    assert.equal(#req, #reply)
    assert.is_true(has(flags_of(reply)[9], tlv.U))
    u:close()
    r:close()
    -- the machine: never a source of the other family
    local m = machine()
    local mr = assert(m:input(req, meta(nil, { dst_addr = "127.0.0.1" })))
    assert.equal("127.0.0.1", mr.from_addr)
    assert.is_true(has(flags_of(mr.data)[9], tlv.U))
  end)

  it("Return Path 'reply on the same link' pins the reply to the arrival interface, or stays U", function()
    local m = machine()
    local req = test_packet { seq = 1, tlvs = { tlv.return_path { reply_same_link = true } } }
    local r = assert(m:input(req, meta(nil, { ifindex = 7 })))
    assert.equal(7, r.ifindex)
    assert.equal("127.0.0.1", r.from_addr)
    assert.is_false(has(flags_of(r.data)[10], tlv.U))
    r = assert(m:input(req, meta(nil, { ifindex = 0 })))
    assert.equal(0, r.ifindex)
    assert.is_true(has(flags_of(r.data)[10], tlv.U))
  end)

  it("a Type 12 Layer-3 group without us is counted as drop_group, not drop_micro", function()
    local m = machine { reflected_max_count = 10, member_link_id = 5 }
    -- count 2, length 0, interval 0, then an L3 Address Group sub-TLV 10.0.0.0/8
    local value = h.hex("0000 0002 00000000") .. h.hex("000b0008 08000000 0a000000")
    local req = test_packet { seq = 1, tlvs = { tlv.raw { type = 12, value = value } } }
    assert.is_false(m:input(req, meta()))
    local c = m:counters()
    assert.same({ 1, 0 }, { c.drop_group, c.drop_micro })
    req = test_packet { seq = 2, tlvs = { tlv.micro_session { sender_id = 1, reflector_id = 6 } } }
    assert.is_false(m:input(req, meta()))
    c = m:counters()
    assert.same({ 1, 1 }, { c.drop_group, c.drop_micro })
  end)
end)

describe("reflector abuse resistance", function()
  it("a max_pps so small that its interval does not fit in 64 bits is no limit lifted (review 911, 11)", function()
    for _, pps in ipairs { 1e-9, 1e-12, 1e-300 } do
      local m = machine { max_pps = pps }
      local n = 0
      for i = 0, 9 do
        local t = (i + 1) * S
        if m:input(test_packet { seq = i }, meta(40000), t, T0 + t) then n = n + 1 end
      end
      assert.equal(1, n, tostring(pps)) -- the first packet (a burst of 1), then nothing for years
    end
  end)

  it("holds a flood from one source to max_pps (within 10 %) while a second source loses nothing", function()
    local m = machine { max_pps = 1000, rate_burst = 10 }
    local a, b = 0, 0
    -- one second: source A sends every 100 us (10,000/s), source B every 10 ms (100/s)
    for i = 0, 9999 do
      local t = 1 * S + i * 100000
      if m:input(test_packet { seq = i }, meta(40000, { src_addr = "127.0.0.2" }), t, T0 + t) then a = a + 1 end
      if i % 100 == 0 and m:input(test_packet { seq = i }, meta(40001, { src_addr = "127.0.0.3" }), t, T0 + t) then
        b = b + 1
      end
    end
    assert.is_true(a >= 900 and a <= 1100, a)
    assert.equal(100, b)
    local c = m:counters()
    assert.equal(10000 - a, c.drop_rate)
    assert.equal(c.rx, c.reflected + c.drop_rate)
    -- set_rate while running: unlimited
    assert.is_true(m:set_rate(0))
    assert(m:input(test_packet { seq = 1 }, meta(40000, { src_addr = "127.0.0.2" }), 2 * S, T0))
  end)

  it("max_sessions evicts the session idle longest", function()
    local m = machine { stateful = true, max_sessions = 3 }
    for p = 1, 4 do assert(m:input(test_packet { seq = 0 }, meta(41000 + p), p * S, T0)) end
    local c = m:counters()
    assert.same({ 3, 4, 1 }, { c.sessions_active, c.sessions_created, c.sessions_evicted })
    -- port 41002..41004 still have their sessions (their next reply is number 1); 41001 starts again at 0
    local r = assert(m:input(test_packet { seq = 1 }, meta(41004), 5 * S, T0))
    assert.equal(1, codec.decode_reflected(r.data).seq)
    r = assert(m:input(test_packet { seq = 1 }, meta(41001), 6 * S, T0))
    assert.equal(0, codec.decode_reflected(r.data).seq)
  end)

  it("counts a replayed authenticated packet, and with drop_replayed does not answer it", function()
    for _, drop in ipairs { false, true } do
      local m = machine { auth = true, key = KEY, drop_replayed = drop }
      local req = test_packet({ seq = 5, ssid = 1, timestamp = T0 }, "auth", KEY)
      assert(m:input(req, meta(), 1 * S, T0))
      local again = m:input(req, meta(), 2 * S, T0)
      if drop then assert.is_false(again) else assert.is_table(again) end
      -- an older number inside the window is new once, then a replay
      local older = test_packet({ seq = 3, ssid = 1, timestamp = T0 }, "auth", KEY)
      assert(m:input(older, meta(), 3 * S, T0))
      local c = m:counters()
      assert.equal(1, c.replayed)
      assert.equal(drop and 1 or 0, c.drop_replayed)
      assert.equal(c.rx, c.reflected + c.drop_replayed)
    end
    -- the age bound: a Sender Timestamp 10 s away from the receive time
    local m = machine { auth = true, key = KEY, drop_replayed = true, replay_max_age = 5 }
    assert.is_false(m:input(test_packet({ seq = 1, timestamp = T0 - 10 * S }, "auth", KEY), meta(), S, T0))
    assert(m:input(test_packet({ seq = 2, timestamp = T0 - 1 * S }, "auth", KEY), meta(), S, T0))
    assert.equal(1, m:counters().drop_replayed)
  end)

  it("per-SSID keys: two SSIDs, two keys, replaced at once while running", function()
    local m = machine { auth = true, keys = { [1] = KEY, [2] = KEY2 } }
    local function ask(ssid, key, seq)
      return m:input(test_packet({ seq = seq, ssid = ssid }, "auth", key), meta(), seq * S, T0)
    end
    local r = assert(ask(1, KEY, 1))
    assert.is_true(codec.verify(KEY, r.data))
    r = assert(ask(2, KEY2, 2))
    assert.is_true(codec.verify(KEY2, r.data))
    assert.is_false(ask(2, KEY, 3))
    assert.is_false(ask(3, KEY, 4)) -- no key for SSID 3, no default
    assert.equal(2, m:counters().drop_hmac)
    assert.is_true(m:set_keys { [1] = KEY3, default = KEY })
    assert.is_false(ask(1, KEY, 5))
    assert(ask(1, KEY3, 6))
    assert(ask(3, KEY, 7))
    assert.is_false(ask(2, KEY2, 8))
    assert.has_error(function() m:set_keys { [1] = "" } end)
    assert(ask(1, KEY3, 9)) -- a refused table leaves the keys as they were
    -- the socket engine has the same method
    local rr = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0, auth = true, keys = { [1] = KEY } })
    assert.is_true(rr:set_keys { [2] = KEY2 })
    rr:close()
  end)
end)

describe("reflector Type 12 execution", function()
  local function drain(m, from, to, step)
    local out = {}
    for t = from, to, step do
      for _, r in ipairs(m:poll(t, T0 + t)) do out[#out + 1] = r end
    end
    return out
  end

  it("sends every granted extra reply (400, not 257), each exactly on its schedule", function()
    local m = machine { reflected_max_count = 1000, reflected_min_interval_ns = 0, stateful = true }
    local req = test_packet { seq = 1, tlvs = { tlv.reflected_control { count = 400, interval_ns = 1000 } } }
    local first = assert(m:input(req, meta(), 1 * S, T0))
    local f12 = flags_of(first.data)[12]
    assert.is_false(has(f12, tlv.C) or has(f12, tlv.U))
    assert.equal(1 * S + 1000, m:next_due())
    -- polled on time: each reply exactly at start + k * interval (RFC 10052 3), no drift
    local extra = drain(m, 1 * S, 1 * S + 500000, 1000)
    assert.equal(399, #extra)
    local seqs = { [codec.decode_reflected(first.data).seq] = true }
    for k, r in ipairs(extra) do
      assert.is_true(r.extra)
      assert.equal(1 * S + k * 1000, r.due)
      local s = codec.decode_reflected(r.data).seq
      assert.is_nil(seqs[s])
      seqs[s] = true
    end
    assert.is_nil(m:next_due())
    local c = m:counters()
    assert.same({ 1, 399 }, { c.reflected, c.extra_replies })
  end)

  it("polled late: one reply per burst and poll, the next a whole interval later (never shorter), back on the grid once due", function()
    local m = machine { reflected_max_count = 1000, reflected_min_interval_ns = 0 }
    local req = test_packet { seq = 1, tlvs = { tlv.reflected_control { count = 5, interval_ns = 1000 } } }
    assert(m:input(req, meta(), 1 * S, T0))
    local late = m:poll(1 * S + 7000, T0 + 7000) -- 6 intervals late: no catch-up burst
    assert.equal(1, #late)
    assert.equal(1 * S + 1000, late[1].due)
    assert.equal(1 * S + 8000, m:next_due())
    assert.equal(0, #m:poll(1 * S + 7999, T0 + 7999))
    assert.equal(1, #m:poll(1 * S + 8000, T0 + 8000))
    assert.equal(1 * S + 9000, m:next_due())
  end)

  it("a non-increasing Sequence Number never starts a new burst", function()
    local m = machine { reflected_max_count = 10, reflected_min_interval_ns = 0 }
    local req = test_packet { seq = 5, tlvs = { tlv.reflected_control { count = 3, interval_ns = MS } } }
    assert(m:input(req, meta(), 1 * S, T0))
    assert.equal(2, #drain(m, 1 * S, 1 * S + 10 * MS, MS))
    local again = assert(m:input(req, meta(), 2 * S, T0))
    assert.is_true(has(flags_of(again.data)[12], tlv.U))
    assert.is_nil(m:next_due())
    assert.equal(0, #drain(m, 2 * S, 2 * S + 10 * MS, MS))
  end)
end)

describe("reflector session table", function()
  it("keeps 10,000 stateful sessions apart, evicts and expires them", function()
    local m = machine { stateful = true, max_sessions = 20000, session_timeout = 10 }
    local req0, req1 = test_packet { seq = 0 }, test_packet { seq = 1 }
    for i = 1, 10000 do
      local src = "127.0." .. math.floor(i / 256) .. "." .. (i % 256)
      assert(m:input(req0, meta(30000 + i % 7, { src_addr = src }), S + i, T0))
    end
    local c = m:counters()
    assert.same({ 10000, 10000 }, { c.sessions_active, c.sessions_created })
    for i = 1, 10000, 97 do
      local src = "127.0." .. math.floor(i / 256) .. "." .. (i % 256)
      local r = assert(m:input(req1, meta(30000 + i % 7, { src_addr = src }), 2 * S, T0))
      assert.equal(1, codec.decode_reflected(r.data).seq, src)
    end
    -- idle past the timeout: reaped incrementally, a bounded amount per tick
    for k = 1, 5 do m:tick(20 * S + k) end
    c = m:counters()
    assert.same({ 0, 10000 }, { c.sessions_active, c.sessions_reaped })
  end)
end)
