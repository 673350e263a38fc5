-- The conformance matrix (docs/conformance/) is checked by scripts/check-conformance.lua;
-- a few base rules of RFC 8762 / RFC 8972 that the matrix cites are pinned here.
local stamp = require "stamp"
local h = require "helper"

local CHECK = "lua5.4 " .. h.ROOT .. "/scripts/check-conformance.lua"

describe("conformance matrix", function()
  it("every row has a status and every Compliant row names an existing spec", function()
    local code, out, err = h.run(CHECK .. " " .. h.ROOT .. "/docs/conformance " .. h.ROOT)
    assert.equal(0, code, err)
    assert.matches("0 problems", out)
    for _, rfc in ipairs { "8762", "8972", "9503", "9534", "10052" } do
      assert.truthy(io.open(h.ROOT .. "/docs/conformance/rfc" .. rfc .. ".md"), "rfc" .. rfc .. ".md missing")
    end
  end)

  it("the check fails on a row without status, a Compliant row without spec, an unknown spec file or it name", function()
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    local f = assert(io.open(dir .. "/rfc0000.md", "w"))
    f:write("# test\n\n| ID | Requirement | Status | Proof |\n|---|---|---|---|\n",
      "| 1 | a | | |\n",
      "| 2 | b | Compliant | |\n",
      "| 3 | c | Compliant | `spec/99-nothing_spec.lua: x` |\n",
      "| 4 | d | Compliant | `spec/15-conformance_matrix_spec.lua: no such it` |\n",
      "| 5 | e | Maybe | |\n",
      "| 6 | f | Partial | `spec/15-conformance_matrix_spec.lua: every row has a status and every Compliant row names an existing spec` |\n")
    f:close()
    local code, out, err = h.run(CHECK .. " " .. dir .. " " .. h.ROOT)
    os.execute("rm -rf " .. dir)
    assert.equal(1, code)
    assert.matches("5 problems", out)
    assert.matches("rfc0000.md:5: row without a status", err)
    assert.matches("rfc0000.md:6: a Compliant row names no spec", err)
    assert.matches("rfc0000.md:7: names spec/99%-nothing_spec.lua, which does not exist", err)
    assert.matches("rfc0000.md:8: names 'no such it', which is no `it` in spec/15%-conformance_matrix_spec.lua", err)
    assert.matches("rfc0000.md:9: unknown status 'Maybe'", err)
  end)
end)

describe("RFC 8762 base rules cited by the matrix", function()
  it("a sender with an SSID accepts replies with SSID 0 (a legacy reflector) and drops another non-zero SSID", function()
    local u, port = h.udp_peer()
    local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = port, count = 2, send_delay = 1,
      timeout = 0.3, ssid = 7 })
    local results = s:run { pump = h.hand_reflector(u, function(t) return { ssid = t.seq == 0 and 0 or 9 } end) }
    local c = s:counters()
    s:close()
    u:close()
    table.sort(results, function(a, b) return a.seq < b.seq end)
    assert.same({ 1, 1, 1 }, { c.received, c.lost, c.drop_invalid })
    assert.is_falsy(results[1].lost)
    assert.equal(0, results[1].ssid)
  end)

  it("drop_ssid_zero (--drop-ssid-zero): replies with SSID 0 are dropped as invalid", function()
    local u, port = h.udp_peer()
    local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = port, count = 2, send_delay = 1,
      timeout = 0.3, ssid = 7, drop_ssid_zero = true })
    s:run { pump = h.hand_reflector(u, function(t) return { ssid = t.seq == 0 and 0 or 7 } end) }
    local c = s:counters()
    s:close()
    u:close()
    assert.same({ 1, 1, 1 }, { c.received, c.lost, c.drop_invalid })
    local code, out = h.run(h.STAMP .. " -h")
    assert.equal(0, code)
    assert.matches("--drop-ssid-zero", out, 1, true)
  end)

  it("default ports: the sender sends to 862, the reflector listens on 862", function()
    local opts = require "stamp.options"
    assert.equal(862, opts.sender({ remote_addr = "127.0.0.1" }).remote_port)
    assert.equal(862, opts.reflector({}).local_port)
  end)

  it("the sender numbers packets from 0 up by one, sends MBZ as zero and its SSID in every packet", function()
    local u, port = h.udp_peer(1)
    local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = port, count = 3, send_delay = 1,
      timeout = 0.05, ssid = 0x0102 })
    s:run()
    s:close()
    for i = 0, 2 do
      local p = assert(u:receive())
      assert.equal(44, #p)
      assert.equal(string.format("%08x", i), h.tohex(p:sub(1, 4)))
      assert.equal("0102", h.tohex(p:sub(15, 16)))
      assert.equal(string.rep("00", 28), h.tohex(p:sub(17, 44)))
    end
    u:close()
  end)
end)
