-- Review of issue 11: the `stamp` command against scripted reflectors (spec/tools/fake_reflector.lua)
-- and its flags. docs/conformance/ names these specs.
local h = require "helper"

local function sender(port, args)
  return h.run(h.STAMP .. " -r 127.0.0.1 -p " .. port .. " -c 3 -d 10 -L 0.5 -q " .. args)
end

-- The lines of `text` matching `pattern`, one per packet: 3 (the senders' -c 3).
local function per_packet(text, pattern)
  local lines = h.lines_matching(text, pattern)
  assert.equal(3, #lines, text)
  return lines
end

-- `sender(port, args)` (then `sender(port, args2)`) against the scripted reflector
-- (spec/tools/fake_reflector.lua) in MODE: code, stdout, stderr of each.
local function against(mode, args, args2)
  return h.with_fake_reflector(mode, function(port)
    local code, so, se = sender(port, args)
    if not args2 then return code, so, se end
    return code, so, se, sender(port, args2)
  end)
end

describe("stamp -R against TWAMP-Light replies (review 11, item 4)", function()
  local function light_r(mode)
      local code, so, se = against(mode, "-R")
      assert.equal(0, code, se)
      assert.equal("", se)
      for _, line in ipairs(per_packet(so, "^seq=%d+ rtt=")) do
        assert.truthy(line:find(" ttl=? ", 1, true), line)
      end
  end
  it("light36: -R prints ttl=? (Sender TTL unknown) and does not crash", function() light_r("light36") end)
  it("light38: -R prints ttl=? (Sender TTL unknown) and does not crash", function() light_r("light38") end)

  it("light36: JSON lines carry ttl null, CSV an empty ttl column", function()
    local code, so, se, code2, so2 = against("light36", "--output-format jsonl", "--output-format csv")
    assert.equal(0, code, se)
    assert.equal(0, code2)
    for _, line in ipairs(per_packet(so, '"type":"packet"')) do
      assert.truthy(line:find('"ttl":null', 1, true), line)
    end
    local hdr = so2:match("^([^\n]+)")
    local col
    local i = 0
    for c in hdr:gmatch("[^,]+") do i = i + 1 if c == "ttl" then col = i end end
    assert.truthy(col, hdr)
    local rows = 0
    for line in so2:gmatch("[^\n]+") do
      if line:match("^%d") then
        rows = rows + 1
        local cells = {}
        for c in (line .. ","):gmatch("([^,]*),") do cells[#cells + 1] = c end
        assert.equal("", cells[col], line)
      end
    end
    assert.equal(3, rows)
  end)
end)

describe("--drop-ssid-zero (review 11, item 5)", function()
  it("is a plain flag: against a legacy reflector (SSID 0 in replies) every reply is dropped", function()
    local code, so, se = against("light38", "--ssid 7 --drop-ssid-zero --output-format json") -- replies carry SSID 0
    assert.equal("", se:gsub("[^\n]*Warning[^\n]*\n?", ""))
    assert.truthy(so:find('"received":0', 1, true), so)
    assert.not_equal(0, code)
  end)

  it("without it the same replies are accepted", function()
    local code, so, se = against("light38", "--ssid 7 --output-format json")
    assert.equal(0, code, se)
    assert.truthy(so:find('"received":3', 1, true), so)
  end)

  it("-h shows it as a flag with its description (no argument)", function()
    local code, so = h.run(h.STAMP .. " -h")
    assert.equal(0, code)
    local line = so:match("\n(%s*%-%-drop%-ssid%-zero[^\n]*)")
    assert.truthy(line, so)
    assert.falsy(line:find("<", 1, true), line)
    assert.truthy(so:find("drop replies carrying SSID 0", 1, true))
  end)

  it("given a value it is refused with one line naming it", function()
    local code, so, se = h.run(h.STAMP .. " -r 127.0.0.1 -c 1 --drop-ssid-zero 1")
    assert.equal(2, code)
    assert.equal("", so)
    assert.falsy(se:find("traceback", 1, true), se)
    assert.equal(1, select(2, se:gsub("\n", "")), se)
  end)
end)

describe("CLI output keeps ignored TLVs out of tlvs (review 11, item 15)", function()
  it("a Direct Measurement TLV marked I: JSON tlvs empty (I spoils every TLV), tlv_ignored 2; -R shows it", function()
    local code, so, se, code2, so2 = against("dm_i", "--direct-measurement --cos --output-format jsonl", "--direct-measurement -R")
    assert.equal(0, code, se)
    assert.equal(0, code2)
    for _, line in ipairs(per_packet(so, '"type":"packet"')) do
      assert.falsy(line:find("direct_measurement", 1, true), line)
      assert.falsy(line:find('"cos"', 1, true), line)
      assert.truthy(line:find('"tlv_ignored":2', 1, true), line)
    end
    for _, line in ipairs(per_packet(so2, "^seq=%d+ rtt=")) do
      assert.truthy(line:find("tlv_ignored=1", 1, true), line)
      assert.falsy(line:find("r_rxc=1000", 1, true), line)
    end
  end)

  it("usable TLVs are still in tlvs, with no tlv_ignored", function()
    local code, so, se = against("dm_neg", "--timestamp-info --output-format jsonl")
    assert.equal(0, code, se)
    local line = so:match('[^\n]*"type":"packet"[^\n]*')
    assert.truthy(line and line:find('"timestamp_info"', 1, true), so)
    assert.falsy(line:find("tlv_ignored", 1, true), line)
  end)
end)

describe("Poisson schedule with a type 12 burst (review 11, item 13; RFC 10052 5 SHOULD NOT)", function()
  it("--schedule poisson with a burst: one warning line on stderr naming the chance of an overlap, run goes on", function()
    local code, so, se = against("light38", "--schedule poisson --reflected-count 5 --reflected-interval-ns 1000000 "
      .. "--output-format json")
    assert.equal(0, code, se)
    assert.equal(1, select(2, se:gsub("\n", "")), se)
    assert.truthy(se:find("^%d%d%d%d%-%d%d%-%d%dT[%d:.]+Z warning: %-%-schedule poisson"), se) -- a log line
    assert.truthy(se:find("RFC 10052 5", 1, true), se)
    assert.truthy(se:find("33%", 1, true), se) -- 1 - exp(-4 ms / 10 ms)
    assert.truthy(so:find('"received":3', 1, true), so)
  end)

  it("periodic with the same burst, or poisson without a burst: no warning", function()
    local c1, _, e1, c2, _, e2 = against("light38", "--reflected-count 5 --reflected-interval-ns 1000000", "--schedule poisson --reflected-count 1")
    assert.same({ 0, "", 0, "" }, { c1, e1, c2, e2 })
  end)
end)

describe("RFC 9534 3.2 on the sender: only confirmed Micro-session replies count (review 11, item 14)", function()
  local function run(mode)
    return against(mode, "--micro-session-id 5:7 --output-format json")
  end

  it("a reply without the Micro-session ID TLV is dropped and counted in drop_invalid", function()
    local code, so = run("msid_none")
    assert.truthy(so:find('"received":0', 1, true), so)
    assert.truthy(so:find('"drop_invalid":3', 1, true), so)
    assert.not_equal(0, code)
  end)

  it("a reply with the TLV back with U (not processed, IDs unchanged) is dropped and counted", function()
    local code, so = run("msid_u")
    assert.truthy(so:find('"received":0', 1, true), so)
    assert.truthy(so:find('"drop_invalid":3', 1, true), so)
    assert.not_equal(0, code)
  end)

  it("a reply with both IDs confirmed is accepted", function()
    local code, so, se = run("msid_ok")
    assert.equal(0, code, se)
    assert.truthy(so:find('"received":3', 1, true), so)
    assert.truthy(so:find('"drop_invalid":0', 1, true), so)
  end)
end)

describe("loss direction from Direct Measurement is sanity-checked (review 11, item 6)", function()
  it("counters implying negative loss (R_RxC = R_TxC = 1000 after 3 packets) make the direction invalid", function()
    local code, so, se = against("dm_neg", "--direct-measurement --output-format json")
    assert.equal(0, code, se)
    local dir = so:match('"direction":(%b{})')
    assert.truthy(dir, so)
    assert.truthy(dir:find('"method":"direct_measurement"', 1, true), dir)
    assert.truthy(dir:find('"invalid":"', 1, true), dir)
    assert.falsy(dir:find("\"forward\":", 1, true), dir) -- no figure, only the reason
  end)
end)

describe("granted type 12 extras are not duplicates (review 11, item 6)", function()
  it("3 requests for 3 replies each: duplicates 0, the extras counted as extra_replies", function()
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 --reflected-control-max-count 5")
    local code, so, se = h.run(h.STAMP .. " -r 127.0.0.1 -p " .. port .. " -c 3 -d 100 -L 0.5 -q --reflected-count 3 "
      .. "--reflected-interval-ns 2000000 --output-format json")
    h.stop(pid) os.remove(out)
    assert.equal(0, code, se)
    assert.truthy(so:find('"received":3', 1, true), so)
    assert.truthy(so:find('"duplicates":0', 1, true), so)
    local extra = tonumber(so:match('"extra_replies":(%d+)'))
    assert.truthy(extra and extra >= 4 and extra <= 6, so)
  end)
end)
