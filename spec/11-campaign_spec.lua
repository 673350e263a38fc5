-- Campaigns: many sessions in one process; the examples, run as they are.
local stamp = require "stamp"
local h = require "helper"
local report = require "stamp.report"

describe("campaigns", function()
  it("4 sessions at different rates to 2 reflectors run in one process, each reported separately", function()
    local r1 = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0 })
    local r2 = assert(stamp.reflector { local_addr = "::1", local_port = 0, stateful = true })
    local _, p1 = r1:local_addr()
    local _, p2 = r2:local_addr()
    local per_session, summaries = {}, {}
    local rep = assert(stamp.campaign {
      reflectors = { r1, r2 },
      sessions = {
        { name = "a", remote_addr = "127.0.0.1", remote_port = p1, count = 40, send_delay = 2 },
        { name = "b", remote_addr = "127.0.0.1", remote_port = p1, count = 10, send_delay = 8, ssid = 2 },
        { name = "c", remote_addr = "::1", remote_port = p2, count = 25, send_delay = 3, schedule = "poisson" },
        { name = "d", remote_addr = "::1", remote_port = p2, count = 5, send_delay = 15, padding = 200,
          tlvs = { stamp.tlv.direct_measurement() } },
      },
      on_result = function(name, r) per_session[name] = (per_session[name] or 0) + (r.lost and 0 or 1) end,
      on_summary = function(name, s) summaries[name] = s end,
    })
    local want = { a = 40, b = 10, c = 25, d = 5 }
    assert.equal(4, #rep.sessions)
    for _, s in ipairs(rep.sessions) do
      assert.equal(want[s.name], s.summary.sent)
      assert.equal(want[s.name], s.summary.received)
      assert.equal(want[s.name], per_session[s.name])
      assert.equal(want[s.name], #s.results)
      assert.equal(s.summary, summaries[s.name])
      assert.is_true(s.summary.rtt.min > 0)
    end
    assert.equal(264, rep.sessions[4].results[1].length) -- 44 + 16 (DM TLV) + 204 (padding TLV)
    assert.equal(2, rep.sessions[2].results[1].ssid)
    -- stateful reflector: each of its sessions numbered from 0
    local c_seq = {}
    for _, r in ipairs(rep.sessions[3].results) do c_seq[#c_seq + 1] = r.refl_seq end
    table.sort(c_seq)
    assert.same({ 0, 24 }, { c_seq[1], c_seq[#c_seq] })
    assert.same({ 80, 80, 0 }, { rep.overall.sent, rep.overall.received, rep.overall.lost })
    assert.equal(r1:counters().reflected + r2:counters().reflected, 80)
    r1:close()
    r2:close()
  end)

  it("duration stops sending in sessions without a count", function()
    local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0 })
    local _, p = r:local_addr()
    local t0 = stamp.core.mono()
    local rep = assert(stamp.campaign { reflectors = { r }, duration = 0.3,
      sessions = { { remote_addr = "127.0.0.1", remote_port = p, send_delay = 10, timeout = 0.2 } } })
    local dt = (stamp.core.mono() - t0) / 1e9
    assert.is_true(dt >= 0.3 and dt < 2, dt)
    assert.is_true(rep.sessions[1].summary.sent >= 10 and rep.sessions[1].summary.sent <= 40)
    assert.equal(rep.sessions[1].summary.sent, rep.sessions[1].summary.received)
    r:close()
  end)

  it("bad campaign options raise; a session that cannot start returns nil, message", function()
    assert.has_error(function() stamp.campaign { sessions = {} } end)
    assert.has_error(function() stamp.campaign { sessions = { { remote_addr = "127.0.0.1" } }, bogus = 1 } end)
    assert.has_error(function() stamp.campaign { sessions = { { remote_addr = "127.0.0.1", count = -1 } } } end,
      "bad session #1 ('session1'): bad option 'count' (integer 0..4294967295 expected, got -1)")
    local rep, err = stamp.campaign { sessions = { { remote_addr = "no-such-host.invalid", remote_port = 9 } } }
    assert.is_nil(rep)
    assert.matches("session1", err)
  end)
end)

describe("stamp --campaign", function()
  it("runs examples/campaign.lua and reports each session and the total (text)", function()
    local code, out, err = h.run(h.STAMP .. " --campaign " .. h.ROOT .. "/examples/campaign.lua")
    assert.equal(0, code, err)
    for _, name in ipairs { "fast%-v4", "slow%-v4", "fast%-v6", "padded%-v6", "overall" } do
      assert.matches("=== " .. name, out)
    end
    assert.matches("=== overall ===\n%-%-%- STAMP Statistics %-%-%-\nPackets sent: 110\nPackets received: 110", out)
  end)

  it("json output: one summary per session and overall", function()
    local code, out = h.run(h.STAMP .. " --campaign " .. h.ROOT .. "/examples/campaign.lua --output-format json")
    assert.equal(0, code)
    local doc = assert(report.json_decode(out))
    assert.equal(4, #doc.sessions)
    local total = 0
    for _, s in ipairs(doc.sessions) do total = total + s.sent end
    assert.equal(110, total)
    assert.equal(110, doc.overall.sent)
  end)

  it("a campaign file that does not return a table is a one-line error", function()
    local f = os.tmpname()
    local fh = assert(io.open(f, "w"))
    fh:write("return 42\n")
    fh:close()
    local code, _, err = h.run(h.STAMP .. " --campaign " .. f)
    os.remove(f)
    assert.equal(2, code)
    assert.matches("^stamp: invalid value for %-%-campaign: .*must return a campaign table", err)
  end)
end)

describe("examples run as they are", function()
  local function run(e)
    local code, out, err = h.run("cd " .. h.ROOT .. " && lua5.4 examples/" .. e)
    assert.equal(0, code, err)
    return out
  end

  it("demo.sh (the README's loopback demo)", function()
    -- ports of this suite's own (other suites may run the demo at the same time)
    local code, out, err = h.run(string.format("cd %s && STAMP_DEMO_PORT=%d STAMP_DEMO_SPORT=%d ./examples/demo.sh",
      h.ROOT, h.free_port(), h.free_port()))
    assert.equal(0, code, err .. out:sub(-400))
    local n = 0
    for _ in out:gmatch("seq=%d+ rtt=[%d.]+ms ttl=255 ") do n = n + 1 end
    assert.equal(20, n)
    assert.matches("Packets lost: 0 %(0%.0%%%)", out)
    assert.matches("%-%-%- STAMP Reflector Counters %-%-%-\nPackets received: 20\nPackets reflected: 20", out)
  end)

  it("mesh.lua", function()
    local out = run("mesh.lua 10")
    for _, t in ipairs { "to%-127%.0%.0%.1", "to%-127%.0%.0%.2", "to%-::1" } do assert.matches(t .. "%s+10%s+10%s+0%.0", out) end
    assert.matches("overall%s+30%s+30", out)
  end)

  it("dscp_sweep.lua: the reflector saw each DSCP and answered with it", function()
    local out = run("dscp_sweep.lua 3")
    for _, d in ipairs { 0, 10, 18, 26, 34, 46, 48 } do
      assert.matches("dscp" .. d .. "%s+" .. d .. "%s+" .. d .. "%s+" .. d .. "%s+0", out)
    end
  end)

  it("padding_sweep.lua: every size comes back whole", function()
    local out = run("padding_sweep.lua 3")
    for _, sz in ipairs { 44, 128, 512, 1024, 1472, 4000, 8972 } do
      assert.matches("%s" .. sz .. "%s+" .. sz .. "%s+0%.0", out)
    end
  end)

  it("poisson_jsonl.lua: JSON lines, then a summary", function()
    local out = run("poisson_jsonl.lua 30")
    local n, last = 0, nil
    for l in out:gmatch("[^\n]+") do
      last = assert(report.json_decode(l))
      n = n + 1
    end
    assert.equal(31, n)
    assert.same({ "summary", 30, 30 }, { last.type, last.sent, last.received })
  end)
end)

describe("campaign figures and plot", function()
  local MS = 1e6
  local function rec(seq, rtt, session)
    return { seq = seq, lost = false, rtt = rtt * MS, fwd = rtt / 2 * MS, bwd = rtt / 2 * MS, refl_seq = seq,
      t1 = seq * 10 * MS, session = session }
  end

  it("the overall summary combines the sessions' own figures (IPDV never across two sessions)", function()
    local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0 })
    local _, p = r:local_addr()
    local rep = assert(stamp.campaign { reflectors = { r }, keep = false,
      sessions = { { name = "a", remote_addr = "127.0.0.1", remote_port = p, count = 20, send_delay = 1 },
        { name = "b", remote_addr = "127.0.0.1", remote_port = p, count = 30, send_delay = 1 } } })
    r:close()
    assert.is_nil(rep.sessions[1].results)
    assert.same({ 50, 50 }, { rep.overall.sent, rep.overall.received })
    assert.equal(50, rep.overall.rtt.n)
    assert.equal(rep.sessions[1].summary.ipdv.rtt.n + rep.sessions[2].summary.ipdv.rtt.n, rep.overall.ipdv.rtt.n)
    assert.equal(48, rep.overall.ipdv.rtt.n)
  end)

  it("plot: one colour per session, a legend, and the subtitle's figures over all sessions", function()
    local svg = stamp.plot.svg { rec(0, 1, "a"), rec(1, 2, "a"), rec(0, 5, "b"), rec(1, 6, "b"),
      { seq = 2, lost = true, t1 = 20 * MS, session = "b" } }
    local fills = {}
    for f in svg:gmatch('<circle class="rtt" cx="[^"]*" cy="[^"]*" r="2" fill="([^"]+)"') do fills[f] = true end
    local n = 0
    for _ in pairs(fills) do n = n + 1 end
    assert.equal(2, n)
    assert.matches('<g class="legend sessions">.*>a</text>.*>b</text>', svg)
    assert.matches("sent 5, received 4, lost 1 %(20%.0%%%), RTT min/avg/max 1%.000/3%.500/6%.000 ms", svg)
  end)

  it("stamp --campaign --plot draws each session with its own colour and names it", function()
    local svg = os.tmpname() .. ".svg"
    local code, _, err = h.run(h.STAMP .. " --campaign " .. h.ROOT .. "/examples/campaign.lua --plot " .. svg)
    assert.equal(0, code, err)
    local doc = h.slurp(svg)
    os.remove(svg)
    for _, name in ipairs { "fast%-v4", "slow%-v4", "fast%-v6", "padded%-v6" } do
      assert.matches('<text x="%d+" y="%d+">' .. name .. "</text>", doc)
    end
    local fills, n = {}, 0
    for f in doc:gmatch('<circle class="rtt" [^>]* fill="([^"]+)"') do
      if not fills[f] then n = n + 1 end
      fills[f] = true
    end
    assert.equal(4, n)
    assert.matches("sent 110, received 110, lost 0", doc)
  end)
end)

describe("stopping a campaign", function()
  local function run(stop_value)
    local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0 })
    local _, p = r:local_addr()
    local seen, aborted = 0, 0
    local rep = assert(stamp.campaign { reflectors = { r }, keep = false,
      sessions = { { name = "a", remote_addr = "127.0.0.1", remote_port = p, count = 100000, send_delay = 1, timeout = 2 },
        { name = "b", remote_addr = "127.0.0.1", remote_port = p, count = 100000, send_delay = 1, timeout = 2 } },
      on_result = function(_, res) seen = seen + 1 if res.aborted then aborted = aborted + 1 end end,
      stop = function() return seen >= 20 and stop_value end })
    r:close()
    return rep, seen, aborted
  end

  it("stop() true: sending ends, the packets in flight are awaited, nothing counted lost", function()
    local rep, seen = run(true)
    assert.is_true(rep.interrupted)
    assert.is_true(rep.overall.interrupted)
    assert.equal(rep.overall.sent, seen)
    assert.equal(rep.overall.sent, rep.overall.received)
    assert.equal(0, rep.overall.lost)
    assert.is_true(rep.overall.sent < 1000)
  end)

  it('stop() "now": the packets still outstanding are aborted, neither received nor lost', function()
    local rep, seen, aborted = run("now")
    assert.is_true(rep.interrupted)
    assert.equal(rep.overall.sent, seen)
    assert.equal(aborted, rep.overall.aborted)
    assert.equal(rep.overall.sent, rep.overall.received + rep.overall.lost + rep.overall.aborted)
    assert.equal(0, rep.overall.lost)
  end)
end)
