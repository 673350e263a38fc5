-- Never silent: the command's exit status, errors in the summary, ports, keys, usage.
local h = require "helper"
local report = require "stamp.report"
local socket = require "socket"

local STAMP = h.STAMP
local KEY = string.rep("0123456789abcdef", 4)

-- Run the sender in the background while `serve(udp)` answers on a luasocket port; returns code, out, err.
local function against(serve, args, seconds)
  local u = assert(socket.udp())
  assert(u:setsockname("127.0.0.1", 0))
  local _, port = u:getsockname()
  u:settimeout(0.05)
  local out, err, rc = os.tmpname(), os.tmpname(), os.tmpname()
  os.execute(string.format("(%s -r 127.0.0.1 -p %d %s >%s 2>%s; echo $? >%s) &", STAMP, port, args, out, err, rc))
  local t0 = socket.gettime()
  while socket.gettime() - t0 < (seconds or 5) and h.slurp(rc) == "" do
    local data, ip, p = u:receivefrom()
    if data then serve(u, data, ip, p) end
  end
  u:close()
  local code = tonumber(h.slurp(rc))
  local o, e = h.slurp(out), h.slurp(err)
  os.remove(out) os.remove(err) os.remove(rc)
  return code, o, e
end

describe("exit status like ping", function()
  it("no reply at all: the summary, and exit status 1", function()
    local code, out, err = h.run(string.format("%s -r 127.0.0.1 -p %d -c 3 -d 1 -L 0.2", STAMP, h.free_port()))
    assert.equal(1, code, err)
    assert.matches("Packets sent: 3\nPackets received: 0\n", out)
  end)

  it("at least one reply: exit status 0", function()
    local pid, rout, port = h.cli_reflector()
    local code, _, err = h.run(string.format("%s -r 127.0.0.1 -p %d -c 3 -d 1", STAMP, port))
    h.stop(pid)
    os.remove(rout)
    assert.equal(0, code, err)
  end)

  it("every send failing (-S ::1 to an IPv4 target): send errors in text and JSON, exit status 1", function()
    local code, out = h.run(string.format("%s -r 127.0.0.1 -p %d -S ::1 -c 4 -d 1 -L 0.2", STAMP, h.free_port()))
    assert.equal(1, code)
    assert.matches("Send errors: 4\n", out .. "\n")
    local _, js = h.run(string.format("%s -r 127.0.0.1 -p %d -S ::1 -c 4 -d 1 -L 0.2 --output-format json", STAMP,
      h.free_port()))
    local doc = assert(report.json_decode(js))
    assert.equal(4, doc.summary.tx_errors)
    assert.equal(0, doc.summary.drop_hmac)
  end)

  it("replies that fail their HMAC, and invalid replies, are shown", function()
    -- echo the authenticated test packet back with its HMAC altered
    local code, out = against(function(u, d, ip, p)
      u:sendto(d:sub(1, -2) .. string.char((d:byte(-1) + 1) % 256), ip, p)
    end,
      "-c 3 -d 1 -L 0.3 -A A --hmac-key " .. KEY)
    assert.equal(1, code)
    assert.matches("Replies failing HMAC: 3", out)
    code, out = against(function(u, _, ip, p) u:sendto("short", ip, p) end, "-c 3 -d 1 -L 0.3 --output-format jsonl")
    assert.equal(1, code)
    local last
    for l in out:gmatch("[^\n]+") do last = l end
    assert.equal(3, report.json_decode(last).drop_invalid)
  end)
end)

describe("ports, keys and usage", function()
  it("with no arguments: the usage on stderr, exit status 2", function()
    local code, out, err = h.run(STAMP)
    assert.equal(2, code)
    assert.equal("", out)
    assert.matches("^Usage: stamp", err)
  end)

  it("the sender binds any local port by default: two at once to one reflector both work", function()
    local pid, rout, port = h.cli_reflector()
    local cmd = string.format("%s -r 127.0.0.1 -p %d -c 20 -d 5", STAMP, port)
    local p1, o1 = h.spawn("(" .. cmd .. "; echo exit=$?)")
    local p2, o2 = h.spawn("(" .. cmd .. "; echo exit=$?)")
    assert(h.wait_for(o1, "exit=", 10) and h.wait_for(o2, "exit=", 10))
    h.stop(pid)
    for _, o in ipairs { o1, o2 } do
      local s = h.slurp(o)
      os.remove(o)
      assert.matches("Packets received: 20\n", s)
      assert.matches("exit=0", s)
    end
    os.remove(rout)
    assert.is_number(p1 + p2)
  end)

  it("a busy local port: the error names the local address and port, exit status 1", function()
    local u = assert(socket.udp())
    assert(u:setsockname("127.0.0.1", 0))
    local _, lport = u:getsockname()
    local code, out, err = h.run(string.format("%s -r 127.0.0.1 -p 9 -S 127.0.0.1 -o %d -c 1", STAMP, lport))
    u:close()
    assert.equal(1, code)
    assert.equal("", out)
    assert.equal(string.format("stamp: cannot bind to local address 127.0.0.1 port %d: Address already in use\n", lport), err)
  end)

  it("keys shorter than 16 octets are refused (flag, key file, Lua options)", function()
    h.bad_flag_cases(function(_, f) f() end, { { "-r 127.0.0.1 -A A --hmac-key 00112233445566778899aabbccddee", "--hmac-key" } })
    local f = os.tmpname()
    local fh = assert(io.open(f, "w"))
    fh:write("0011223344556677\n")
    fh:close()
    local code, _, err = h.run(STAMP .. " -r 127.0.0.1 -A A --hmac-key-file " .. f)
    os.remove(f)
    assert.equal(2, code)
    assert.matches("^stamp: invalid value for %-%-hmac%-key%-file: .*8 octets; at least 16", err)
    local stamp = require "stamp"
    assert.has_error(function() stamp.sender { remote_addr = "127.0.0.1", auth = true, key = "short" } end,
      "bad option 'key' (a key of at least 16 octets expected, got 5)")
    assert.has_error(function() stamp.reflector { auth = true, hmac_key = "0011" } end,
      "bad option 'hmac_key' (a key of at least 16 octets expected, got 2)")
  end)

  it("a sender without --remote-addr is a usage error naming it", function()
    h.bad_flag_cases(function(_, f) f() end, { { "-c 1", "--remote-addr" } })
  end)
end)

describe("Ctrl-C", function()
  local function interrupt(signals, fmt, sig)
    local pid, rout, port = h.cli_reflector()
    local spid, sout = h.spawn(string.format("%s -r 127.0.0.1 -p %d -c 100000 -d 5 -L 3 %s", STAMP, port, fmt or ""))
    h.sleep(0.4)
    for _ = 1, signals do
      os.execute("kill -" .. (sig or "INT") .. " " .. spid)
      h.sleep(0.05)
    end
    for _ = 1, 100 do
      if not os.execute("kill -0 " .. spid .. " 2>/dev/null") then break end
      h.sleep(0.05)
    end
    h.stop(pid)
    os.remove(rout)
    local out = h.slurp(sout)
    os.remove(sout)
    return out
  end

  it("the summary says interrupted (text and JSON)", function()
    local out = interrupt(1)
    assert.matches("Interrupted: sending stopped early; the figures cover the packets sent\n", out .. "\n")
    assert.matches("Packets lost: 0 ", out)
    local doc = assert(report.json_decode(interrupt(1, "--output-format json")))
    assert.is_true(doc.summary.interrupted)
    assert.is_true(doc.summary.received > 0)
  end)

  it("SIGHUP ends a sender like SIGTERM: a summary that says interrupted (text and JSON)", function()
    local out = interrupt(1, nil, "HUP")
    assert.matches("Interrupted: sending stopped early; the figures cover the packets sent\n", out .. "\n")
    local doc = assert(report.json_decode(interrupt(1, "--output-format json", "HUP")))
    assert.is_true(doc.summary.interrupted)
    assert.is_true(doc.summary.received > 0)
  end)
end)

describe("signals", function()
  it("the reflector survives SIGHUP (a line on stderr), then prints its counters on SIGINT", function()
    local pid, rout, port = h.cli_reflector()
    os.execute("kill -HUP " .. pid)
    assert.is_true(h.wait_for(rout, "SIGHUP", 5), h.slurp(rout))
    assert.is_true(os.execute("kill -0 " .. pid .. " 2>/dev/null") and true or false)
    local code = h.run(string.format("%s -r 127.0.0.1 -p %d -c 3 -d 1", STAMP, port))
    assert.equal(0, code)
    h.stop(pid)
    local rep = h.slurp(rout)
    os.remove(rout)
    assert.matches("SIGHUP: nothing to reload yet; the reflector goes on\n", rep)
    assert.matches("Packets reflected: 3\n", rep)
  end)

  it("core.interrupted(true) reports, then clears", function()
    local script = [[
      local core = require "stamp.core"
      core.trap_signals()
      local pid = io.popen("echo $PPID"):read("*l")
      os.execute("kill -TERM " .. pid) -- not INT: system() ignores SIGINT while it waits
      local a, n = core.interrupted(true)
      local b, m = core.interrupted()
      print(a, n, b, m)
    ]]
    local f = os.tmpname()
    local fh = assert(io.open(f, "w"))
    fh:write(script)
    fh:close()
    local code, out, err = h.run(string.format("cd %s && lua5.4 -e 'package.path=\"lua/?.lua;lua/?/init.lua;\"..package.path "
      .. "package.cpath=\"build/?.so;\"..package.cpath' %s", h.ROOT, f))
    os.remove(f)
    assert.equal(0, code, err)
    assert.equal("15\t1\tfalse\t0\n", out)
  end)
end)
