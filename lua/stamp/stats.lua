--- Statistics over per-packet results, per the IPPM RFCs, in bounded memory.
--
-- All durations are nanoseconds (numbers). Definitions:
--
-- * percentiles use the nearest-rank method: the p-th percentile of n sorted
--   values is the value of rank ceil(p/100 * n);
-- * `stddev` is the sample standard deviation (n - 1);
-- * IPDV (RFC 3393): D(i+1) - D(i) for consecutive sequence numbers that were
--   both received; PDV (RFC 5481): D(i) - min D;
-- * reordering (RFC 4737): a packet is reordered when its sequence number is
--   lower than the highest one received before it; its extent is its arrival
--   position minus the arrival position of the earliest packet with a higher
--   sequence number (arrivals 0,5,1,2,3,4 give extents 1,2,3,4);
-- * one-way delays carry an error bound (the sum of the two Error Estimates) and
--   are flagged unreliable when either clock is unsynchronized (S = 0) or a
--   delay comes out negative.
--
-- Memory: an accumulator keeps no result table. `n`, `min`, `max`, `mean`,
-- `stddev` and `mean_abs` are exact running figures. Percentiles come from a
-- compact sample of 16 octets per received packet (sequence number and the three
-- delays as 32-bit floats, relative rounding at most 2^-24) for the first
-- `SAMPLE_MAX` (65,536) packets; beyond that, from log-bucketed histograms whose
-- percentiles are within `HIST_ERROR` (0.5 %) of the exact value (or within 1 ns
-- of zero). On Lua 5.1 and LuaJIT, which lack `string.pack`, the sample is kept
-- as four numbers per packet. IPDV pairs are found among the last `IPDV_WINDOW`
-- (4,096) sequence numbers received, whatever the arrival order; loss episodes
-- are runs of consecutive lost sequence numbers; reordering extents are exact
-- up to `REORDER_WINDOW` (65,536) packets and a lower bound beyond.
-- @module stamp.stats
local M = {}

local ceil, sqrt, huge, log, abs = math.ceil, math.sqrt, math.huge, math.log, math.abs
local spack, sunpack = string.pack, string.unpack

--- Received packets kept in the exact sample before switching to histograms.
M.SAMPLE_MAX = 65536
--- Relative error of a histogram percentile (0.005 = 0.5 %).
M.HIST_ERROR = 0.005
--- IPDV pairs are found among the last this many sequence numbers received.
M.IPDV_WINDOW = 4096
--- Arrivals looked back over for a reordering extent.
M.REORDER_WINDOW = 65536

local GAMMA = (1 + M.HIST_ERROR) / (1 - M.HIST_ERROR)
local LOG_GAMMA = log(GAMMA)
local CHUNK = 4096 -- sample records per packed string
local FMT = "<I4fff"

--- Nearest-rank percentile of a sorted array.
-- @tparam table sorted ascending values
-- @tparam number p 0..100
-- @treturn number|nil
function M.percentile(sorted, p)
  local n = #sorted
  if n == 0 then return nil end
  local rank = ceil(p * n / 100) -- p * n first: exact for whole percentiles
  if rank < 1 then rank = 1 end
  return sorted[rank]
end

--- Distribution of an array of numbers: `n`, `min`, `max`, `mean`, `median`, `p90`, `p95`, `p99`, `stddev`.
-- @tparam table values
-- @treturn table|nil nil when empty
function M.describe(values)
  local n = #values
  if n == 0 then return nil end
  local s = {}
  local sum = 0
  for i = 1, n do
    s[i] = values[i]
    sum = sum + values[i]
  end
  table.sort(s)
  local mean = sum / n
  local var = 0
  for i = 1, n do var = var + (s[i] - mean) ^ 2 end
  return {
    n = n, min = s[1], max = s[n], mean = mean,
    median = M.percentile(s, 50), p90 = M.percentile(s, 90), p95 = M.percentile(s, 95), p99 = M.percentile(s, 99),
    stddev = n > 1 and sqrt(var / (n - 1)) or 0,
  }
end

-- ------------------------------------------------------------------
-- Running moments (exact), log-bucketed histograms
-- ------------------------------------------------------------------

local function mom_new() return { n = 0, mean = 0, m2 = 0, min = huge, max = -huge, sabs = 0 } end

local function mom_add(m, v)
  local n = m.n + 1
  local d = v - m.mean
  m.n = n
  m.mean = m.mean + d / n
  m.m2 = m.m2 + d * (v - m.mean)
  if v < m.min then m.min = v end
  if v > m.max then m.max = v end
  m.sabs = m.sabs + abs(v)
end

local function mom_merge(a, b)
  if a.n == 0 then return { n = b.n, mean = b.mean, m2 = b.m2, min = b.min, max = b.max, sabs = b.sabs } end
  if b.n == 0 then return { n = a.n, mean = a.mean, m2 = a.m2, min = a.min, max = a.max, sabs = a.sabs } end
  local n = a.n + b.n
  local d = b.mean - a.mean
  return { n = n, mean = a.mean + d * b.n / n, m2 = a.m2 + b.m2 + d * d * a.n * b.n / n,
    min = a.min < b.min and a.min or b.min, max = a.max > b.max and a.max or b.max, sabs = a.sabs + b.sabs }
end

-- Bucket k holds magnitudes in (GAMMA^(k-1), GAMMA^k]; its representative 2 GAMMA^k / (GAMMA + 1) is
-- within HIST_ERROR of every value in it. Magnitudes below 1 ns count as zero.
local function hist_new() return { pos = {}, neg = {}, zero = 0, n = 0 } end

local function hist_add(h, v, c)
  c = c or 1
  if v >= 1 then
    local k = ceil(log(v) / LOG_GAMMA)
    h.pos[k] = (h.pos[k] or 0) + c
  elseif v <= -1 then
    local k = ceil(log(-v) / LOG_GAMMA)
    h.neg[k] = (h.neg[k] or 0) + c
  else
    h.zero = h.zero + c
  end
  h.n = h.n + c
end

local function hist_merge(into, h)
  for k, c in pairs(h.pos) do into.pos[k] = (into.pos[k] or 0) + c end
  for k, c in pairs(h.neg) do into.neg[k] = (into.neg[k] or 0) + c end
  into.zero, into.n = into.zero + h.zero, into.n + h.n
end

local function rep(k) return 2 * GAMMA ^ k / (GAMMA + 1) end

-- Nearest-rank percentiles (list of p) of a histogram, in ascending order of p.
local function hist_percentiles(h, ps)
  local order = {}
  local nk = {}
  for k in pairs(h.neg) do nk[#nk + 1] = k end
  table.sort(nk, function(a, b) return a > b end)
  for _, k in ipairs(nk) do order[#order + 1] = { -rep(k), h.neg[k] } end
  if h.zero > 0 then order[#order + 1] = { 0, h.zero } end
  local pk = {}
  for k in pairs(h.pos) do pk[#pk + 1] = k end
  table.sort(pk)
  for _, k in ipairs(pk) do order[#order + 1] = { rep(k), h.pos[k] } end
  local out, i, cum = {}, 1, 0
  for j, p in ipairs(ps) do
    local rank = ceil(p * h.n / 100)
    if rank < 1 then rank = 1 end
    while i <= #order and cum + order[i][2] < rank do
      cum = cum + order[i][2]
      i = i + 1
    end
    out[j] = order[i] and order[i][1] or order[#order][1]
  end
  return out
end

local PS = { 50, 90, 95, 99 }

-- A distribution: exact moments plus either `vals` (the exact sample) or `hist`.
local function dist_describe(d, shift, with_abs)
  local m = d.mom
  if m.n == 0 then return nil end
  shift = shift or 0
  local p
  if d.vals then
    table.sort(d.vals)
    p = {}
    for i, q in ipairs(PS) do p[i] = M.percentile(d.vals, q) end
  else
    p = hist_percentiles(d.hist, PS)
  end
  for i = 1, #p do -- sample rounding or bucket width never takes a percentile outside [min, max]
    if p[i] < m.min then p[i] = m.min elseif p[i] > m.max then p[i] = m.max end
    p[i] = p[i] - shift
  end
  local out = { n = m.n, min = m.min - shift, max = m.max - shift, mean = m.mean - shift,
    median = p[1], p90 = p[2], p95 = p[3], p99 = p[4], stddev = m.n > 1 and sqrt(m.m2 / (m.n - 1)) or 0 }
  if with_abs then out.mean_abs = m.sabs / m.n end
  return out
end

local function dist_merge(list)
  local mom, total, exact = mom_new(), 0, true
  for _, d in ipairs(list) do
    mom = mom_merge(mom, d.mom)
    total = total + d.mom.n
    if not d.vals then exact = false end
  end
  if exact and total <= M.SAMPLE_MAX then
    local vals = {}
    for _, d in ipairs(list) do for _, v in ipairs(d.vals) do vals[#vals + 1] = v end end
    return { mom = mom, vals = vals }
  end
  local h = hist_new()
  for _, d in ipairs(list) do
    if d.vals then for _, v in ipairs(d.vals) do hist_add(h, v) end else hist_merge(h, d.hist) end
  end
  return { mom = mom, hist = h }
end

-- ------------------------------------------------------------------
-- The sample (arrival order), histograms, IPDV pairs, loss episodes
-- ------------------------------------------------------------------

local function sample_append(self, seq, rtt, fwd, bwd)
  self.ns = self.ns + 1
  if spack then
    local b = self.buf
    b[#b + 1] = spack(FMT, seq, rtt, fwd, bwd)
    if #b >= CHUNK then
      self.chunks[#self.chunks + 1] = table.concat(b)
      self.buf = {}
    end
  else
    local n = self.ns
    self.sseq[n], self.srtt[n], self.sfwd[n], self.sbwd[n] = seq, rtt, fwd, bwd
  end
end

-- Call fn(seq, rtt, fwd, bwd) for each sample record, in arrival order.
local function sample_each(self, fn)
  if spack then
    local size = #spack(FMT, 0, 0, 0, 0)
    local function each(s)
      for pos = 1, #s, size do fn(sunpack(FMT, s, pos)) end
    end
    for _, c in ipairs(self.chunks) do each(c) end
    for _, r in ipairs(self.buf) do each(r) end
  else
    for i = 1, self.ns do fn(self.sseq[i], self.srtt[i], self.sfwd[i], self.sbwd[i]) end
  end
end

local function sample_reset(self)
  self.ns, self.chunks, self.buf, self.sseq, self.srtt, self.sfwd, self.sbwd = 0, {}, {}, {}, {}, {}, {}
end

local KEYS = { "rtt", "fwd", "bwd" }

-- The sample's values, and its IPDV pairs (both packets of a pair in the sample). `pace`, when given, is
-- called once per record and per IPDV pair (the conversion to histograms yields there).
local function sample_values(self, pace)
  local v = { rtt = {}, fwd = {}, bwd = {}, irtt = {}, ifwd = {}, ibwd = {} }
  local at = {}
  local seqs = {}
  sample_each(self, function(seq, rtt, fwd, bwd)
    local n = #v.rtt + 1
    v.rtt[n], v.fwd[n], v.bwd[n], seqs[n] = rtt, fwd, bwd, seq
    at[seq] = n
    if pace then pace() end
  end)
  for n = 1, #seqs do
    local m = at[seqs[n] - 1]
    if m then
      local i = #v.irtt + 1
      v.irtt[i], v.ifwd[i], v.ibwd[i] = v.rtt[n] - v.rtt[m], v.fwd[n] - v.fwd[m], v.bwd[n] - v.bwd[m]
    end
    if pace then pace() end
  end
  return v
end

-- Work units (a sample record, an IPDV pair or a histogram insertion) the conversion does per `add`.
local CONVERT_STEP = 16

-- Leave the sample for histograms without stalling the caller: from now on every value goes to the
-- histograms, and the sample taken so far is moved into them a few values per `add` (a coroutine),
-- the rest at the summary. Converting 65,536 packets at once took ~50 ms, long enough for a sender at
-- 100,000 packets/s to overflow its socket's receive queue.
local function to_hist(self)
  local h = {}
  for _, k in ipairs { "rtt", "fwd", "bwd", "irtt", "ifwd", "ibwd" } do h[k] = hist_new() end
  local frozen = { ns = self.ns, chunks = self.chunks, buf = self.buf, sseq = self.sseq, srtt = self.srtt,
    sfwd = self.sfwd, sbwd = self.sbwd }
  sample_reset(self)
  self.hist = h
  local yield, budget = coroutine.yield, CONVERT_STEP
  local function pace()
    budget = budget - 1
    if budget <= 0 then
      budget = CONVERT_STEP
      yield()
    end
  end
  self.convert = coroutine.create(function()
    local v = sample_values(frozen, pace)
    frozen = nil
    for k, list in pairs(v) do
      local hk = h[k]
      for i = 1, #list do
        hist_add(hk, list[i])
        pace()
      end
    end
  end)
end

-- Advance the conversion to histograms (`all`: to its end).
local function convert(self, all)
  local co = self.convert
  repeat
    local ok, err = coroutine.resume(co)
    if not ok then error(err, 0) end
  until not all or coroutine.status(co) == "dead"
  if coroutine.status(co) == "dead" then self.convert = nil end
end

-- An IPDV pair: packets `a` and `a + 1`, values (rtt, fwd, bwd) of each.
local function ipdv_pair(self, r1, f1, b1, r2, f2, b2)
  local a, b, c = r2 - r1, f2 - f1, b2 - b1
  mom_add(self.irtt, a)
  mom_add(self.ifwd, b)
  mom_add(self.ibwd, c)
  local h = self.hist
  if h then
    hist_add(h.irtt, a)
    hist_add(h.ifwd, b)
    hist_add(h.ibwd, c)
  end
end

local Acc = {}
Acc.__index = Acc

--- A new accumulator.
-- @tparam[opt] table opts `stateful_reflector = true` when the reflector numbers its replies itself
--   (enables forward/backward loss from reflector sequence numbers)
-- @treturn table with `add(result)` and `summary(counters)`
function M.new(opts)
  opts = opts or {}
  local self = setmetatable({
    opts = opts, lost = 0, n = 0, max_seq = -1, clock_errors = 0, extra_refused = 0, t1_kernel = 0, t1_user = 0,
    rtt = mom_new(), fwd = mom_new(), bwd = mom_new(), irtt = mom_new(), ifwd = mom_new(), ibwd = mom_new(),
    owd_valid = true, owd_reason = nil, err_bound = 0, stateful = opts.stateful_reflector or false,
    -- IPDV: the last IPDV_WINDOW received packets by sequence number
    wseq = {}, wrtt = {}, wfwd = {}, wbwd = {},
    -- loss episodes: the run of consecutive lost sequence numbers being built
    run_first = nil, run_last = nil, episodes = 0, longest = 0, burst_total = 0,
    -- reordering (arrival order of received packets)
    pos = 0, max_seen = -1, rc = 0, rseq = {}, rpos = {}, reordered = 0, ext = mom_new(),
  }, Acc)
  sample_reset(self)
  return self
end

-- Is this packet's one-way delay usable? Returns ok, reason.
local function owd_ok(r)
  if not (r.sender_ee and r.refl_ee) then return false, "no error estimate" end
  if r.sender_ee.s ~= 1 or r.refl_ee.s ~= 1 then return false, "unsynchronized clock" end
  if r.fwd < 0 or r.bwd < 0 then return false, "negative delay" end
  return true
end
M.owd_ok = owd_ok

-- Reordering (RFC 4737) for a received packet, in arrival order.
local function reorder(self, seq)
  local pos = self.pos + 1
  self.pos = pos
  local W = M.REORDER_WINDOW
  if seq > self.max_seen then
    self.max_seen = seq
    local rc = self.rc + 1
    self.rc = rc
    local slot = (rc - 1) % W + 1
    self.rseq[slot], self.rpos[slot] = seq, pos
  elseif seq < self.max_seen then
    -- the earliest arrival with a higher number set a new maximum: binary search the recent maxima
    local lo, hi = self.rc - W + 1, self.rc
    if lo < 1 then lo = 1 end
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if self.rseq[(mid - 1) % W + 1] > seq then hi = mid else lo = mid + 1 end
    end
    self.reordered = self.reordered + 1
    mom_add(self.ext, pos - self.rpos[(lo - 1) % W + 1])
  end
end

local function close_run(self)
  local len = self.run_last - self.run_first + 1
  self.episodes, self.burst_total = self.episodes + 1, self.burst_total + len
  if len > self.longest then self.longest = len end
  self.run_first, self.run_last = nil, nil
end

-- Loss episodes: runs of consecutive lost sequence numbers (loss records come in sequence order).
local function lost_seq(self, seq)
  local first, last = self.run_first, self.run_last
  if first and seq == last + 1 then
    self.run_last = seq
  elseif first and seq == first - 1 then
    self.run_first = seq
  elseif not (first and seq >= first and seq <= last) then
    if first then close_run(self) end
    self.run_first, self.run_last = seq, seq
  end
end

--- Add one per-packet result (as returned by `sender:step`; aborted ones are ignored). Nothing of `r` is kept.
-- @tparam table r
function Acc:add(r)
  -- abandoned at a second Ctrl-C, or no reply asked for and none came: neither received nor lost
  if r.aborted or r.no_reply then return end
  local seq = r.seq
  if seq > self.max_seq then self.max_seq = seq end
  if r.lost then
    self.lost = self.lost + 1
    lost_seq(self, seq)
    return
  end
  local tl = r.tlv_list -- a reply whose usable Type 12 TLV has C: the reflector did not grant the burst (RFC 10052 3)
  if tl then
    for i = 1, #tl - math.min(r.tlv_ignored or 0, #tl) do
      local t = tl[i]
      if t.c and (t.type == 12 or t.key == "reflected_control") then self.extra_refused = self.extra_refused + 1 break end
    end
  end
  local src = r.t1_source -- where T1 came from: the kernel's transmit timestamp or the user-space clock
  if src == "kernel" then self.t1_kernel = self.t1_kernel + 1 elseif src == "user" then self.t1_user = self.t1_user + 1 end
  if r.clock_error then -- T4 before T1 or a negative RTT: received, but no delay is taken from it
    self.n, self.clock_errors = self.n + 1, self.clock_errors + 1
    reorder(self, seq)
    return
  end
  local rtt, fwd, bwd = r.rtt, r.fwd, r.bwd
  self.n = self.n + 1
  self.last_rtt = rtt
  mom_add(self.rtt, rtt)
  mom_add(self.fwd, fwd)
  mom_add(self.bwd, bwd)
  local ok, why = owd_ok(r)
  if not ok and self.owd_valid then self.owd_valid, self.owd_reason = false, why end
  if r.sender_ee and r.refl_ee then
    local e = r.sender_ee.error_ns + r.refl_ee.error_ns
    if e > self.err_bound then self.err_bound = e end
  end
  if r.refl_seq ~= seq then self.stateful = true end
  if not self.last or seq > self.last.seq then
    local dm = r.tlvs and r.tlvs.direct_measurement
    local prev = self.last and self.last.dm
    if dm and prev and not dm.u and not prev.u and ((dm.r_rxc or 0) < (prev.r_rxc or 0)
      or (dm.r_txc or 0) < (prev.r_txc or 0)) then
      self.dm_backwards = true -- the reflector's counters went backwards (a restart, another session's counters)
    end
    -- rx_replies: replies received up to this one, type 12 extra replies included (the reflector's
    -- R_TxC counts those too); results without it (hand-made) fall back to the received count
    self.last = { seq = seq, refl_seq = r.refl_seq, rx_replies = r.rx_replies,
      dm = dm and { u = dm.u, s_txc = dm.s_txc, r_rxc = dm.r_rxc, r_txc = dm.r_txc } }
  end
  reorder(self, seq)
  -- IPDV with the neighbours already here (by sequence number, whatever the arrival order)
  local W = M.IPDV_WINDOW
  local ws, wr, wf, wb = self.wseq, self.wrtt, self.wfwd, self.wbwd
  local lo, hi, me = (seq - 1) % W + 1, (seq + 1) % W + 1, seq % W + 1
  if ws[lo] == seq - 1 then ipdv_pair(self, wr[lo], wf[lo], wb[lo], rtt, fwd, bwd) end
  if ws[hi] == seq + 1 then ipdv_pair(self, rtt, fwd, bwd, wr[hi], wf[hi], wb[hi]) end
  ws[me], wr[me], wf[me], wb[me] = seq, rtt, fwd, bwd
  -- the distributions: the sample, or beyond it the histograms
  if self.hist then
    hist_add(self.hist.rtt, rtt)
    hist_add(self.hist.fwd, fwd)
    hist_add(self.hist.bwd, bwd)
    if self.convert then convert(self) end
  else
    sample_append(self, seq, rtt, fwd, bwd)
    if self.ns >= M.SAMPLE_MAX then to_hist(self) end
  end
end

-- Everything a summary is made of; `self` is an accumulator or the snapshot of a C one (`vals`: its
-- sample's values, already with their IPDV pairs).
local function figures(self, counters)
  if self.convert then convert(self, true) end
  local d = {}
  local v = not self.hist and (self.vals or sample_values(self))
  for _, k in ipairs(KEYS) do
    local ik = "i" .. k
    if v then
      d[k] = { mom = self[k], vals = v[k] }
      d[ik] = { mom = self[ik], vals = v[ik] }
    else
      d[k] = { mom = self[k], hist = self.hist[k] }
      d[ik] = { mom = self[ik], hist = self.hist[ik] }
    end
  end
  local episodes, longest, burst_total = self.episodes, self.longest, self.burst_total
  if self.run_first then -- the run being built counts as it stands
    local len = self.run_last - self.run_first + 1
    episodes, burst_total = episodes + 1, burst_total + len
    if len > longest then longest = len end
  end
  local sent = counters and counters.sent or (self.n + self.lost)
  local f = {
    sent = sent, received = self.n,
    duplicates = counters and counters.duplicates or 0, late = counters and counters.late or 0,
    tx_errors = counters and counters.tx_errors or 0, drop_hmac = counters and counters.drop_hmac or 0,
    rx_overflow = counters and counters.rx_overflow or 0,
    drop_invalid = counters and counters.drop_invalid or 0, aborted = counters and counters.aborted or 0,
    no_reply = counters and counters.no_reply or 0,
    extra_replies = counters and counters.extra_replies or 0,
    extra_missing = counters and counters.extra_missing or 0, extra_refused = self.extra_refused,
    extra_unsupported = counters and counters.extra_unsupported or 0,
    access_report = counters and (counters.access_sent or 0) > 0 and { sent = counters.access_sent,
      retransmits = counters.access_retransmits or 0, echoed = (counters.access_acked or 0) > 0,
      gave_up = (counters.access_failed or 0) > 0 } or nil,
    clock_errors = self.clock_errors, t1_kernel = self.t1_kernel, t1_user = self.t1_user,
    dists = d, owd_valid = self.owd_valid and self.n > 0, owd_reason = self.n > 0 and self.owd_reason or "no replies",
    err_bound = self.err_bound,
    episodes = episodes, longest = longest, burst_total = burst_total,
    reordered = self.reordered, ext = self.ext,
  }
  local last = self.last
  if last then
    local dm, direction = last.dm, nil
    local extras = counters and (counters.extra_replies or 0) > 0
    if dm and not dm.u and dm.r_rxc and dm.r_rxc > 0 then
      direction = { method = "direct_measurement", forward = dm.s_txc - dm.r_rxc,
        backward = dm.r_txc - (last.rx_replies or self.n) }
      if self.dm_backwards then
        direction = { method = direction.method, invalid = "the reflector's counters went backwards" }
      end
    elseif self.stateful and extras then
      -- a stateful reflector numbers every reply it sends, type 12 extra replies too: its numbers do not
      -- count the test packets it received
      direction = { method = "reflector_sequence",
        invalid = "type 12 extra replies: the reflector's sequence numbers count replies, not test packets" }
    elseif self.stateful then
      direction = { method = "reflector_sequence", forward = last.seq - last.refl_seq,
        backward = last.refl_seq + 1 - self.n }
    end
    if direction and not direction.invalid then
      direction.undetermined = sent - (last.seq + 1)
      if direction.undetermined < 0 then direction.undetermined = 0 end
      -- counters that imply a negative loss are not believed (e.g. a reflector counting something
      -- else, or extra type 12 replies): the direction is reported invalid, without figures
      if direction.forward < 0 or direction.backward < 0 then
        direction = { method = direction.method, invalid = string.format(
          "the counters imply a negative loss (forward %d, backward %d)", direction.forward, direction.backward) }
      end
    end
    f.direction = direction
  end
  return f
end

-- The summary table from figures.
local function render(f)
  local d = f.dists
  -- aborted (abandoned at a second Ctrl-C) and no_reply (none asked for): neither received nor lost
  local lost = f.sent - f.received - f.aborted - f.no_reply
  local counted = f.sent - f.aborted - f.no_reply
  local rtt = dist_describe(d.rtt)
  local fwd = dist_describe(d.fwd)
  local bwd = dist_describe(d.bwd)
  return {
    sent = f.sent,
    received = f.received,
    lost = lost,
    aborted = f.aborted, no_reply = f.no_reply, extra_replies = f.extra_replies, extra_missing = f.extra_missing,
    extra_refused = f.extra_refused, extra_unsupported = f.extra_unsupported,
    access_report = f.access_report,
    loss_pct = counted > 0 and (100 * lost / counted) or 0,
    duplicates = f.duplicates,
    late = f.late,
    tx_errors = f.tx_errors, drop_hmac = f.drop_hmac, drop_invalid = f.drop_invalid, rx_overflow = f.rx_overflow,
    clock_errors = f.clock_errors, t1_kernel = f.t1_kernel, t1_user = f.t1_user,
    rtt = rtt, fwd = fwd, bwd = bwd,
    owd = { valid = f.owd_valid, reason = f.owd_reason, error_bound = f.err_bound },
    ipdv = { rtt = dist_describe(d.irtt, 0, true), fwd = dist_describe(d.ifwd, 0, true),
      bwd = dist_describe(d.ibwd, 0, true) },
    pdv = { rtt = rtt and dist_describe(d.rtt, d.rtt.mom.min), fwd = fwd and dist_describe(d.fwd, d.fwd.mom.min),
      bwd = bwd and dist_describe(d.bwd, d.bwd.mom.min) },
    loss = {
      episodes = f.episodes, longest_burst = f.longest,
      mean_burst = f.episodes > 0 and f.burst_total / f.episodes or 0,
      direction = f.direction,
    },
    reordering = {
      reordered = f.reordered,
      ratio = f.received > 0 and f.reordered / f.received or 0,
      max_extent = f.ext.n > 0 and f.ext.max or 0,
      mean_extent = f.ext.n > 0 and f.ext.mean or 0,
    },
  }
end

--- What a live progress line needs, cheap at any time (finishes nothing).
-- @treturn table `received`, `lost`, `rtt_mean` and `rtt_last` (ns; absent until a usable RTT)
function Acc:progress()
  local p = { received = self.n, lost = self.lost }
  if self.rtt.n > 0 then p.rtt_mean, p.rtt_last = self.rtt.mean, self.last_rtt end
  return p
end

--- Summary of everything added so far (the accumulator can go on afterwards).
-- @tparam[opt] table counters a sender's counters (authoritative for `sent`, `duplicates`, `late`; also
--   the source of `tx_errors`, `drop_hmac`, `drop_invalid`)
-- @treturn table `sent`, `received`, `lost`, `aborted` (from the counters: abandoned, neither received nor lost),
--   `no_reply` (from the counters: packets that asked for no reply and got none, neither received nor lost),
--   `loss_pct` (of the packets neither aborted nor no_reply), `duplicates`, `extra_replies` (further replies of granted
--   type 12 bursts), `extra_missing` (further replies of granted bursts not seen in time), `extra_refused`
--   (replies whose Type 12 TLV has C: the burst was not granted), `extra_unsupported` (from the counters:
--   replies whose Type 12 TLV came back with U, the reflector does not support it), `access_report`
--   (with an Access Report TLV: `sent`, `retransmits`, `echoed`, `gave_up`; RFC 8972 4.6), `late`, `tx_errors` (sends that failed),
--   `drop_hmac` (replies failing their HMAC), `drop_invalid` (replies that are not valid STAMP or do not echo the
--   Sender Sequence Number, Timestamp and Error Estimate sent), `clock_errors` (replies received with T4 before T1
--   or a negative RTT, a clock step: in `received`, left out of every delay statistic), `t1_kernel` and `t1_user`
--   (received results whose T1 is the kernel's transmit timestamp / the user-space time), `rtt`, `fwd`, `bwd`,
--   `owd` (validity of one-way delays), `ipdv` and `pdv` (each with `rtt`, `fwd`, `bwd`), `loss`
--   (episodes and direction), `reordering`
function Acc:summary(counters)
  return render(figures(self, counters))
end

--- Complete a summary the way `sender:run` ends one: `interrupted` set, `aborted` from the counters, and
-- the aborted packets (abandoned at a second signal or `stop(true)`) left out: `lost` and `loss_pct` count
-- only the packets not aborted. Every driver of a sender (run loops of event loops, resty.stamp) ends with it.
-- @tparam table summary from `Acc:summary` or `stats.summary` (completed in place)
-- @tparam[opt] table counters the sender's counters (`sent`, `aborted`, ...)
-- @tparam[opt=false] boolean interrupted the run was stopped early
-- @treturn table the same summary
function M.finish(summary, counters, interrupted)
  summary.interrupted = interrupted and true or false
  summary.aborted = counters and counters.aborted or summary.aborted or 0
  summary.no_reply = counters and counters.no_reply or summary.no_reply or 0
  local counted = summary.sent - summary.aborted - summary.no_reply
  summary.lost = counted - summary.received
  summary.loss_pct = counted > 0 and 100 * summary.lost / counted or 0
  return summary
end

--- The completed summary of everything added so far: `summary(counters)` then `stats.finish`.
-- @tparam[opt] table counters the sender's counters
-- @tparam[opt=false] boolean interrupted the run was stopped early
-- @treturn table summary with `interrupted` and `aborted`
function Acc:finish(counters, interrupted)
  return M.finish(self:summary(counters), counters, interrupted)
end

local CoreAcc = {}
CoreAcc.__index = CoreAcc

--- An accumulator over a C one (`stamp.core.stats`, which a sender's step can feed without a Lua table
-- per packet): the same `add`, `summary` and `finish` as an accumulator from `new`, rendering the very
-- same summary for the same results (the C accumulator keeps what `Acc:add` keeps, in the same bounded
-- memory, with the same float32 sample and histogram buckets).
-- @param core a `stamp.core.stats` object, or an options table for a new one (`stateful_reflector`,
--   `auth` = "open" or "auth": where the TLVs of a result's `packet` begin when the result has no
--   `tlv_offset`; a sender's results have one)
-- @treturn table with `add(result)`, `summary(counters)`, `finish(counters, interrupted)` and `core`
function M.from_core(core)
  if type(core) ~= "userdata" then
    if core ~= nil and type(core) ~= "table" then error("bad argument #1 to 'from_core' (stamp.core.stats or table expected)", 2) end
    local err
    core, err = require("stamp.core").stats(core or {})
    if not core then return nil, err end
  end
  return setmetatable({ core = core }, CoreAcc)
end

--- What a live progress line needs, cheap at any time (see `stamp.core` `stats:progress`).
-- @treturn table `received`, `lost`, `rtt_mean` and `rtt_last` (ns; absent until a usable RTT)
function CoreAcc:progress() return self.core:progress() end

--- Add one per-packet result table to the C accumulator (see `stamp.core` `stats:add`).
-- @tparam table r
function CoreAcc:add(r) self.core:add(r) end

--- Summary of everything added so far (as `Acc:summary`).
-- @tparam[opt] table counters the sender's counters
-- @treturn table
function CoreAcc:summary(counters) return render(figures(self.core:snapshot(), counters)) end

--- The completed summary (as `Acc:finish`).
-- @tparam[opt] table counters the sender's counters
-- @tparam[opt=false] boolean interrupted the run was stopped early
-- @treturn table
function CoreAcc:finish(counters, interrupted) return M.finish(self:summary(counters), counters, interrupted) end

--- Summary of an array of results.
-- @tparam table results
-- @tparam[opt] table counters
-- @tparam[opt] table opts see `new`
-- @treturn table
function M.summary(results, counters, opts)
  local a = M.new(opts)
  for i = 1, #results do a:add(results[i]) end
  return a:summary(counters)
end

--- Overall figures of several sessions, each computed on its own and then combined: distributions
-- are pooled, IPDV pairs and loss episodes never span two sessions, counts add up.
-- @tparam table parts array of accumulators (`stats.new` or `stats.from_core`) or of result arrays
-- @tparam[opt] table counters array: the sender's counters of each part
-- @treturn table a summary
function M.merge(parts, counters)
  local fs = {}
  for i, p in ipairs(parts) do
    local acc, default = p, nil
    if getmetatable(p) == CoreAcc then
      acc = p.core:snapshot()
    elseif getmetatable(p) ~= Acc then
      acc = M.new()
      for _, r in ipairs(p) do acc:add(r) end
      default = { sent = #p }
    end
    fs[i] = figures(acc, counters and counters[i] or default)
  end
  local f = { sent = 0, received = 0, duplicates = 0, late = 0, tx_errors = 0, drop_hmac = 0, drop_invalid = 0, aborted = 0,
    no_reply = 0,
    rx_overflow = 0,
    extra_replies = 0, extra_missing = 0, extra_refused = 0, extra_unsupported = 0, clock_errors = 0, t1_kernel = 0, t1_user = 0,
    owd_valid = true, err_bound = 0, episodes = 0,
    longest = 0, burst_total = 0, reordered = 0, ext = mom_new(), dists = {} }
  local method, fwd, bwd, und, directions = nil, 0, 0, 0, true
  for _, x in ipairs(fs) do
    f.sent, f.received = f.sent + x.sent, f.received + x.received
    f.duplicates, f.late = f.duplicates + x.duplicates, f.late + x.late
    f.tx_errors, f.drop_hmac = f.tx_errors + x.tx_errors, f.drop_hmac + x.drop_hmac
    f.drop_invalid, f.aborted = f.drop_invalid + x.drop_invalid, f.aborted + x.aborted
    f.no_reply = f.no_reply + (x.no_reply or 0)
    f.extra_replies = f.extra_replies + (x.extra_replies or 0)
    f.extra_missing = f.extra_missing + (x.extra_missing or 0)
    f.extra_refused = f.extra_refused + (x.extra_refused or 0)
    f.extra_unsupported = f.extra_unsupported + (x.extra_unsupported or 0)
    f.rx_overflow = f.rx_overflow + (x.rx_overflow or 0)
    f.clock_errors = f.clock_errors + x.clock_errors
    f.t1_kernel, f.t1_user = f.t1_kernel + x.t1_kernel, f.t1_user + x.t1_user
    if not x.owd_valid and x.received > 0 and f.owd_valid then f.owd_valid, f.owd_reason = false, x.owd_reason end
    if x.err_bound > f.err_bound then f.err_bound = x.err_bound end
    f.episodes, f.burst_total = f.episodes + x.episodes, f.burst_total + x.burst_total
    if x.longest > f.longest then f.longest = x.longest end
    f.reordered = f.reordered + x.reordered
    f.ext = mom_merge(f.ext, x.ext)
    if x.received > 0 then
      local d = x.direction
      if not d or d.invalid or (method and d.method ~= method) then directions = false
      else
        method, fwd, bwd, und = d.method, fwd + d.forward, bwd + d.backward, und + d.undetermined
      end
    end
  end
  if f.received == 0 then f.owd_valid, f.owd_reason = false, "no replies" end
  if directions and method then f.direction = { method = method, forward = fwd, backward = bwd, undetermined = und } end
  for _, k in ipairs { "rtt", "fwd", "bwd", "irtt", "ifwd", "ibwd" } do
    local list = {}
    for i, x in ipairs(fs) do list[i] = x.dists[k] end
    f.dists[k] = dist_merge(list)
  end
  return render(f)
end

return M
