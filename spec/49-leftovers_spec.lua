-- The findings two outside reviews left open on issues 11 (conformance, Type 12 of RFC 10052) and
-- 9 (operations), each pinned here by a spec that failed before its fix.
local h = require "helper"
local stamp = require "stamp"
local codec = stamp.codec
local core = stamp.core

local MS = 1000000
local S = 1000000000

-- A base test packet with one type 12 TLV: replies of `len` octets, `num` of them, `ival` ns apart.
local function t12(seq, len, num, ival)
  return codec.encode_test { seq = seq } .. h.hex(string.format("800c000c %04x%04x %08x 00000000", len, num, ival))
end

-- The flags octet of the TLV at `off` (0-based offset in the reply).
local function flags_at(d, off) return d:byte(off + 1) end
local function has(flags, bit) return math.floor(flags / bit) % 2 == 1 end
local C = 0x10

-- Run `stamp ARGS`; exit code, stdout, stderr.
local function stamp_cmd(args) return h.run(h.STAMP .. " " .. args) end

describe("type 12: an upper bound on the Interval (review 11: a burst slot held for (N-1) x 4.3 s)", function()
  it("reflector_machine: over reflected_max_interval_ns (1 s by default): one reply with C, counted extra_limited", function()
    local m = assert(core.reflector_machine { reflected_max_count = 10 })
    local mono = 10 * S
    -- Interval 0xFFFFFFFF (4.29 s): one reply, C, no burst
    local r = m:input(t12(1, 100, 3, 0xFFFFFFFF), { src_addr = "127.0.0.1", src_port = 1 }, mono)
    assert.is_true(has(flags_at(r.data, 44), C))
    assert.equal(100, #r.data)                 -- the computed length all the same (RFC 10052 3)
    assert.is_nil(m:next_due())               -- no burst queued
    assert.equal(1, m:counters().extra_limited)
    -- exactly 1 s: granted
    r = m:input(t12(1, 100, 2, S), { src_addr = "127.0.0.1", src_port = 2 }, mono)
    assert.is_false(has(flags_at(r.data, 44), C))
    assert.equal(1, #m:poll(mono + S))
    assert.equal(1, m:counters().extra_limited)
    -- a single reply (Number 1) has no interval to bound
    r = m:input(t12(1, 100, 1, 0xFFFFFFFF), { src_addr = "127.0.0.1", src_port = 3 }, mono)
    assert.is_false(has(flags_at(r.data, 44), C))
    -- raised: 4.3 s granted
    local m2 = assert(core.reflector_machine { reflected_max_count = 10, reflected_max_interval_ns = 0xFFFFFFFF })
    r = m2:input(t12(1, 100, 2, 0xFFFFFFFF), { src_addr = "127.0.0.1", src_port = 1 }, mono)
    assert.is_false(has(flags_at(r.data, 44), C))
    assert.equal(0, m2:counters().extra_limited)
    assert.has_error(function() core.reflector_machine { reflected_max_interval_ns = -1 } end)
    local ok, err = pcall(core.reflector_machine, { reflected_max_interval_ns = 4294967296 })
    assert.is_false(ok)
    assert.matches("bad option 'reflected_max_interval_ns' %(4294967296 out of range 0%.%.4294967295%)", err)
  end)

  it("reflector_machine: every per-request limit answered once with C is counted extra_limited", function()
    local m = assert(core.reflector_machine { reflected_max_count = 5, reflected_max_size = 200,
      reflected_min_interval_ns = MS })
    local mono = 10 * S
    local function ask(port, len, num, ival)
      local r = m:input(t12(1, len, num, ival), { src_addr = "127.0.0.1", src_port = port }, mono)
      return has(flags_at(r.data, 44), C)
    end
    assert.is_false(ask(1, 100, 3, MS))        -- within every limit
    assert.equal(0, m:counters().extra_limited)
    assert.is_true(ask(2, 100, 6, MS))         -- over the count
    assert.is_true(ask(3, 100, 3, MS - 1))     -- under the shortest interval
    assert.is_true(ask(4, 300, 3, MS))         -- over the size
    assert.is_true(ask(5, 100, 3, 2 * S))      -- over the longest interval
    assert.equal(4, m:counters().extra_limited)
  end)

  it("stamp.reflector on loopback: Interval 0xFFFFFFFF gets one reply with C, no burst slot held", function()
    local replies, c = h.exchange({ reflected_max_count = 5 }, t12(1, 100, 5, 0xFFFFFFFF), { wait = 0.3 })
    assert.equal(1, #replies)
    assert.is_true(has(flags_at(replies[1].data, 44), C))
    assert.equal(1, c.extra_limited)
    assert.equal(0, c.extra_replies)
  end)

  it("the command: --reflected-control-max-interval-ns, over it one reply with C; -R and the summary count it", function()
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 -R --reflected-control-max-count 5 "
      .. "--reflected-control-max-interval-ns 100000000")
    local u = h.udp_peer(0.5)
    assert(u:sendto(t12(1, 100, 3, 200 * MS), "127.0.0.1", port))  -- 200 ms > 100 ms
    local d = u:receive()
    assert(u:sendto(t12(2, 100, 3, 50 * MS), "127.0.0.1", port))   -- 50 ms: granted
    local got = {}
    for _ = 1, 3 do got[#got + 1] = u:receive() end
    u:close()
    assert.truthy(h.wait_for(out, "extra_limited=1", 5), h.slurp(out))
    h.stop(pid)
    local text = h.slurp(out)
    os.remove(out)
    assert.truthy(d, "no reply")
    assert.is_true(has(flags_at(d, 44), C))
    assert.equal(3, #got)
    assert.is_false(has(flags_at(got[1], 44), C))
    assert.truthy(text:find("Type 12 requests over a limit", 1, true), text)
  end)

  it("--reflected-control-max-interval-ns below --reflected-control-min-interval-ns is refused (one line, exit 2)", function()
    local code, o, err = stamp_cmd("-i --local-addr 127.0.0.1 --reflected-control-max-count 5 "
      .. "--reflected-control-min-interval-ns 2000000 --reflected-control-max-interval-ns 1000000")
    assert.equal(2, code)
    assert.equal("", o)
    assert.equal(1, select(2, err:gsub("\n", "")), err)
    assert.truthy(err:find("--reflected-control-max-interval-ns", 1, true), err)
  end)
end)

h.bad_flag_cases(it, {
  { "-i --reflected-control-max-interval-ns 4294967296", "--reflected-control-max-interval-ns" },
  { "-i --reflected-control-max-interval-ns x", "--reflected-control-max-interval-ns" },
})
