-- Review of issue 11 (items 9 and 10): TLV flags in the reply of a real `stamp -i`,
-- with hand-built octets on a luasocket UDP socket. docs/conformance/rfc8972.md names these.
local h = require "helper"
local socket = require "socket"
local codec = require("stamp").codec

-- Send one packet to a `stamp -i` reflector, return the reply's TLV area as hex.
local function reflect(port, tlvhex)
  local u = socket.udp()
  u:setsockname("127.0.0.1", 0)
  u:settimeout(2)
  assert(u:sendto(codec.encode_test { seq = 1 } .. h.hex(tlvhex), "127.0.0.1", port))
  local d = u:receive()
  u:close()
  assert(d, "no reply")
  return h.tohex(d:sub(45))
end

describe("RFC 8972 4 flags on the reflector's reply (review 11, items 9 and 10)", function()
  local pid, out, port
  setup(function() pid, out, port = h.cli_reflector() end)
  teardown(function() h.stop(pid) os.remove(out) end)

  it("an unknown type keeps only U: the sender's M, I, C and reserved bits are cleared", function()
    assert.equal("80c8000461620000", reflect(port, "ffc80004 61620000"))
    assert.equal("80c800026162", reflect(port, "ffc80002 6162"))
  end)

  it("a known type running past the packet gets M only (not U, not C)", function()
    assert.equal("4004002800000000", reflect(port, "80040028 00000000"))
    assert.equal("4004002800000000", reflect(port, "9f040028 00000000"))
  end)

  it("an unknown type running past the packet gets U and M", function()
    assert.equal("c0c8002800000000", reflect(port, "ffc80028 00000000"))
  end)

  it("a known, well-formed TLV the sender flagged M and I comes back with neither", function()
    assert.equal("00", reflect(port, "ef030004 00000000"):sub(1, 2))
  end)

  it("a bad Length on a known type: M only (sender's U, I, C and reserved bits cleared)", function()
    assert.equal("40", reflect(port, "ff030002 0000"):sub(1, 2))
  end)

  it("after a malformed TLV the rest is copied unchanged but with reserved flag bits zero", function()
    local r = reflect(port, "80030002 0000 8f040004 b8000000 9fc80001 ff")
    assert.equal("400300020000", r:sub(1, 12))
    assert.equal("80040004b8000000", r:sub(13, 28)) -- not processed: U as sent, reserved and C cleared
    assert.equal("80c80001ff", r:sub(29, 38))
  end)

  it("a malformed Location TLV is returned unchanged but for its flags: no ports, no addresses", function()
    assert.equal("40020010" .. "00000000" .. "40040008" .. "0000000000000000",
      reflect(port, "80020010 00000000 80040008 0000000000000000"))
    -- a good sub-TLV before the bad one is not filled either
    assert.equal("40020024" .. "00000000" .. "80070010" .. string.rep("0", 32) .. "40040008" .. string.rep("0", 16),
      reflect(port, "80020024 00000000 80070010" .. string.rep("0", 32) .. "80040008" .. string.rep("0", 16)))
  end)

  it("a Micro-session ID TLV at a reflector without a member link comes back with U, IDs unchanged", function()
    assert.equal("800b000400030000", reflect(port, "800b0004 00030000"))
  end)

  it("a good Location TLV is still filled (ports and the addresses asked for)", function()
    local r = reflect(port, "80020018 00000000 80040010" .. string.rep("0", 32))
    assert.equal("00020018", r:sub(1, 8))
    assert.not_equal("00000000", r:sub(9, 16))
    assert.equal("00050010", r:sub(17, 24))
    assert.equal("7f000001", r:sub(25, 32))
  end)
end)
