local stamp = require "stamp"
local codec = stamp.codec
local socket = require "socket"
local h = require "helper"

local KEY = h.hex(string.rep("5a", 32))
local TS = h.hex("e8a1b2c380000000")

-- Send `data` from a fresh luasocket UDP socket and return the reply (or nil).
local function exchange(r, data, opts)
  opts = opts or {}
  local family = opts.family == "inet6" and socket.udp6 or socket.udp
  local u = opts.sock or family()
  u:settimeout(0)
  local host, port = r:local_addr()
  assert(u:sendto(data, opts.to or host, port))
  local reply, from, fport
  for _ = 1, 50 do
    r:step(20)
    reply, from, fport = u:receivefrom()
    if reply then break end
  end
  if not opts.sock then u:close() end
  return reply, from, fport
end

local function new_reflector(cfg)
  cfg = cfg or {}
  cfg.local_addr = cfg.local_addr or "127.0.0.1"
  cfg.local_port = cfg.local_port or 0
  return assert(stamp.reflector(cfg))
end

describe("reflector over loopback", function()
  local r
  after_each(function() if r then r:close() r = nil end end)

  it("answers an unauthenticated packet correctly octet by octet", function()
    r = new_reflector()
    local req = codec.encode_test { seq = 42, timestamp_raw = TS, ee = 0x8102, ssid = 0x1234 }
    local before = stamp.core.now()
    local reply = assert(exchange(r, req))
    local after = stamp.core.now()
    assert.equal(44, #reply)
    local p = assert(codec.decode_reflected(reply))
    -- the reflector's own fields: timestamps in the exchange window, transmit after receive
    assert.is_true(p.rx_timestamp >= before - 1e6 and p.rx_timestamp <= after + 1e6)
    assert.is_true(p.timestamp >= p.rx_timestamp and p.timestamp <= after + 1e6)
    assert.equal(0, p.ee.z)
    assert.is_true(p.ee.mult >= 1)
    -- everything else is fixed: rebuild the expected packet by hand and compare all 44 octets
    local want = h.hex("0000002a") .. p.timestamp_raw .. reply:sub(13, 14) .. h.hex("1234") .. p.rx_timestamp_raw
      .. h.hex("0000002a") .. TS .. h.hex("8102 0000 40 000000")
    assert.equal(h.tohex(want), h.tohex(reply))
  end)

  it("returns an unknown TLV after the base packet as received (symmetric size)", function()
    r = new_reflector()
    local tail = h.hex("80c80010") .. "0123456789abcdef" -- U set, type 200, 16 octets
    local reply = assert(exchange(r, codec.encode_test { seq = 1 } .. tail))
    assert.equal(64, #reply)
    assert.equal(h.tohex(tail), h.tohex(reply:sub(45)))
  end)

  it("tlv_mode = 'ignore' copies what follows the base packet unprocessed (RFC 8762 4.3 symmetry)", function()
    r = new_reflector { tlv_mode = "ignore" }
    local reply = assert(exchange(r, codec.encode_test { seq = 1 } .. h.hex("80c80010") .. string.rep("x", 16)))
    assert.equal(64, #reply)
    assert.equal("80c80010" .. h.tohex(string.rep("x", 16)), h.tohex(reply:sub(45)))
  end)

  it("answers TWAMP-Light sized packets zero-filled, drops anything under 14 octets", function()
    r = new_reflector()
    local req = codec.encode_test { seq = 3, timestamp_raw = TS, ee = 1 }
    local reply = assert(exchange(r, req:sub(1, 41)))
    assert.equal(44, #reply)
    assert.equal(3, codec.decode_reflected(reply).sender_seq)
    assert.equal(44, #assert(exchange(r, req:sub(1, 14))))
    assert.is_nil(exchange(r, req:sub(1, 13)))
    local c = r:counters()
    assert.same({ 3, 2, 2, 1 }, { c.rx, c.reflected, c.short_padded, c.drop_short })
  end)

  it("drops short packets with strict_packets", function()
    r = new_reflector { strict_packets = true }
    assert.is_nil(exchange(r, codec.encode_test { seq = 3 }:sub(1, 41)))
    assert.equal(1, r:counters().drop_short)
  end)

  it("survives 0-, 1- and 1472-octet random datagrams and keeps working", function()
    r = new_reflector()
    math.randomseed(8762)
    local junk = {}
    for i = 1, 1472 do junk[i] = string.char(math.random(0, 255)) end
    junk = table.concat(junk)
    assert.is_nil(exchange(r, ""))
    assert.is_nil(exchange(r, "\7"))
    local reply = exchange(r, junk)
    assert.equal(1472, #reply) -- the junk is answered as a malformed TLV area, same size
    local ok = assert(exchange(r, codec.encode_test { seq = 77 }))
    assert.equal(77, codec.decode_reflected(ok).sender_seq)
    local c = r:counters()
    assert.same({ 4, 2, 2 }, { c.rx, c.reflected, c.drop_short })
  end)

  it("authenticated: signs its replies and drops packets with a wrong HMAC", function()
    r = new_reflector { auth = true, key = KEY }
    local good = codec.encode_test({ seq = 5, timestamp_raw = TS, ee = 1 }, "auth", KEY)
    local reply = assert(exchange(r, good))
    assert.equal(112, #reply)
    assert.is_true(codec.verify(KEY, reply))
    local p = codec.decode_reflected(reply, "auth")
    assert.same({ 5, 5, 64 }, { p.seq, p.sender_seq, p.sender_ttl })
    local bad = codec.encode_test({ seq = 6, timestamp_raw = TS, ee = 1 }, "auth", h.hex(string.rep("a5", 32)))
    assert.is_nil(exchange(r, bad))
    assert.is_nil(exchange(r, good:sub(1, 60))) -- too short for authenticated mode
    local c = r:counters()
    assert.same({ 3, 1, 1, 1 }, { c.rx, c.reflected, c.drop_hmac, c.drop_short })
  end)

  it("stateful: each session gets its own sequence counter", function()
    r = new_reflector { stateful = true }
    local a, b = socket.udp(), socket.udp()
    a:setsockname("127.0.0.1", 0)
    b:setsockname("127.0.0.1", 0)
    local got = { a = {}, b = {} }
    for i = 1, 4 do
      local ra = assert(exchange(r, codec.encode_test { seq = 100 + i }, { sock = a }))
      got.a[#got.a + 1] = codec.decode_reflected(ra).seq
      if i % 2 == 0 then
        local rb = assert(exchange(r, codec.encode_test { seq = 900 + i }, { sock = b }))
        got.b[#got.b + 1] = codec.decode_reflected(rb).seq
      end
    end
    a:close()
    b:close()
    assert.same({ 0, 1, 2, 3 }, got.a)
    assert.same({ 0, 1 }, got.b)
    assert.equal(2, r:counters().sessions_active)
  end)

  it("stateful: sessions with different SSIDs from one socket are separate", function()
    r = new_reflector { stateful = true }
    local u = socket.udp()
    u:setsockname("127.0.0.1", 0)
    local function refl_seq(seq, ssid)
      local reply = assert(exchange(r, codec.encode_test { seq = seq, ssid = ssid }, { sock = u }))
      return codec.decode_reflected(reply).seq
    end
    local s1, s2, s3 = refl_seq(1, 1), refl_seq(2, 2), refl_seq(3, 1)
    u:close()
    assert.same({ 0, 0, 1 }, { s1, s2, s3 })
  end)

  it("stateful: reaps idle sessions", function()
    r = new_reflector { stateful = true, session_timeout = 0.05 }
    assert(exchange(r, codec.encode_test { seq = 1 }))
    assert.equal(1, r:counters().sessions_active)
    h.sleep(1.2)
    r:step(0)
    local c = r:counters()
    assert.same({ 0, 1 }, { c.sessions_active, c.sessions_reaped })
  end)

  it("works over IPv6 loopback", function()
    r = new_reflector { local_addr = "::1" }
    local reply, from = exchange(r, codec.encode_test { seq = 11 }, { family = "inet6" })
    assert.equal(11, codec.decode_reflected(assert(reply)).sender_seq)
    assert.equal("::1", from)
  end)

  it("dual-stack on '::' answers IPv4 from the address the packet was sent to", function()
    r = new_reflector { local_addr = "::" }
    local reply, from = exchange(r, codec.encode_test { seq = 12 }, { to = "127.0.0.5" })
    assert.equal(12, codec.decode_reflected(assert(reply)).sender_seq)
    assert.equal("127.0.0.5", from)
  end)

  it("wildcard 0.0.0.0 replies from the destination address (IP_PKTINFO)", function()
    r = new_reflector { local_addr = "0.0.0.0" }
    local _, from = exchange(r, codec.encode_test { seq = 13 }, { to = "127.0.0.9" })
    assert.equal("127.0.0.9", from)
  end)

  it("raises on bad options and reports bind failures as nil, message", function()
    assert.has_error(function() stamp.reflector { local_port = 70000 } end, "bad option 'local_port' (integer 0..65535 expected, got 70000)")
    assert.has_error(function() stamp.reflector { auth = true } end)
    assert.has_error(function() stamp.reflector { bogus = 1 } end, "unknown option 'bogus'")
    r = new_reflector()
    local _, port = r:local_addr()
    local r2, err = stamp.reflector { local_addr = "127.0.0.1", local_port = port }
    assert.is_nil(r2)
    assert.matches("in use", err)
  end)

  it("has a __tostring, __close and a safe double close", function()
    r = new_reflector()
    assert.matches("^stamp.reflector %(127.0.0.1 port %d+%)$", tostring(r))
    r:close()
    r:close()
    assert.equal("stamp.reflector (closed)", tostring(r))
    assert.has_error(function() r:step() end)
    r = nil
  end)
end)
