-- Issue 10 ("no per-packet Lua work"): the statistics accumulated in C (stamp.core.stats, rendered by
-- stats.from_core) give the very summary the Lua accumulator (stats.new) gives for the same results.
local stats = require "stamp.stats"
local core = require "stamp.core"
local codec = require "stamp.codec"
local tlv = require "stamp.tlv"
local h = require "helper"

-- Lua 5.1/LuaJIT keep the Lua sample exact (no string.pack) where C rounds it to float32 as Lua 5.3+
-- does: there, percentiles may differ by a float32 rounding (< 2^-24 relative, a few ns for an IPDV)
local PACKED = string.pack ~= nil

local function close(a, b)
  if a == b then return true end
  local tol = 1e-9 * math.max(math.abs(a), math.abs(b))
  if not PACKED then tol = math.max(16, 1e-6 * math.max(math.abs(a), math.abs(b))) end
  return math.abs(a - b) <= tol
end

-- Deep equality, numbers within 1e-9 relative (summation order); every difference is listed.
local function diff(a, b, path, out)
  out = out or {}
  path = path or "summary"
  if type(a) == "number" and type(b) == "number" then
    if not close(a, b) then out[#out + 1] = path .. ": " .. tostring(a) .. " ~= " .. tostring(b) end
  elseif type(a) == "table" and type(b) == "table" then
    local keys = {}
    for k in pairs(a) do keys[k] = true end
    for k in pairs(b) do keys[k] = true end
    for k in pairs(keys) do diff(a[k], b[k], path .. "." .. tostring(k), out) end
  elseif a ~= b then
    out[#out + 1] = path .. ": " .. tostring(a) .. " ~= " .. tostring(b)
  end
  return out
end

local function assert_same_summary(want, got, what)
  local d = diff(want, got)
  table.sort(d)
  assert(#d == 0, (what or "") .. ": the C accumulator differs from the Lua one:\n  " ..
    table.concat(d, "\n  ", 1, math.min(#d, 20)))
end

-- Feed the same results to both accumulators; compare the summaries (with and without counters), and finish.
local function both(results, opts, counters)
  local a, c = stats.new(opts), stats.from_core(opts)
  for _, r in ipairs(results) do
    a:add(r)
    c:add(r)
  end
  assert_same_summary(a:summary(), c:summary(), "without counters")
  if counters then assert_same_summary(a:summary(counters), c:summary(counters), "with counters") end
  assert_same_summary(a:finish(counters, true), c:finish(counters, true), "finish")
  assert_same_summary(a:progress(), c:progress(), "progress") -- the live line's figures too
  return a, c
end

-- a tiny deterministic generator (no math.random: the same numbers on every Lua)
local function lcg(seed)
  local x = seed
  return function(n)
    x = (x * 1103515245 + 12345) % 2147483648
    return x % n
  end
end

local function ee(s, err) return { s = s, z = 0, scale = 0, mult = 1, error_ns = err } end

local function ok(seq, rtt, fwd, o)
  o = o or {}
  return { seq = seq, lost = false, rtt = rtt, fwd = fwd, bwd = rtt - fwd, refl_seq = o.refl_seq or seq,
    t1_source = o.t1_source or "kernel", sender_ee = o.sender_ee or ee(1, 1000.5), refl_ee = o.refl_ee or ee(1, 2000.25),
    rx_replies = o.rx_replies, clock_error = o.clock_error }
end
local function lost(seq) return { seq = seq, lost = true, t1_source = "user" } end

-- n packets with delays around 30 ms (beyond 2^24 ns: float32 rounding matters)
local function delays(rnd, seq)
  local fwd = 20000000 + rnd(3000000) + seq % 7
  return fwd + 10000000 + rnd(5000000), fwd
end

-- A reply carrying TLVs (specs for stamp.tlv.encode), as sender:step gives it: `packet`, `tlv_list`,
-- `tlvs` (the usable ones, first of each key), `tlv_ignored` when only the first `usable` are usable.
local function with_tlvs(r, specs, usable)
  r.packet = codec.encode_reflected { seq = r.refl_seq, sender_seq = r.seq, tlvs = specs }
  local list, map = tlv.decode(r.packet:sub(core.BASE_LEN + 1))
  r.tlv_list = list
  if usable and usable < #list then
    map = {}
    for i = 1, usable do if map[list[i].key] == nil then map[list[i].key] = list[i] end end
    r.tlv_ignored = #list - usable
  end
  r.tlvs = map
  return r
end

local function dm(s_txc, r_rxc, r_txc, flags) return { type = 5, flags = flags or 0, s_txc = s_txc, r_rxc = r_rxc, r_txc = r_txc } end

describe("stats in C (stamp.core.stats) against the Lua accumulator", function()
  it("in order", function()
    local rnd, res = lcg(1), {}
    for i = 0, 999 do res[#res + 1] = ok(i, delays(rnd, i)) end
    both(res, nil, { sent = 1000, duplicates = 2 })
  end)

  it("loss runs (episodes, the run being built at the summary)", function()
    local rnd, res = lcg(2), {}
    for i = 0, 1999 do
      if i % 97 < 3 or (i > 500 and i < 530) or i > 1990 then res[#res + 1] = lost(i) else res[#res + 1] = ok(i, delays(rnd, i)) end
    end
    both(res, nil, { sent = 2000 })
  end)

  it("reordering (RFC 4737 extents) and IPDV pairs whatever the arrival order", function()
    local rnd, res = lcg(3), {}
    local order = {}
    for i = 0, 2999 do order[#order + 1] = i end
    for _ = 1, 400 do -- swaps at distances up to 50
      local a = 1 + rnd(#order - 60)
      local b = a + 1 + rnd(50)
      order[a], order[b] = order[b], order[a]
    end
    for _, s in ipairs(order) do res[#res + 1] = ok(s, delays(rnd, s)) end
    local a = both(res)
    assert.is_true(a:summary().reordering.reordered > 100)
  end)

  it("a lost number declared twice, and received after it was declared lost", function()
    local rnd, res = lcg(4), {}
    for i = 0, 99 do
      if i % 10 == 3 then
        res[#res + 1] = lost(i)
        res[#res + 1] = lost(i)
        res[#res + 1] = lost(i - 1)
      elseif i % 10 == 4 then
        res[#res + 1] = lost(i)
        res[#res + 1] = ok(i - 1, delays(rnd, i))
      else
        res[#res + 1] = ok(i, delays(rnd, i))
      end
    end
    both(res, nil, { sent = 100 })
  end)

  it("clock errors, unsynchronized clocks, negative one-way delays, T1 sources", function()
    local rnd, res = lcg(5), {}
    for i = 0, 299 do
      local rtt, fwd = delays(rnd, i)
      if i % 13 == 0 then
        res[#res + 1] = { seq = i, lost = false, clock_error = true, rtt = -5, fwd = -9, bwd = 4, refl_seq = i, t1_source = "user",
          sender_ee = ee(1, 10), refl_ee = ee(1, 10) }
      elseif i == 150 then
        res[#res + 1] = ok(i, rtt, fwd, { sender_ee = ee(0, 5000.5) })
      elseif i > 200 and i % 5 == 0 then
        res[#res + 1] = ok(i, rtt, -fwd, { t1_source = "user" })
      else
        res[#res + 1] = ok(i, rtt, fwd)
      end
    end
    local a = both(res, nil, { sent = 300 })
    local s = a:summary()
    assert.same({ false, "unsynchronized clock" }, { s.owd.valid, s.owd.reason })
    assert.equal(24, s.clock_errors)
    -- negative delays first
    local b = {}
    for i = 0, 20 do b[#b + 1] = ok(i, 100000, i == 7 and -3000 or 30000) end
    assert.equal("negative delay", both(b):summary().owd.reason)
    -- no Error Estimates (hand-made results) and only clock errors
    local c = {}
    for i = 0, 9 do c[#c + 1] = { seq = i, rtt = 1000 * (i + 1), fwd = 400, bwd = 600, refl_seq = i } end
    assert.equal("no error estimate", both(c):summary().owd.reason)
    both { res[1], lost(1), res[14] }
  end)

  it("more than 65,536 packets: the histograms, a summary right after the switch and after it", function()
    local rnd = lcg(6)
    local a, c = stats.new(), stats.from_core()
    local seq, received = 0, 0
    local function feed(r)
      a:add(r)
      c:add(r)
    end
    local function upto(n)
      while received < n do
        if seq % 1000 == 999 then
          feed(lost(seq))
        elseif seq % 500 == 17 then -- a swap of neighbours: reordering and IPDV across arrivals
          feed(ok(seq + 1, delays(rnd, seq + 1)))
          feed(ok(seq, delays(rnd, seq)))
          seq, received = seq + 1, received + 2
        else
          local rtt, fwd = delays(rnd, seq)
          if seq % 3001 == 5 then fwd = rtt + 10 end -- a negative backward delay
          if seq % 40 < 4 then rtt, fwd = 30000000, 20000000 end -- zero IPDV (the histograms' zero bucket)
          feed(ok(seq, rtt, fwd))
          received = received + 1
        end
        seq = seq + 1
      end
    end
    upto(stats.SAMPLE_MAX - 1)
    assert_same_summary(a:summary(), c:summary(), "the last exact sample")
    upto(stats.SAMPLE_MAX)
    assert_same_summary(a:summary(), c:summary(), "right after the switch")
    upto(stats.SAMPLE_MAX + 200) -- part-way through the C conversion
    assert_same_summary(a:summary(), c:summary(), "during the conversion")
    upto(80000)
    local s = c:summary { sent = seq }
    assert_same_summary(a:summary { sent = seq }, s, "after it")
    assert.equal(80000, s.received)
    assert.is_true(s.rtt.p99 > s.rtt.median and s.ipdv.rtt.n > 70000)
  end)

  it("a stateful reflector's numbers: loss direction from them, hint or detection", function()
    local rnd, res, refl = lcg(7), {}, 0
    for i = 0, 499 do
      if i % 50 == 7 then
        res[#res + 1] = lost(i)
      else
        local rtt, fwd = delays(rnd, i)
        if i % 50 ~= 8 then refl = refl + 1 end -- 7: lost forward; 8: lost on the way back
        res[#res + 1] = ok(i, rtt, fwd, { refl_seq = refl - 1, rx_replies = #res + 1 })
      end
    end
    both(res, nil, { sent = 500 })
    both(res, { stateful_reflector = true }, { sent = 505, extra_replies = 3 })
    local same = {}
    for i = 0, 9 do same[#same + 1] = ok(i, 100000, 40000) end
    local a = both(same, { stateful_reflector = true }, { sent = 10 })
    assert.equal("reflector_sequence", a:summary().loss.direction.method)
  end)

  it("Direct Measurement TLVs in the packet: direction, U, ignored TLVs, counters going backwards", function()
    local rnd, res = lcg(8), {}
    for i = 0, 99 do
      local r = ok(i, delays(rnd, i))
      if i % 10 ~= 9 then res[#res + 1] = with_tlvs(r, { dm(i + 1, i + 1 - math.floor(i / 10), i + 1) }) end
    end
    local a = both(res, nil, { sent = 100 })
    assert.equal("direct_measurement", a:summary().loss.direction.method)
    -- the last one marked U: no direction from it
    local u = { res[1], with_tlvs(ok(1, 500000, 200000), { dm(2, 2, 2, tlv.U) }) }
    both(u, nil, { sent = 2 })
    -- a DM TLV after one that is not usable (tlv_ignored): not used; a malformed one (wrong length)
    both({ res[1], with_tlvs(ok(1, 500000, 200000), { tlv.padding { length = 8 }, dm(2, 2, 2) }, 1) }, nil, { sent = 2 })
    both({ res[1], with_tlvs(ok(1, 500000, 200000), { { type = 5, flags = 0, value = "12345678" } }) }, nil, { sent = 2 })
    -- counters that went backwards (a reflector restart), and an older packet's TLV arriving late
    local back = { with_tlvs(ok(0, 500000, 200000), { dm(1, 50, 50) }), with_tlvs(ok(2, 500000, 200000), { dm(3, 3, 3) }),
      with_tlvs(ok(1, 500000, 200000), { dm(2, 1, 1) }) }
    local b = both(back, nil, { sent = 3 })
    assert.truthy(b:summary().loss.direction.invalid)
    -- only R_TxC backwards
    back = { with_tlvs(ok(0, 500000, 200000), { dm(1, 1, 50) }), with_tlvs(ok(1, 500000, 200000), { dm(2, 2, 3) }) }
    assert.truthy(both(back, nil, { sent = 2 }):summary().loss.direction.invalid)
  end)

  it("a Type 12 TLV with C (a refused burst), and one without", function()
    local rnd, res = lcg(9), {}
    for i = 0, 39 do
      local flags = i % 4 == 0 and tlv.C or 0
      res[#res + 1] = with_tlvs(ok(i, delays(rnd, i)), { tlv.padding { length = 4 }, { type = 12, flags = flags } })
    end
    res[#res + 1] = with_tlvs({ seq = 40, clock_error = true, refl_seq = 40, t1_source = "kernel" }, { { type = 12, flags = tlv.C } })
    local a = both(res, nil, { sent = 41 })
    assert.equal(11, a:summary().extra_refused)
  end)

  it("absurd delays (a reflector's zeroed timestamps): integer sums wrap as Lua's do", function()
    if not math.type then return end -- Lua 5.1/LuaJIT: no integers, nothing wraps
    local res = {}
    for i = 0, 39 do
      local fwd = i % 2 == 0 and -3900000000000000000 or 20000000
      res[#res + 1] = ok(i, 30000000, fwd)
    end
    local s = both(res, nil, { sent = 40 }):summary()
    assert.same({ false, "negative delay" }, { s.owd.valid, s.owd.reason })
  end)

  it("aborted results are ignored", function()
    local rnd, res = lcg(10), {}
    for i = 0, 49 do
      if i > 40 then res[#res + 1] = { seq = i, lost = false, aborted = true, t1_source = "kernel" }
      else res[#res + 1] = ok(i, delays(rnd, i)) end
    end
    local a = both(res, nil, { sent = 50, aborted = 9 })
    assert.same({ 41, 0, 9 }, { a:finish({ sent = 50, aborted = 9 }).received, a:finish({ sent = 50, aborted = 9 }).lost,
      a:finish({ sent = 50, aborted = 9 }).aborted })
  end)

  it("nothing added, and merging C accumulators with Lua ones", function()
    both({}, nil, { sent = 0 })
    both({}, nil, { sent = 3 })
    local rnd, p1, p2 = lcg(11), {}, {}
    for i = 0, 99 do p1[#p1 + 1] = i % 9 == 0 and lost(i) or ok(i, delays(rnd, i)) end
    for i = 0, 59 do p2[#p2 + 1] = ok(i, delays(rnd, i)) end
    local a1, c1 = both(p1)
    local a2, c2 = both(p2)
    assert_same_summary(stats.merge { a1, a2 }, stats.merge { c1, c2 }, "merge")
    assert_same_summary(stats.merge({ a1, p2 }, { { sent = 100 }, { sent = 60 } }),
      stats.merge({ c1, c2 }, { { sent = 100 }, { sent = 60 } }), "merge with counters")
  end)

  it("the object: one class, tostring, close, bad arguments", function()
    local acc = assert(core.stats { stateful_reflector = true })
    assert.equal("stamp.stats", getmetatable(acc).__name)
    acc:add(ok(0, 100, 40))
    acc:add(lost(1))
    assert.equal("stamp.stats (1 received, 1 lost)", tostring(acc))
    assert.is_true(acc:snapshot().stateful)
    assert.has_error(function() acc:add { lost = true } end)
    assert.has_error(function() acc:add { seq = 1, rtt = 0.5, fwd = 0, bwd = 0, refl_seq = 1 } end)
    assert.has_error(function() acc:add { seq = 1, rtt = 5, fwd = 0, bwd = 0 } end) -- no refl_seq
    assert.has_error(function() core.stats { auth = "none" } end)
    assert.has_error(function() stats.from_core(5) end)
    acc:close()
    acc:close()
    assert.equal("stamp.stats (closed)", tostring(acc))
    assert.has_error(function() acc:snapshot() end)
    assert.has_error(function() acc:add(lost(2)) end)
  end)

  it("authenticated mode: the TLVs begin after the longer base packet", function()
    local key = string.rep("k", 16)
    local res = {}
    for i = 0, 4 do
      local r = ok(i, 400000, 100000)
      r.packet = codec.encode_reflected({ seq = i, sender_seq = i, tlvs = { { type = 12, flags = tlv.C } } }, "auth", key)
      r.tlv_list = tlv.decode(r.packet:sub(core.AUTH_BASE_LEN + 1))
      res[#res + 1] = r
    end
    local a, c = stats.new(), stats.from_core { auth = "auth" }
    for _, r in ipairs(res) do a:add(r) c:add(r) end
    assert.equal(5, c:summary().extra_refused)
    assert_same_summary(a:summary(), c:summary())
  end)

  it("from C (stamp_stats_add as a sender's step calls it): no allocation while 100,000 results are added", function()
    local out = h.run_c_tool("cstats_alloc", "", "-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc")
    assert.equal("allocs=0 received=99000 lost=1000 hist=1 refused=10000 t1_kernel=74000 t1_user=25000 err_ok=1 "
      .. "owd_valid=1 last_seq=99998 r_rxc=99000 episodes=1000\n", out)
  end)

  it("real results from a loopback sender and reflector (kernel timestamps, TLVs)", function()
    local r, s = h.loopback_pair({}, { count = 200, send_delay = 0.5, timeout = 5,
      tlvs = { tlv.direct_measurement(), tlv.padding { length = 16 } } })
    local results, sum = s:run { pump = function() r:step(0) end }
    local counters = s:counters()
    r:close()
    s:close()
    assert.equal(200, #results)
    assert.truthy(results[1].tlvs and results[1].tlvs.direct_measurement)
    local a, c = both(results, nil, counters)
    local cs = c:finish(counters, false)
    assert.equal(counters.received, cs.received)
    assert.is_true(cs.received > 0)
    assert.equal("direct_measurement", cs.loss.direction.method)
    assert_same_summary(a:finish(counters, false), cs, "finish")
    assert.same(sum.rtt.n, cs.rtt.n)
    assert.same(sum.rtt.median, cs.rtt.median)
  end)

  it("authenticated results fed by table need no `auth` option: a result says where its TLVs begin (review 10, 4)", function()
    local KEY = string.rep("k", 16)
    local r, s = h.loopback_pair({ auth = true, key = KEY, stateful = true },
      { auth = true, key = KEY, count = 50, send_delay = 0.5, timeout = 5,
        tlvs = { tlv.direct_measurement(), tlv.padding { length = 16 } } })
    local results = s:run { pump = function() r:step(0) end }
    local counters = s:counters()
    r:close()
    s:close()
    assert.equal(core.AUTH_BASE_LEN, results[1].tlv_offset)
    local _, c = both(results, nil, counters) -- stats.from_core() without `auth`
    assert.equal("direct_measurement", c:finish(counters, false).loss.direction.method)
    -- a result that says something else than a base length is refused, naming the field
    local bad = {}
    for k, v in pairs(results[1]) do bad[k] = v end
    bad.tlv_offset = 50
    assert.has_error(function() stats.from_core():add(bad) end, "bad field 'tlv_offset' of the result (44 or 112 expected, got 50)")
  end)
end)
