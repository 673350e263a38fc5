-- Issue 10 (sender schedule): a step that has results still sends a departure due within 200 µs
-- before it returns them (csrc/core/sender.c, HOLD_NS), and the send path is rehearsed once on a
-- throwaway loopback socket before the first packet. Neither may lose, reorder or duplicate results,
-- nor shift the kernel's transmit timestamps (T1) by one packet. No timed assertions here: the
-- schedule's accuracy is measured by bench/run.
local h = require "helper"

local function check_once(results, count)
  local seen = {}
  for _, x in ipairs(results) do
    assert.is_nil(seen[x.seq], "seq delivered twice: " .. tostring(x.seq))
    seen[x.seq] = true
  end
  for i = 0, count - 1 do assert.is_true(seen[i], "seq missing: " .. i) end
end

describe("sender schedule: results held for a near departure", function()
  it("at 20,000 packets/s every result is delivered once, to on_result in the same order as returned", function()
    local N = 2000
    local r, s = h.loopback_pair({}, { count = N, send_delay = 0.05 })
    local seen = {}
    local results, sum = s:run { pump = function() r:step(0) end, on_result = function(x) seen[#seen + 1] = x end }
    assert.equal(N, #results)
    assert.equal(N, #seen)
    for i = 1, N do assert.equal(results[i], seen[i]) end
    check_once(results, N)
    assert.equal(N, sum.sent)
    assert.equal(N, sum.received + sum.lost)
    -- the rehearsal datagram went elsewhere, and took no T1 from a test packet
    local c = s:counters()
    assert.equal(N, c.sent)
    assert.equal(0, c.tx_errors)
    assert.equal(sum.received, c.t1_kernel)
    for _, x in ipairs(results) do
      if x.t1_source == "kernel" then assert.is_true(x.t1 >= x.t1_user, "kernel T1 before user T1") end
    end
    r:close()
    s:close()
  end)

  it("the reflector sees exactly the test packets (the rehearsal never reaches it)", function()
    local r, s = h.loopback_pair({}, { count = 20, send_delay = 0.1 })
    local results = s:run { pump = function() r:step(0) end }
    for _ = 1, 10 do r:step(0) end
    assert.equal(20, #results)
    local rc = r:counters()
    assert.equal(20, rc.rx)
    assert.equal(20, rc.reflected)
    r:close()
    s:close()
  end)

  it("stop() at 20,000 packets/s: every packet sent ends exactly once, in on_result as returned", function()
    local r, s = h.loopback_pair({}, { count = 100000, send_delay = 0.05 })
    local got = 0
    local seen = {}
    local results, sum = s:run { pump = function() r:step(0) end,
      on_result = function(x) seen[#seen + 1] = x; got = got + 1 end,
      stop = function() return got >= 500 end }
    assert.is_true(sum.interrupted)
    assert.is_true(sum.sent >= 500 and sum.sent < 100000)
    assert.equal(sum.sent, #results)
    assert.equal(#results, #seen)
    for i = 1, #seen do assert.equal(results[i], seen[i]) end
    check_once(results, sum.sent)
    r:close()
    s:close()
  end)
end)
