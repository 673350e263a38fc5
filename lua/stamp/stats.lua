--- Statistics over per-packet results, per the IPPM RFCs.
--
-- All durations are nanoseconds (numbers). Definitions:
--
-- * percentiles use the nearest-rank method: the p-th percentile of n sorted
--   values is the value of rank ceil(p/100 * n);
-- * `stddev` is the sample standard deviation (n - 1);
-- * IPDV (RFC 3393): D(i+1) - D(i) for consecutive sequence numbers that were
--   both received; PDV (RFC 5481): D(i) - min D;
-- * reordering (RFC 4737): a packet is reordered when it arrives after a packet
--   with a higher sequence number; its extent is how many such packets arrived
--   before it;
-- * one-way delays carry an error bound (the sum of the two Error Estimates) and
--   are flagged unreliable when either clock is unsynchronized (S = 0) or a
--   delay comes out negative.
-- @module stamp.stats
local M = {}

local ceil, sqrt, huge = math.ceil, math.sqrt, math.huge

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

local Acc = {}
Acc.__index = Acc

--- A new accumulator.
-- @tparam[opt] table opts `stateful_reflector = true` when the reflector numbers its replies itself
--   (enables forward/backward loss from reflector sequence numbers)
-- @treturn table with `add(result)` and `summary(counters)`
function M.new(opts)
  return setmetatable({ opts = opts or {}, by_seq = {}, arrivals = {}, lost = 0, n = 0, max_seq = -1 }, Acc)
end

--- Add one per-packet result (as returned by `sender:step`).
-- @tparam table r
function Acc:add(r)
  if r.seq > self.max_seq then self.max_seq = r.seq end
  if r.lost then
    self.lost = self.lost + 1
    self.by_seq[r.seq] = self.by_seq[r.seq] or false
    return
  end
  self.n = self.n + 1
  self.by_seq[r.seq] = r
  self.arrivals[#self.arrivals + 1] = r
end

-- Is this packet's one-way delay usable? Returns ok, reason.
local function owd_ok(r)
  if not (r.sender_ee and r.refl_ee) then return false, "no error estimate" end
  if r.sender_ee.s ~= 1 or r.refl_ee.s ~= 1 then return false, "unsynchronized clock" end
  if r.fwd < 0 or r.bwd < 0 then return false, "negative delay" end
  return true
end
M.owd_ok = owd_ok

local function pdv(values)
  if #values == 0 then return nil end
  local mn = huge
  for _, v in ipairs(values) do if v < mn then mn = v end end
  local d = {}
  for i, v in ipairs(values) do d[i] = v - mn end
  return M.describe(d)
end

local function ipdv(series)
  local d, absd = {}, {}
  for i = 2, #series do
    local a, b = series[i - 1], series[i]
    if b.seq == a.seq + 1 then
      d[#d + 1] = b.v - a.v
      absd[#absd + 1] = math.abs(b.v - a.v)
    end
  end
  local out = M.describe(d)
  if out then out.mean_abs = M.describe(absd).mean end
  return out
end

--- Summary of everything added so far.
-- @tparam[opt] table counters a sender's counters (authoritative for `sent`, `duplicates`, `late`)
-- @treturn table `sent`, `received`, `lost`, `loss_pct`, `duplicates`, `late`, `rtt`, `fwd`, `bwd`,
--   `owd` (validity of one-way delays), `ipdv` and `pdv` (each with `rtt`, `fwd`, `bwd`), `loss`
--   (episodes and direction), `reordering`
function Acc:summary(counters)
  local sent = counters and counters.sent or (self.n + self.lost)
  local received = self.n
  -- by sequence number
  local seqs = {}
  for s in pairs(self.by_seq) do seqs[#seqs + 1] = s end
  table.sort(seqs)
  local rtt, fwd, bwd = {}, {}, {}
  local srtt, sfwd, sbwd = {}, {}, {}
  local owd_valid, owd_reason, err_bound = true, nil, 0
  for _, s in ipairs(seqs) do
    local r = self.by_seq[s]
    if r then
      rtt[#rtt + 1] = r.rtt
      fwd[#fwd + 1] = r.fwd
      bwd[#bwd + 1] = r.bwd
      srtt[#srtt + 1] = { seq = s, v = r.rtt }
      sfwd[#sfwd + 1] = { seq = s, v = r.fwd }
      sbwd[#sbwd + 1] = { seq = s, v = r.bwd }
      local ok, why = owd_ok(r)
      if not ok then
        owd_valid = false
        owd_reason = owd_reason or why
      end
      if r.sender_ee and r.refl_ee then
        local e = r.sender_ee.error_ns + r.refl_ee.error_ns
        if e > err_bound then err_bound = e end
      end
    end
  end
  if received == 0 then owd_valid, owd_reason = false, "no replies" end

  -- loss episodes over the sequence numbers sent (packets still in flight are not counted)
  local episodes, longest, run, burst_total = 0, 0, 0, 0
  for s = 0, self.max_seq do
    if self.by_seq[s] == false then
      run = run + 1
    elseif run > 0 then
      episodes, burst_total = episodes + 1, burst_total + run
      if run > longest then longest = run end
      run = 0
    end
  end
  if run > 0 then
    episodes, burst_total = episodes + 1, burst_total + run
    if run > longest then longest = run end
  end

  -- loss direction
  local direction
  local last
  for i = #seqs, 1, -1 do
    if self.by_seq[seqs[i]] then last = self.by_seq[seqs[i]] break end
  end
  if last then
    local dm = last.tlvs and last.tlvs.direct_measurement
    local recv_upto = 0
    for _, s in ipairs(seqs) do if s <= last.seq and self.by_seq[s] then recv_upto = recv_upto + 1 end end
    local stateful = self.opts.stateful_reflector
    if not stateful then
      for _, r in ipairs(self.arrivals) do if r.refl_seq ~= r.seq then stateful = true break end end
    end
    if dm and not dm.u and dm.r_rxc and dm.r_rxc > 0 then
      direction = { method = "direct_measurement", forward = dm.s_txc - dm.r_rxc, backward = dm.r_txc - recv_upto }
    elseif stateful then
      direction = { method = "reflector_sequence", forward = last.seq - last.refl_seq,
        backward = last.refl_seq + 1 - recv_upto }
    end
    if direction then direction.undetermined = sent - (last.seq + 1) - 0 end
    if direction and direction.undetermined < 0 then direction.undetermined = 0 end
  end

  -- reordering (RFC 4737) in arrival order
  local reordered, extents, max_seen = 0, {}, -1
  for i, r in ipairs(self.arrivals) do
    if r.seq < max_seen then
      reordered = reordered + 1
      local e = 0
      for j = 1, i - 1 do if self.arrivals[j].seq > r.seq then e = e + 1 end end
      extents[#extents + 1] = e
    elseif r.seq > max_seen then
      max_seen = r.seq
    end
  end
  local ext = M.describe(extents)

  local lost = sent - received
  local out = {
    sent = sent,
    received = received,
    lost = lost,
    loss_pct = sent > 0 and (100 * lost / sent) or 0,
    duplicates = counters and counters.duplicates or 0,
    late = counters and counters.late or 0,
    rtt = M.describe(rtt),
    fwd = M.describe(fwd),
    bwd = M.describe(bwd),
    owd = { valid = owd_valid, reason = owd_reason, error_bound = err_bound },
    ipdv = { rtt = ipdv(srtt), fwd = ipdv(sfwd), bwd = ipdv(sbwd) },
    pdv = { rtt = pdv(rtt), fwd = pdv(fwd), bwd = pdv(bwd) },
    loss = {
      episodes = episodes, longest_burst = longest,
      mean_burst = episodes > 0 and burst_total / episodes or 0,
      direction = direction,
    },
    reordering = {
      reordered = reordered,
      ratio = received > 0 and reordered / received or 0,
      max_extent = ext and ext.max or 0,
      mean_extent = ext and ext.mean or 0,
    },
  }
  return out
end

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

--- Merge several summaries' packet sets: summary over the union of result arrays.
-- @tparam table lists array of result arrays
-- @treturn table
function M.merge(lists)
  local sent, all = 0, {}
  -- sequence numbers collide across sessions: offset them
  local offset = 0
  for _, list in ipairs(lists) do
    local maxs = -1
    for _, r in ipairs(list) do
      local c = {}
      for k, v in pairs(r) do c[k] = v end
      c.seq = r.seq + offset
      if c.refl_seq then c.refl_seq = c.refl_seq + offset end
      all[#all + 1] = c
      if r.seq > maxs then maxs = r.seq end
    end
    sent = sent + #list
    offset = offset + maxs + 1
  end
  return M.summary(all, { sent = sent })
end

return M
