-- Every TLV type: the sender's octets and the reflector's filled octets,
-- compared with hand-built vectors; RFC 8972 4 flag handling.
local stamp = require "stamp"
local tlv = stamp.tlv
local codec = stamp.codec
local h = require "helper"

local KEY = h.hex(string.rep("3c", 32))

-- Run `count` packets through an in-process reflector; results in sequence order.
local function exchange(rcfg, scfg)
  scfg.count = scfg.count or 1
  scfg.send_delay = scfg.send_delay or 5
  scfg.timeout = scfg.timeout or 0.3
  scfg.local_addr = scfg.local_addr or "127.0.0.1"
  local r, s, port = h.loopback_pair(rcfg, scfg)
  local results = s:run { pump = function() r:step(0) end }
  table.sort(results, function(a, b) return a.seq < b.seq end)
  local _, sport = s:local_addr()
  s:close()
  return results, r, port, sport
end

local function reply_tlvs(res) return h.tohex(res.packet:sub(45)) end
local function port_hex(p) return string.format("%04x", p) end

describe("TLV sender encodings (hand-built vectors)", function()
  local cases = {
    { "padding", tlv.raw { type = 1, value = "abcd" }, "80010004 61626364" },
    { "location", tlv.location(), "8002002c 00000000 80040010" .. string.rep("00", 16) .. "80070010" .. string.rep("00", 16) },
    { "timestamp_info", tlv.timestamp_info(), "80030004 00000000" },
    { "cos dscp 46", tlv.cos { dscp = 46 }, "80040004 b8000000" },
    { "direct measurement", tlv.direct_measurement(), "8005000c" .. string.rep("00", 12) },
    { "access report", tlv.access_report { id = 2, return_code = 1 }, "80060004 20010000" },
    { "follow-up", tlv.follow_up(), "80070010" .. string.rep("00", 16) },
    { "hmac", tlv.hmac(), "80080010" .. string.rep("00", 16) },
    { "destination v4", tlv.destination { addr = "192.0.2.1" }, "80090004 c0000201" },
    { "destination v6", tlv.destination { addr = "2001:db8::1" }, "80090010 20010db8000000000000000000000001" },
    { "return path no reply", tlv.return_path { no_reply = true }, "800a0008 80010004 00000000" },
    { "return path address", tlv.return_path { return_addr = "127.0.0.2" }, "800a0008 80020004 7f000002" },
    { "return path srv6", tlv.return_path { srv6 = { "2001:db8::1" } }, "800a0014 80040010 20010db8000000000000000000000001" },
    { "return path mpls", tlv.return_path { mpls = { 0x00010140 } }, "800a0008 80030004 00010140" },
    { "micro-session", tlv.micro_session { sender_id = 3, reflector_id = 9 }, "800b0004 00030009" },
    { "reflected control", tlv.reflected_control { count = 2, length = 300, interval_ns = 1000 }, "800c000c 012c0002 000003e8 00000000" },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      assert.equal(h.tohex(h.hex(c[3])), h.tohex(tlv.encode { c[2] }))
    end)
  end

  it("extra padding is pseudo-random and of the asked length", function()
    local a, b = tlv.encode { tlv.padding { length = 64 } }, tlv.encode { tlv.padding { length = 64 } }
    assert.equal(68, #a)
    assert.equal("80010040", h.tohex(a:sub(1, 4)))
    assert.not_equal(a, b)
  end)

  it("the sender fills S_TxC per packet and signs the HMAC TLV over seq + preceding TLVs", function()
    local socket = require "socket"
    local u = socket.udp()
    u:setsockname("127.0.0.1", 0)
    u:settimeout(1)
    local _, port = u:getsockname()
    local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = tonumber(port), count = 2, send_delay = 1,
      timeout = 0.05, key = KEY, tlvs = { tlv.direct_measurement(), tlv.hmac() } })
    s:run()
    s:close()
    for i = 1, 2 do
      local p = assert(u:receive())
      assert.equal(44 + 16 + 20, #p)
      local dm = h.hex(string.format("8005000c %08x 00000000 00000000", i))
      assert.equal(h.tohex(dm), h.tohex(p:sub(45, 60)))
      assert.equal("80080010", h.tohex(p:sub(61, 64)))
      assert.equal(h.tohex(codec.hmac(KEY, p:sub(1, 4) .. dm)), h.tohex(p:sub(65, 80)))
    end
    u:close()
  end)
end)

describe("TLV reflector fill (hand-built vectors through real sockets)", function()
  it("Extra Padding: U cleared, content returned", function()
    local res = exchange({}, { tlvs = { tlv.raw { type = 1, value = "wxyz" } } })
    assert.equal("00010004" .. h.tohex("wxyz"), reply_tlvs(res[1]))
  end)

  it("Location: ports and IPv4 answers with the IANA sub-TLV codes, lengths kept", function()
    local res, _, rport, sport = exchange({}, { tlvs = { tlv.location() } })
    local want = "0002002c" .. port_hex(rport) .. port_hex(sport) .. "00050010 7f000001" .. string.rep("00", 12)
      .. "00080010 7f000001" .. string.rep("00", 12)
    assert.equal(h.tohex(h.hex(want)), reply_tlvs(res[1]))
    local loc = res[1].tlvs.location
    assert.same({ "127.0.0.1", "127.0.0.1", sport, rport }, { loc.src_addr, loc.dst_addr, loc.src_port, loc.dst_port })
  end)

  it("Location: IPv6 answers (codes 6 and 9), and the real destination on a wildcard bind", function()
    local res, _, rport, sport = exchange({ local_addr = "::" }, { tlvs = { tlv.location() }, local_addr = "::1",
      remote_addr = "::1" })
    local want = "0002002c" .. port_hex(rport) .. port_hex(sport) .. "00060010" .. string.rep("00", 15) .. "01"
      .. "00090010" .. string.rep("00", 15) .. "01"
    assert.equal(h.tohex(h.hex(want)), reply_tlvs(res[1]))
    assert.equal("::1", res[1].tlvs.location.dst_addr)
  end)

  it("Location: location_hide answers with the codes but no addresses or ports", function()
    local res = exchange({ location_hide = true }, { tlvs = { tlv.location() } })
    local want = "0002002c00000000" .. "00050010" .. string.rep("00", 16) .. "00080010" .. string.rep("00", 16)
    assert.equal(want, reply_tlvs(res[1]))
  end)

  it("Location: a Source MAC request is left with U (not visible to a UDP socket)", function()
    local res = exchange({}, { tlvs = { tlv.location { mac = true } } })
    local sub = res[1].tlvs.location.subtlvs[3]
    assert.same({ 1, true }, { sub.type, sub.u })
    assert.is_false(res[1].tlv_list[1].u)
  end)

  it("Timestamp Information: sync source and software timestamping, truthfully", function()
    local res = exchange({}, { tlvs = { tlv.timestamp_info() } })
    local sync = stamp.core.local_ee().s == 1 and "01" or "05"
    assert.equal("00030004" .. sync .. "02" .. sync .. "02", reply_tlvs(res[1]))
  end)

  it("Class of Service: DSCP2/ECN from the received header; the reply carries DSCP1", function()
    local res = exchange({}, { tlvs = { tlv.cos { dscp = 46 } }, dscp = 10, ecn = 1 })
    -- DSCP1=46 DSCP2=10 ECN=1 RP=0: 101110 001010 01 00
    assert.equal("00040004b8a40000", reply_tlvs(res[1]))
    assert.equal(46 * 4, res[1].reply_tos)
    assert.same({ 46, 10, 1, 0 }, { res[1].tlvs.cos.dscp1, res[1].tlvs.cos.dscp2, res[1].tlvs.cos.ecn2, res[1].tlvs.cos.rp })
  end)

  it("Class of Service: a refusing policy sets RP and keeps the received DSCP", function()
    local res = exchange({ cos_refuse = true }, { tlvs = { tlv.cos { dscp = 46 } }, dscp = 10 })
    assert.equal("00040004b8a10000", reply_tlvs(res[1]))
    assert.equal(10 * 4, res[1].reply_tos)
  end)

  it("Direct Measurement: per-session counters, also on a stateless reflector", function()
    local res = exchange({}, { count = 3, tlvs = { tlv.direct_measurement() } })
    for i, r in ipairs(res) do
      assert.equal(string.format("0005000c%08x%08x%08x", i, i, i), reply_tlvs(r))
    end
  end)

  it("Access Report: valid ones echoed with U cleared, an invalid Access ID discarded (returned with U)", function()
    local res = exchange({}, { tlvs = { tlv.access_report { id = 1, return_code = 2 } } })
    assert.equal("0006000410020000", reply_tlvs(res[1]))
    res = exchange({}, { tlvs = { tlv.access_report { id = 3, return_code = 1 } } })
    assert.equal("8006000430010000", reply_tlvs(res[1])) -- RFC 8972 4.6: the TLV is discarded, not malformed
  end)

  it("Follow-Up Telemetry: the previous reply's sequence number and its kernel transmit time", function()
    local res = exchange({ stateful = true }, { count = 3, tlvs = { tlv.follow_up() } })
    assert.equal("00070010" .. string.rep("00", 16), reply_tlvs(res[1]))
    for i = 2, 3 do
      local prev = res[i - 1].packet
      local tl = res[i].packet:sub(45)
      assert.equal("00070010" .. h.tohex(prev:sub(1, 4)), h.tohex(tl:sub(1, 8))) -- previous reflector seq
      assert.equal("02000000", h.tohex(tl:sub(17, 20)))                        -- method 2 (software), reserved 0
      -- the real transmit time: the kernel's, a little after the T3 the reflector wrote into that reply
      local fu = stamp.core.ts_decode(tl:sub(9, 16))
      local t3 = stamp.core.ts_decode(prev:sub(5, 12))
      assert.is_true(fu > t3 and fu - t3 < 5e8, string.format("follow-up %d vs T3 %d", fu, t3))
      assert.equal(fu, res[i].tlvs.follow_up.timestamp)
    end
  end)

  it("HMAC: verified, then re-signed over the reply's sequence number and TLVs", function()
    local res = exchange({ key = KEY, verify_tlv_hmac = true, stateful = true },
      { key = KEY, count = 2, tlvs = { tlv.cos { dscp = 8 }, tlv.hmac() } })
    for _, r in ipairs(res) do
      local p = r.packet
      local tl = p:sub(45)
      assert.equal("00080010", h.tohex(tl:sub(9, 12)))
      assert.equal(h.tohex(codec.hmac(KEY, p:sub(1, 4) .. tl:sub(1, 8))), h.tohex(tl:sub(13, 28)))
      assert.is_true(r.tlv_hmac_ok)
    end
  end)

  it("HMAC: a bad HMAC TLV sets I on every TLV and copies them unchanged", function()
    local res, r = exchange({ key = KEY, verify_tlv_hmac = true }, { key = h.hex(string.rep("99", 32)),
      tlvs = { tlv.cos { dscp = 8 }, tlv.direct_measurement(), tlv.hmac() } })
    local tl = res[1].packet:sub(45)
    assert.equal("a0040004 20000000", h.tohex(tl:sub(1, 4)) .. " " .. h.tohex(tl:sub(5, 8)))
    assert.equal("a005000c", h.tohex(tl:sub(9, 12)))
    assert.equal("00000001" .. string.rep("00", 8), h.tohex(tl:sub(13, 24)))
    assert.equal("a0080010", h.tohex(tl:sub(25, 28)))
    for _, t in ipairs(res[1].tlv_list) do assert.is_true(t.i) end
    assert.equal(1, r:counters().tlv_integrity)
    assert.is_false(res[1].tlv_hmac_ok)
  end)

  it("Destination Node Address: ours is understood, another address keeps U", function()
    local res = exchange({}, { ssid = 7, tlvs = { tlv.destination { addr = "127.0.0.1" } } })
    assert.equal("000900047f000001", reply_tlvs(res[1]))
    res = exchange({}, { ssid = 7, tlvs = { tlv.destination { addr = "192.0.2.1" } } })
    assert.equal("80090004c0000201", reply_tlvs(res[1]))
  end)

  it("Return Path: control code 0 means no reply", function()
    local res, r = exchange({}, { tlvs = { tlv.return_path { no_reply = true } }, timeout = 0.1 })
    assert.is_true(res[1].no_reply) -- asked for none: neither received nor lost
    assert.is_false(res[1].lost)
    assert.same({ 1, 0, 1 }, { r:counters().rx, r:counters().reflected, r:counters().no_reply })
  end)

  it("Return Path: a Return Address is ignored (U) unless explicitly allowed", function()
    local res = exchange({}, { tlvs = { tlv.return_path { return_addr = "127.0.0.2" } }, local_addr = "0.0.0.0" })
    assert.equal("800a0008800200047f000002", reply_tlvs(res[1]))
    res = exchange({ allow_return_address = { "127.0.0.0/24" } },
      { tlvs = { tlv.return_path { return_addr = "127.0.0.2" } }, local_addr = "0.0.0.0" })
    assert.equal("000a0008000200047f000002", reply_tlvs(res[1]))
  end)

  it("Return Path: a Return Address that is not unicast is refused (U, reply to the source) whatever the allow list (review 911, 7)", function()
    for _, a in ipairs { "224.0.0.1", "239.1.2.3", "255.255.255.255", "0.0.0.0", "0.1.2.3", "127.255.255.255", "240.0.0.1" } do
      local res = exchange({ allow_return_address = { "0.0.0.0/0" } },
        { tlvs = { tlv.return_path { return_addr = a } }, local_addr = "0.0.0.0" })
      assert.is_false(res[1].lost, a)
      assert.equal("800a0008", reply_tlvs(res[1]):sub(1, 8), a)
    end
    local res = exchange({ allow_return_address = { "0.0.0.0/0" } },
      { tlvs = { tlv.return_path { return_addr = "127.0.0.2" } }, local_addr = "0.0.0.0" })
    assert.equal("000a0008000200047f000002", reply_tlvs(res[1])) -- unicast: used
  end)

  it("Return Path: SR-MPLS and SRv6 sub-TLVs are answered with U", function()
    local res = exchange({}, { tlvs = { tlv.return_path { srv6 = { "2001:db8::1" } } } })
    assert.equal("800a001480040010", reply_tlvs(res[1]):sub(1, 16))
  end)

  it("Micro-session ID: filled with our member link, mismatches dropped and counted", function()
    local res = exchange({ member_link_id = 9 }, { tlvs = { tlv.micro_session { sender_id = 3 } } })
    assert.equal("000b000400030009", reply_tlvs(res[1]))
    local r
    res, r = exchange({ member_link_id = 9 }, { tlvs = { tlv.micro_session { sender_id = 3, reflector_id = 5 } }, timeout = 0.1 })
    assert.is_true(res[1].lost)
    assert.equal(1, r:counters().drop_micro)
    -- no member link: the reflector returns the TLV with U (spec/17-review11_tlv_spec.lua shows the
    -- octets); that confirms nothing, so our sender drops the reply (RFC 9534 3.2, review 11 item 14)
    res = exchange({}, { tlvs = { tlv.micro_session { sender_id = 3 } }, timeout = 0.1 })
    assert.is_true(res[1].lost)
  end)

  it("Reflected Test Packet Control: off by default (U)", function()
    local res = exchange({}, { tlvs = { tlv.reflected_control { count = 3, length = 100 } } })
    assert.equal("800c000c 00640003 00000000", h.tohex(res[1].packet:sub(45, 48)) .. " "
      .. h.tohex(res[1].packet:sub(49, 52)) .. " " .. h.tohex(res[1].packet:sub(53, 56)))
    assert.equal(60, res[1].length)
  end)

  it("Reflected Test Packet Control: over a cap, one reply with C (RFC 10052 3), of the size cap", function()
    local reflector = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0, reflected_max_count = 2,
      reflected_max_size = 200, reflected_min_interval_ns = 1000000 })
    local socket = require "socket"
    local u = socket.udp()
    u:setsockname("127.0.0.1", 0)
    u:settimeout(0)
    local host, port = reflector:local_addr()
    local req = codec.encode_test { seq = 1 } .. tlv.encode { tlv.reflected_control { count = 10, length = 1000, interval_ns = 0 } }
    u:sendto(req, host, port)
    local replies = {}
    local t0 = os.clock()
    repeat
      reflector:step(5)
      local d = u:receive()
      if d then replies[#replies + 1] = d end
    until os.clock() - t0 > 0.2
    u:close()
    assert.equal(1, #replies)
    for _, d in ipairs(replies) do
      assert.equal(200, #d) -- grown to the size cap with an Extra Padding TLV
      assert.equal("100c000c", h.tohex(d:sub(45, 48))) -- C set, U cleared
      assert.equal("0001", h.tohex(d:sub(61, 62)))
      assert.equal(200 - 60 - 4, tonumber(h.tohex(d:sub(63, 64)), 16))
    end
    assert.equal(0, reflector:counters().extra_replies)
    reflector:close()
  end)
end)

describe("RFC 8972 4 flag rules", function()
  it("an unknown type keeps U and its content", function()
    local res, r = exchange({}, { tlvs = { tlv.raw { type = 200, value = "hello" }, tlv.cos { dscp = 1 } } })
    assert.equal("80c80005" .. h.tohex("hello") .. "0004000404100000", reply_tlvs(res[1]))
    assert.equal(1, r:counters().tlv_unknown)
  end)

  it("a bad length sets M (U cleared: the type is known), stops processing, and the reply is still sent", function()
    local res, r = exchange({}, { tlvs = h.hex("80040003 b80000") .. tlv.encode { tlv.direct_measurement() } })
    assert.equal("40040003b80000" .. "8005000c00000001" .. string.rep("00", 8), reply_tlvs(res[1]))
    assert.equal(1, r:counters().tlv_malformed)
  end)

  it("a TLV running past the end of the packet is marked M (not U: the type is known)", function()
    local res = exchange({}, { tlvs = h.hex("80050010 0000") })
    assert.equal("400500100000", reply_tlvs(res[1]))
    assert.is_true(res[1].tlv_list[1].m)
    assert.is_true(res[1].tlv_list[1].truncated)
  end)

  it("the reply keeps the request's TLV order and length", function()
    local list = { tlv.padding { length = 7 }, tlv.timestamp_info(), tlv.raw { type = 250, value = "z" }, tlv.direct_measurement() }
    local res = exchange({}, { tlvs = list })
    local keys = {}
    for i, t in ipairs(res[1].tlv_list) do keys[i] = t.key end
    assert.same({ "padding", "timestamp_info", "type250", "direct_measurement" }, keys)
    assert.equal(44 + #tlv.encode(list), res[1].length)
  end)

  it("bad TLV specs raise", function()
    assert.has_error(function() tlv.encode { { type = 300 } } end)
    assert.has_error(function() tlv.encode { { key = "nope" } } end)
    assert.has_error(function() tlv.destination { addr = 5 } end)
    assert.has_error(function() tlv.encode { tlv.destination { addr = "not-an-ip" } } end)
    assert.has_error(function() stamp.sender { remote_addr = "127.0.0.1", tlvs = { tlv.hmac() } } end,
      "bad option 'tlvs' (the HMAC TLV needs 'key' or 'hmac_key')")
  end)
end)
