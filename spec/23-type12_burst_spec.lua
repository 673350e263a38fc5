-- Type 12 (RFC 10052) bursts of the reflector, hand-built octets on loopback: every extra reply
-- built like a normal one (RFC 8762 4.3, RFC 8972 4.5/4.7), the Sequence Number check over all
-- packets of a session (RFC 10052 5), exact grants (exactly Number replies, or one with C).
local stamp = require "stamp"
local codec = stamp.codec
local h = require "helper"
local socket = require "socket"

local function test(seq, tlvs) return codec.encode_test { seq = seq } .. h.hex(tlvs or "") end
local function u32(s, i) return ((s:byte(i) * 256 + s:byte(i + 1)) * 256 + s:byte(i + 2)) * 256 + s:byte(i + 3) end
local function u64(s, i) return u32(s, i) * 4294967296 + u32(s, i + 4) end

-- An in-process reflector and `n` luasocket UDP clients: send(i, octets) from client i,
-- pump(secs) steps the reflector and collects every reply per client.
local function rig(rcfg, n)
  rcfg.local_addr = "127.0.0.1"
  rcfg.local_port = 0
  local r = assert(stamp.reflector(rcfg))
  local _, port = r:local_addr()
  local cl, got = {}, {}
  for i = 1, n or 1 do
    cl[i] = socket.udp()
    cl[i]:setsockname("127.0.0.1", 0)
    cl[i]:settimeout(0)
    got[i] = {}
  end
  local o = { r = r, got = got }
  function o.send(i, p) assert(cl[i]:sendto(p, "127.0.0.1", port)) end
  function o.pump(secs)
    local t0 = socket.gettime()
    repeat
      r:step(2)
      for i = 1, #cl do
        local d = cl[i]:receive()
        while d do
          table.insert(got[i], d)
          d = cl[i]:receive()
        end
      end
    until socket.gettime() - t0 > secs
  end
  function o.close()
    for i = 1, #cl do cl[i]:close() end
    local c = r:counters()
    r:close()
    return c
  end
  return o
end

-- type 12 request for `num` replies of `len` octets, `ival` ns apart
local function t12(len, num, ival) return string.format("800c000c %04x%04x %08x 00000000", len, num, ival) end
local DM = "8005000c 00000007 00000000 00000000"
local FU = "80070010 00000000 00000000 00000000 00000000"

describe("type 12 extra replies are built like normal replies (RFC 10052 3, RFC 8762 4.3)", function()
  it("stateful: each reply its own Sequence Number and Timestamp, R_TxC counts every reply, Follow-Up names the one before", function()
    local x = rig({ reflected_max_count = 5, stateful = true })
    x.send(1, test(1, t12(0, 3, 2000000) .. DM .. FU))
    x.pump(0.15)
    x.send(1, test(2, t12(0, 3, 2000000) .. DM .. FU))
    x.pump(0.15)
    local c = x.close()
    local g = x.got[1]
    assert.equal(6, #g)
    assert.equal(4, c.extra_replies)
    for i, d in ipairs(g) do
      assert.equal(i - 1, u32(d, 1)) -- the reflector's own numbering counts the extra replies
      assert.equal(i <= 3 and 1 or 2, u32(d, 25)) -- Session-Sender Sequence Number of the request
      -- Direct Measurement at octet 60: S_TxC kept, R_RxC = requests received, R_TxC = replies sent
      assert.equal("0005000c", h.tohex(d:sub(61, 64)))
      assert.same({ 7, i <= 3 and 1 or 2, i }, { u32(d, 65), u32(d, 69), u32(d, 73) })
      assert.equal("0007", h.tohex(d:sub(77, 78)):sub(1, 4))
      if i > 1 then
        assert.are_not.equal(u64(g[i - 1], 5), u64(d, 5)) -- each reply its own Timestamp
        assert.is_true(u64(d, 5) > u64(g[i - 1], 5))
        -- Follow-Up: the previous reply's Sequence Number and (at or after) its Timestamp, before ours
        assert.equal(i - 2, u32(d, 81))
        local fts = u64(d, 85)
        assert.is_true(fts >= u64(g[i - 1], 5) and fts <= u64(d, 5), "Follow-Up timestamp of reply " .. i)
      else
        assert.equal(string.rep("00", 12), h.tohex(d:sub(81, 92)))
      end
    end
  end)

  it("stateless: the request's Sequence Number on every reply, Follow-Up zero, R_TxC still counts each reply", function()
    local x = rig({ reflected_max_count = 5 })
    x.send(1, test(9, t12(0, 3, 2000000) .. DM .. FU))
    x.pump(0.15)
    x.close()
    local g = x.got[1]
    assert.equal(3, #g)
    for i, d in ipairs(g) do
      assert.equal(9, u32(d, 1))
      assert.same({ 7, 1, i }, { u32(d, 65), u32(d, 69), u32(d, 73) })
      assert.equal(string.rep("00", 12), h.tohex(d:sub(81, 92)))
    end
  end)
end)

describe("the Sequence Number check counts every packet of the session (RFC 10052 5)", function()
  local function seq_check(stateful)
    local x = rig({ reflected_max_count = 5, stateful = stateful })
    x.send(1, test(10, t12(0, 2, 2000000)))
    x.pump(0.08)
    assert.equal(2, #x.got[1])
    x.send(1, test(20))
    x.pump(0.05)
    assert.equal(3, #x.got[1])
    x.send(1, test(15, t12(0, 2, 2000000)))
    x.pump(0.08)
    local c = x.close()
    assert.equal(4, #x.got[1])
    assert.equal("800c000c", h.tohex(x.got[1][4]:sub(45, 48)))
    assert.same({ 1, 1 }, { c.extra_replies, c.tlv_unknown })
  end

  it("B(10)+T12 gets 2 replies; B(20) without TLVs 1; B(15)+T12 exactly one reply with U", function() seq_check(false) end)
  it("the same on a stateful reflector", function() seq_check(true) end)

  it("a later, higher Sequence Number is granted again; another session is not affected", function()
    local x = rig({ reflected_max_count = 5 }, 2)
    x.send(1, test(20))
    x.send(2, test(5, t12(0, 2, 2000000)))
    x.pump(0.05)
    x.send(1, test(21, t12(0, 2, 2000000)))
    x.pump(0.08)
    x.close()
    assert.equal(3, #x.got[1])
    assert.equal(2, #x.got[2])
    assert.equal("000c000c", h.tohex(x.got[1][2]:sub(45, 48)))
  end)
end)
