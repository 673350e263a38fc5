-- Type 12 (RFC 10052) on the wire: a `stamp` sender and reflector on loopback, captured with
-- tshark; the octets and the reply counts are read from the capture, not from our own decoders.
local h = require "helper"

local function have(cmd) return (h.run("command -v " .. cmd)) == 0 end

local PORT
-- No proof, no pass: without tshark, or with a tshark that cannot capture, the spec FAILS with the
-- reason. Only an explicit STAMP_SKIP_CAPTURE=1 in the environment (never set by CI, which installs
-- tshark and runs as root) turns it pending, naming that variable.
local capture, skip_reason, capture_error

setup(function()
  if not have("tshark") then
    if os.getenv("STAMP_SKIP_CAPTURE") == "1" then
      skip_reason = "STAMP_SKIP_CAPTURE=1 and tshark is not installed: Type 12 on the wire NOT proven here"
    else
      capture_error = "tshark is not installed (scripts/install-deps installs it; STAMP_SKIP_CAPTURE=1 to skip knowingly)"
    end
    return
  end
  PORT = h.free_port()
  capture = os.tmpname() .. ".pcap"
  local tpid, tlog = h.spawn(string.format("tshark -i lo -f 'udp port %d' -w %s", PORT, capture))
  if not h.wait_for(tlog, "Capturing on", 10) then
    h.stop(tpid)
    capture_error = "tshark is installed but cannot capture on lo: " .. h.slurp(tlog):gsub("\n", " ")
    return
  end
  h.sleep(1)
  local rpid, rlog = h.spawn(string.format("%s -i --local-addr 127.0.0.1 --local-port %d --reflected-control-max-count 3 "
    .. "--reflected-control-max-size 300", h.STAMP, PORT))
  h.wait_for(rlog, "listening", 5)
  -- within the limits: 2 requests for 3 replies of 101 octets, 5 ms apart
  h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 2 -d 50 -L 0.5 --reflected-count 3 --reflected-length 101 "
    .. "--reflected-interval-ns 5000000", h.STAMP, PORT, h.free_port()))
  -- over the count limit: 2 requests for 5 replies
  h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 2 -d 50 -L 0.5 --reflected-count 5 --reflected-length 101 "
    .. "--reflected-interval-ns 5000000", h.STAMP, PORT, h.free_port()))
  h.sleep(0.3)
  h.stop(rpid)
  h.sleep(0.5)
  h.stop(tpid)
  os.remove(rlog)
  os.remove(tlog)
end)

teardown(function() if capture then os.remove(capture) end end)

-- Every captured datagram: { t = seconds, sport =, dport =, payload = octets as hex }
local function datagrams()
  local code, out, err = h.run(string.format("tshark -r %s -T fields -E separator=/t -e frame.time_epoch -e udp.srcport "
    .. "-e udp.dstport -e udp.payload", capture))
  assert.equal(0, code, err)
  local list = {}
  for line in out:gmatch("[^\n]+") do
    local t, sp, dp, pl = line:match("^(%S+)\t(%d+)\t(%d+)\t(%x+)")
    if t then list[#list + 1] = { t = tonumber(t), sport = tonumber(sp), dport = tonumber(dp), payload = pl:gsub(":", "") } end
  end
  return list
end

describe("type 12 captured on loopback", function()
  it("requests carry a Length of at least 12; replies come in the granted number and length, never early; C only over the cap", function()
    if skip_reason then pending(skip_reason) return end
    assert(not capture_error, capture_error)
    local reqs, replies = {}, {}
    for _, d in ipairs(datagrams()) do
      if d.dport == PORT then reqs[#reqs + 1] = d else replies[#replies + 1] = d end
    end
    assert.equal(4, #reqs)
    for _, d in ipairs(reqs) do
      assert.equal("800c000c", d.payload:sub(89, 96)) -- TLV header at octet 44: U, type 12, Length 12
    end
    -- replies grouped by request: the Session-Sender's port and Sequence Number (octets 24..27 of the reply)
    local groups, order = {}, {}
    for _, d in ipairs(replies) do
      local k = d.dport .. "/" .. d.payload:sub(49, 56)
      if not groups[k] then groups[k] = {} order[#order + 1] = k end
      table.insert(groups[k], d)
    end
    assert.equal(4, #order)
    for i, k in ipairs(order) do
      local g = groups[k]
      if i <= 2 then -- granted: 3 replies of 104 octets (101 rounded up to 4), C clear, none before its time
        assert.equal(3, #g)
        for j, d in ipairs(g) do
          assert.equal(104 * 2, #d.payload)
          assert.equal("000c000c", d.payload:sub(89, 96))
          -- reply j is due (j - 1) * 5 ms after the request arrived, just before the first reply left
          local due = (j - 1) * 0.005 - 0.0005
          if j > 1 then assert.is_true(d.t - g[1].t >= due, string.format("reply %d after %.6f s", j, d.t - g[1].t)) end
        end
      else -- over the count cap: one reply with C
        assert.equal(1, #g)
        assert.equal("100c000c", g[1].payload:sub(89, 96))
        assert.equal(104 * 2, #g[1].payload)
      end
    end
  end)
end)
