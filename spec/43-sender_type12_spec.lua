-- Review 11 #6 (sender side of Type 12, RFC 10052): granted extra replies are counted as such,
-- the end of a run waits for the last request's extra replies, loss-direction figures are sanity-checked.
local stamp = require "stamp"
local core = require "stamp.core"
local codec = stamp.codec
local tlv = stamp.tlv
local report = require "stamp.report"
local h = require "helper"

local MS = 1000000

local function json_run(port, args)
  local code, out, err = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d %s --output-format json", h.STAMP, port,
    h.free_port(), args))
  assert.equal(0, code, err)
  return assert(report.json_decode(out))
end

describe("type 12 on the sender, against the real reflector", function()
  local pid, rlog, port, spid, slog, sport
  setup(function()
    pid, rlog, port = h.cli_reflector("--local-addr 127.0.0.1 --reflected-control-max-count 5")
    spid, slog, sport = h.cli_reflector("--local-addr 127.0.0.1 --reflected-control-max-count 5 --stateful-reflector")
  end)
  teardown(function()
    h.stop(pid)
    h.stop(spid)
    os.remove(rlog)
    os.remove(slog)
  end)

  it("3 packets asking for 3 replies each: 3 received, 6 extra replies (the last burst awaited), no duplicates", function()
    local doc = json_run(port, "-c 3 -d 100 -L 0.5 --reflected-count 3 --reflected-interval-ns 2000000")
    local s = doc.summary
    assert.same({ 3, 3, 0, 6, 0, 0 }, { s.sent, s.received, s.lost, s.extra_replies, s.duplicates, s.extra_missing })
  end)

  it("more packets than the sender's ring (64): every extra reply counted as such, none duplicate or missing (review 911, 16)", function()
    local doc = json_run(port, "-c 150 -d 20 -L 0.1 --reflected-count 2 --reflected-interval-ns 2000000")
    local s = doc.summary
    assert.same({ 150, 150, 0, 150, 0, 0 }, { s.sent, s.received, s.lost, s.extra_replies, s.duplicates, s.extra_missing })
  end)

  it("the text summary shows the extra replies, and no duplicates", function()
    local code, out = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 2 -d 50 -L 0.5 --reflected-count 4 "
      .. "--reflected-interval-ns 1000000", h.STAMP, port, h.free_port()))
    assert.equal(0, code)
    assert.matches("Extra replies (type 12 bursts): 6", out, 1, true)
    assert.is_nil(out:find("Duplicates", 1, true))
  end)

  it("stateful reflector with Direct Measurement: loss direction 0/0 (R_TxC counts the extra replies too)", function()
    local doc = json_run(sport, "-c 5 -d 50 -L 0.5 --reflected-count 3 --reflected-interval-ns 1000000 --direct-measurement")
    local s = doc.summary
    assert.same({ 5, 10 }, { s.received, s.extra_replies })
    local d = s.loss.direction
    assert.same({ "direct_measurement", 0, 0, 0 }, { d.method, d.forward, d.backward, d.undetermined })
    assert.is_nil(d.invalid)
  end)

  it("stateful reflector without Direct Measurement: the reflector-sequence direction is invalid, with the reason",
    function()
      local doc = json_run(sport, "-c 5 -d 50 -L 0.5 --reflected-count 3 --reflected-interval-ns 1000000")
      local d = doc.summary.loss.direction
      assert.equal("reflector_sequence", d.method)
      assert.matches("type 12 extra replies", d.invalid)
      assert.is_nil(d.forward)
    end)
end)

describe("type 12 asked of a reflector that does not support it (U)", function()
  it("is counted (extra_unsupported), warned about in text and shown in JSON; the run is not delayed", function()
    local pid, log, port = h.cli_reflector("--local-addr 127.0.0.1") -- type 12 off: answered once with U
    finally(function() h.stop(pid) os.remove(log) end)
    local doc = json_run(port, "-c 3 -d 50 -L 0.5 --reflected-count 3 --reflected-interval-ns 1000000")
    local s = doc.summary
    assert.same({ 3, 3, 0, 0, 3 }, { s.sent, s.received, s.extra_replies, s.extra_missing, s.extra_unsupported })
    local code, out = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 2 -d 50 -L 0.5 --reflected-count 4",
      h.STAMP, port, h.free_port()))
    assert.equal(0, code)
    assert.matches("WARNING: Type 12 not supported by the reflector (U) on 2 replies", out, 1, true)
    -- and in Lua, with or without per-packet results
    for _, keep in ipairs { true, false } do
      local snd = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = port, count = 2, send_delay = 20,
        timeout = 0.5, tlvs = { tlv.reflected_control { count = 3, interval_ns = MS } } })
      local _, sum = snd:run { keep = keep }
      snd:close()
      assert.equal(2, sum.extra_unsupported)
    end
  end)
end)

describe("a sender that asks for no reply (review 911, 5)", function()
  -- Return Path Control Code 0 (RFC 9503 4.1.1) or Type 12 Number 0 (RFC 10052 3): the packets that get
  -- no reply, as asked, are neither received nor lost
  local pid, log, port
  setup(function() pid, log, port = h.cli_reflector("--local-addr 127.0.0.1 --reflected-control-max-count 5") end)
  teardown(function() h.stop(pid) os.remove(log) end)

  for _, flag in ipairs { "--no-reply", "--reflected-count 0" } do
    it(flag .. ": no loss reported, counted no_reply, exit 0; -R says so per packet", function()
      local code, out, err = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 3 -d 10 -L 0.2 %s --output-format json",
        h.STAMP, port, h.free_port(), flag))
      assert.equal(0, code, err)
      local s = assert(report.json_decode(out)).summary
      assert.same({ 3, 0, 0, 3, 0 }, { s.sent, s.received, s.lost, s.no_reply, s.loss_pct })
      local code2, text = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 2 -d 10 -L 0.2 -R %s", h.STAMP, port,
        h.free_port(), flag))
      assert.equal(0, code2)
      assert.matches("Packets lost: 0", text, 1, true)
      assert.matches("No reply asked for: 2", text, 1, true)
      assert.matches("seq=0 no reply (asked for)", text, 1, true)
    end)
  end

  it("in Lua: results say no_reply, the summary counts them apart, quiet or not", function()
    for _, keep in ipairs { true, false } do
      local snd = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = port, count = 3, send_delay = 10,
        timeout = 0.2, tlvs = { tlv.return_path { no_reply = true } } })
      local results, sum = snd:run { keep = keep }
      local c = snd:counters()
      snd:close()
      assert.same({ 3, 0, 0, 3, 0 }, { sum.sent, sum.received, sum.lost, sum.no_reply, sum.loss_pct })
      assert.same({ 0, 3 }, { c.lost, c.no_reply })
      if keep then
        assert.is_true(results[1].no_reply)
        assert.is_false(results[1].lost)
      end
    end
  end)
end)

describe("type 12 in the I/O-free machine", function()
  local T12 = tlv.encode { tlv.reflected_control { count = 3, interval_ns = 2 * MS } }
  local function granted_reply(pkt, flags)
    local t = codec.decode_test(pkt)
    return codec.encode_reflected { seq = t.seq, sender_seq = t.seq, sender_timestamp_raw = t.timestamp_raw,
      sender_ee = t.ee, rx_timestamp = core.now(), timestamp = core.now(), sender_ttl = 64 }
      .. h.hex(flags .. "0c000c 00000003 001e8480 00000000")
  end

  it("the end waits for the last packet's extra replies: done once they came", function()
    local m = assert(core.sender_machine { count = 1, interval_ns = MS, timeout_ns = 100 * MS, tlvs = T12 })
    local now = 1000 * MS
    local pkt = assert(m:build(now))
    local reply = granted_reply(pkt, "00")
    assert.is_table(m:reply(reply))
    assert.is_false(m:done()) -- 2 further replies expected
    assert.equal(now + 100 * MS + 2 * 2 * MS, m:next_deadline()) -- timeout plus (Number - 1) intervals
    assert.is_false(m:reply(reply))
    assert.is_false(m:done())
    assert.is_false(m:reply(reply))
    assert.is_true(m:done())
    local c = m:counters()
    assert.same({ 1, 2, 0, 0 }, { c.received, c.extra_replies, c.duplicates, c.extra_missing })
    assert.is_false(m:reply(reply)) -- a fourth is a duplicate
    assert.equal(1, m:counters().duplicates)
  end)

  it("extra replies that never come: done after timeout + (Number - 1) intervals, counted extra_missing", function()
    local m = assert(core.sender_machine { count = 1, interval_ns = MS, timeout_ns = 100 * MS, tlvs = T12 })
    local now = 1000 * MS
    local pkt = assert(m:build(now))
    assert.is_table(m:reply(granted_reply(pkt, "00")))
    assert.same({}, m:expire(now + 100 * MS + 4 * MS - 1))
    assert.is_false(m:done())
    assert.same({}, m:expire(now + 100 * MS + 4 * MS))
    assert.is_true(m:done())
    assert.same({ 0, 2 }, { m:counters().extra_replies, m:counters().extra_missing })
  end)

  it("a burst not granted (C set) is not awaited", function()
    local m = assert(core.sender_machine { count = 1, interval_ns = MS, timeout_ns = 100 * MS, tlvs = T12 })
    local pkt = assert(m:build(1000 * MS))
    assert.is_table(m:reply(granted_reply(pkt, "10")))
    assert.is_true(m:done())
  end)

  it("stop(true) does not wait for extra replies", function()
    local m = assert(core.sender_machine { count = 1, interval_ns = MS, timeout_ns = 100 * MS, tlvs = T12 })
    local pkt = assert(m:build(1000 * MS))
    assert.is_table(m:reply(granted_reply(pkt, "00")))
    m:stop(true)
    m:expire(1000 * MS)
    assert.is_true(m:done())
    assert.equal(2, m:counters().extra_missing)
  end)
end)

describe("loss direction sanity", function()
  local function res(seq, dm, rx)
    return { seq = seq, lost = false, refl_seq = seq, rtt = 1000, fwd = 500, bwd = 500, rx_replies = rx,
      tlvs = { direct_measurement = dm } }
  end

  it("Direct Measurement counters that go backwards are flagged, not reported", function()
    local acc = stamp.stats.new()
    acc:add(res(0, { s_txc = 1, r_rxc = 1000, r_txc = 1000 }, 1))
    acc:add(res(1, { s_txc = 2, r_rxc = 2, r_txc = 2 }, 2))
    local d = acc:summary({ sent = 2 }).loss.direction
    assert.equal("direct_measurement", d.method)
    assert.matches("backwards", d.invalid)
    assert.is_nil(d.forward)
  end)

  it("counters above what was sent are flagged as a negative loss", function()
    local acc = stamp.stats.new()
    acc:add(res(0, { s_txc = 1, r_rxc = 1000, r_txc = 1000 }, 1))
    local d = acc:summary({ sent = 1 }).loss.direction
    assert.matches("negative loss", d.invalid)
  end)

  it("backward loss counts the replies received up to the one carrying R_TxC (extra replies included)", function()
    local acc = stamp.stats.new()
    acc:add(res(0, { s_txc = 1, r_rxc = 1, r_txc = 1 }, 1))
    acc:add(res(1, { s_txc = 2, r_rxc = 2, r_txc = 5 }, 4)) -- 3 replies to packet 0, one of them lost
    local d = acc:summary({ sent = 2, extra_replies = 2 }).loss.direction
    assert.same({ 0, 1 }, { d.forward, d.backward })
  end)
end)
