-- Nothing secret on the wire (issue 7): every octet of a test packet that the
-- program did not put there is zero, as sent (captured on a plain luasocket UDP
-- socket on loopback) and as echoed by the reflector. Padding is zero-filled.
local stamp = require "stamp"
local core = require "stamp.core"
local socket = require "socket"

-- Fill the allocator's free lists with non-zero octets: strings of the sizes the
-- binding's and the core's buffers have, made and freed many times.
local function dirty_heap()
  for round = 1, 4 do
    do
      local keep = {}
      for i = 1, 400 do
        keep[i] = string.rep(string.char(0xA0 + round, 0x5A, i % 256), (i % 40) * 250 + 100)
      end
      assert(#keep == 400)
    end
    collectgarbage()
    collectgarbage()
  end
end

-- Octets [from, to] (1-based, inclusive) of s: all zero? Returns true or a message.
local function all_zero(s, from, to, what)
  for i = from, to do
    if s:byte(i) ~= 0 then
      return string.format("%s: octet %d of %d is 0x%02x, not zero", what, i, #s, s:byte(i))
    end
  end
  return true
end

local function assert_zero(s, from, to, what)
  local ok = all_zero(s, from, to, what)
  assert(ok == true, ok)
end

-- The TLV area of a packet (from octet base+1): every TLV header is as expected,
-- and every Extra Padding TLV's value is zero. Returns the number of padding octets seen.
local function check_padding(pkt, base, what)
  local pos, seen = base + 1, 0
  while pos <= #pkt do
    assert(pos + 3 <= #pkt, what .. ": truncated TLV header")
    local typ = pkt:byte(pos + 1)
    local len = pkt:byte(pos + 2) * 256 + pkt:byte(pos + 3)
    assert(pos + 3 + len <= #pkt, what .. ": TLV runs past the packet")
    if typ == 1 then
      assert_zero(pkt, pos + 4, pos + 3 + len, what .. " (Extra Padding TLV at " .. pos .. ")")
      seen = seen + len
    end
    pos = pos + 4 + len
  end
  return seen
end

-- Send `count` packets with sender options `cfg` to a plain UDP socket; return the datagrams.
local function capture(cfg, count)
  local u = assert(socket.udp())
  assert(u:setsockname("127.0.0.1", 0))
  local _, port = u:getsockname()
  u:settimeout(0)
  cfg.remote_addr, cfg.remote_port = "127.0.0.1", tonumber(port)
  cfg.count, cfg.send_delay, cfg.timeout = count, 1, 0.05
  dirty_heap()
  local s = assert(stamp.sender(cfg))
  local got = {}
  s:run { pump = function()
    local d = u:receive()
    while d do
      got[#got + 1] = d
      d = u:receive()
    end
  end }
  s:close()
  for _ = 1, 50 do -- stragglers
    local d = u:receive()
    if d then got[#got + 1] = d elseif #got >= count then break else socket.sleep(0.01) end
  end
  u:close()
  return got
end

describe("nothing secret on the wire", function()
  it("tlv_encode zero-fills a TLV whose length exceeds its content", function()
    for _, n in ipairs { 8, 200, 1400, 8000 } do
      dirty_heap()
      local b = core.tlv_encode { { type = 1, length = n } }
      assert.equal(4 + n, #b)
      assert_zero(b, 5, #b, "padding of " .. n)
      -- a known type with a length beyond its fields
      dirty_heap()
      b = core.tlv_encode { { key = "cos", length = n } }
      assert.equal(4 + n, #b)
      assert_zero(b, 5, #b, "CoS TLV grown to " .. n)
    end
  end)

  it("a sender with packet_len = 300 sends zeros where it put nothing (captured)", function()
    local got = capture({ packet_len = 300 }, 5)
    assert.equal(5, #got)
    for i, d in ipairs(got) do
      assert.equal(300, #d)
      assert_zero(d, 17, 44, "MBZ of datagram " .. i) -- open mode: octets 16..43 are MBZ
      assert.equal(252, check_padding(d, 44, "datagram " .. i))
    end
  end)

  it("an explicit long Extra Padding TLV, with and without packet_len, is zero (captured)", function()
    local got = capture({ tlvs = { { type = 1, length = 1200 } } }, 3)
    assert.equal(3, #got)
    for i, d in ipairs(got) do
      assert.equal(44 + 4 + 1200, #d)
      assert.equal(1200, check_padding(d, 44, "datagram " .. i))
    end
    got = capture({ tlvs = { { type = 1, length = 100 } }, packet_len = 300 }, 3)
    assert.equal(3, #got)
    for i, d in ipairs(got) do
      assert.equal(300, #d)
      assert.equal(100 + 148, check_padding(d, 44, "datagram " .. i))
    end
  end)

  it("authenticated mode: padding and MBZ are zero (captured)", function()
    local key = string.rep("\x42", 32)
    local got = capture({ packet_len = 400, auth = true, key = key }, 3)
    assert.equal(3, #got)
    for i, d in ipairs(got) do
      assert.equal(400, #d)
      assert_zero(d, 5, 16, "MBZ after the sequence number of datagram " .. i)
      assert_zero(d, 33, 96, "MBZ before the HMAC of datagram " .. i)
      assert.equal(400 - 112 - 4, check_padding(d, 112, "datagram " .. i))
    end
  end)

  it("the reflector's echo of a padded packet carries zeros only", function()
    dirty_heap()
    local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0 })
    local _, port = r:local_addr()
    dirty_heap()
    local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = port, count = 5, send_delay = 1,
                                    timeout = 1, packet_len = 300, tlvs = { { type = 1, length = 60 } } })
    local results, sum = s:run { pump = function() r:step(0) end }
    assert.equal(5, sum.received)
    for i, x in ipairs(results) do
      local p = x.packet
      assert.equal(300, #p)
      assert_zero(p, 39, 40, "reflected MBZ of reply " .. i)
      assert_zero(p, 42, 44, "reflected MBZ after the TTL of reply " .. i)
      assert.equal(60 + 188, check_padding(p, 44, "reply " .. i))
    end
    r:close()
    s:close()
  end)
end)
