-- The JSON record shared by `stamp --output-format json` and resty.stamp: run_record, the text
-- layout (json_head/json_sep/json_tail), T1..T4 as integer text on every Lua, and a fixed key
-- order (known keys first, the others sorted) so that the text is the same on every run.
local h = require "helper"
local report = require "stamp.report"

-- The object keys of a JSON text, in the order they appear.
local function key_sequence(text)
  local ks = {}
  for k in text:gmatch('"([%w_]+)"%s*:') do ks[#ks + 1] = k end
  return ks
end

describe("stamp.report JSON", function()
  it("prints T1..T4 as integers, also when they are doubles (Lua 5.1, LuaJIT)", function()
    local t = 1795788553184702720 -- a multiple of 256: exact as a double
    local f = t + 0.0
    for _, v in ipairs { t, f } do
      local text = report.json({ t1 = v, t2 = v, t3 = v, t4 = v })
      assert.equal('{"t1":1795788553184702720,"t2":1795788553184702720,"t3":1795788553184702720,'
        .. '"t4":1795788553184702720}', text)
      local r = { seq = 0, t1 = v, t2 = v, t3 = v, t4 = v, rtt = 1, fwd = 0, bwd = 0, refl_seq = 0, ttl = 255 }
      local p = report.packet_json(r)
      assert.truthy(p:find('"t1":1795788553184702720,"t2":1795788553184702720,"t3":1795788553184702720,'
        .. '"t4":1795788553184702720,', 1, true), p)
      assert.equal(p, report.json(report.packet_record(r)))
    end
    assert.equal("1795788553184702720", report.int_text(1.79578855318470272e18))
  end)

  it("writes objects in a fixed key order: known keys first, then the others sorted", function()
    -- the same content inserted in opposite orders gives the same text
    local names = { "zeta", "alpha", "mean_burst", "episodes", "longest_burst", "beta", "valid", "reason" }
    local a, b = {}, {}
    for i = 1, #names do a[names[i]] = i end
    for i = #names, 1, -1 do b[names[i]] = i end
    local ta = report.json({ summary = { type = "summary", loss = a, owd = b, sent = 1 } })
    local tb = report.json({ summary = { owd = a, sent = 1, loss = b, type = "summary" } })
    assert.equal(ta, tb)
    assert.same({ "summary", "type", "sent", "owd", "alpha", "beta", "episodes", "longest_burst", "mean_burst",
      "reason", "valid", "zeta", "loss", "alpha", "beta", "episodes", "longest_burst", "mean_burst", "reason",
      "valid", "zeta" }, key_sequence(ta))
  end)

  it("run_record is {summary = summary_record, packets = packet_record each}", function()
    local stamp = require "stamp"
    local acc = stamp.stats.new()
    local rs = {
      { seq = 0, t1 = 10, t2 = 20, t3 = 30, t4 = 50, rtt = 30, fwd = 10, bwd = 20, refl_seq = 0, ttl = 255 },
      { seq = 1, t1 = 60, lost = true },
    }
    for _, r in ipairs(rs) do acc:add(r) end
    local s = acc:summary()
    local rec = report.run_record(rs, s)
    assert.same({ summary = report.summary_record(s), packets = { report.packet_record(rs[1]),
      report.packet_record(rs[2]) } }, rec)
  end)

  it("the command's --output-format json: keys in the same order on every run, T1..T4 as integers", function()
    local pid, rlog, port = h.cli_reflector()
    local texts = {}
    for i = 1, 3 do
      local code, out = h.run(h.STAMP .. " -r 127.0.0.1 -p " .. port .. " -c 3 -d 5 --output-format json")
      assert.equal(0, code, out)
      texts[i] = out
      assert.truthy(report.json_decode(out))
      for _, k in ipairs { "t1", "t2", "t3", "t4" } do
        local n = 0
        for v in out:gmatch('"' .. k .. '":([^,}]+)') do
          assert.truthy(v:match("^%d+$"), k .. ": " .. v)
          n = n + 1
        end
        assert.equal(3, n)
      end
    end
    h.stop(pid)
    os.remove(rlog)
    -- the summary's key sequence (values differ from run to run, the order does not)
    local function head(t) return key_sequence(t:match("^(.-)\"packets\"")) end
    assert.same(head(texts[1]), head(texts[2]))
    assert.same(head(texts[1]), head(texts[3]))
    -- and the layout is json_head .. json_sep(i) .. packet_json .. json_tail
    assert.truthy(texts[1]:find(',\n  "packets": [\n    {"type":"packet"', 1, true))
    assert.equal("\n  ]\n}\n", texts[1]:sub(-7))
  end)
end)
