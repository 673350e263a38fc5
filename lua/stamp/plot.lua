--- Self-contained SVG plots of a run: delay over time (RTT, and one-way
-- delays when they are valid), lost packets marked, and an RTT histogram.
-- No external program is needed.
-- @module stamp.plot
local stats = require "stamp.stats"

local M = {}

local log10 = math.log10 or function(x) return math.log(x, 10) end

local W, H = 960, 700
local LEFT, RIGHT = 80, 30
local TOP1, H1 = 60, 330   -- time series panel
local TOP2, H2 = 480, 160  -- histogram panel

local function esc(s)
  return (tostring(s):gsub("[<>&\"]", { ["<"] = "&lt;", [">"] = "&gt;", ["&"] = "&amp;", ['"'] = "&quot;" }))
end

local function num(x) return string.format("%.2f", x) end

-- Round tick steps: 1, 2 or 5 times a power of ten.
local function ticks(lo, hi, want)
  if hi <= lo then hi = lo + 1 end
  local raw = (hi - lo) / (want or 6)
  local mag = 10 ^ math.floor(log10(raw))
  local step = mag
  for _, m in ipairs { 1, 2, 5, 10 } do
    if m * mag >= raw then step = m * mag break end
  end
  local first = math.floor(lo / step) * step
  local out = {}
  local i = 0
  repeat -- the last tick is at or above `hi`, so nothing falls outside the axis
    out[#out + 1] = first + i * step
    i = i + 1
  until out[#out] >= hi - step * 1e-9
  return out, first, out[#out]
end

local function label(v)
  if v == math.floor(v) then return string.format("%d", v) end
  return (string.format("%.3f", v):gsub("0+$", ""):gsub("%.$", ""))
end

-- One colour per session (campaigns), in order of first appearance.
local PALETTE = { "#1f77b4", "#9467bd", "#17becf", "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f", "#2ca02c", "#ff7f0e",
  "#393b79", "#637939", "#8c6d31" }

-- Results grouped by their `session` field (a single group without one), in order of appearance.
local function by_session(results)
  local groups, index = {}, {}
  for _, r in ipairs(results) do
    local k = r.session or false
    local g = index[k]
    if not g then
      g = { name = r.session, results = {} }
      groups[#groups + 1] = g
      index[k] = g
    end
    g.results[#g.results + 1] = r
  end
  for i, g in ipairs(groups) do g.colour = PALETTE[(i - 1) % #PALETTE + 1] end
  return groups
end

--- Build the SVG document.
-- @tparam table results per-packet results (received and lost); a `session` field (campaigns) draws each
--   session in its own colour, with a legend
-- @tparam[opt] table o `title`; `summary` (the figures for the subtitle, e.g. a campaign's overall ones;
--   default: computed from `results`, each session on its own then combined)
-- @treturn string SVG text
function M.svg(results, o)
  o = o or {}
  local groups = by_session(results)
  local multi = #groups > 1 or (groups[1] and groups[1].name ~= nil)
  local summary = o.summary
  if not summary then
    local lists = {}
    for i, g in ipairs(groups) do lists[i] = g.results end
    summary = #lists == 1 and stats.summary(lists[1]) or stats.merge(lists)
  end
  local colour = {}
  for _, g in ipairs(groups) do if g.name then colour[g.name] = g.colour end end
  local t0 = math.huge
  for _, r in ipairs(results) do if r.t1 and r.t1 < t0 then t0 = r.t1 end end
  if t0 == math.huge then t0 = 0 end
  local xmax, ymax = 0, 0
  local owd = summary.owd and summary.owd.valid
  for _, r in ipairs(results) do
    local x = ((r.t1 or t0) - t0) / 1e9
    if x > xmax then xmax = x end
    if not r.lost then
      local y = r.rtt / 1e6
      if owd then y = math.max(y, r.fwd / 1e6, r.bwd / 1e6) end
      if y > ymax then ymax = y end
    end
  end
  local xt, x0, x1 = ticks(0, xmax > 0 and xmax or 1)
  local yt, y0, y1 = ticks(0, ymax > 0 and ymax * 1.1 or 1)
  local pw = W - LEFT - RIGHT
  local function X(v) return LEFT + (v - x0) / (x1 - x0) * pw end
  local function Y(v) return TOP1 + H1 - (v - y0) / (y1 - y0) * H1 end

  local out = {}
  local function add(s) out[#out + 1] = s end
  add('<?xml version="1.0" encoding="UTF-8"?>')
  add(string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
    .. 'font-family="sans-serif" font-size="12">', W, H, W, H))
  add('<style>.rtt{fill:#1f77b4}.fwd{fill:none;stroke:#2ca02c;stroke-width:1}.bwd{fill:none;stroke:#ff7f0e;'
    .. 'stroke-width:1}.lost{stroke:#d62728;stroke-width:1.5}.bar{fill:#1f77b4;fill-opacity:0.7}.grid{stroke:#ddd}'
    .. '.axis{stroke:#000}</style>')
  add('<rect width="100%" height="100%" fill="#fff"/>')
  local title = o.title or "STAMP measurement"
  add(string.format('<text x="%d" y="24" font-size="16" font-weight="bold">%s</text>', LEFT, esc(title)))
  add(string.format('<text x="%d" y="44">sent %d, received %d, lost %d (%.1f%%)%s</text>', LEFT, summary.sent,
    summary.received, summary.lost, summary.loss_pct, summary.rtt and string.format(
      ", RTT min/avg/max %.3f/%.3f/%.3f ms", summary.rtt.min / 1e6, summary.rtt.mean / 1e6, summary.rtt.max / 1e6) or ""))

  -- time series panel: grid, axes, labels
  add('<g class="timeseries">')
  for _, v in ipairs(yt) do
    add(string.format('<line class="grid" x1="%s" y1="%s" x2="%s" y2="%s"/>', num(LEFT), num(Y(v)), num(LEFT + pw), num(Y(v))))
    add(string.format('<text x="%s" y="%s" text-anchor="end">%s</text>', num(LEFT - 6), num(Y(v) + 4), label(v)))
  end
  for _, v in ipairs(xt) do
    add(string.format('<line class="grid" x1="%s" y1="%d" x2="%s" y2="%d"/>', num(X(v)), TOP1, num(X(v)), TOP1 + H1))
    add(string.format('<text x="%s" y="%d" text-anchor="middle">%s</text>', num(X(v)), TOP1 + H1 + 16, label(v)))
  end
  add(string.format('<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>', LEFT, TOP1 + H1, LEFT + pw, TOP1 + H1))
  add(string.format('<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>', LEFT, TOP1, LEFT, TOP1 + H1))
  add(string.format('<text x="%d" y="%d" text-anchor="middle">time since the first packet (s)</text>', LEFT + pw / 2,
    TOP1 + H1 + 34))
  add(string.format('<text transform="translate(%d,%d) rotate(-90)" text-anchor="middle">delay (ms)</text>', 22,
    TOP1 + H1 / 2))

  -- one-way delays, only when valid: one line per session and direction
  local sorted = {}
  for _, g in ipairs(groups) do
    local gs = {}
    for _, r in ipairs(g.results) do if not r.lost then gs[#gs + 1] = r sorted[#sorted + 1] = r end end
    table.sort(gs, function(a, b) return a.seq < b.seq end)
    if owd and #gs > 1 then
      for _, k in ipairs { "fwd", "bwd" } do
        local pts = {}
        for _, r in ipairs(gs) do pts[#pts + 1] = num(X((r.t1 - t0) / 1e9)) .. "," .. num(Y(r[k] / 1e6)) end
        add(string.format('<polyline class="%s"%s points="%s"/>', k,
          multi and string.format(' stroke-dasharray="%s" stroke="%s"', k == "fwd" and "4 2" or "1 2", g.colour) or "",
          table.concat(pts, " ")))
      end
    end
  end
  -- RTT points and lost marks
  for _, r in ipairs(results) do
    local x = X(((r.t1 or t0) - t0) / 1e9)
    if r.lost then
      local y = TOP1 + 8
      add(string.format('<path class="lost" d="M%s %sL%s %sM%s %sL%s %s"><title>%sseq %d lost</title></path>',
        num(x - 4), num(y - 4), num(x + 4), num(y + 4), num(x - 4), num(y + 4), num(x + 4), num(y - 4),
        r.session and (esc(r.session) .. " ") or "", r.seq))
    else
      add(string.format('<circle class="rtt" cx="%s" cy="%s" r="2"%s><title>%sseq %d rtt %.3f ms</title></circle>',
        num(x), num(Y(r.rtt / 1e6)), r.session and string.format(' fill="%s"', colour[r.session]) or "",
        r.session and (esc(r.session) .. " ") or "", r.seq, r.rtt / 1e6))
    end
  end
  -- legend
  local lx = LEFT + pw - 330
  add(string.format('<circle class="rtt key" cx="%d" cy="%d" r="4"/><text x="%d" y="%d">round-trip delay</text>', lx, TOP1 + 10,
    lx + 10, TOP1 + 14))
  add(string.format('<path class="lost key" d="M%d %dL%d %dM%d %dL%d %d"/><text x="%d" y="%d">lost packet</text>', lx - 4,
    TOP1 + 22, lx + 4, TOP1 + 30, lx - 4, TOP1 + 30, lx + 4, TOP1 + 22, lx + 10, TOP1 + 30))
  if owd then
    add(string.format('<line class="fwd" x1="%d" y1="%d" x2="%d" y2="%d"/><text x="%d" y="%d">forward one-way</text>',
      lx - 6, TOP1 + 42, lx + 6, TOP1 + 42, lx + 10, TOP1 + 46))
    add(string.format('<line class="bwd" x1="%d" y1="%d" x2="%d" y2="%d"/><text x="%d" y="%d">backward one-way</text>',
      lx - 6, TOP1 + 58, lx + 6, TOP1 + 58, lx + 10, TOP1 + 62))
  else
    add(string.format('<text x="%d" y="%d" fill="#666">one-way delays not shown: %s</text>', lx - 6, TOP1 + 46,
      esc(summary.owd and summary.owd.reason or "unavailable")))
  end
  if multi then -- one entry per session, down the right-hand side of the panel
    add('<g class="legend sessions">')
    for i, g in ipairs(groups) do
      local y = TOP1 + 80 + (i - 1) * 16
      add(string.format('<circle cx="%d" cy="%d" r="4" fill="%s"/><text x="%d" y="%d">%s</text>', lx, y, g.colour,
        lx + 10, y + 4, esc(g.name or "(unnamed)")))
    end
    add('</g>')
  end
  add('</g>')

  -- histogram of RTT
  add('<g class="histogram">')
  add(string.format('<text x="%d" y="%d" font-weight="bold">round-trip delay histogram</text>', LEFT, TOP2 - 14))
  if summary.rtt then
    local lo, hi = summary.rtt.min / 1e6, summary.rtt.max / 1e6
    local hxt, hx0, hx1 = ticks(lo, hi > lo and hi or lo + 0.001)
    local nb = 40
    local counts, cmax = {}, 0
    for i = 1, nb do counts[i] = 0 end
    for _, r in ipairs(sorted) do
      local b = math.floor((r.rtt / 1e6 - hx0) / (hx1 - hx0) * nb) + 1
      if b > nb then b = nb end
      if b < 1 then b = 1 end
      counts[b] = counts[b] + 1
      if counts[b] > cmax then cmax = counts[b] end
    end
    local yh, _, yh1 = ticks(0, cmax, 4)
    local function HX(v) return LEFT + (v - hx0) / (hx1 - hx0) * pw end
    local function HY(v) return TOP2 + H2 - v / yh1 * H2 end
    for _, v in ipairs(yh) do
      add(string.format('<line class="grid" x1="%d" y1="%s" x2="%d" y2="%s"/>', LEFT, num(HY(v)), LEFT + pw, num(HY(v))))
      add(string.format('<text x="%d" y="%s" text-anchor="end">%s</text>', LEFT - 6, num(HY(v) + 4), label(v)))
    end
    local bw = pw / nb
    for i = 1, nb do
      if counts[i] > 0 then
        add(string.format('<rect class="bar" x="%s" y="%s" width="%s" height="%s"><title>%d packets</title></rect>',
          num(LEFT + (i - 1) * bw), num(HY(counts[i])), num(bw - 1), num(HY(0) - HY(counts[i])), counts[i]))
      end
    end
    for _, v in ipairs(hxt) do
      add(string.format('<text x="%s" y="%d" text-anchor="middle">%s</text>', num(HX(v)), TOP2 + H2 + 16, label(v)))
    end
    add(string.format('<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>', LEFT, TOP2 + H2, LEFT + pw, TOP2 + H2))
    add(string.format('<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>', LEFT, TOP2, LEFT, TOP2 + H2))
    add(string.format('<text x="%d" y="%d" text-anchor="middle">round-trip delay (ms)</text>', LEFT + pw / 2, TOP2 + H2 + 34))
    add(string.format('<text transform="translate(%d,%d) rotate(-90)" text-anchor="middle">packets</text>', 22,
      TOP2 + H2 / 2))
  else
    add(string.format('<text x="%d" y="%d">no replies</text>', LEFT, TOP2 + 20))
  end
  add('</g>')
  add('</svg>')
  return table.concat(out, "\n") .. "\n"
end

--- Write the SVG to a file.
-- @tparam string path
-- @tparam table results
-- @tparam[opt] table o
-- @treturn boolean|nil true, or nil, message
function M.write(path, results, o)
  local f, err = io.open(path, "w")
  if not f then return nil, err end
  f:write(M.svg(results, o))
  f:close()
  return true
end

return M
