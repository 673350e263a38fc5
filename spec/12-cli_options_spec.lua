-- The remaining command-line options, end to end.
local h = require "helper"
local socket = require "socket"
local codec = require "stamp.codec"

local STAMP = h.STAMP

local reflector = h.cli_reflector

local function finish(pid, out)
  h.stop(pid)
  local s = h.slurp(out)
  os.remove(out)
  return s
end

describe("stamp command options", function()
  it("--ttl sets the TTL the reflector sees", function()
    local pid, out, port = reflector("--local-addr 127.0.0.1")
    local code, o = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 3 -d 5 -R --ttl 37", STAMP, port, h.free_port()))
    finish(pid, out)
    assert.equal(0, code)
    local n = 0
    for _ in o:gmatch("seq=%d+ rtt=%S+ ttl=37 ") do n = n + 1 end
    assert.equal(3, n)
  end)

  it("-K PTP on both sides", function()
    local pid, out, port = reflector("--local-addr 127.0.0.1 -K PTP")
    assert.matches("PTP", h.slurp(out))
    local code, o = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 5 -d 5 -K PTP --output-format jsonl", STAMP, port,
      h.free_port()))
    finish(pid, out)
    assert.equal(0, code)
    local n = 0
    for l in o:gmatch("[^\n]+") do
      local p = require("stamp.report").json_decode(l)
      if p.type == "packet" then
        n = n + 1
        assert.is_false(p.lost)
        assert.is_true(math.abs(p.fwd_ms) < 100)
      end
    end
    assert.equal(5, n)
  end)

  it("--strict-packets drops a 41-octet TWAMP-Light packet that is otherwise answered", function()
    for _, strict in ipairs { false, true } do
      local pid, out, port = reflector("--local-addr 127.0.0.1" .. (strict and " --strict-packets" or ""))
      local u = socket.udp()
      u:settimeout(0.5)
      u:sendto(codec.encode_test { seq = 9 }:sub(1, 41), "127.0.0.1", port)
      local reply = u:receive()
      u:close()
      local counters = finish(pid, out)
      if strict then
        assert.is_nil(reply)
        assert.matches("Dropped %(too short%): 1", counters)
      else
        assert.equal(44, #reply)
        assert.matches("Short packets answered zero%-filled: 1", counters)
      end
    end
  end)

  it("reflector -R prints counters while packets arrive", function()
    local pid, out, port = reflector("--local-addr 127.0.0.1 -R")
    h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 20 -d 100", STAMP, port, h.free_port()))
    local s = finish(pid, out)
    assert.matches("rx=%d+ reflected=%d+ drop_hmac=0 drop_short=0 sessions=0", s)
  end)

  it("--count 0 sends until interrupted, then prints the summary", function()
    local pid, out, port = reflector("--local-addr 127.0.0.1")
    local spid, sout = h.spawn(string.format("%s -r 127.0.0.1 -p %d -o %d -c 0 -d 10", STAMP, port, h.free_port()))
    h.sleep(0.6)
    h.stop(spid)
    finish(pid, out)
    local s = h.slurp(sout)
    os.remove(sout)
    local sent = tonumber(s:match("Packets sent: (%d+)"))
    assert.is_true(sent and sent > 10, s)
  end)

  it("--schedule poisson sends with random gaps of the given mean", function()
    local pid, out, port = reflector("--local-addr 127.0.0.1")
    local code, o = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 60 -d 5 --schedule poisson --output-format csv",
      STAMP, port, h.free_port()))
    finish(pid, out)
    assert.equal(0, code)
    local t1 = {}
    for l in o:gmatch("[^\n]+") do
      local v = l:match("^%d+,%d,%d*,(%d+),")
      if v then t1[#t1 + 1] = tonumber(v) end
    end
    table.sort(t1)
    assert.equal(60, #t1)
    local gaps, mn, mx = 0, math.huge, 0
    for i = 2, #t1 do
      local g = (t1[i] - t1[i - 1]) / 1e6
      gaps = gaps + g
      if g < mn then mn = g end
      if g > mx then mx = g end
    end
    local mean = gaps / 59
    assert.is_true(mean > 2 and mean < 10, "mean gap " .. mean)
    assert.is_true(mx > 2 * mn + 1, "gaps vary: " .. mn .. ".." .. mx) -- not periodic
  end)

  it("SIGTERM stops the reflector, which prints its counters", function()
    local pid, out = reflector("--local-addr 127.0.0.1")
    os.execute("kill -TERM " .. pid)
    for _ = 1, 50 do
      if not os.execute("kill -0 " .. pid .. " 2>/dev/null") then break end
      h.sleep(0.05)
    end
    local s = h.slurp(out)
    os.remove(out)
    assert.matches("%-%-%- STAMP Reflector Counters %-%-%-\nPackets received: 0", s)
  end)

  it("--stateful-reflector --session-timeout reaps idle sessions", function()
    local pid, out, port = reflector("--local-addr 127.0.0.1 --stateful-reflector --session-timeout 0.2")
    h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 2 -d 5", STAMP, port, h.free_port()))
    h.sleep(1.5)
    local s = finish(pid, out)
    assert.matches("Sessions created: 1\n", s)
    assert.matches("Sessions reaped: 1\n", s)
    assert.matches("Sessions active: 0\n", s)
  end)
end)
