-- Statistics from known per-packet records, every figure computed by hand.
local stats = require "stamp.stats"

local MS = 1e6
local function ee(s, err) return { s = s, z = 0, scale = 0, mult = 1, error_ns = err } end

-- rtt, fwd, bwd in ms; refl_seq; returned in arrival order
local function rec(seq, rtt, fwd, bwd, refl, se, re)
  return { seq = seq, lost = false, rtt = rtt * MS, fwd = fwd * MS, bwd = bwd * MS, refl_seq = refl, t1 = seq * 10 * MS,
    sender_ee = se or ee(1, 1000), refl_ee = re or ee(1, 2000) }
end
local function lost(seq) return { seq = seq, lost = true, t1 = seq * 10 * MS } end

local function near(a, b, what) assert(math.abs(a - b) < 1e-6 * math.max(1, math.abs(b)), (what or "") .. ": " .. a .. " ~= " .. b) end

describe("stats", function()
  -- arrival order: 0 1 3 2 6 8; lost 4 5 7 (declared in between)
  local results = {
    rec(0, 1.0, 0.6, 0.4, 0), rec(1, 2.0, 1.2, 0.8, 1), rec(3, 2.5, 1.5, 1.0, 3), rec(2, 3.0, 1.5, 1.5, 2),
    lost(4), lost(5), rec(6, 1.5, 1.0, 0.5, 5), lost(7), rec(8, 4.0, 2.5, 1.5, 7),
  }
  local s = stats.summary(results, { sent = 9, duplicates = 1, late = 0 })

  it("counts packets and loss", function()
    assert.same({ 9, 6, 3, 1, 0 }, { s.sent, s.received, s.lost, s.duplicates, s.late })
    near(s.loss_pct, 100 / 3, "loss_pct")
  end)

  it("round-trip delay: min, max, mean, nearest-rank percentiles, sample stddev", function()
    near(s.rtt.min, 1.0 * MS)
    near(s.rtt.max, 4.0 * MS)
    near(s.rtt.mean, 14 / 6 * MS)
    near(s.rtt.median, 2.0 * MS)
    near(s.rtt.p90, 4.0 * MS)
    near(s.rtt.p95, 4.0 * MS)
    near(s.rtt.p99, 4.0 * MS)
    near(s.rtt.stddev, math.sqrt(5.8333333333333 / 5) * MS, "stddev")
    assert.equal(6, s.rtt.n)
  end)

  it("one-way delays with their error bound", function()
    near(s.fwd.min, 0.6 * MS)
    near(s.fwd.max, 2.5 * MS)
    near(s.fwd.mean, 8.3 / 6 * MS)
    near(s.fwd.median, 1.2 * MS)
    near(s.bwd.min, 0.4 * MS)
    near(s.bwd.max, 1.5 * MS)
    near(s.bwd.mean, 5.7 / 6 * MS)
    near(s.bwd.median, 0.8 * MS)
    assert.is_true(s.owd.valid)
    assert.equal(3000, s.owd.error_bound)
  end)

  it("IPDV (RFC 3393) over consecutive received sequence numbers", function()
    -- pairs (0,1) +1.0, (1,2) +1.0, (2,3) -0.5
    assert.equal(3, s.ipdv.rtt.n)
    near(s.ipdv.rtt.min, -0.5 * MS)
    near(s.ipdv.rtt.max, 1.0 * MS)
    near(s.ipdv.rtt.mean, 0.5 * MS)
    near(s.ipdv.rtt.median, 1.0 * MS)
    near(s.ipdv.rtt.mean_abs, 2.5 / 3 * MS)
    -- forward: 0.6, 0.3, 0.0
    near(s.ipdv.fwd.max, 0.6 * MS)
    near(s.ipdv.fwd.min, 0)
  end)

  it("PDV (RFC 5481) relative to the minimum", function()
    -- rtt - 1.0: 0 1 2 1.5 0.5 3
    near(s.pdv.rtt.min, 0)
    near(s.pdv.rtt.median, 1.0 * MS)
    near(s.pdv.rtt.p95, 3.0 * MS)
    near(s.pdv.rtt.max, 3.0 * MS)
    near(s.pdv.rtt.mean, 8 / 6 * MS)
    near(s.pdv.bwd.max, 1.1 * MS)
  end)

  it("loss episodes", function()
    assert.same({ 2, 2 }, { s.loss.episodes, s.loss.longest_burst })
    near(s.loss.mean_burst, 1.5)
  end)

  it("forward vs backward loss from a stateful reflector's sequence numbers", function()
    -- reflector got 0-4 and 6-8 (5 lost forward); replies 4 and 7 lost backward
    assert.same({ "reflector_sequence", 1, 2, 0 },
      { s.loss.direction.method, s.loss.direction.forward, s.loss.direction.backward, s.loss.direction.undetermined })
  end)

  it("reordering (RFC 4737)", function()
    assert.equal(1, s.reordering.reordered)
    near(s.reordering.ratio, 1 / 6)
    assert.equal(1, s.reordering.max_extent)
  end)

  it("forward vs backward loss from Direct Measurement counters", function()
    local r = { rec(0, 1, 0.5, 0.5, 0), lost(1), lost(2), rec(3, 1, 0.5, 0.5, 3) }
    r[4].tlvs = { direct_measurement = { u = false, s_txc = 4, r_rxc = 3, r_txc = 3 } }
    local d = stats.summary(r, { sent = 6 }).loss.direction
    -- sent 4 so far, reflector got 3 (1 forward), sent 3 replies, we got 2 (1 backward); 2 more after seq 3
    assert.same({ "direct_measurement", 1, 1, 2 }, { d.method, d.forward, d.backward, d.undetermined })
  end)

  it("no loss direction from a stateless reflector", function()
    local d = stats.summary({ rec(0, 1, 0.5, 0.5, 0), lost(1), rec(2, 1, 0.5, 0.5, 2) }).loss.direction
    assert.is_nil(d)
  end)

  it("flags one-way delays when a clock is unsynchronized", function()
    local r = { rec(0, 1, 0.5, 0.5, 0), rec(1, 1, 0.5, 0.5, 1, ee(1, 10), ee(0, 1e9)) }
    local x = stats.summary(r)
    assert.is_false(x.owd.valid)
    assert.equal("unsynchronized clock", x.owd.reason)
  end)

  it("flags one-way delays when one comes out negative", function()
    local r = { rec(0, 1, -0.2, 1.2, 0), rec(1, 1, 0.5, 0.5, 1) }
    local x = stats.summary(r)
    assert.is_false(x.owd.valid)
    assert.equal("negative delay", x.owd.reason)
    local report = require "stamp.report"
    local text = report.text_summary(x)
    assert.matches("Forward delay: not reliable %(negative delay%)", text)
    assert.not_matches("%-0%.200", text)
  end)

  it("an empty run", function()
    local x = stats.summary({}, { sent = 0 })
    assert.same({ 0, 0, 0, 0 }, { x.sent, x.received, x.lost, x.loss_pct })
    assert.is_nil(x.rtt)
    assert.is_false(x.owd.valid)
  end)

  it("percentile by nearest rank", function()
    local v = { 15, 20, 35, 40, 50 }
    assert.same({ 15, 20, 20, 50, 50, 7 }, { stats.percentile(v, 5), stats.percentile(v, 30), stats.percentile(v, 40),
      stats.percentile(v, 95), stats.percentile(v, 100), stats.percentile({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, 70) })
  end)
end)

describe("stats: RFC 4737 reordering extent", function()
  local function arrivals(seqs)
    local r = {}
    for i, q in ipairs(seqs) do r[i] = rec(q, 1, 0.5, 0.5, q) end
    return stats.summary(r).reordering
  end

  it("arrivals 0,5,1,2,3,4: packets 1..4 reordered with extents 1,2,3,4", function()
    local x = arrivals { 0, 5, 1, 2, 3, 4 }
    assert.equal(4, x.reordered)
    assert.equal(4, x.max_extent)
    near(x.mean_extent, 2.5)
  end)

  it("the extent counts back to the earliest later-numbered arrival, not only the ones still ahead", function()
    -- 3 arrives at position 4; the earliest arrival above 3 is 4 at position 2: extent 2
    local x = arrivals { 0, 4, 5, 3, 1, 2 }
    -- 3: 4-2 = 2; 1: 5-2 = 3; 2: 6-2 = 4
    assert.same({ 3, 4 }, { x.reordered, x.max_extent })
    near(x.mean_extent, 3)
  end)

  it("a long reversed stretch stays exact", function()
    local seqs = {}
    for i = 0, 1999 do seqs[#seqs + 1] = 1999 - i end
    local x = arrivals(seqs)
    assert.equal(1999, x.reordered)
    assert.equal(1999, x.max_extent)
  end)
end)

describe("stats.merge: a campaign's overall figures", function()
  local function session(list) return list end

  it("IPDV pairs and loss episodes stay inside each session", function()
    -- session A: 0 1 received, 2 lost; session B: 0 lost, 1 2 received
    local a = session { rec(0, 1, 0.5, 0.5, 0), rec(1, 2, 1, 1, 1), lost(2) }
    local b = session { lost(0), rec(1, 5, 2.5, 2.5, 1), rec(2, 6, 3, 3, 2) }
    local m = stats.merge({ a, b })
    assert.same({ 6, 4, 2 }, { m.sent, m.received, m.lost })
    assert.equal(2, m.ipdv.rtt.n)          -- (0,1) in A and (1,2) in B; nothing across
    near(m.ipdv.rtt.max, 1 * MS)
    assert.same({ 2, 1 }, { m.loss.episodes, m.loss.longest_burst })
    near(m.rtt.mean, 14 / 4 * MS)
    near(m.rtt.max, 6 * MS)
    near(m.pdv.rtt.max, 5 * MS)
  end)

  it("takes accumulators and the sessions' counters", function()
    local a, b = stats.new(), stats.new()
    for i = 0, 9 do a:add(rec(i, 1 + i / 10, 0.5, 0.5, i)) end
    for i = 0, 4 do b:add(rec(i, 3, 1.5, 1.5, i)) end
    local m = stats.merge({ a, b }, { { sent = 12, duplicates = 1 }, { sent = 5 } })
    assert.same({ 17, 15, 2, 1 }, { m.sent, m.received, m.lost, m.duplicates })
    assert.equal(15, m.rtt.n)
    assert.equal(13, m.ipdv.rtt.n)
    near(m.rtt.median, 1.7 * MS)
  end)
end)

describe("stats: bounded memory", function()
  local function feed(acc, from, to)
    for i = from, to - 1 do
      if i % 97 == 0 then
        acc:add { seq = i, lost = true }
      else
        acc:add { seq = i, lost = false, rtt = 1e6 + (i % 1000) * 1000, fwd = 5e5, bwd = 5e5 + (i % 1000) * 1000,
          refl_seq = i, octets = string.rep("x", 44) .. i }
      end
    end
  end

  it("feeding 200,000 results: the accumulator does not grow with the packet count", function()
    local acc = stats.new()
    feed(acc, 0, 100000)
    collectgarbage()
    collectgarbage()
    local at100k = collectgarbage("count")
    feed(acc, 100000, 200000)
    collectgarbage()
    collectgarbage()
    local at200k = collectgarbage("count")
    assert.is_true(at200k - at100k < 256, string.format("grew %.0f KiB over 100,000 results", at200k - at100k))
    local s = acc:summary()
    assert.equal(200000, s.sent)
    local lostn = math.floor(199999 / 97) + 1
    assert.equal(200000 - lostn, s.received)
    assert.equal(lostn, s.loss.episodes)
  end)

  it("the switch to histograms is spread over the next adds (no stall), and a summary taken mid-way is complete", function()
    -- converting the 65,536-packet sample at once stalled a 100,000 packets/s sender ~50 ms (issue 10)
    local acc, vals = stats.new(), {}
    local x = 777
    for i = 0, stats.SAMPLE_MAX + 99 do
      x = (x * 1103515245 + 12345) % 2147483648
      local v = 1e5 + x % 5e7
      vals[#vals + 1] = v
      acc:add { seq = i, lost = false, rtt = v, fwd = v / 2, bwd = v / 2, refl_seq = i }
    end
    assert.is_not_nil(acc.convert, "100 adds after the switch, the old sample is still being converted")
    local s = acc:summary()
    assert.is_nil(acc.convert)
    assert.equal(#vals, s.received)
    table.sort(vals)
    for _, p in ipairs { 50, 90, 99 } do
      local exact = stats.percentile(vals, p)
      local got = s.rtt[p == 50 and "median" or ("p" .. p)]
      assert.is_true(math.abs(got - exact) <= exact * stats.HIST_ERROR + 1, string.format("p%d %g vs %g", p, got, exact))
    end
    assert.equal(#vals - 1, s.ipdv.rtt.n) -- every consecutive pair, old sample and new packets alike
  end)

  it("histogram percentiles stay within the documented relative error", function()
    local acc = stats.new()
    local vals = {}
    local x = 12345
    for i = 0, 199999 do
      x = (x * 1103515245 + 12345) % 2147483648
      local v = 1e5 + x % 5e7 -- 0.1 to 50 ms
      vals[#vals + 1] = v
      acc:add { seq = i, lost = false, rtt = v, fwd = v / 2, bwd = v / 2, refl_seq = i }
    end
    local s = acc:summary()
    table.sort(vals)
    for _, p in ipairs { { "median", 50 }, { "p90", 90 }, { "p95", 95 }, { "p99", 99 } } do
      local exact = stats.percentile(vals, p[2])
      assert.is_true(math.abs(s.rtt[p[1]] - exact) <= stats.HIST_ERROR * exact + 1, p[1])
    end
    assert.equal(vals[1], s.rtt.min)
    assert.equal(vals[#vals], s.rtt.max)
    assert.equal(199999, s.ipdv.rtt.n)
  end)

  it("results held back by reordering are put back in sequence order", function()
    local acc = stats.new()
    -- 1 arrives late; 3 is lost and reported last
    for _, q in ipairs { 0, 2, 1, 4 } do acc:add(rec(q, 1 + q, 0.5, 0.5 + q, q)) end
    local mid = acc:summary()
    assert.same({ 2, 0 }, { mid.ipdv.rtt.n, mid.loss.episodes })
    acc:add(lost(3))
    local s = acc:summary()
    assert.same({ 2, 1, 1 }, { s.ipdv.rtt.n, s.loss.episodes, s.loss.longest_burst })
  end)
end)
