-- RFC 8972 4.6 (row 8972-4.6-4): the sender's Access Report retransmission timer.
local stamp = require "stamp"
local codec = stamp.codec
local tlv = stamp.tlv
local socket = require "socket"
local h = require "helper"

-- A reflector behind a UDP relay on loopback that drops the first `drop` replies carrying an Access
-- Report TLV; it records every test packet it relays.
local function relayed(drop)
  local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0 })
  local _, rport = r:local_addr()
  local front = socket.udp()
  assert(front:setsockname("127.0.0.1", 0))
  front:settimeout(0)
  local back = socket.udp()
  assert(back:setpeername("127.0.0.1", rport))
  back:settimeout(0)
  local _, fport = front:getsockname()
  local o = { port = tonumber(fport), tests = {}, dropped = 0 }
  local sender_ip, sender_port
  local function has_ar(pkt)
    local t = codec.decode_reflected(pkt)
    return t and t.tlv_map and t.tlv_map.access_report ~= nil
  end
  function o.pump()
    for _ = 1, 64 do
      local d, ip, port = front:receivefrom()
      if not d then break end
      sender_ip, sender_port = ip, port
      o.tests[#o.tests + 1] = d
      back:send(d)
    end
    r:step(0)
    for _ = 1, 64 do
      local d = back:receive()
      if not d then break end
      if has_ar(d) and o.dropped < drop then
        o.dropped = o.dropped + 1
      else
        front:sendto(d, sender_ip, sender_port)
      end
    end
  end
  function o.close()
    front:close()
    back:close()
    r:close()
  end
  return o
end

local function run(drop, scfg)
  local relay = relayed(drop)
  scfg.remote_addr, scfg.remote_port = "127.0.0.1", relay.port
  scfg.tlvs = { tlv.access_report { id = 1, return_code = 2 } }
  local s = assert(stamp.sender(scfg))
  local results, summary = s:run { pump = relay.pump }
  local c = s:counters()
  s:close()
  relay.close()
  -- which test packets carried the Access Report, which the Extra Padding in its place
  local ar, pad, lens = {}, 0, {}
  for i, p in ipairs(relay.tests) do
    local t = assert(codec.decode_test(p))
    lens[#p] = true
    if t.tlv_map.access_report then
      ar[#ar + 1] = i - 1
      assert.same({ 1, 2 }, { t.tlv_map.access_report.id, t.tlv_map.access_report.return_code })
    else
      pad = pad + 1
      assert.is_table(t.tlv_map.padding, "Extra Padding in its place")
    end
  end
  return { results = results, summary = summary, c = c, ar = ar, pad = pad, lens = lens, relay = relay }
end

describe("Access Report retransmission timer (RFC 8972 4.6)", function()
  it("echoed at once: sent in the first packet only, the others carry Extra Padding of its size", function()
    local x = run(0, { count = 10, send_delay = 5, timeout = 0.5, access_report_timeout = 0.02 })
    assert.same({ 0 }, x.ar)
    assert.equal(9, x.pad)
    assert.same({ [52] = true }, x.lens) -- 44 + 8: every packet the same length
    assert.same({ 1, 0, 1, 0 }, { x.c.access_sent, x.c.access_retransmits, x.c.access_acked, x.c.access_failed })
    assert.same({ sent = 1, retransmits = 0, echoed = true, gave_up = false }, x.summary.access_report)
    assert.equal(10, x.summary.received)
  end)

  it("the first two echoes dropped: resent after each timeout, then echoed; timer disarmed", function()
    local x = run(2, { count = 40, send_delay = 5, timeout = 0.5, access_report_timeout = 0.02 })
    assert.equal(3, #x.ar)
    -- each resend waits for the timer (20 ms = 4 packets at 5 ms), never sooner
    assert.is_true(x.ar[2] - x.ar[1] >= 4 and x.ar[3] - x.ar[2] >= 4, table.concat(x.ar, ","))
    assert.same({ 3, 2, 1, 0 }, { x.c.access_sent, x.c.access_retransmits, x.c.access_acked, x.c.access_failed })
    assert.same({ sent = 3, retransmits = 2, echoed = true, gave_up = false }, x.summary.access_report)
    assert.equal(2, x.relay.dropped)
  end)

  it("never echoed: gives up after access_report_retries resends, counted", function()
    local x = run(1000, { count = 40, send_delay = 5, timeout = 0.5, access_report_timeout = 0.02,
      access_report_retries = 2 })
    assert.equal(3, #x.ar)
    assert.same({ 3, 2, 0, 1 }, { x.c.access_sent, x.c.access_retransmits, x.c.access_acked, x.c.access_failed })
    assert.same({ sent = 3, retransmits = 2, echoed = false, gave_up = true }, x.summary.access_report)
  end)

  it("a reply whose Access Report is flagged U (invalid Access ID) is no echo", function()
    local relay = relayed(0)
    local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = relay.port, count = 20, send_delay = 5,
      timeout = 0.5, access_report_timeout = 0.02, access_report_retries = 1,
      tlvs = { tlv.access_report { id = 3, return_code = 1 } } })
    local _, summary = s:run { pump = relay.pump }
    s:close()
    relay.close()
    assert.same({ sent = 2, retransmits = 1, echoed = false, gave_up = true }, summary.access_report)
  end)

  it("options are checked", function()
    assert.has_error(function()
      stamp.sender { remote_addr = "127.0.0.1", access_report_timeout = 0 }
    end)
    assert.has_error(function()
      stamp.sender { remote_addr = "127.0.0.1", access_report_retries = -1 }
    end)
  end)

  describe("the command", function()
    local pid, rlog, port
    setup(function() pid, rlog, port = h.cli_reflector() end)
    teardown(function()
      h.stop(pid)
      os.remove(rlog)
    end)

    it("echoed: the summary says so", function()
      local code, out, err = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 5 -d 5 --access-report 1",
        h.STAMP, port, h.free_port()))
      assert.equal(0, code, err)
      assert.matches("Access Report: echoed (sent 1 times, 0 resends)", out, 1, true)
      assert.equal("", err)
    end)

    it("never echoed (TLVs returned unprocessed, U): --access-report-retries 2 gives up with a warning on stderr "
      .. "and in the summary", function()
      -- the command sends only the Access IDs RFC 8972 4.6 defines (1, 2): a reflector that does not process
      -- TLVs (--tlv-mode ignore) returns the TLV with U, which is not an echo
      local ipid, ilog, iport = h.cli_reflector("--local-addr 127.0.0.1 --tlv-mode ignore")
      local cmd = string.format("%s -r 127.0.0.1 -p %d -o %d -c 30 -d 5 --access-report 1 "
        .. "--access-report-timeout 0.02 --access-report-retries 2", h.STAMP, iport, h.free_port())
      local code, out, err = h.run(cmd)
      -- the warning is a log line: timestamped, and JSON with --log-format json (review 911, 10)
      local code2, _, err2 = h.run(cmd .. " --log-format json")
      h.stop(ipid)
      os.remove(ilog)
      assert.equal(0, code, err)
      assert.matches("Access Report: WARNING: never echoed, gave up (sent 3 times, 2 resends)", out, 1, true)
      assert.matches("^%d%d%d%d%-[%d%-]+T[%d:.]+Z warning: no reply echoed the Access Report TLV; gave up after 2 resends", err)
      assert.equal(0, code2, err2)
      local rec = assert(require("stamp.report").json_decode(err2), err2)
      assert.equal("warning", rec.level)
      assert.matches("gave up after 2 resends", rec.msg, 1, true)
      assert.truthy(rec.ts)
    end)

    it("JSON summary carries access_report", function()
      local code, out, err = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 3 -d 5 --access-report 2 "
        .. "--output-format json", h.STAMP, port, h.free_port()))
      assert.equal(0, code, err)
      local doc = assert(require("stamp.report").json_decode(out))
      assert.same({ sent = 1, retransmits = 0, echoed = true, gave_up = false }, doc.summary.access_report)
    end)

    h.bad_flag_cases(it, { { "-r 127.0.0.1 --access-report-timeout 0", "--access-report-timeout" },
      { "-r 127.0.0.1 --access-report-retries x", "--access-report-retries" } })
  end)
end)
