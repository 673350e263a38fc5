-- HMAC-SHA-256-128 (RFC 8762 4.4) as libstamp computes it: RFC 4231's test vectors, and agreement with
-- Python's hmac module over key and message lengths around the SHA-256 block (64 octets), including
-- keys longer than a block (hashed first) and the empty key.
local h = require "spec.helper"
local core = require "stamp.core"

describe("HMAC-SHA-256-128", function()
  it("matches the RFC 4231 test vectors (first 128 bits)", function()
    local aa = string.rep("\170", 131)
    local cases = {
      { string.rep("\11", 20), "Hi There", "b0344c61d8db38535ca8afceaf0bf12b" },
      { "Jefe", "what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c7" },
      { string.rep("\170", 20), string.rep("\221", 50), "773ea91e36800e46854db8ebd09181a7" },
      { h.hex("0102030405060708090a0b0c0d0e0f10111213141516171819"), string.rep("\205", 50),
        "82558a389a443c0ea4cc819899f2083a" },
      { string.rep("\12", 20), "Test With Truncation", "a3b6167473100ee06e0c796c2955552b" },
      { aa, "Test Using Larger Than Block-Size Key - Hash Key First", "60e431591ee0b67f0d8a26aacbf5b77f" },
      { aa, "This is a test using a larger than block-size key and a larger than block-size data. The key needs"
        .. " to be hashed before being used by the HMAC algorithm.", "9b09ffa71b942fcb27635fbcd5b0e944" },
    }
    for i, c in ipairs(cases) do
      assert.equal(c[3], h.tohex(core.hmac(c[1], c[2])), "RFC 4231 test case " .. i)
    end
  end)

  it("agrees with Python's hmac for keys and messages around the block size", function()
    local klens = { 0, 1, 32, 63, 64, 65, 100, 256 }
    local mlens = { 0, 1, 55, 56, 63, 64, 65, 119, 120, 200 }
    local code, out = h.run("/usr/bin/python3 -c '" .. [[
import hmac, hashlib
for k in (0, 1, 32, 63, 64, 65, 100, 256):
    for m in (0, 1, 55, 56, 63, 64, 65, 119, 120, 200):
        key = bytes((7 * i + k) % 256 for i in range(k))
        msg = bytes((13 * i + m) % 256 for i in range(m))
        print(k, m, hmac.new(key, msg, hashlib.sha256).hexdigest()[:32])
]] .. "'")
    if code ~= 0 then pending("python3 not available") return end
    local want = {}
    for k, m, mac in out:gmatch("(%d+) (%d+) (%x+)") do want[k .. "/" .. m] = mac end
    local function bytes(n, mul, add)
      local t = {}
      for i = 0, n - 1 do t[#t + 1] = string.char((mul * i + add) % 256) end
      return table.concat(t)
    end
    local n = 0
    for _, k in ipairs(klens) do
      for _, m in ipairs(mlens) do
        local mac = core.hmac(bytes(k, 7, k), bytes(m, 13, m))
        assert.equal(want[k .. "/" .. m], h.tohex(mac), "key " .. k .. " octets, message " .. m .. " octets")
        n = n + 1
      end
    end
    assert.equal(#klens * #mlens, n)
  end)
end)
