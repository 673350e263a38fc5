-- The reflector's batched paths keep their results: replies that leave in one sendmmsg, and the
-- kernel transmit timestamps that come back for them together (read from the error queue in
-- batches), still give every Follow-Up Telemetry TLV the previous reply's sequence number and that
-- reply's transmit time: its kernel transmit time once known, else (a reply of the same batch, whose
-- kernel time cannot exist yet) the T3 written into it.
local stamp = require "stamp"
local tlv = stamp.tlv
local h = require "helper"

-- (room in the receive buffer: the kernel drops transmit timestamps, not datagrams, when it is full)

describe("reflector batches", function()
  it("Follow-Up Telemetry under bursts: each report is the previous reply's number and transmit time", function()
    local r, s = h.loopback_pair({ stateful = true, rcvbuf = 4194304 }, { count = 300, send_delay = 0.02, timeout = 1,
      local_addr = "127.0.0.1", tlvs = { tlv.follow_up() } })
    local calls = 0
    -- step the reflector only every 8th time: datagrams queue up and are answered in batches
    local results = s:run { pump = function()
      calls = calls + 1
      if calls % 8 == 0 then r:step(0) end
    end }
    s:close()
    table.sort(results, function(a, b) return a.seq < b.seq end)
    local by_rseq, got, reported = {}, 0, 0
    for _, res in ipairs(results) do
      if res.packet then
        got = got + 1
        by_rseq[string.unpack(">I4", res.packet, 1)] = res
      end
    end
    assert.is_true(got >= 100, "replies " .. got)
    local c = r:counters()
    assert.is_true(c.reflected >= got)
    for _, res in ipairs(results) do
      if res.packet then
        local fu = res.tlvs.follow_up
        if fu.mode ~= 0 then -- 0: nothing to report yet (all zero)
          reported = reported + 1
          local prev = by_rseq[fu.seq]
          if prev then -- that earlier reply reached us: the report is its kernel transmit time
            local t3 = stamp.core.ts_decode(prev.packet:sub(5, 12))
            assert.is_true(fu.timestamp >= t3 and fu.timestamp - t3 < 5e8,
              string.format("reply %d: follow-up %d vs T3 %d of reply %d", res.seq, fu.timestamp, t3, fu.seq))
          end
          local rseq = string.unpack(">I4", res.packet, 1)
          assert.are.equal(rseq - 1, fu.seq, "the previous reply (RFC 8972 4.7), even in the same batch")
        end
      end
    end
    -- only the session's first reply has no previous reply to report (replies lost on the way back
    -- cannot hide one: the reflector numbers every reply it sends)
    assert.is_true(reported >= got - 1, "reports " .. reported .. " of " .. got)
    r:close()
  end)
end)
