local codec = require "stamp.codec"
local h = require "helper"

local KEY = h.hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
local TS = h.hex("e8a1b2c380000000")
local T3 = h.hex("e8a1b2c400000001")
local RX = h.hex("e8a1b2c3c0000000")
local EE = { s = 1, z = 0, scale = 1, mult = 2 } -- 0x8102

describe("codec: Session-Sender packets", function()
  it("encodes the unauthenticated packet octet by octet (44 octets)", function()
    local got = codec.encode_test { seq = 0x01020304, timestamp_raw = TS, ee = EE, ssid = 0xbeef }
    local want = h.hex("01020304 e8a1b2c380000000 8102 beef" .. string.rep("00", 28))
    assert.equal(44, #got)
    assert.equal(h.tohex(want), h.tohex(got))
  end)

  it("encodes and signs the authenticated packet (112 octets, HMAC over 0..95)", function()
    local got = codec.encode_test({ seq = 0x01020304, timestamp_raw = TS, ee = EE, ssid = 0xbeef }, "auth", KEY)
    local want = h.hex("01020304" .. string.rep("00", 12) .. "e8a1b2c380000000 8102 beef" .. string.rep("00", 68)
      .. "351de16dce30244a3ff2e1cdab54cddc")
    assert.equal(112, #got)
    assert.equal(h.tohex(want), h.tohex(got))
    assert.is_true(codec.verify(KEY, got))
  end)

  it("decodes what it encodes, ignoring MBZ content", function()
    local pkt = codec.encode_test { seq = 9, timestamp_raw = TS, ee = EE, ssid = 7 }
    local dirty = pkt:sub(1, 16) .. string.rep("\255", 28) .. "tail"
    local p = assert(codec.decode_test(dirty))
    assert.same({ 9, 7, 1, 2, 48, "tail" }, { p.seq, p.ssid, p.ee.s, p.ee.mult, p.length, p.extra })
    assert.equal(TS, p.timestamp_raw)
  end)

  it("refuses to decode a short buffer", function()
    local p, err = codec.decode_test(string.rep("\0", 43))
    assert.is_nil(p)
    assert.matches("short", err)
    assert.is_nil((codec.decode_test(string.rep("\0", 111), "auth")))
  end)
end)

describe("codec: Session-Reflector packets", function()
  local fields = {
    seq = 7, timestamp_raw = T3, ee = EE, ssid = 0xbeef, rx_timestamp_raw = RX,
    sender_seq = 5, sender_timestamp_raw = TS, sender_ee = { mult = 1 }, sender_ttl = 64,
  }

  it("encodes the unauthenticated packet octet by octet (44 octets)", function()
    local got = codec.encode_reflected(fields)
    local want = h.hex("00000007 e8a1b2c400000001 8102 beef e8a1b2c3c0000000 00000005 e8a1b2c380000000 0001"
      .. " 0000 40 000000")
    assert.equal(h.tohex(want), h.tohex(got))
  end)

  it("encodes and signs the authenticated packet octet by octet (112 octets)", function()
    local got = codec.encode_reflected(fields, "auth", KEY)
    local want = h.hex("00000007" .. string.rep("00", 12) .. "e8a1b2c400000001 8102 beef 00000000"
      .. "e8a1b2c3c0000000" .. string.rep("00", 8) .. "00000005" .. string.rep("00", 12)
      .. "e8a1b2c380000000 0001" .. string.rep("00", 6) .. "40" .. string.rep("00", 15)
      .. "30406f4e386ada2c9f8dfca8feb4b8c1")
    assert.equal(h.tohex(want), h.tohex(got))
  end)

  it("decodes both modes", function()
    for _, mode in ipairs { "open", "auth" } do
      local p = assert(codec.decode_reflected(codec.encode_reflected(fields, mode, mode == "auth" and KEY or nil), mode))
      assert.same({ 7, 0xbeef, 5, 64 }, { p.seq, p.ssid, p.sender_seq, p.sender_ttl })
      assert.equal(RX, p.rx_timestamp_raw)
      assert.equal(TS, p.sender_timestamp_raw)
    end
  end)

  it("agrees with openssl's HMAC-SHA-256", function()
    local code, out = h.run("printf 'hello' | openssl dgst -sha256 -mac HMAC -macopt hexkey:" .. h.tohex(KEY))
    if code ~= 0 then pending("openssl command not available") return end
    local mac = out:match("= (%x+)")
    assert.equal(mac:sub(1, 32), h.tohex(codec.hmac(KEY, "hello")))
  end)

  it("encodes and decodes TLV lists with the packets", function()
    local tlv = require "stamp.tlv"
    local pkt = codec.encode_test { seq = 4, tlvs = { tlv.cos { dscp = 46 }, tlv.raw { type = 200, value = "ab" } } }
    assert.equal(44 + 8 + 6, #pkt)
    assert.equal("80040004b8000000" .. "80c800026162", h.tohex(pkt:sub(45)))
    local p = codec.decode_test(pkt)
    assert.same({ 4, 200 }, { p.tlvs[1].type, p.tlvs[2].type })
    assert.equal(46, p.tlv_map.cos.dscp1)
    assert.is_true(p.tlv_map.type200.u)
    local list, map = codec.decode_tlvs(codec.encode_tlvs { tlv.direct_measurement() })
    assert.same({ 5, 12 }, { list[1].type, map.direct_measurement.length })
    local r = codec.decode_reflected(codec.encode_reflected { seq = 1, tlvs = h.hex("00010002ffff") })
    assert.same({ 1, 2, false }, { r.tlvs[1].type, r.tlvs[1].length, r.tlvs[1].u })
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() codec.encode_test({ seq = -1 }) end)
    assert.has_error(function() codec.encode_test({ seq = 1 }, "bogus") end)
    assert.has_error(function() codec.encode_test({ timestamp_raw = "short" }) end)
  end)
end)
