-- Issue 10 (sender side): T1 from the kernel's transmit timestamp (SO_TIMESTAMPING).
local stamp = require "stamp"
local core = require "stamp.core"
local h = require "helper"

describe("kernel transmit timestamps for T1", function()
  it("on loopback every result has the kernel's T1, and RTT from it is <= RTT from the user-space T1", function()
    local r, s = h.loopback_pair({}, { count = 50, send_delay = 1 })
    local results, sum = s:run { pump = function() r:step(0) end }
    assert.equal(50, #results)
    assert.equal(50, sum.received)
    for _, x in ipairs(results) do
      assert.equal("kernel", x.t1_source)
      assert.is_number(x.t1_user)
      -- the kernel stamps the datagram after the user-space clock read before sendmmsg
      assert.is_true(x.t1 >= x.t1_user, "kernel T1 before user T1")
      local rtt_user = (x.t4 - x.t1_user) - (x.t3 - x.t2)
      assert.is_true(x.rtt <= rtt_user + (math.type and 0 or 1024))
      assert.is_true(x.rtt > 0)
    end
    local c = s:counters()
    assert.same({ 50, 0 }, { c.t1_kernel, c.t1_user })
    assert.same({ 50, 0 }, { sum.t1_kernel, sum.t1_user })
    r:close()
    s:close()
  end)

  it("the packet's Timestamp field is the user-space T1 (sent before the kernel's exists)", function()
    local r, s = h.loopback_pair({}, { count = 5, send_delay = 1 })
    local results = s:run { pump = function() r:step(0) end }
    for _, x in ipairs(results) do
      local p = stamp.codec.decode_reflected(x.packet)
      local d = p.sender_timestamp - x.t1_user -- NTP format: sub-ns steps
      assert.is_true(d > -2 and d < 2, d)
    end
    r:close()
    s:close()
  end)

  describe("the I/O-free machine", function()
    -- times below 2^53 ns: exact on Lua 5.1/LuaJIT too
    local T1 = 1000000000000000
    local function machine()
      return assert(core.sender_machine { count = 3, interval_ns = 1000000, timeout_ns = 1000000000 })
    end
    local function reflect(pkt)
      local t = stamp.codec.decode_test(pkt)
      return stamp.codec.encode_reflected { seq = t.seq, sender_seq = t.seq, sender_timestamp_raw = t.timestamp_raw,
        sender_ee = t.ee, rx_timestamp = T1 + 20000, timestamp = T1 + 30000, sender_ttl = 64 }
    end
    local function near(want, got) assert.is_true(math.abs(want - got) <= 2, want .. " ~ " .. got) end

    it("tx_time before the reply: T1, rtt and fwd use it; t1_source kernel; counted", function()
      local m = machine()
      local pkt, seq = m:build(core.mono(), T1)
      assert.is_true(m:tx_time(seq, T1 + 5000))
      local r = assert(m:reply(reflect(pkt), T1 + 60000))
      assert.equal("kernel", r.t1_source)
      assert.equal(T1 + 5000, r.t1)
      assert.equal(T1, r.t1_user)
      near(60000 - 5000 - 10000, r.rtt)
      near(20000 - 5000, r.fwd)
      assert.same({ 1, 0 }, { m:counters().t1_kernel, m:counters().t1_user })
    end)

    it("tx_time after the reply, for an unknown packet, or before the user-space time: not used", function()
      local m = machine()
      local pkt, seq = m:build(core.mono(), T1)
      assert.is_false(m:tx_time(seq + 1, T1 + 5000)) -- not sent
      assert.is_false(m:tx_time(seq, T1 - 1)) -- before the user-space time
      local r = assert(m:reply(reflect(pkt), T1 + 60000))
      assert.equal("user", r.t1_source)
      assert.equal(T1, r.t1_user)
      assert.equal(T1, r.t1)
      near(60000 - 10000, r.rtt)
      assert.is_false(m:tx_time(seq, T1 + 5000)) -- already answered
      assert.same({ 0, 1 }, { m:counters().t1_kernel, m:counters().t1_user })
    end)

    it("tx_time checks its arguments", function()
      local m = machine()
      assert.has_error(function() m:tx_time(-1, 1) end)
      assert.has_error(function() m:tx_time(0, 0) end)
      assert.has_error(function() m:tx_time(0, "short") end)
    end)
  end)

  describe("the command", function()
    local report = require "stamp.report"
    local pid, rlog, port
    setup(function() pid, rlog, port = h.cli_reflector() end)
    teardown(function()
      h.stop(pid)
      os.remove(rlog)
    end)

    it("the text summary counts each T1 source", function()
      local code, out, err = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 20 -d 2", h.STAMP, port, h.free_port()))
      assert.equal(0, code, err)
      assert.matches("T1 source: kernel 20, user 0", out, 1, true)
    end)

    it("json: every packet has t1_source and clock_error; the summary counts the sources", function()
      local code, out, err = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 20 -d 2 --output-format json",
        h.STAMP, port, h.free_port()))
      assert.equal(0, code, err)
      local doc = assert(report.json_decode(out))
      assert.equal(20, #doc.packets)
      for _, p in ipairs(doc.packets) do
        assert.equal("kernel", p.t1_source)
        assert.is_false(p.clock_error)
      end
      assert.same({ 20, 0 }, { doc.summary.t1_kernel, doc.summary.t1_user })
    end)

    it("csv: clock_error and t1_source columns", function()
      local code, out, err = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 5 -d 2 --output-format csv",
        h.STAMP, port, h.free_port()))
      assert.equal(0, code, err)
      local ls = {}
      for l in out:gmatch("[^\n]+") do ls[#ls + 1] = l end
      assert.equal(6, #ls)
      assert.matches(",clock_error,t1_source$", ls[1])
      for i = 2, 6 do assert.matches(",0,kernel$", ls[i]) end
    end)
  end)

  it("a result with clock_error shows it in JSON (packet_record, packet_json) and CSV", function()
    local report = require "stamp.report"
    local r = { seq = 3, lost = false, refl_seq = 3, t1 = 100, t2 = 50, t3 = 60, t4 = 90, rtt = -20, fwd = -50, bwd = 30,
      clock_error = true, t1_source = "user" }
    local rec = report.packet_record(r)
    assert.is_true(rec.clock_error)
    assert.equal("user", rec.t1_source)
    local j = report.json_decode(report.packet_json(r))
    assert.is_true(j.clock_error)
    assert.equal("user", j.t1_source)
    assert.matches(",1,user$", report.csv_row(r))
    r.clock_error = nil
    assert.matches(",0,user$", report.csv_row(r))
  end)
end)

