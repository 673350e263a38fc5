-- The binding refuses NaN, infinities, fractions and out-of-range numbers
-- wherever a Lua number becomes a C integer (issue 7, "Lifecycle edges"):
-- an error naming the argument or option, never a silent conversion.
local core = require "stamp.core"

local NAN, INF = 0 / 0, math.huge
local ZERO8 = string.rep("\0", 8)

local function refuses(what, f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, what .. ": accepted")
  err = tostring(err)
  assert(err:find("bad argument", 1, true) or err:find("bad option", 1, true) or err:find("bad field", 1, true)
         or err:find("bad TLV", 1, true), what .. ": unexpected message " .. err)
end

describe("binding: numbers that have no C integer", function()
  it("ts_encode and ts_decode", function()
    for _, v in ipairs { NAN, INF, -INF, 2 ^ 63, -2 ^ 64, 1e300, 0.5 } do
      refuses("ts_encode(" .. tostring(v) .. ")", core.ts_encode, v)
      refuses("ts_encode tai_offset " .. tostring(v), core.ts_encode, 0, "PTP", v)
      refuses("ts_decode tai_offset " .. tostring(v), core.ts_decode, ZERO8, "PTP", v)
    end
    refuses("tai_offset 2^40", core.ts_encode, 0, "PTP", 2 ^ 40)
    refuses("tai_offset -2^31", core.ts_decode, ZERO8, "PTP", -2 ^ 31)
    -- still fine
    assert.equal(8, #core.ts_encode(2 ^ 53))
    assert.equal(8, #core.ts_encode(1700000000000000000, "PTP", 37))
  end)

  it("ee, poll and isatty", function()
    for _, v in ipairs { NAN, INF, -INF, 1e300, 1.5, -1, 65536 } do
      refuses("ee(" .. tostring(v) .. ")", core.ee, v)
      refuses("poll fd " .. tostring(v), core.poll, { v == 65536 and 2 ^ 40 or v }, 0)
    end
    for _, v in ipairs { NAN, INF, -INF, 1e300, 1.5, 2 ^ 40 } do
      refuses("poll timeout " .. tostring(v), core.poll, {}, v)
      refuses("isatty(" .. tostring(v) .. ")", core.isatty, v)
    end
    assert.same({}, core.poll({}, 0))
    assert.equal(1, core.ee(core.ee(1)))
  end)

  it("packet fields", function()
    for _, v in ipairs { NAN, INF, -INF, 1e300, 2 ^ 63 } do
      refuses("seq " .. tostring(v), core.encode_test, { seq = v })
      refuses("timestamp " .. tostring(v), core.encode_test, { timestamp = v })
      refuses("ee " .. tostring(v), core.encode_test, { ee = v })
      refuses("sender_timestamp " .. tostring(v), core.encode_reflected, { sender_timestamp = v })
      refuses("ee.scale " .. tostring(v), core.encode_test, { ee = { scale = v } })
    end
    refuses("ee 1.5", core.encode_test, { ee = 1.5 })
    -- a float timestamp in range is fine (doubles on Lua 5.1)
    local d = core.decode_test(core.encode_test { timestamp = 1.5e18 })
    assert.is_true(math.abs(d.timestamp - 1.5e18) < 1e3)
  end)

  it("TLV specs", function()
    for _, v in ipairs { NAN, INF, -INF, 1e300, 0.5 } do
      refuses("TLV length " .. tostring(v), core.tlv_encode, { { type = 1, length = v } })
      refuses("TLV type " .. tostring(v), core.tlv_encode, { { type = v } })
      refuses("TLV flags " .. tostring(v), core.tlv_encode, { { type = 1, flags = v } })
      refuses("CoS dscp1 " .. tostring(v), core.tlv_encode, { { key = "cos", dscp1 = v } })
    end
  end)

  it("sender and reflector options", function()
    for _, v in ipairs { NAN, INF, -INF, 1e300, 2 ^ 63, 0.5 } do
      refuses("count " .. tostring(v), core.sender, { remote_addr = "127.0.0.1", count = v })
      refuses("interval_ns " .. tostring(v), core.sender, { remote_addr = "127.0.0.1", interval_ns = v })
      refuses("ttl " .. tostring(v), core.sender, { remote_addr = "127.0.0.1", ttl = v })
      refuses("local_port " .. tostring(v), core.reflector, { local_addr = "127.0.0.1", local_port = v })
      refuses("max_sessions " .. tostring(v), core.reflector, { local_addr = "127.0.0.1", max_sessions = v })
    end
  end)
end)
