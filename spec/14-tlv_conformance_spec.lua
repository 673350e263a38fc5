-- Conformance to the letter (issue 11): each TLV rule with hand-built octets
-- through a real reflector socket. docs/conformance/ names these specs.
local stamp = require "stamp"
local tlv = stamp.tlv
local codec = stamp.codec
local h = require "helper"
local socket = require "socket"

-- Send each packet of `pkts` from one luasocket UDP socket to an in-process reflector,
-- `gap` seconds apart; collect every reply for `wait` seconds after the last.
local function exchange(rcfg, pkts, o)
  o = o or {}
  if type(pkts) == "string" then pkts = { pkts } end
  rcfg.local_addr = rcfg.local_addr or "127.0.0.1"
  rcfg.local_port = 0
  local r = assert(stamp.reflector(rcfg))
  local _, port = r:local_addr()
  local u = socket.udp()
  u:setsockname("127.0.0.1", 0)
  u:settimeout(0)
  local replies = {}
  local function pump(secs)
    local t0 = socket.gettime()
    repeat
      r:step(2)
      local d = u:receive()
      while d do
        replies[#replies + 1] = d
        d = u:receive()
      end
    until socket.gettime() - t0 > secs
  end
  for _, p in ipairs(pkts) do
    assert(u:sendto(p, "127.0.0.1", port))
    pump(o.gap or 0.05)
  end
  pump(o.wait or 0.1)
  u:close()
  local c = r:counters()
  r:close()
  return replies, c
end

local function test(seq, tlvs) return codec.encode_test { seq = seq or 1 } .. h.hex(tlvs) end
local function tlvs_of(d) return h.tohex(d:sub(45)) end

local T12 = { reflected_max_count = 5 }

describe("RFC 10052 Reflected Test Packet Control (type 12)", function()
  it("a Length below 12 is malformed (M), answered once", function()
    local replies, c = exchange(T12, test(1, "800c0008 00800003 00000000"))
    assert.equal(1, #replies)
    assert.equal("400c000800800003" .. "00000000", tlvs_of(replies[1]))
    assert.same({ 1, 0 }, { c.tlv_malformed, c.extra_replies })
  end)

  it("Number of the Reflected Packets 0: no reply at all", function()
    local replies, c = exchange(T12, test(1, "800c000c 00800000 00000000 00000000"))
    assert.equal(0, #replies)
    assert.same({ 1, 0, 1 }, { c.rx, c.reflected, c.no_reply })
  end)

  it("within the limits: exactly the requested count, each of the requested length, C clear", function()
    local replies, c = exchange(T12, test(1, "800c000c 00500004 00100000 00000000"), { wait = 0.3 })
    assert.equal(4, #replies)
    for _, d in ipairs(replies) do
      assert.equal(80, #d)
      assert.equal("000c000c", h.tohex(d:sub(45, 48)))
    end
    assert.equal(3, c.extra_replies)
  end)

  it("over the count limit: one reply with C, no burst", function()
    local replies, c = exchange(T12, test(1, "800c000c 00400006 00000000 00000000"), { wait = 0.2 })
    assert.equal(1, #replies)
    assert.equal("100c000c", h.tohex(replies[1]:sub(45, 48)))
    assert.equal(64, #replies[1])
    assert.equal(0, c.extra_replies)
  end)

  it("over the rate limit (interval below the minimum): one reply with C, the interval never stretched", function()
    local replies, c = exchange({ reflected_max_count = 5, reflected_min_interval_ns = 10000000 },
      test(1, "800c000c 00400003 000f4240 00000000"), { wait = 0.2 })
    assert.equal(1, #replies)
    assert.equal("100c000c", h.tohex(replies[1]:sub(45, 48)))
    assert.equal(0, c.extra_replies)
  end)

  it("over the size limit: one reply of the limit's size with C", function()
    local replies = exchange({ reflected_max_count = 5, reflected_max_size = 128 },
      test(1, "800c000c 04000002 00000000 00000000"), { wait = 0.2 })
    assert.equal(1, #replies)
    assert.equal(128, #replies[1])
    assert.equal("100c000c", h.tohex(replies[1]:sub(45, 48)))
  end)

  it("a Sequence Number that does not increase: one reply with U", function()
    local p = test(7, "800c000c 00400002 000f4240 00000000")
    local replies, c = exchange(T12, { p, p }, { gap = 0.1 })
    assert.equal(3, #replies) -- 2 for the first request, 1 for the repeat
    assert.equal("000c000c", h.tohex(replies[1]:sub(45, 48)))
    assert.equal("800c000c", h.tohex(replies[3]:sub(45, 48)))
    assert.equal(44 + 16, #replies[3])
    assert.equal(1, c.extra_replies)
  end)

  it("Return Path 'no reply' together with type 12: answered, U on both TLVs", function()
    local replies, c = exchange(T12, test(1, "800c000c 00400002 00000000 00000000 800a0008 80010004 00000000"))
    assert.equal(1, #replies)
    assert.equal("800c000c", h.tohex(replies[1]:sub(45, 48)))
    assert.equal("800a0008", h.tohex(replies[1]:sub(61, 64)))
    assert.same({ 0, 0 }, { c.no_reply, c.extra_replies })
  end)

  it("an L2 Address Group sub-TLV of Length other than 4, 12 or 16 is malformed (M)", function()
    local replies = exchange(T12, test(1, "800c0010 00400001 00000000 800a0004 ffffff00"))
    assert.equal("000c0010", h.tohex(replies[1]:sub(45, 48))) -- Length 4: valid (not visible here: U on the sub-TLV)
    assert.equal("800a0004", h.tohex(replies[1]:sub(57, 60)))
    replies = exchange(T12, test(1, "800c0014 00400001 00000000 800a0008 ffffffff 00000000"))
    assert.equal("400c0014", h.tohex(replies[1]:sub(45, 48)))
    assert.equal("400a0008", h.tohex(replies[1]:sub(57, 60)))
  end)

  it("an L3 Address Group we are in: served; its Reserved octets zero in the reply", function()
    local replies = exchange(T12, test(1, "800c0014 00400001 00000000 800b0008 08ffffff 7f000000"))
    assert.equal("000c0014", h.tohex(replies[1]:sub(45, 48)))
    assert.equal("000b0008 08000000 7f000000", h.tohex(replies[1]:sub(57, 60)) .. " " .. h.tohex(replies[1]:sub(61, 64))
      .. " " .. h.tohex(replies[1]:sub(65, 68)))
  end)

  it("an L3 Address Group we are not in: the request is not for us, no reply", function()
    local replies, c = exchange(T12, test(1, "800c0014 00400001 00000000 800b0008 08000000 0a000000"))
    assert.equal(0, #replies)
    assert.same({ 1, 0 }, { c.rx, c.reflected })
  end)

  it("a sender whose type 12 burst would outlast its send interval is refused (RFC 10052 5)", function()
    assert.has_error(function()
      stamp.sender { remote_addr = "127.0.0.1", send_delay = 9, tlvs = { tlv.reflected_control { count = 11, interval_ns = 1000000 } } }
    end, "bad option 'send_delay' (9 ms: the type 12 burst of 11 replies 1000000 ns apart lasts 10 ms; "
      .. "the next request must not start before it ends, RFC 10052 5)")
    local s = assert(stamp.sender { remote_addr = "127.0.0.1", send_delay = 10,
      tlvs = { tlv.reflected_control { count = 11, interval_ns = 1000000 } } })
    s:close()
  end)

  it("the sender's builder sends a Value of 12 octets, C clear", function()
    assert.equal("800c000c 00000001 00000000 00000000", h.tohex(tlv.encode { tlv.reflected_control {} }):gsub("(%x%x%x%x%x%x%x%x)", "%1 "):sub(1, 35))
  end)
end)

describe("RFC 8972 TLV rules", function()
  it("reserved flag bits are zero in the reply", function()
    local replies = exchange({}, test(1, "8f030004 00000000 9f0c000c 00400001 00000000 00000000 8fc80001 ff"))
    local d = replies[1]
    assert.equal("00", h.tohex(d:sub(45, 45)))
    assert.equal("80", h.tohex(d:sub(53, 53))) -- type 12 off here: U, C and reserved bits cleared
    assert.equal("80", h.tohex(d:sub(69, 69))) -- unknown: U
  end)

  it("processing stops at a malformed TLV: a bad Location sub-TLV stops a following CoS", function()
    -- Location with a Destination Address request of Length 8 (must be 16), then CoS
    local replies, c = exchange({}, test(1, "80020010 00000000 80040008 00000000 00000000 80040004 b8000000"))
    local d = replies[1]
    assert.equal("40020010", h.tohex(d:sub(45, 48)))
    assert.equal("40040008", h.tohex(d:sub(53, 56)))
    assert.equal("80040004b8000000", h.tohex(d:sub(65, 72))) -- as received: not applied
    assert.equal(1, c.tlv_malformed)
  end)

  it("Location: sub-TLV Lengths are checked (a Source Address request of Length 4 is M)", function()
    local replies = exchange({}, test(1, "8002000c 00000000 80070004 00000000"))
    assert.equal("4002000c", h.tohex(replies[1]:sub(45, 48)))
    assert.equal("40070004", h.tohex(replies[1]:sub(53, 56)))
  end)

  it("Access Report: an invalid Access ID discards the TLV (returned as received, U), processing goes on", function()
    local replies, c = exchange({}, test(1, "80060004 30010000 80040004 b8000000"))
    assert.equal("8006000430010000", h.tohex(replies[1]:sub(45, 52)))
    assert.equal("00040004", h.tohex(replies[1]:sub(53, 56)))
    assert.equal(0, c.tlv_malformed)
  end)

  it("Access Report: Return Code echoed whatever its value; Resv and Reserved zero in the reply", function()
    local replies = exchange({}, test(1, "80060004 1f03ffff"))
    assert.equal("0006000410030000", h.tohex(replies[1]:sub(45, 52)))
  end)

  it("Follow-Up Telemetry on a stateless reflector: Sequence Number and Timestamp zero", function()
    local p1 = test(1, "80070010" .. string.rep("00", 16))
    local p2 = test(2, "80070010 00000009 1111111111111111 00000000")
    local replies = exchange({}, { p1, p2 })
    assert.equal(2, #replies)
    assert.equal("00070010" .. string.rep("00", 16), tlvs_of(replies[2]))
  end)

  it("Follow-Up Telemetry with a bad Length: Sequence Number and Timestamp zeroed, M", function()
    local replies = exchange({ stateful = true }, test(1, "8007000c 00000009 1111111111111111"))
    assert.equal("4007000c" .. string.rep("00", 12), tlvs_of(replies[1]))
  end)
end)

describe("RFC 9503 Return Path", function()
  it("only the first Return Path TLV counts: a second 'no reply' is ignored (U)", function()
    local replies, c = exchange({}, test(1, "800a0008 80010004 00000001 800a0008 80010004 00000000"))
    assert.equal(1, #replies)
    assert.equal("000a0008", h.tohex(replies[1]:sub(45, 48)))
    assert.equal("800a0008", h.tohex(replies[1]:sub(57, 60)))
    assert.equal(0, c.no_reply)
  end)

  it("with a Control Code every other sub-TLV is ignored: a Return Address beside it redirects nothing", function()
    local u2 = socket.udp()
    u2:setsockname("127.0.0.2", 0)
    u2:settimeout(0)
    local _, p2 = u2:getsockname()
    -- Control Code 1 (reply on the same link) and a Return Address the policy would allow
    local replies = exchange({ local_addr = "0.0.0.0", allow_return_address = { "127.0.0.0/8" } },
      test(1, string.format("800a0010 80010004 00000001 80020004 7f000002", tonumber(p2))))
    assert.equal(1, #replies) -- to the sender, not 127.0.0.2
    assert.equal("000a0010 00010004 00000001 80020004", h.tohex(replies[1]:sub(45, 48)) .. " "
      .. h.tohex(replies[1]:sub(49, 52)) .. " " .. h.tohex(replies[1]:sub(53, 56)) .. " " .. h.tohex(replies[1]:sub(57, 60)))
    assert.is_nil(u2:receive())
    u2:close()
  end)

  it("Control Code reserved bits are zero in the reply", function()
    local replies = exchange({}, test(1, "800a0008 80010004 fffffff1"))
    assert.equal("000a0008 00010004 00000001", h.tohex(replies[1]:sub(45, 48)) .. " "
      .. h.tohex(replies[1]:sub(49, 52)) .. " " .. h.tohex(replies[1]:sub(53, 56)))
  end)

  it("an SR-MPLS sub-TLV Length not a multiple of 4, or an SRv6 one not a multiple of 16, is M", function()
    local replies = exchange({}, test(1, "800a0006 80030002 0001"))
    assert.equal("400a0006", h.tohex(replies[1]:sub(45, 48)))
    assert.equal("40030002", h.tohex(replies[1]:sub(49, 52)))
    replies = exchange({}, test(1, "800a000c 80040008 20010db800000000"))
    assert.equal("400a000c", h.tohex(replies[1]:sub(45, 48)))
    assert.equal("40040008", h.tohex(replies[1]:sub(49, 52)))
  end)
end)

describe("sender builders", function()
  it("the sender fills none of the reflector's fields: Location, Timestamp Information, Follow-Up, DM R fields; CoS RP zero", function()
    local oct = tlv.encode { tlv.location(), tlv.timestamp_info(), tlv.follow_up(), tlv.direct_measurement(),
      tlv.cos { dscp = 63, ecn = 3 } }
    local want = "8002002c 00000000 80040010" .. string.rep("00", 16) .. "80070010" .. string.rep("00", 16)
      .. "80030004 00000000" .. "80070010" .. string.rep("00", 16) .. "8005000c" .. string.rep("00", 12) .. "80040004 fc000000"
    assert.equal(h.tohex(h.hex(want)), h.tohex(oct))
  end)


  it("never put a Control Code and a Return Address (or segment list) in one Return Path TLV", function()
    assert.has_error(function() tlv.return_path { no_reply = true, return_addr = "127.0.0.2" } end)
    assert.has_error(function() tlv.return_path { reply_same_link = true, srv6 = { "2001:db8::1" } } end)
    assert.has_error(function() tlv.return_path { no_reply = true, reply_same_link = true } end)
  end)

  it("a Destination Node Address TLV needs a non-zero SSID (RFC 9503 3)", function()
    assert.has_error(function()
      stamp.sender { remote_addr = "127.0.0.1", tlvs = { tlv.destination { addr = "127.0.0.1" } } }
    end, "bad option 'ssid' (the Destination Node Address TLV needs a non-zero SSID, RFC 9503 3)")
    local s = assert(stamp.sender { remote_addr = "127.0.0.1", ssid = 5, tlvs = { tlv.destination { addr = "127.0.0.1" } } })
    s:close()
  end)
end)

describe("sender combinations the RFCs forbid", function()
  it("at most one Return Path TLV (RFC 9503 4)", function()
    assert.has_error(function()
      stamp.sender { remote_addr = "127.0.0.1", tlvs = { tlv.return_path { reply_same_link = true }, tlv.return_path { no_reply = true } } }
    end, "bad option 'tlvs' (at most one Return Path TLV, RFC 9503 4)")
  end)

  it("'no reply' with a type 12 request raises (RFC 10052 4.3)", function()
    assert.has_error(function()
      stamp.sender { remote_addr = "127.0.0.1", tlvs = { tlv.return_path { no_reply = true }, tlv.reflected_control { count = 2 } } }
    end, "bad option 'tlvs' (a Return Path 'no reply' never goes with a type 12 request, RFC 10052 4.3)")
  end)

  it("the command refuses --no-reply with --return-address or type 12, --destination-address without --ssid, a burst outlasting -d", function()
    for _, args in ipairs { "--no-reply --return-address 127.0.0.2", "--no-reply --reflected-count 2",
      "--destination-address 127.0.0.1", "--reflected-interval-ns 1000000 --reflected-count 11 -d 5" } do
      local code, out, err = h.run(h.STAMP .. " -r 127.0.0.1 -c 1 " .. args)
      assert.equal(2, code, err)
      assert.equal("", out)
      assert.equal(1, select(2, err:gsub("\n", "")), err)
      assert.truthy(err:find(args:match("^%S+"), 1, true), err)
    end
  end)
end)

describe("RFC 8762 4.3 symmetry", function()
  it("tlv_mode 'ignore' answers a 76-octet request with 76 octets, the surplus copied unprocessed", function()
    local tl = "80040004 b8000000 8005000c 00000001 00000000 00000000"
    local replies = exchange({ tlv_mode = "ignore" }, test(1, tl .. "80010004 01020304"))
    assert.equal(76, #replies[1])
    assert.equal(h.tohex(h.hex(tl .. "80010004 01020304")), tlvs_of(replies[1]))
  end)
end)
