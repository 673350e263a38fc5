-- Session admission (RFC 8972 3): --session-admission open|provisioned, --session SSID[@ADDR[:PORT]],
-- the config key `sessions`, SIGHUP reload, counters, -R lines and metrics; through real loopback sockets,
-- and the same through the Lua API (reflector options, reflector_machine).
local h = require "helper"
local socket = require "socket"
local http = require "socket.http"
local stamp = require "stamp"
local codec = stamp.codec
local core = stamp.core

local function udp_from(addr, port)
  local u = socket.udp()
  assert(u:setsockname(addr, port or 0))
  u:settimeout(0.5)
  return u
end

-- Send one packet of `ssid` from u to the reflector; true when a reply comes back.
local function answered(u, port, ssid, seq)
  assert(u:sendto(codec.encode_test { seq = seq or 1, ssid = ssid }, "127.0.0.1", port))
  local d = u:receive()
  if d then assert.equal(ssid, assert(codec.decode_reflected(d)).ssid) end
  return d ~= nil
end


describe("session admission, the command", function()
  it("provisioned: the listed SSID is answered, another SSID, address or port is dropped and counted", function()
    local mport = h.free_port()
    local sport = h.free_port()
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 -R --session-admission provisioned"
      .. " --session 7 --session 8@127.0.0.2 --session 9@127.0.0.1:" .. sport
      .. " --metrics --metrics-addr 127.0.0.1:" .. mport)
    local a, b, c = udp_from("127.0.0.1"), udp_from("127.0.0.2"), udp_from("127.0.0.1", sport)
    assert.is_true(answered(a, port, 7))         -- any address and port
    assert.is_true(answered(b, port, 7))
    assert.is_false(answered(a, port, 5))        -- an SSID not provisioned
    assert.is_false(answered(a, port, 8))        -- 8 only from 127.0.0.2
    assert.is_true(answered(b, port, 8))
    assert.is_false(answered(a, port, 9))        -- 9 only from 127.0.0.1 port sport
    assert.is_true(answered(c, port, 9))
    local body = http.request("http://127.0.0.1:" .. mport .. "/metrics")
    assert.equal("3", body:match('\nstamp_reflector_packets_dropped_total{reason="unprovisioned"} (%d+)\n'), body)
    assert.is_true(h.wait_for(out, "drop_unprovisioned=3", 5), h.slurp(out))
    h.stop(pid)
    local s = h.slurp(out)
    os.remove(out)
    assert.matches("Dropped %(no provisioned session, %-%-session%-admission provisioned%): 3", s)
    assert.matches("Packets reflected: 4\n", s)
    assert.matches("session admission provisioned, 3 session%(s%) {7, 8@127.0.0.2, 9@127.0.0.1:%d+}", s)
  end)

  it("provisioned with no --session: one warning line at start, every packet dropped", function()
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 --session-admission provisioned")
    assert.is_false(answered(udp_from("127.0.0.1"), port, 0))
    h.stop(pid)
    local s = h.slurp(out)
    os.remove(out)
    assert.equal(1, select(2, s:gsub("warning: session admission provisioned with no %-%-session", "")), s)
    assert.matches("Dropped %(no provisioned session[^\n]*: 1", s)
  end)

  it("open (the default) answers every SSID", function()
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 --session 7")
    local a = udp_from("127.0.0.1")
    assert.is_true(answered(a, port, 5))
    assert.is_true(answered(a, port, 7))
    h.stop(pid)
    assert.matches("Dropped %(no provisioned session[^\n]*: 0", h.slurp(out))
    os.remove(out)
  end)

  it("config key sessions, then SIGHUP with one session added: it is answered, the change is logged", function()
    local port = h.free_port()
    local cfgtext = "return { is_reflector = true, local_addr = '127.0.0.1', local_port = %d,"
      .. " session_admission = 'provisioned', sessions = { %s } }"
    local cfg = h.tmpfile(string.format(cfgtext, port, "'7', '8@127.0.0.1'"))
    local pid, out = h.spawn(h.STAMP .. " --config " .. cfg)
    assert.is_true(h.wait_for(out, "listening", 5), h.slurp(out))
    local a = udp_from("127.0.0.1")
    assert.is_true(answered(a, port, 7))
    assert.is_true(answered(a, port, 8))
    assert.is_false(answered(a, port, 9))
    local f = assert(io.open(cfg, "wb"))
    f:write(string.format(cfgtext, port, "'7', '8@127.0.0.1', '9'"))
    f:close()
    os.execute("kill -HUP " .. pid)
    assert.is_true(h.wait_for(out, "SIGHUP: session admission provisioned", 5), h.slurp(out))
    assert.is_true(answered(a, port, 9, 2))
    assert.is_false(answered(a, port, 10))
    h.stop(pid)
    local s = h.slurp(out)
    os.remove(out)
    os.remove(cfg)
    assert.matches("SIGHUP: sessions {7, 8@127.0.0.1} %-> {7, 8@127.0.0.1, 9}", s)
    assert.matches("3 session%(s%)", s)
    assert.matches("Dropped %(no provisioned session[^\n]*: 2", s)
  end)

  it("SIGHUP to open admission with sessions still listed: the reload says they are not used", function()
    local port = h.free_port()
    local cfgtext = "return { is_reflector = true, local_addr = '127.0.0.1', local_port = %d,"
      .. " session_admission = '%s', sessions = { '7' } }"
    local cfg = h.tmpfile(string.format(cfgtext, port, "provisioned"))
    local pid, out = h.spawn(h.STAMP .. " --config " .. cfg)
    finally(function() h.stop(pid) os.remove(out) os.remove(cfg) end)
    assert.is_true(h.wait_for(out, "listening", 5), h.slurp(out))
    local f = assert(io.open(cfg, "wb"))
    f:write(string.format(cfgtext, port, "open"))
    f:close()
    os.execute("kill -HUP " .. pid)
    assert.is_true(h.wait_for(out, "SIGHUP: session admission open", 5), h.slurp(out))
    local a = udp_from("127.0.0.1")
    assert.is_true(answered(a, port, 9)) -- open: every SSID
    assert.is_true(h.wait_for(out, "sessions given but session_admission is open", 2), h.slurp(out))
  end)

  it("SIGHUP to provisioned admission with no sessions warns that every packet is dropped, as the start does", function()
    local port = h.free_port()
    local cfgtext = "return { is_reflector = true, local_addr = '127.0.0.1', local_port = %d%s }"
    local cfg = h.tmpfile(string.format(cfgtext, port, ""))
    local pid, out = h.spawn(h.STAMP .. " --config " .. cfg)
    finally(function() h.stop(pid) os.remove(out) os.remove(cfg) end)
    assert.is_true(h.wait_for(out, "listening", 5), h.slurp(out))
    local f = assert(io.open(cfg, "wb"))
    f:write(string.format(cfgtext, port, ", session_admission = 'provisioned'"))
    f:close()
    os.execute("kill -HUP " .. pid)
    assert.is_true(h.wait_for(out, "warning: SIGHUP: session admission provisioned with no sessions", 5), h.slurp(out))
  end)

  it("'sessions' in the config file without provisioned admission: the start-up warning names the key", function()
    local cfg = h.tmpfile("return { is_reflector = true, local_addr = '127.0.0.1', sessions = { '7' } }")
    local pid, out = h.spawn(h.STAMP .. " --config " .. cfg)
    finally(function() h.stop(pid) os.remove(out) os.remove(cfg) end)
    assert.is_true(h.wait_for(out, "listening", 5), h.slurp(out))
    assert.matches("warning: 'sessions' in " .. cfg:gsub("%p", "%%%0") .. " given but %-%-session%-admission is open", h.slurp(out))
  end)

  h.bad_flag_cases(it, {
    { "-i --session x", "--session" },
    { "-i --session 70000", "--session" },
    { "-i --session 7@999.1.1.1", "--session" },
    { "-i --session 7@127.0.0.1:0", "--session" },
    { "-i --session-admission closed", "--session-admission" },
  })

  it("a bad `sessions` in the config file gets one line naming the key", function()
    for _, v in ipairs { "'7'", "{ 'x' }" } do
      local cfg = h.tmpfile("return { is_reflector = true, sessions = " .. v .. " }")
      local code, o, err = h.run(h.STAMP .. " --config " .. cfg)
      os.remove(cfg)
      assert.equal(2, code)
      assert.equal("", o)
      assert.matches("^stamp: config [^\n]*bad value for 'sessions'[^\n]*\n$", err)
    end
  end)
end)

describe("session admission, the Lua API", function()
  local function meta(addr, port) return { src_addr = addr, src_port = port } end
  local function pkt(ssid) return codec.encode_test { seq = 1, ssid = ssid } end

  it("reflector_machine: provisioned sessions, set_admission switches at once", function()
    local m = assert(core.reflector_machine { session_admission = "provisioned",
      sessions = { "7", "8@127.0.0.2", "9@127.0.0.1:40001", "10@[::1]:5", { ssid = 11, addr = "127.0.0.3" } } })
    assert.truthy(m:input(pkt(7), meta("127.0.0.1", 40000)))
    assert.is_false(m:input(pkt(8), meta("127.0.0.1", 40000)))
    assert.truthy(m:input(pkt(8), meta("127.0.0.2", 40000)))
    assert.is_false(m:input(pkt(9), meta("127.0.0.1", 40000)))
    assert.truthy(m:input(pkt(9), meta("127.0.0.1", 40001)))
    assert.truthy(m:input(pkt(10), meta("::1", 5)))
    assert.is_false(m:input(pkt(10), meta("::1", 6)))
    assert.truthy(m:input(pkt(11), meta("127.0.0.3", 1)))
    assert.is_false(m:input(pkt(12), meta("127.0.0.1", 40000)))
    assert.equal(4, m:counters().drop_unprovisioned)
    assert.is_true(m:set_admission("provisioned", { "12" }))
    assert.truthy(m:input(pkt(12), meta("127.0.0.1", 40000)))
    assert.is_false(m:input(pkt(7), meta("127.0.0.1", 40000)))
    assert.is_true(m:set_admission("open"))
    assert.truthy(m:input(pkt(7), meta("127.0.0.1", 40000)))
    assert.equal(5, m:counters().drop_unprovisioned)
    assert.has_error(function() m:set_admission("closed") end)
    assert.has_error(function() m:set_admission("provisioned", { "7@nowhere" }) end)
    assert.has_error(function() core.reflector_machine { sessions = { "70000" } } end)
    assert.has_error(function() stamp.reflector { session_admission = "closed" } end)
  end)

  it("stamp.reflector over loopback: provisioned, then set_admission adds one", function()
    local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0, session_admission = "provisioned",
      sessions = { "7" } })
    local _, port = r:local_addr()
    local u = udp_from("127.0.0.1")
    local function ask(ssid)
      assert(u:sendto(pkt(ssid), "127.0.0.1", port))
      r:step(200)
      u:settimeout(0.2)
      return u:receive() ~= nil
    end
    assert.is_true(ask(7))
    assert.is_false(ask(9))
    assert.is_true(r:set_admission("provisioned", { "7", "9@127.0.0.1" }))
    assert.is_true(ask(9))
    assert.equal(1, r:counters().drop_unprovisioned)
    r:close()
  end)
end)
