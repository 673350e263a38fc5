-- End to end through the real `stamp` command and real sockets.
local h = require "helper"

local STAMP = h.STAMP
local KEY = string.rep("0123456789abcdef", 4)

local reflector = h.cli_reflector

local function lines_matching(s, pat)
  local n = 0
  for line in s:gmatch("[^\n]+") do if line:match(pat) then n = n + 1 end end
  return n
end

local PACKET_LINE = "^seq=%d+ rtt=%d+%.%d%d%dms ttl=%d+ reflector_recv_ts=%d+ reflector_send_ts=%d+"

describe("stamp command", function()
  it("100 packets over 127.0.0.1 with -R: 100 lines and a summary", function()
    local pid, rout, port = reflector("--local-addr 127.0.0.1")
    local code, out, err = h.run(string.format("%s --remote-addr 127.0.0.1 --remote-port %d --local-port %d "
      .. "--count 100 --send-delay 10 -R", STAMP, port, h.free_port()))
    h.stop(pid)
    assert.equal(0, code, err)
    assert.equal(100, lines_matching(out, PACKET_LINE))
    assert.matches("%-%-%- STAMP Statistics %-%-%-", out)
    assert.matches("Packets sent: 100\n", out)
    assert.matches("Packets received: 100\n", out)
    assert.matches("Packets lost: 0 %(0%.0%%%)", out)
    assert.matches("Min RTT: %d+%.%d+ ms", out)
    assert.matches("Max RTT: %d+%.%d+ ms", out)
    assert.matches("Avg RTT: %d+%.%d+ ms", out)
    local rep = h.slurp(rout)
    assert.matches("Packets received: 100\n", rep)
    assert.matches("Packets reflected: 100\n", rep)
    os.remove(rout)
  end)

  it("the same over ::1", function()
    local pid, rout, port = reflector("--local-addr ::1")
    local code, out = h.run(string.format("%s --remote-addr ::1 --remote-port %d --local-port %d "
      .. "--count 100 --send-delay 10 -R", STAMP, port, h.free_port()))
    h.stop(pid)
    assert.equal(0, code)
    assert.equal(100, lines_matching(out, PACKET_LINE))
    assert.matches("Packets lost: 0 %(0%.0%%%)", out)
    os.remove(rout)
  end)

  it("authenticated with the same key; a wrong key gives 100% loss and 100 HMAC failures", function()
    local pid, rout, port = reflector("--local-addr 127.0.0.1 -A A --hmac-key " .. KEY)
    local code, out, err = h.run(string.format("%s --remote-addr 127.0.0.1 --remote-port %d --local-port %d "
      .. "--count 100 --send-delay 10 -R -A A --hmac-key %s", STAMP, port, h.free_port(), KEY))
    assert.equal(0, code, err .. out:sub(-400))
    assert.equal(100, lines_matching(out, PACKET_LINE))
    assert.matches("Packets lost: 0 %(0%.0%%%)", out)
    local wrong = KEY:gsub("^0", "f")
    code, out = h.run(string.format("%s --remote-addr 127.0.0.1 --remote-port %d --local-port %d "
      .. "--count 100 --send-delay 10 --timeout 1 -A A --hmac-key %s", STAMP, port, h.free_port(), wrong))
    h.stop(pid)
    assert.equal(1, code) -- no reply: exit status 1, like ping
    assert.matches("Packets received: 0\n", out)
    assert.matches("Packets lost: 100 %(100%.0%%%)", out)
    local rep = h.slurp(rout)
    assert.matches("Dropped %(HMAC failure%): 100\n", rep)
    assert.matches("Packets reflected: 100\n", rep)
    os.remove(rout)
  end)

  it("reads the key from --hmac-key-file", function()
    local kf = os.tmpname()
    local f = io.open(kf, "w")
    f:write(KEY, "\n")
    f:close()
    local pid, rout, port = reflector("--local-addr 127.0.0.1 -A A --hmac-key " .. KEY)
    local code, out = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 5 -d 5 -A A --hmac-key-file %s",
      STAMP, port, h.free_port(), kf))
    h.stop(pid)
    os.remove(kf)
    os.remove(rout)
    assert.equal(0, code)
    assert.matches("Packets received: 5\n", out)
  end)

  it("stateful reflector: two senders get independent reflector sequence numbers", function()
    local pid, rout, port = reflector("--local-addr 127.0.0.1 --stateful-reflector")
    local cmd = string.format("%s -r 127.0.0.1 -p %d -c 5 -d 5 -R -o ", STAMP, port)
    local _, a = h.run(cmd .. h.free_port())
    local _, b = h.run(cmd .. h.free_port())
    h.stop(pid)
    os.remove(rout)
    for _, out in ipairs { a, b } do
      local seqs = {}
      for s in out:gmatch("refl_seq=(%d+)") do seqs[#seqs + 1] = tonumber(s) end
      assert.same({ 0, 1, 2, 3, 4 }, seqs)
    end
  end)

  it("Ctrl-C prints the summary so far", function()
    local pid, rout, port = reflector("--local-addr 127.0.0.1")
    local spid, sout = h.spawn(string.format("%s -r 127.0.0.1 -p %d -o %d -c 1000 -d 20", STAMP, port, h.free_port()))
    h.sleep(0.5)
    h.stop(spid)
    h.stop(pid)
    local out = h.slurp(sout)
    os.remove(sout)
    os.remove(rout)
    assert.matches("%-%-%- STAMP Statistics %-%-%-", out)
    local sent = tonumber(out:match("Packets sent: (%d+)"))
    assert.is_true(sent > 5 and sent < 1000)
  end)

  describe("bad input", function()
    local cases = {
      { "--count -5", "--count" },
      { "--count abc", "--count" },
      { "--hmac-key xyz", "--hmac-key" },
      { "--remote-port 0", "--remote-port" },
      { "--local-port 70000", "--local-port" },
      { "-K GPS", "--clock-source" },
      { "-A X", "--auth-mode" },
      { "-A A", "--auth-mode" },
      { "--send-delay -1", "--send-delay" },
      { "--timeout 0", "--timeout" },
      { "--ssid 70000", "--ssid" },
      { "--ttl 0", "--ttl" },
      { "--hmac-key-file /nonexistent/key", "--hmac-key-file" },
      { "--metrics --metrics-addr nowhere", "--metrics-addr" },
      { "--count", "--count" },
    }
    h.bad_flag_cases(it, cases)
  end)

  it("-h and -V", function()
    local code, out = h.run(STAMP .. " -h")
    assert.equal(0, code)
    assert.matches("%-%-remote%-addr", out)
    assert.matches("%-%-stateful%-reflector", out)
    code, out = h.run(STAMP .. " -V")
    assert.equal(0, code)
    assert.matches("^stamp %d+%.%d+%.%d+", out)
  end)

  it("a busy port is a one-line runtime error with exit code 1", function()
    local pid, rout, port = reflector("--local-addr 127.0.0.1")
    local code, _, err = h.run(string.format("%s -i --local-addr 127.0.0.1 --local-port %d", STAMP, port))
    h.stop(pid)
    os.remove(rout)
    assert.equal(1, code)
    assert.matches("in use", err)
  end)
end)

describe("examples", function()
  it("examples/loopback.lua runs with the Lua API only", function()
    local code, out, err = h.run("cd " .. h.ROOT .. " && lua5.4 examples/loopback.lua 5")
    assert.equal(0, code, err)
    assert.equal(5, lines_matching(out, PACKET_LINE))
    assert.matches("Packets lost: 0 %(0%.0%%%)", out)
  end)
end)
