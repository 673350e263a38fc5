-- Review 8 (#5, #7, #8, #9, #10): what a reply must echo, clock errors, the grid after a stall,
-- done(), degenerate configurations. In the C machine's terms, through its Lua class.
local stamp = require "stamp"
local core = stamp.core
local codec = stamp.codec
local h = require "helper"

local MS = 1000000
local S = 1000000000

local function reflect(data, extra)
  local t = codec.decode_test(data, "open")
  local p = { seq = t.seq, sender_seq = t.seq, ssid = t.ssid, sender_timestamp_raw = t.timestamp_raw,
    sender_ee = t.ee, timestamp = core.now(), rx_timestamp = core.now(), sender_ttl = 64 }
  for k, v in pairs(extra or {}) do p[k] = v end
  return codec.encode_reflected(p, "open")
end

describe("sender machine: a reply must echo what was sent (#5)", function()
  it("drops our own test packet echoed back, counted as invalid", function()
    local m = core.sender_machine { count = 3, interval_ns = 0, timeout_ns = S }
    local pkts = m:build_due(S)
    assert.equal(3, #pkts)
    for _, p in ipairs(pkts) do assert.is_false(m:reply(p)) end
    local c = m:counters()
    assert.equal(3, c.drop_invalid)
    assert.equal(0, c.received)
    assert.equal(0, c.duplicates)
    assert.equal(3, m:outstanding())
  end)

  it("drops a reply whose Sender Timestamp or Sender Error Estimate differs from the packet sent", function()
    local m = core.sender_machine { count = 1, interval_ns = 0, timeout_ns = S }
    local p = m:build(S)
    local t = codec.decode_test(p, "open")
    local other = t.timestamp_raw:sub(1, 7) .. string.char((t.timestamp_raw:byte(8) + 1) % 256)
    assert.is_false(m:reply(reflect(p, { sender_timestamp_raw = other })))
    local ee = { s = t.ee.s, z = t.ee.z, scale = t.ee.scale, mult = (t.ee.mult + 1) % 256 }
    assert.is_false(m:reply(reflect(p, { sender_ee = ee })))
    assert.equal(2, m:counters().drop_invalid)
    local r = m:reply(reflect(p))
    assert.is_table(r)
    assert.equal(0, r.seq)
  end)

  it("the command against a plain UDP echo: 0 received, 3 lost, 3 invalid, exit status 1", function()
    local port = h.free_port()
    local pid, out = h.spawn(string.format([[/usr/bin/python3 -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", %d))
s.settimeout(10)
print("ready", flush=True)
end = time.time() + 10
while time.time() < end:
    try:
        d, a = s.recvfrom(2048)
    except socket.timeout:
        break
    s.sendto(d, a)
']], port))
    assert(h.wait_for(out, "ready", 5))
    local code, o, err = h.run(string.format("%s -r 127.0.0.1 -p %d -c 3 -d 1 -L 0.3", h.STAMP, port))
    h.stop(pid)
    os.remove(out)
    assert.equal(1, code, err)
    assert.matches("Packets received: 0\n", o)
    assert.matches("Packets lost: 3", o)
    assert.matches("Invalid replies: 3", o)
  end)
end)

describe("sender machine: clock errors (#10)", function()
  it("a reply with T4 before T1 is flagged clock_error, counted, and left out of the RTT statistics", function()
    local m = core.sender_machine { count = 2, interval_ns = 0, timeout_ns = S }
    local t1 = core.now()
    local a = m:build(S, t1)
    local b = m:build(S, t1)
    local bad = m:reply(reflect(a, { timestamp = t1, rx_timestamp = t1 }), t1 - 110 * MS)
    assert.is_table(bad)
    assert.is_true(bad.clock_error)
    local good = m:reply(reflect(b, { timestamp = t1 + 2 * MS, rx_timestamp = t1 + MS }), t1 + 3 * MS)
    assert.is_nil(good.clock_error)
    local c = m:counters()
    assert.equal(1, c.clock_errors)
    assert.equal(2, c.received)
    local acc = stamp.stats.new()
    acc:add(bad)
    acc:add(good)
    local s = acc:summary(c)
    assert.equal(1, s.clock_errors)
    assert.equal(1, s.rtt.n)
    assert.is_true(math.abs(s.rtt.min - 2 * MS) < 1000) -- (doubles on Lua 5.1/LuaJIT)
  end)
end)

describe("sender machine: the grid after a stall (#7)", function()
  it("packets that fell due leave at once, never shifting the grid", function()
    local m = core.sender_machine { count = 5, interval_ns = 10 * MS, timeout_ns = 1000 * S }
    local t0 = S
    assert.equal(1, #m:build_due(t0))
    local later = t0 + 1000 * S
    assert.equal(4, #m:build_due(later))
  end)

  it("a burst is at most 64 packets; older grid points are skipped and sending stays on the grid", function()
    local m = core.sender_machine { count = 0, interval_ns = 10 * MS, timeout_ns = S }
    local t0 = S
    assert.equal(1, #m:build_due(t0))
    local later = t0 + 1000 * S + 3 * MS
    assert.equal(64, #m:build_due(later, 1000))
    assert.equal(0, #m:build_due(later, 1000))
    assert.equal(1, #m:expire(later)) -- the first packet's timeout
    local d = m:next_deadline()
    assert.is_true(d > later and d <= later + 10 * MS)
    assert.equal(0, (d - t0) % (10 * MS))
    assert.equal(65, m:counters().sent)
  end)
end)

describe("sender machine: a reply to a packet sent long ago (review 10, finding 6)", function()
  it("is late, not invalid, once its slot was reused; a number never sent stays invalid", function()
    local m = core.sender_machine { count = 0, interval_ns = MS, timeout_ns = 10 * MS }
    local first
    local t = S
    for i = 1, 70000 do -- far more than the ring holds
      local p = m:build_due(t, 64)
      if i == 1 then first = p[1] end
      m:expire(t)
      t = t + MS
    end
    assert.is_false(m:reply(reflect(first)))
    local c = m:counters()
    assert.same({ 1, 0 }, { c.late, c.drop_invalid })
    local never = codec.encode_reflected({ seq = 0, sender_seq = 90000, sender_timestamp_raw = "\0\0\0\0\0\0\0\0",
      timestamp = core.now(), rx_timestamp = core.now(), sender_ttl = 64 }, "open")
    assert.is_false(m:reply(never))
    assert.equal(1, m:counters().drop_invalid)
  end)
end)

describe("sender machine: catching up after a stall (issue 10)", function()
  it("at 100,000 packets/s a 2 ms stall is caught up whole; after 1 s only the last 10 ms are sent", function()
    local m = core.sender_machine { count = 0, interval_ns = 10000, timeout_ns = S }
    local t0 = S
    assert.equal(1, #m:build_due(t0))
    local function burst(at)
      local n = 0
      repeat local k = #m:build_due(at, 64) n = n + k until k == 0
      return n
    end
    assert.equal(200, burst(t0 + 2 * MS)) -- grid points 1..200: none skipped
    assert.equal(1000, burst(t0 + 2 * MS + S)) -- 100,000 fell due: the newest 1,000 (10 ms) leave
    assert.equal(1201, m:counters().sent)
  end)
end)

describe("sender machine: a stall with Type 12 bursts (review 911, 17)", function()
  it("catches up no closer than the burst it asked for (RFC 10052 5): no request before the last burst ended", function()
    local tl = stamp.tlv.encode { stamp.tlv.reflected_control { count = 2, interval_ns = 5 * MS } }
    local m = core.sender_machine { count = 0, interval_ns = 10 * MS, timeout_ns = S, tlvs = tl }
    local t0 = S
    assert.equal(1, #m:build_due(t0))
    local at = t0 + 100 * MS + 1 * MS -- a 100 ms stall: 10 grid points fell due
    local sent, times = 0, {}
    for step = 0, 40 do -- 0 .. 40 ms after the stall, every 0.5 ms
      local now = at + step * MS / 2
      local k = #m:build_due(now, 64)
      for _ = 1, k do times[#times + 1] = now end
      sent = sent + k
    end
    assert.is_true(sent >= 3, "sent " .. sent)
    for i = 2, #times do
      assert.is_true(times[i] - times[i - 1] >= 5 * MS, string.format("requests %d ns apart", times[i] - times[i - 1]))
    end
    -- the grid is kept: the one sent late at the end of the stall, then every request on a grid point
    for i = 3, #times do assert.equal(0, (times[i] - t0) % (10 * MS) < MS / 2 and 0 or 1) end
  end)
end)

describe("sender machine: done() (#8)", function()
  it("is true as soon as every packet is answered, with outstanding() 0 and no deadline", function()
    local m = core.sender_machine { count = 2, interval_ns = 0, timeout_ns = S }
    local pkts = m:build_due(S)
    assert.is_false(m:done())
    assert.is_table(m:reply(reflect(pkts[2])))
    assert.is_false(m:done())
    assert.equal(1, m:outstanding())
    assert.is_table(m:reply(reflect(pkts[1])))
    assert.equal(0, m:outstanding())
    assert.is_nil(m:next_deadline())
    assert.is_true(m:done())
  end)
end)

describe("sender machine: degenerate configurations (#9)", function()
  it("refuses interval 0 without a count", function()
    assert.has_error(function() core.sender_machine { count = 0, interval_ns = 0 } end)
    assert.has_error(function() core.sender_machine { count = 0, interval_ns = 0, duration_ns = S } end)
    assert.has_error(function() stamp.sender_machine { count = 0, send_delay = 0 } end)
    assert.has_error(function() core.sender { remote_addr = "127.0.0.1", count = 0, interval_ns = 0 } end)
  end)

  it("refuses an interval over one day", function()
    assert.has_error(function() core.sender_machine { count = 2, interval_ns = 86400 * S + 1 } end)
    assert.is_userdata(core.sender_machine { count = 2, interval_ns = 3600 * S })
  end)
end)

describe("stamp.stats.finish (request a)", function()
  it("completes a summary as sender:run does: aborted packets left out of lost and loss_pct", function()
    local acc = stamp.stats.new()
    acc:add { seq = 0, lost = false, t1 = 1, t2 = 2, t3 = 3, t4 = 4, rtt = 2, fwd = 1, bwd = 1, refl_seq = 0 }
    acc:add { seq = 1, lost = true, t1 = 1 }
    acc:add { seq = 2, aborted = true, lost = false, t1 = 1 }
    local s = acc:finish({ sent = 3, aborted = 1 }, true)
    assert.same({ 3, 1, 1, 1, 50, true }, { s.sent, s.received, s.lost, s.aborted, s.loss_pct, s.interrupted })
    local s2 = stamp.stats.finish(stamp.stats.new():summary { sent = 2 }, { sent = 2 })
    assert.same({ 2, 0, 2, 0, 100, false }, { s2.sent, s2.received, s2.lost, s2.aborted, s2.loss_pct, s2.interrupted })
  end)

  it("ends sender:run (a run stopped at once: aborted, interrupted)", function()
    local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = h.free_port(), count = 0, send_delay = 1,
      timeout = 5 })
    local n = 0
    local _, sum = s:run { keep = false, stop = function() n = n + 1 return n > 5 and "now" end }
    s:close()
    assert.is_true(sum.interrupted)
    assert.is_true(sum.aborted > 0)
    assert.equal(sum.sent, sum.aborted) -- none timed out (5 s): all abandoned, neither received nor lost
    assert.same({ 0, 0 }, { sum.lost, sum.loss_pct })
  end)
end)

describe("a Type 12 TLV the sender did not send (review 10, finding 12)", function()
  -- A hand-made reflector that adds a Type 12 TLV with C to every reply: the sender never asked for
  -- a burst, so nothing was refused; the TLV is not one it sent, so it is not usable (RFC 8972 4).
  local function run(quiet, sender_tlvs)
    local u, port = h.udp_peer(0)
    local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = port, count = 5, send_delay = 2,
      timeout = 1, tlvs = sender_tlvs })
    local t12 = { type = 12, flags = stamp.tlv.C, count = 3, interval_ns = MS, length = 0 }
    local pump = h.hand_reflector(u, function(t)
      local tl = {}
      for _, x in ipairs(t.tlvs or {}) do tl[#tl + 1] = x end
      if #tl == 0 then tl[1] = t12 end -- unsolicited: added
      for _, x in ipairs(tl) do if x.type == 12 then x.flags = stamp.tlv.C end end
      return { tlvs = tl }
    end)
    local results, sum = s:run { pump = pump, keep = not quiet }
    s:close()
    u:close()
    return results, sum
  end

  it("is not counted as a refused burst, with or without per-packet results", function()
    for _, quiet in ipairs { false, true } do
      local results, sum = run(quiet)
      assert.equal(5, sum.received)
      assert.equal(0, sum.extra_refused, quiet and "quiet" or "per packet")
      if not quiet then
        assert.equal(1, results[1].tlv_ignored)
        assert.is_nil(results[1].tlvs.reflected_control)
      end
    end
  end)

  it("one the sender sent and the reflector refused (C) is counted", function()
    for _, quiet in ipairs { false, true } do
      local _, sum = run(quiet, { stamp.tlv.reflected_control { count = 3, interval_ns = MS } })
      assert.equal(5, sum.extra_refused, quiet and "quiet" or "per packet")
    end
  end)
end)
