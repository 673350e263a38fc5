-- Independent decoders agree with us: a sender <-> reflector exchange through
-- the `stamp` command is captured on loopback and decoded by tshark (base
-- fields) and by scapy.contrib.stamp (base fields and TLV headers).
local h = require "helper"

local function have(cmd) return (h.run("command -v " .. cmd)) == 0 end

local PORT, SPORT
local capture, stamp_out, skip_reason

-- "Nov 27, 2026 08:36:02.536049592 UTC" -> nanoseconds within the day
local function tshark_ns_of_day(s)
  local hh, mm, ss, frac = s:match("(%d+):(%d+):(%d+)%.(%d+)")
  if not hh then return nil end
  frac = (frac .. "000000000"):sub(1, 9)
  return ((tonumber(hh) * 60 + tonumber(mm)) * 60 + tonumber(ss)) * 1000000000 + tonumber(frac)
end

local function parse_stamp_lines(out)
  local t = {}
  for line in out:gmatch("[^\n]+") do
    local seq, ttl, rx, tx, rseq = line:match("^seq=(%d+) rtt=%S+ ttl=(%d+) reflector_recv_ts=(%d+) reflector_send_ts=(%d+).- refl_seq=(%d+)")
    if seq then
      t[tonumber(seq)] = { ttl = tonumber(ttl), rx = tonumber(rx), tx = tonumber(tx), refl_seq = tonumber(rseq), line = line }
    end
  end
  return t
end

setup(function()
  if not have("tshark") then skip_reason = "tshark is not installed (scripts/install-deps installs it)" return end
  PORT, SPORT = h.free_port(), h.free_port()
  capture = os.tmpname() .. ".pcap"
  -- only this session's packets: both ports (other suites run at the same time on lo)
  local tpid, tlog = h.spawn(string.format("tshark -i lo -f 'udp port %d and udp port %d' -w %s", PORT, SPORT, capture))
  if not h.wait_for(tlog, "Capturing on", 10) then
    h.stop(tpid)
    skip_reason = "tshark cannot capture on lo here: " .. h.slurp(tlog):gsub("\n", " ")
    return
  end
  h.sleep(1)
  local rpid, rlog = h.spawn(string.format("%s -i --local-addr 127.0.0.1 --local-port %d", h.STAMP, PORT))
  h.wait_for(rlog, "listening", 5)
  local _
  _, stamp_out = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 5 -d 20 -R --ssid 4242 --cos --dscp 46 --location "
    .. "--direct-measurement", h.STAMP, PORT, SPORT))
  h.stop(rpid)
  h.sleep(0.5)
  h.stop(tpid)
  os.remove(rlog)
  os.remove(tlog)
end)

teardown(function() if capture then os.remove(capture) end end)

describe("independent decoders", function()
  it("tshark decodes the base fields as stamp reported them", function()
    if skip_reason then pending(skip_reason) return end
    local mine = parse_stamp_lines(stamp_out)
    local code, out, err = h.run(string.format("tshark -r %s -d udp.port==%d,twamp.test -T fields -E separator=/t "
      .. "-e udp.srcport -e udp.dstport -e twamp.test.seq_number -e twamp.test.sender_seq_number -e twamp.test.sender_ttl "
      .. "-e twamp.test.receive_timestamp -e twamp.test.timestamp", capture, PORT))
    assert.equal(0, code, err)
    local replies = 0
    for line in out:gmatch("[^\n]+") do
      local sport, dport, seq, sseq, ttl, rxts, txts = line:match("^(%d+)\t(%d+)\t(%d+)\t(%d*)\t(%d*)\t([^\t]*)\t(.*)$")
      sport, dport = tonumber(sport), tonumber(dport)
      assert.is_true((sport == SPORT and dport == PORT) or (sport == PORT and dport == SPORT), line)
      if sport == PORT then
        replies = replies + 1
        local m = assert(mine[tonumber(sseq)], "no -R line for " .. sseq)
        assert.equal(m.refl_seq, tonumber(seq))
        assert.equal(m.ttl, tonumber(ttl))
        local day = 86400 * 1000000000
        assert.is_true(math.abs(tshark_ns_of_day(rxts) - m.rx % day) <= 1000, line .. " vs " .. m.line)
        assert.is_true(math.abs(tshark_ns_of_day(txts) - m.tx % day) <= 1000, line .. " vs " .. m.line)
      end
    end
    assert.equal(5, replies)
  end)

  it("scapy.contrib.stamp decodes base fields and TLV headers as stamp reported them", function()
    if skip_reason then pending(skip_reason) return end
    if (h.run("/usr/bin/python3 -c 'import scapy.contrib.stamp'")) ~= 0 then
      pending("python3-scapy is not installed (scripts/install-deps installs it)")
      return
    end
    local mine = parse_stamp_lines(stamp_out)
    local code, out, err = h.run(string.format("/usr/bin/python3 %s/spec/tools/scapy_decode.py %s %d", h.ROOT, capture, PORT))
    assert.equal(0, code, err)
    local json = require "dkjson"
    local tests, replies = 0, 0
    for line in out:gmatch("[^\n]+") do
      local p = assert(json.decode(line))
      if p.dir == "test" then
        tests = tests + 1
        assert.equal(4242, p.ssid)
        assert.is_true(p.mult >= 1)
        -- our TLVs in flag/type/length: Location (44), CoS (4), Direct Measurement (12), all with U
        assert.same({ { flags = 128, type = 2, len = 44 }, { flags = 128, type = 4, len = 4 }, { flags = 128, type = 5, len = 12 } }, p.tlvs)
      else
        replies = replies + 1
        local m = assert(mine[p.seq_sender])
        assert.same({ m.refl_seq, m.ttl, 4242 }, { p.seq, p.ttl_sender, p.ssid })
        assert.is_true(math.abs((p.ts_rx - 2208988800) - m.rx / 1e9) < 2e-6)
        assert.is_true(math.abs((p.ts - 2208988800) - m.tx / 1e9) < 2e-6)
        -- the reflector cleared U on all three and kept the lengths
        assert.same({ { flags = 0, type = 2, len = 44 }, { flags = 0, type = 4, len = 4 }, { flags = 0, type = 5, len = 12 } }, p.tlvs)
      end
    end
    assert.same({ 5, 5 }, { tests, replies })
  end)

  it("the stamp command showed what the TLVs reported", function()
    if skip_reason then pending(skip_reason) return end
    local lines = 0
    for line in stamp_out:gmatch("[^\n]+") do
      if line:match("^seq=") then
        lines = lines + 1
        assert.matches("cos: dscp1=46 dscp2=46 ecn2=0 rp=0 reply_dscp=46", line)
        assert.matches("location: src=127%.0%.0%.1:" .. SPORT .. " dst=127%.0%.0%.1:" .. PORT, line)
        assert.matches("direct_measurement: s_txc=%d+ r_rxc=%d+ r_txc=%d+", line)
      end
    end
    assert.equal(5, lines)
  end)
end)
