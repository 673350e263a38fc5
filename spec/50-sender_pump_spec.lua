-- sender:pump and sender:run without per-packet results (issue 10: no per-packet Lua work unless a
-- per-packet output or callback asks for it), through a real reflector process on loopback.
local h = require "helper"
local stamp = require "stamp"
local core = stamp.core

describe("sender:pump", function()
  local pid, port
  setup(function() local _ pid, _, port = h.cli_reflector() end)
  teardown(function() h.stop(pid) end)

  it("hands every result to C: the count comes back, no table per packet, the metrics see each reply", function()
    local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = port, count = 300, send_delay = 0.1,
      timeout = 1000 })
    local m = core.metrics("sender"):attach(s)
    local handled, calls = 0, 0
    while not s:done() do
      local n = assert(s:pump(50, { metrics = m }))
      assert.equal("number", type(n))
      handled, calls = handled + n, calls + 1
    end
    local c = s:counters()
    assert.equal(300, handled)
    assert.equal(300, c.sent)
    assert.equal(300, c.received)
    assert.is_true(calls < 300, "one pump handles many packets (" .. calls .. " calls)")
    local text = m:render()
    assert.matches("stamp_sender_rtt_seconds_count 300\n", text, 1, true)
    assert.matches("stamp_sender_packets_received_total 300\n", text, 1, true)
    m:close()
    s:close()
  end)

  it("refuses a bad timeout or sinks (argument errors), and a closed sender says so", function()
    local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = port, count = 1, timeout = 100 })
    assert.has_error(function() s:pump(0.5) end)
    assert.has_error(function() s:pump(10, 7) end)
    assert.has_error(function() s:pump(10, { metrics = {} }) end)
    s:close()
    assert.has_error(function() s:pump(10) end)
  end)
end)

describe("sender:run with keep = false and no on_result", function()
  local pid, port
  setup(function() local _ pid, _, port = h.cli_reflector() end)
  teardown(function() h.stop(pid) end)

  it("gives the same summary as a run with per-packet results, from C statistics", function()
    local function run(o)
      local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = port, count = 200, send_delay = 0.2,
        timeout = 1000 })
      local results, summary = s:run(o)
      s:close()
      return results, summary
    end
    local r1, quiet = run { keep = false }
    assert.same({}, r1)
    local seen = 0
    local _, loud = run { keep = false, on_result = function() seen = seen + 1 end }
    assert.equal(200, seen)
    for _, k in ipairs { "sent", "received", "lost" } do assert.equal(loud[k], quiet[k], k) end
    assert.equal(200, quiet.received)
    assert.equal(200, quiet.rtt.n)
    assert.is_true(quiet.rtt.min > 0 and quiet.rtt.median >= quiet.rtt.min and quiet.rtt.max >= quiet.rtt.p99)
  end)
end)

describe("review 10 of the quiet run", function()
  local pid, port
  setup(function() local _ pid, _, port = h.cli_reflector("--local-addr 127.0.0.1 --stateful-reflector") end)
  teardown(function() h.stop(pid) end)
  local function sender(n, d)
    return assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = port, count = n, send_delay = d or 0.2,
      timeout = 1000 })
  end

  it("metrics:observe leaves clock errors and aborted results out of the RTT histogram (finding 1)", function()
    local m = core.metrics("sender")
    m:observe { seq = 0, lost = false, clock_error = true, rtt = -5e11, fwd = 1, bwd = 1 }
    m:observe { seq = 1, lost = false, aborted = true }
    m:observe { seq = 2, lost = false, rtt = 20000, fwd = 1, bwd = 1 }
    assert.matches("stamp_sender_rtt_seconds_count 1\n", m:render(), 1, true)
    m:close()
  end)

  it("a reflector's metrics are refused by pump and observe (finding 3)", function()
    local s = sender(1)
    local rm = core.metrics("reflector")
    assert.has_error(function() s:pump(10, { metrics = rm }) end, "sender metrics expected, got reflector metrics")
    assert.has_error(function() rm:observe { seq = 0, lost = true } end, "sender metrics expected, got reflector metrics")
    rm:close()
    s:close()
  end)

  it("a run resumed after an error goes on the way it started, whatever the options (finding 2)", function()
    for _, first in ipairs { "quiet", "loud" } do
      local s = sender(100, 5) -- 0.5 s: several ticks (one per pump of at most 100 ms)
      local calls = 0
      local function boom() calls = calls + 1; if calls == 3 then error("boom") end end
      local o1 = first == "quiet" and { keep = false, tick = boom } or { keep = false, on_result = boom }
      assert.has_error(function() s:run(o1) end)
      local o2 = first == "quiet" and { keep = false, on_result = function() end } or { keep = false }
      local _, summary = s:run(o2)
      assert.equal(100, summary.received, first)
      assert.equal(100, summary.sent, first)
      s:close()
    end
  end)

  it("run{metrics} observes every result with on_result too (finding 8)", function()
    for _, o in ipairs { { keep = false }, { keep = false, on_result = function() end }, {} } do
      local s = sender(50)
      local m = core.metrics("sender"):attach(s)
      o.metrics = m
      s:run(o)
      assert.matches("stamp_sender_rtt_seconds_count 50\n", m:render(), 1, true)
      m:close()
      s:close()
    end
  end)

  it("the stateful-reflector hint reaches the statistics, quiet or not; and the command passes it (finding 10)", function()
    for _, o in ipairs { { keep = false, stateful_reflector = true }, { stateful_reflector = true } } do
      local s = sender(20)
      local _, summary = s:run(o)
      s:close()
      assert.equal("reflector_sequence", summary.loss.direction and summary.loss.direction.method)
    end
    local code, out = h.run(h.STAMP .. " -r 127.0.0.1 -p " .. port ..
      " -c 20 -d 1 -L 1 --stateful-reflector --output-format json")
    assert.equal(0, code, out)
    local doc = assert(require("stamp.report").json_decode(out))
    assert.equal("reflector_sequence", doc.summary.loss.direction and doc.summary.loss.direction.method, out)
  end)

  it("a trapped signal ends a pump at a 10 us send delay at once, not at its timeout (finding 9)", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(string.format([[
package.path = %q .. package.path
package.cpath = %q .. package.cpath
local stamp = require "stamp"
stamp.core.trap_signals()
local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = %d, count = 0, send_delay = 0.01,
  timeout = 100 })
io.write("pumping\n") io.flush()
local t0 = stamp.core.mono()
s:pump(20000)
io.write(string.format("returned after %%.3f s\n", (stamp.core.mono() - t0) / 1e9))
]], h.ROOT .. "/lua/?.lua;" .. h.ROOT .. "/lua/?/init.lua;", h.ROOT .. "/build/?.so;", port))
    f:close()
    local p, out = h.spawn("lua5.4 " .. script)
    assert.is_true(h.wait_for(out, "pumping", 20), h.slurp(out))
    h.sleep(0.3)
    os.execute("kill -INT " .. p)
    local ok = h.wait_for(out, "returned after", 10) -- 20 s if the signal were missed
    os.execute("kill -KILL " .. p .. " 2>/dev/null")
    os.remove(script)
    assert.is_true(ok, h.slurp(out))
  end)
end)

describe("review 10: -R lines for TLVs too short for their fields (finding 11)", function()
  local report = require "stamp.report"
  it("show the type, never raise (the reflector controls those octets)", function()
    for _, k in ipairs { { "direct_measurement", 5 }, { "cos", 4 }, { "access_report", 6 }, { "follow_up", 7 },
      { "micro_session", 11 }, { "reflected_control", 12 }, { "timestamp_info", 3 } } do
      local r = { seq = 0, rtt = 1000, tlv_list = { { key = k[1], type = k[2] } }, tlv_ignored = 0 }
      local text = report.tlv_text(r)
      if k[1] ~= "timestamp_info" then -- its formatter copes with absent fields by itself
        assert.equal(k[1] .. ": type=" .. k[2] .. " (fields not decoded)", text)
      end
    end
    -- more ignored than listed (a truncated last TLV) is not a negative count
    assert.equal("cos: type=4", report.tlv_text { tlv_list = { { key = "cos", type = 4 } }, tlv_ignored = 2 })
  end)
end)

describe("review 10: messages and a finished sender", function()
  it("an out-of-range option or result field is named with its value (finding 13: no '%l' in the message)", function()
    local ok, err = pcall(core.sender, { remote_addr = "127.0.0.1", remote_port = 862, ttl = 300 })
    assert.is_false(ok)
    assert.matches("bad option 'ttl' (300 out of range 1..255)", err, 1, true)
    ok, err = pcall(function() core.stats {}:add { seq = -1, lost = true } end)
    assert.is_false(ok)
    assert.matches("bad field 'seq' of the result (-1 out of range 0..4294967295)", err, 1, true)
  end)

  it("run on a sender that is done raises instead of reporting a 100 % loss that never happened (finding 14)", function()
    local pid, _, port = h.cli_reflector()
    for _, o in ipairs { { keep = false }, {} } do
      local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = port, count = 5, send_delay = 1,
        timeout = 1000 })
      local _, summary = s:run(o)
      assert.equal(5, summary.received)
      assert.has_error(function() s:run(o) end, "sender:run: this sender is done (a sender measures once)")
      s:close()
    end
    h.stop(pid)
  end)
end)
