-- Trust (issue 7) with hand-built octets through a real reflector socket:
-- in authenticated mode (and with verify_tlv_hmac) no TLV is obeyed unless a
-- valid HMAC TLV covers it; requests that cannot be honoured are answered
-- with the TLV flagged, never dropped; Type 12 never claims what it did not grant.
local stamp = require "stamp"
local codec = stamp.codec
local h = require "helper"

local KEY = h.hex(string.rep("5a", 32))

local exchange = h.exchange -- hand-built octets to an in-process reflector (spec/helper.lua)

local function hmac_tlv(seq4, covered)
  return h.hex("80080010") .. codec.hmac(KEY, seq4 .. covered)
end

-- The TLVs the attacker would like obeyed: CoS (DSCP1 46), Direct Measurement, Type 12 (3 replies).
local COS = h.hex("80040004 b8000000")
local DM = h.hex("8005000c 00000007 00000000 00000000")
local T12 = h.hex("800c000c 00000003 00000000 00000000")

local function auth_pkt(seq, tlvs)
  return codec.encode_test({ seq = seq }, "auth", KEY) .. tlvs
end

local AUTH = { auth = true, key = KEY, reflected_max_count = 5 }

describe("trust: authenticated mode obeys only TLVs a valid HMAC TLV covers", function()
  it("HMAC TLV stripped: every TLV comes back with I, none acted on, counted", function()
    local tl = COS .. DM .. T12
    local replies, c = exchange(AUTH, auth_pkt(1, tl))
    assert.equal(1, #replies) -- no Type 12 extra replies
    local back = replies[1].data:sub(113)
    -- copied unchanged but for I (sender's U kept): DSCP2 not filled, counters not filled, no grant
    assert.equal(h.tohex(h.hex("a0040004 b8000000" .. "a005000c 00000007 00000000 00000000"
      .. "a00c000c 00000003 00000000 00000000")), h.tohex(back))
    assert.equal(1, c.tlv_integrity)
    assert.equal(0, c.extra_replies)
  end)

  it("TLVs appended after a valid HMAC TLV: I on all, none acted on", function()
    local seq4 = h.hex("00000002")
    local tl = COS .. hmac_tlv(seq4, COS) .. T12
    local replies, c = exchange(AUTH, auth_pkt(2, tl))
    assert.equal(1, #replies)
    local back = replies[1].data:sub(113)
    assert.equal("a0040004b8000000", h.tohex(back:sub(1, 8)))
    assert.equal("a0080010", h.tohex(back:sub(9, 12)))
    assert.equal("a00c000c", h.tohex(back:sub(29, 32)))
    assert.equal(1, c.tlv_integrity)
    assert.equal(0, c.extra_replies)
  end)

  it("HMAC TLV wrong: I on all, none acted on", function()
    local tl = COS .. T12 .. h.hex("80080010") .. string.rep("\0", 16)
    local replies, c = exchange(AUTH, auth_pkt(3, tl))
    assert.equal(1, #replies)
    local back = replies[1].data:sub(113)
    assert.equal("a0040004b8000000", h.tohex(back:sub(1, 8)))
    assert.equal("a00c000c", h.tohex(back:sub(9, 12)))
    assert.equal(1, c.tlv_integrity)
  end)

  it("an HMAC TLV whose Length is not 16: M on it (malformed, not a forgery), I on the TLVs before, none acted on (review 911, 8)", function()
    local seq4 = h.hex("00000004")
    -- a correct 16-octet HMAC followed by 16 zero octets, in a TLV of Length 32
    local tl = COS .. T12 .. h.hex("80080020") .. codec.hmac(KEY, seq4 .. COS .. T12) .. string.rep("\0", 16)
    local replies, c = exchange(AUTH, auth_pkt(4, tl))
    assert.equal(1, #replies)
    local back = replies[1].data:sub(113)
    assert.equal("a0040004b8000000", h.tohex(back:sub(1, 8)))
    assert.equal("a00c000c", h.tohex(back:sub(9, 12)))
    assert.equal("c0080020", h.tohex(back:sub(25, 28))) -- U (as sent) and M
    assert.same({ 1, 0, 0 }, { c.tlv_malformed, c.tlv_integrity, c.extra_replies })
    -- the same with a TLV after it (review 911b, 7): still M on the HMAC TLV
    replies, c = exchange(AUTH, auth_pkt(5, tl .. COS))
    back = replies[1].data:sub(113)
    assert.equal("c0080020", h.tohex(back:sub(25, 28)))
    assert.equal(1, c.tlv_malformed)
  end)

  it("a Return Path 'no reply' without HMAC TLV is not obeyed: the packet is answered with I", function()
    local replies, c = exchange(AUTH, auth_pkt(4, h.hex("800a0008 80010004 00000000")))
    assert.equal(1, #replies)
    assert.equal("a00a0008", h.tohex(replies[1].data:sub(113, 116)))
    assert.same({ 0, 1 }, { c.no_reply, c.tlv_integrity })
  end)

  it("a lone Extra Padding TLV needs no HMAC TLV", function()
    local replies, c = exchange(AUTH, auth_pkt(5, h.hex("80010004 01020304")))
    assert.equal(1, #replies)
    assert.equal("0001000401020304", h.tohex(replies[1].data:sub(113)))
    assert.equal(0, c.tlv_integrity)
  end)

  it("a valid HMAC TLV (Extra Padding may follow it): TLVs acted on, HMAC TLV re-signed", function()
    local seq4 = h.hex("00000006")
    local tl = COS .. DM .. hmac_tlv(seq4, COS .. DM) .. h.hex("80010004 00000000")
    local replies, c = exchange(AUTH, auth_pkt(6, tl))
    assert.equal(1, #replies)
    local d = replies[1].data
    local back = d:sub(113)
    assert.equal("00040004", h.tohex(back:sub(1, 4)))
    assert.equal("0005000c00000007", h.tohex(back:sub(9, 16)))
    assert.equal("00000001", h.tohex(back:sub(17, 20))) -- R_RxC filled
    assert.equal("00080010", h.tohex(back:sub(25, 28)))
    assert.equal(h.tohex(codec.hmac(KEY, d:sub(1, 4) .. back:sub(1, 24))), h.tohex(back:sub(29, 44)))
    assert.equal("0001000400000000", h.tohex(back:sub(45)))
    assert.equal(0, c.tlv_integrity)
  end)

  it("open mode with verify_tlv_hmac: TLVs without an HMAC TLV come back with I", function()
    local pkt = codec.encode_test { seq = 7 } .. COS .. DM
    local replies, c = exchange({ key = KEY, verify_tlv_hmac = true }, pkt)
    assert.equal(1, #replies)
    assert.equal("a0040004b8000000", h.tohex(replies[1].data:sub(45, 52)))
    assert.equal("a005000c00000007" .. string.rep("00", 8), h.tohex(replies[1].data:sub(53)))
    assert.equal(1, c.tlv_integrity)
  end)
end)

describe("trust: the sender in authenticated mode", function()
  it("adds an HMAC TLV after its TLVs (before trailing Extra Padding), signed over seq + TLVs", function()
    local u, port = h.udp_peer(1)
    local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = port, count = 1, send_delay = 1,
      timeout = 0.05, auth = true, key = KEY, tlvs = { stamp.tlv.cos { dscp = 8 }, stamp.tlv.raw { type = 1, value = "pppp" } } })
    s:run()
    s:close()
    local p = assert(u:receive())
    u:close()
    local tl = p:sub(113)
    assert.equal(8 + 20 + 8, #tl)
    assert.equal("80040004", h.tohex(tl:sub(1, 4)))
    assert.equal("80080010", h.tohex(tl:sub(9, 12)))
    assert.equal(h.tohex(codec.hmac(KEY, p:sub(1, 4) .. tl:sub(1, 8))), h.tohex(tl:sub(13, 28)))
    assert.equal("80010004" .. h.tohex("pppp"), h.tohex(tl:sub(29)))
  end)

  it("gets its TLVs processed by an authenticated reflector", function()
    local r, s = h.loopback_pair({ auth = true, key = KEY }, { auth = true, key = KEY, count = 1, local_addr = "127.0.0.1",
      tlvs = { stamp.tlv.direct_measurement() } })
    local res = s:run { pump = function() r:step(0) end }
    s:close()
    assert.equal(0, r:counters().tlv_integrity)
    r:close()
    assert.equal(1, res[1].tlvs.direct_measurement.r_rxc)
  end)

  -- K2 (fuzz_rmach) / review 11 #1: a stateful reflector numbers its replies itself, but the HMAC TLV
  -- of a test packet covers the SENDER's sequence number (RFC 8972 4.8), whatever the reflector's is
  it("gets its TLVs processed by a stateful authenticated reflector when the sequence numbers differ", function()
    local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0, auth = true, key = KEY, stateful = true })
    local host, port = r:local_addr()
    local lport = h.free_port()
    local function one_run()
      local s = assert(stamp.sender { remote_addr = host, remote_port = port, local_addr = "127.0.0.1", local_port = lport,
        count = 3, send_delay = 2, timeout = 1, auth = true, key = KEY, tlvs = { stamp.tlv.direct_measurement() } })
      local res = s:run { pump = function() r:step(0) end }
      s:close()
      return res
    end
    one_run()                 -- reflector's session now at 3, the next sender starts at 0
    local res = one_run()
    local tlv_integrity = r:counters().tlv_integrity
    r:close()
    assert.equal(0, tlv_integrity)
    assert.equal(3, #res)
    for _, x in ipairs(res) do
      assert.equal(3, x.refl_seq - x.seq)
      assert.truthy(x.tlvs.direct_measurement, "the Direct Measurement TLV was not usable")
    end
  end)
end)

describe("fallback: a TLV request that cannot be honoured is answered, flagged", function()
  it("Destination Node Address naming a local IPv6 address in an IPv4 test on a dual-stack socket: U, still answered", function()
    local pkt = codec.encode_test { seq = 1 } .. h.hex("80090010 00000000000000000000000000000001")
    local replies = exchange({ local_addr = "::" }, pkt)
    assert.equal(1, #replies)
    assert.equal("80090010", h.tohex(replies[1].data:sub(45, 48)))
    assert.equal("127.0.0.1", replies[1].from)
  end)

  it("Destination Node Address naming our own IPv4 address: U cleared, the reply comes from it", function()
    local pkt = codec.encode_test { seq = 1 } .. h.hex("80090004 7f000001")
    local replies = exchange({ local_addr = "::" }, pkt)
    assert.equal(1, #replies)
    assert.equal("000900047f000001", h.tohex(replies[1].data:sub(45)))
    assert.equal("127.0.0.1", replies[1].from)
  end)

  it("Destination Node Address naming another of our addresses: U cleared, the reply comes from that address", function()
    local pkt = codec.encode_test { seq = 1 } .. h.hex("80090004 7f000005")
    local replies = exchange({ local_addr = "0.0.0.0" }, pkt, { to = "127.0.0.3" })
    assert.equal(1, #replies)
    assert.equal("000900047f000005", h.tohex(replies[1].data:sub(45)))
    assert.equal("127.0.0.5", replies[1].from)
  end)

  it("Return Path 'reply on the same link': U cleared when the arrival interface is known, reply from the arrival address", function()
    local pkt = codec.encode_test { seq = 1 } .. h.hex("800a0008 80010004 00000001")
    local replies = exchange({ local_addr = "0.0.0.0" }, pkt, { to = "127.0.0.3" })
    assert.equal(1, #replies)
    assert.equal("000a0008 00010004 00000001", h.tohex(replies[1].data:sub(45, 48)) .. " "
      .. h.tohex(replies[1].data:sub(49, 52)) .. " " .. h.tohex(replies[1].data:sub(53, 56)))
    assert.equal("127.0.0.3", replies[1].from)
  end)
end)

describe("Type 12 says exactly what it granted (RFC 10052 3)", function()
  local R = { reflected_max_count = 5 }
  local function req(len_field, extra)
    return codec.encode_test { seq = 1 } .. h.hex(string.format("800c000c %04x0001 00000000 00000000", len_field))
      .. (extra or "")
  end

  it("a requested length 1..3 octets above a multiple of 4 is rounded up and filled, C clear", function()
    local replies = exchange(R, req(101))
    assert.equal(1, #replies)
    local d = replies[1].data
    assert.equal(104, #d)
    assert.equal("000c000c", h.tohex(d:sub(45, 48)))
    assert.equal("00010028", h.tohex(d:sub(61, 64))) -- 104 - 60 - 4 = 40 octets of padding
    assert.equal(string.rep("00", 40), h.tohex(d:sub(65)))
  end)

  it("2 octets above the request: rounded up to 4, an empty Extra Padding TLV, C clear", function()
    local replies = exchange(R, req(62))
    assert.equal(64, #replies[1].data)
    assert.equal("000c000c", h.tohex(replies[1].data:sub(45, 48)))
    assert.equal("00010000", h.tohex(replies[1].data:sub(61, 64)))
  end)

  it("the sender's Extra Padding does not count: a shorter requested length shrinks the reply", function()
    local replies = exchange(R, req(80, h.hex("80010060") .. string.rep("\0", 96)))
    local d = replies[1].data
    assert.equal(80, #d)
    assert.equal("000c000c", h.tohex(d:sub(45, 48)))
    assert.equal("00010010", h.tohex(d:sub(61, 64)))
  end)

  it("a requested length below base + TLVs: the reply keeps base + TLVs, C clear", function()
    local replies = exchange(R, req(48))
    assert.equal(60, #replies[1].data)
    assert.equal("000c000c", h.tohex(replies[1].data:sub(45, 48)))
  end)

  it("with a valid HMAC TLV: the request's padding before it is dropped, the HMAC TLV moves up and is re-signed, padding follows it", function()
    local seq4 = h.hex("00000001")
    local t12 = h.hex("800c000c 00800001 00000000 00000000") -- 128 octets, one reply
    local pad = h.hex("80010024") .. string.rep("\7", 36)
    local pkt = codec.encode_test { seq = 1 } .. t12 .. pad .. hmac_tlv(seq4, t12 .. pad)
    local replies, c = exchange({ key = KEY, verify_tlv_hmac = true, reflected_max_count = 5 }, pkt)
    assert.equal(1, #replies)
    local d = replies[1].data
    assert.equal(128, #d)
    assert.equal("000c000c", h.tohex(d:sub(45, 48)))
    assert.equal("00080010", h.tohex(d:sub(61, 64)))
    assert.equal(h.tohex(codec.hmac(KEY, d:sub(1, 4) .. d:sub(45, 60))), h.tohex(d:sub(65, 80)))
    assert.equal("0001002c" .. string.rep("00", 44), h.tohex(d:sub(81)))
    assert.equal(0, c.tlv_integrity)
  end)

  it("a length that no TLV can make (1..3 octets short of it): C set, never claimed", function()
    -- base 44 + Type 12 (16) + an unknown 1-octet TLV (5) = 65; 66 rounds to 68: 3 octets, too few for a TLV
    local replies = exchange(R, req(66, h.hex("80c80001 ff")))
    local d = replies[1].data
    assert.equal(65, #d)
    assert.equal("100c000c", h.tohex(d:sub(45, 48)))
  end)
end)
