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
