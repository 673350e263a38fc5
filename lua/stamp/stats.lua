--- Statistics over per-packet results.
--
-- Durations in the summary are nanoseconds (numbers).
-- @module stamp.stats
local M = {}

local Acc = {}
Acc.__index = Acc

--- A new accumulator.
-- @treturn table with `add(result)` and `summary(counters)`
function M.new()
  return setmetatable({ n = 0, lost = 0, rtt = {}, fwd = {}, bwd = {} }, Acc)
end

--- Add one per-packet result (as returned by `sender:step`).
-- @tparam table r
function Acc:add(r)
  if r.lost then
    self.lost = self.lost + 1
    return
  end
  self.n = self.n + 1
  self.rtt[#self.rtt + 1] = r.rtt
  self.fwd[#self.fwd + 1] = r.fwd
  self.bwd[#self.bwd + 1] = r.bwd
end

local function minmaxavg(t)
  if #t == 0 then return nil end
  local mn, mx, sum = math.huge, -math.huge, 0
  for i = 1, #t do
    local v = t[i]
    if v < mn then mn = v end
    if v > mx then mx = v end
    sum = sum + v
  end
  return { min = mn, max = mx, avg = sum / #t, n = #t }
end

--- Summary: `sent`, `received`, `lost`, `loss_pct`, `rtt` {min,max,avg} and, from the counters,
-- `duplicates` and `late`.
-- @tparam[opt] table counters a sender's counters (authoritative for `sent`)
-- @treturn table
function Acc:summary(counters)
  local sent = counters and counters.sent or (self.n + self.lost)
  local received = self.n
  local lost = sent - received
  return {
    sent = sent,
    received = received,
    lost = lost,
    loss_pct = sent > 0 and (100 * lost / sent) or 0,
    duplicates = counters and counters.duplicates or 0,
    late = counters and counters.late or 0,
    rtt = minmaxavg(self.rtt),
    fwd = minmaxavg(self.fwd),
    bwd = minmaxavg(self.bwd),
  }
end

--- Summary of an array of results.
-- @tparam table results
-- @tparam[opt] table counters
-- @treturn table
function M.summary(results, counters)
  local a = M.new()
  for i = 1, #results do a:add(results[i]) end
  return a:summary(counters)
end

return M
