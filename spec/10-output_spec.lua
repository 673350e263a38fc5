-- Output formats, plots, progress and interval reports through the `stamp` command.
local h = require "helper"
local report = require "stamp.report"
local stats = require "stamp.stats"

local STAMP = h.STAMP

local function reflector() return h.cli_reflector() end

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

-- Recompute the RTT figures from per-packet records (rtt_ms, microsecond precision).
local function recompute(packets)
  local rtts, lost = {}, 0
  for _, p in ipairs(packets) do
    if p.lost then lost = lost + 1 else rtts[#rtts + 1] = p.rtt_ms end
  end
  return stats.describe(rtts), lost, #packets
end

local function close(a, b, what) assert(math.abs(a - b) <= 0.0011, string.format("%s: %s vs %s", what, a, b)) end

local function check_summary(sum, packets)
  local d, lost, n = recompute(packets)
  assert.same({ n, n - lost, lost }, { sum.sent, sum.received, sum.lost })
  for _, k in ipairs { "min", "max", "mean", "median", "p90", "p95", "p99", "stddev" } do
    close(sum.rtt_ms[k], d[k], "rtt_ms." .. k)
  end
  assert.equal(d.n, sum.rtt_ms.n)
end

describe("output formats", function()
  local pid, rlog, port
  setup(function() pid, rlog, port = reflector() end)
  teardown(function()
    h.stop(pid)
    os.remove(rlog)
  end)

  it("json: a 200-packet summary agrees with a recomputation from its packets", function()
    local code, out, err = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 200 -d 2 --output-format json", STAMP, port,
      h.free_port()))
    assert.equal(0, code, err)
    local doc = assert(report.json_decode(out))
    assert.equal(200, #doc.packets)
    check_summary(doc.summary, doc.packets)
    assert.equal("summary", doc.summary.type)
    assert.is_boolean(doc.summary.owd.valid)
  end)

  it("jsonl: one object per packet, then one summary that agrees with them", function()
    local code, out = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 200 -d 2 --output-format jsonl", STAMP, port,
      h.free_port()))
    assert.equal(0, code)
    local ls = lines(out)
    assert.equal(201, #ls)
    local packets = {}
    for i = 1, 200 do
      packets[i] = assert(report.json_decode(ls[i]))
      assert.equal("packet", packets[i].type)
    end
    local sum = assert(report.json_decode(ls[201]))
    assert.equal("summary", sum.type)
    check_summary(sum, packets)
  end)

  it("csv: a header and one row per packet", function()
    local code, out = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 50 -d 2 --output-format csv", STAMP, port,
      h.free_port()))
    assert.equal(0, code)
    local ls = lines(out)
    assert.equal(51, #ls)
    assert.equal(table.concat(report.CSV_COLUMNS, ","), ls[1])
    local seqs = {}
    for i = 2, 51 do
      local f = {}
      for v in (ls[i] .. ","):gmatch("([^,]*),") do f[#f + 1] = v end
      assert.equal(#report.CSV_COLUMNS, #f)
      assert.equal("0", f[2])
      assert.is_true(tonumber(f[8]) >= 0) -- rtt_ms
      seqs[tonumber(f[1])] = true
    end
    for i = 0, 49 do assert.is_true(seqs[i]) end
    -- new columns are appended: aborted (14th), then clock_error and t1_source
    assert.same({ "aborted", "clock_error", "t1_source" }, { (table.unpack or unpack)(report.CSV_COLUMNS, 14) })
    assert.matches(",0,0,kernel$", ls[2])
    assert.equal("7,0,,5,,,,,,,,,,1,,", report.csv_row { seq = 7, lost = false, aborted = true, t1 = 5 })
    assert.same({ type = "packet", seq = 7, lost = false, aborted = true, t1 = 5 },
      report.packet_record { seq = 7, lost = false, aborted = true, t1 = 5 })
    assert.equal("seq=7 aborted", report.packet_line { seq = 7, lost = false, aborted = true, t1 = 5 })
  end)

  it("--report-interval prints interval summaries", function()
    local code, out = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 40 -d 25 --report-interval 0.4", STAMP, port,
      h.free_port()))
    assert.equal(0, code)
    local n, total = 0, 0
    for sent in out:gmatch("%[%s*[%d.]+s%] sent (%d+) received") do
      n = n + 1
      total = total + tonumber(sent)
    end
    assert.is_true(n >= 2)
    assert.equal(40, total)
  end)

  it("no progress line when stderr is not a terminal; one with a terminal unless --quiet", function()
    local cmd = string.format("%s -r 127.0.0.1 -p %d -o %d -c 15 -d 100", STAMP, port, h.free_port())
    local code, _, err = h.run(cmd)
    assert.equal(0, code)
    assert.equal("", err)
    if (h.run("command -v script")) ~= 0 then pending("no script(1) to make a terminal") return end
    local _, tty = h.run("script -qec '" .. cmd .. "' /dev/null")
    assert.matches("\r\27%[Ksent %d+  received %d+  loss [%d.]+%%", tty)
    local _, quiet = h.run("script -qec '" .. cmd .. " --quiet' /dev/null")
    assert.not_matches("received %d+  loss", quiet)
  end)

  it("the progress line costs no Lua per packet: on a terminal the sender still runs in C, and the line is right (review 10, 5)", function()
    if (h.run("command -v script")) ~= 0 then pending("no script(1) to make a terminal") return end
    local probe = os.tmpname()
    local function run(extra)
      os.remove(probe)
      local env = string.format("LUA_INIT=@%s/spec/tools/path_probe.lua STAMP_ROOT=%s STAMP_PATH_PROBE=%s ", h.ROOT, h.ROOT, probe)
      local cmd = string.format("%s -r 127.0.0.1 -p %d -o %d -c 12 -d 200 %s", STAMP, port, h.free_port(), extra)
      local _, tty = h.run("script -qec '" .. env .. cmd .. "' /dev/null")
      return tty, h.slurp(probe)
    end
    local tty, path = run("")
    assert.equal("pump\n", path)
    -- a line a second: sent and received so far, loss, last and average RTT from the C statistics
    local n = 0
    for sent, recv, last, avg in tty:gmatch("\r\27%[Ksent (%d+)  received (%d+)  loss 0%.0%%  last ([%d.]+) ms  avg ([%d.]+) ms") do
      n = n + 1
      assert.equal(sent, recv)
      assert.is_true(tonumber(sent) >= 1 and tonumber(sent) <= 12, tty)
      assert.is_true(tonumber(last) > 0 and tonumber(avg) > 0 and tonumber(avg) < 50, tty)
    end
    assert.is_true(n >= 2, tty) -- 2.4 s of sending: a line about every second
    -- an output that shows packets takes the per-packet way
    local _, path2 = run("-R")
    assert.equal("step\n", path2)
    -- packets that asked for no reply count as sent, not lost (review 911b, 6)
    local tty3 = run("--no-reply")
    local sent3, recv3 = tty3:match(".*\r\27%[Ksent (%d+)  received (%d+)  loss 0%.0%%")
    assert.truthy(sent3, tty3)
    assert.is_true(tonumber(sent3) >= 1, tty3)
    assert.equal("0", recv3)
    os.remove(probe)
  end)
end)

describe("--plot", function()
  it("writes an SVG that xmllint accepts, one point per received packet and a mark per lost one", function()
    local rpid, rlog, port = reflector()
    local svg = os.tmpname() .. ".svg"
    -- the reflector goes away mid-run: the later packets are lost
    local spid, sout = h.spawn(string.format("%s -r 127.0.0.1 -p %d -o %d -c 30 -d 30 -L 0.3 --output-format jsonl --plot %s",
      STAMP, port, h.free_port(), svg))
    h.sleep(0.45)
    h.stop(rpid)
    for _ = 1, 100 do
      if not os.execute("kill -0 " .. spid .. " 2>/dev/null") then break end
      h.sleep(0.1)
    end
    local out = h.slurp(sout)
    os.remove(sout)
    os.remove(rlog)
    local recv, lost = 0, 0
    for l in out:gmatch("[^\n]+") do
      local p = report.json_decode(l)
      if p.type == "packet" then if p.lost then lost = lost + 1 else recv = recv + 1 end end
    end
    assert.is_true(recv > 3 and lost > 3, recv .. "/" .. lost)
    assert.equal(30, recv + lost)
    if (h.run("command -v xmllint")) == 0 then
      local code, _, err = h.run("xmllint --noout " .. svg)
      assert.equal(0, code, err)
    end
    local doc = h.slurp(svg)
    os.remove(svg)
    assert.equal(recv, select(2, doc:gsub('<circle class="rtt" cx', "")))
    assert.equal(lost, select(2, doc:gsub('<path class="lost" d="[^"]*"><title>', "")))
    assert.matches("<svg ", doc)
    assert.matches("round%-trip delay histogram", doc)
  end)

  it("an unwritable --plot path is a runtime error", function()
    local rpid, rlog, port = reflector()
    local code, _, err = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 2 -d 1 --plot /nonexistent/dir/x.svg", STAMP,
      port, h.free_port()))
    h.stop(rpid)
    os.remove(rlog)
    assert.equal(1, code)
    assert.matches("cannot write %-%-plot", err)
  end)
end)

describe("bad output flags", function()
  h.bad_flag_cases(it, { { "--output-format xml", "--output-format" }, { "--report-interval 0", "--report-interval" },
    { "--schedule random", "--schedule" }, { "--campaign /nonexistent.lua", "--campaign" } })
end)

describe("--plot of a long run", function()
  it("keeps at most 10,000 points, thinned evenly", function()
    local pid, rlog, port = h.cli_reflector()
    local svg = os.tmpname() .. ".svg"
    local code, out, err = h.run(string.format("%s -r 127.0.0.1 -p %d -c 12000 -d 0.02 -L 1 --plot %s", STAMP, port, svg))
    h.stop(pid)
    os.remove(rlog)
    assert.equal(0, code, err)
    assert.matches("Packets sent: 12000\n", out)
    local doc = h.slurp(svg)
    os.remove(svg)
    local n = select(2, doc:gsub('<circle class="rtt" cx', "")) + select(2, doc:gsub('<path class="lost" d="[^"]*"><title>', ""))
    assert.equal(6000, n) -- every other packet once 10,000 were drawn
  end)
end)

describe("report.packet_json", function()
  it("writes exactly what dkjson writes for the same record", function()
    local base = { seq = 12345, lost = false, t1 = 1795785910741803879, t2 = 1795785910741803979, t3 = 1795785910741804079,
      t4 = 1795785910741804179, rtt = 123456.7, fwd = 100000, bwd = -2000.5, refl_seq = 7, ttl = 255, reply_ttl = 64,
      reply_tos = 184, ssid = 4242, sender_ee = { s = 1, error_ns = 1000 }, refl_ee = { s = 1, error_ns = 25000 } }
    local cases = {
      base,
      { seq = 3, lost = true, t1 = 1795785910741803879 },
      { seq = 4, lost = false, aborted = true, t1 = 17 },
      { seq = 5, lost = false, t1 = 1, t2 = 2, t3 = 3, t4 = 4, rtt = 0, fwd = 0, bwd = 0, refl_seq = 5, ttl = 1 },
    }
    for _, r in ipairs(cases) do
      for _, session in ipairs { false, "fast-v4", 'odd "name"' } do
        local rec = report.packet_record(r)
        rec.session = session or nil
        assert.equal(report.json(rec), report.packet_json(r, session or nil))
      end
    end
    local with_tlvs = { seq = 1, lost = false, t1 = 1, t2 = 2, t3 = 3, t4 = 4, rtt = 1, fwd = 1, bwd = 0, refl_seq = 1,
      tlv_list = { { key = "padding", type = 1, length = 4 } } }
    assert.equal(report.json(report.packet_record(with_tlvs)), report.packet_json(with_tlvs))
  end)
end)
