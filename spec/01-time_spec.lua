local core = require "stamp.core"
local h = require "helper"

describe("timestamps", function()
  it("encodes the Unix epoch as NTP 2208988800.0", function()
    assert.equal("83aa7e8000000000", h.tohex(core.ts_encode(0, "NTP")))
  end)

  it("encodes half a second as an NTP fraction of 2^31", function()
    assert.equal("83aa7e8180000000", h.tohex(core.ts_encode(1500000000, "NTP")))
  end)

  it("round-trips NTP to within a nanosecond", function()
    local t = 1795767695506340376
    local back = core.ts_decode(core.ts_encode(t, "NTP"), "NTP")
    assert.is_true(math.abs(back - t) <= 1)
  end)

  it("unfolds the 2036 NTP era", function()
    local t = (4294967296 - 2208988800) * 1000000000 + 5 -- 2036-02-07T06:28:16Z + 5 ns
    local wire = core.ts_encode(t, "NTP")
    assert.equal("00000000", h.tohex(wire:sub(1, 4)))
    assert.is_true(math.abs(core.ts_decode(wire, "NTP") - t) <= 1)
  end)

  it("encodes PTP as seconds and nanoseconds, with the TAI offset", function()
    assert.equal("0000000a0000002a", h.tohex(core.ts_encode(10000000042, "PTP")))
    assert.equal("000000310000002a", h.tohex(core.ts_encode(10000000042, "PTP", 39)))
    assert.equal(10000000042, (core.ts_decode(h.hex("000000310000002a"), "PTP", 39)))
  end)

  it("flags a PTP nanoseconds field of 10^9 or more", function()
    local _, ok = core.ts_decode(h.hex("000000013b9aca00"), "PTP")
    assert.is_false(ok)
  end)
end)

describe("error estimate", function()
  it("packs S, Z, Scale and Multiplier", function()
    assert.equal(0xffff, core.ee { s = 1, z = 1, scale = 63, mult = 255 })
    assert.equal(0x8102, core.ee { s = 1, z = 0, scale = 1, mult = 2 })
    local t = core.ee(0x4a07)
    assert.same({ 0, 1, 10, 7 }, { t.s, t.z, t.scale, t.mult })
  end)

  it("never packs a multiplier of 0", function()
    assert.has_error(function() core.ee { mult = 0 } end)
  end)

  it("describes the local clock with a non-zero multiplier", function()
    local ee = core.local_ee("PTP")
    assert.equal(1, ee.z)
    assert.is_true(ee.mult >= 1 and ee.mult <= 255)
    assert.is_true(ee.error_ns > 0)
  end)
end)
