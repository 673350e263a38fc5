-- SIGHUP as a service needs it (review 911: 1, 2, 4, 9): the config file checked exactly as at start
-- (anything wrong keeps everything as it was, one line naming the key, a failed reload counted); a live
-- group that failed is tried again at the next SIGHUP; the key directory says which SSIDs have their
-- own key and warns about names that look meant as keys; the TLV policy (type 12 caps, Return Address
-- prefixes, CoS, HMAC TLV) changes live. Real `stamp` processes and packets on loopback.
local h = require "helper"
local socket = require "socket"
local http = require "socket.http"
local stamp = require "stamp"
local codec = stamp.codec

local function write(path, text, mode)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  if mode then os.execute("chmod " .. mode .. " " .. path) end
  return path
end

-- `n` base packets back to back from one socket; the replies counted.
local function flood(port, n)
  local u = socket.udp()
  assert(u:setsockname("127.0.0.1", 0))
  for i = 1, n do assert(u:sendto(codec.encode_test { seq = i }, "127.0.0.1", port)) end
  u:settimeout(0.5)
  local got = 0
  while u:receive() do got = got + 1 end
  u:close()
  return got
end

local function metric(mport, name)
  local body = http.request("http://127.0.0.1:" .. mport .. "/metrics") or ""
  return tonumber(body:match("\n" .. name .. " (%d+)\n"))
end

describe("SIGHUP and the command line (review 911b, note c)", function()
  it("a key the command line overrides, changed in the file: one info line says the flag stays in force", function()
    local port = h.free_port()
    local cfg = os.tmpname()
    local base = "return { is_reflector = true, local_addr = '127.0.0.1', local_port = %d, max_pps = %d }"
    write(cfg, string.format(base, port, 100))
    local pid, out = h.spawn(h.STAMP .. " --config " .. cfg .. " --max-pps 200")
    finally(function() h.stop(pid) os.remove(cfg) os.remove(out) end)
    assert.is_true(h.wait_for(out, "listening", 10), h.slurp(out))
    write(cfg, string.format(base, port, 50))
    os.execute("kill -HUP " .. pid)
    assert.is_true(h.wait_for(out, "info: SIGHUP: max_pps changed in " .. cfg .. " but --max-pps on the command line "
      .. "stays in force", 5), h.slurp(out))
  end)
end)

describe("SIGHUP checks the config file as start-up does (review 911: 1)", function()
  it("max_pps = 'lots', an unknown key, crossed type 12 intervals: one error line naming the key, "
    .. "everything kept (the rate limit still holds), each counted as a failed reload", function()
    local port, mport = h.free_port(), h.tcp_port()
    local cfg = os.tmpname()
    local base = "return { is_reflector = true, local_addr = '127.0.0.1', local_port = %d, metrics_addr = "
      .. "'127.0.0.1:%d', reflected_control_max_count = 5, %s }"
    write(cfg, string.format(base, port, mport, "max_pps = 100"))
    local pid, out = h.spawn(h.STAMP .. " --config " .. cfg)
    finally(function() h.stop(pid) os.remove(cfg) end)
    assert.is_true(h.wait_for(out, "listening", 10), h.slurp(out))
    local before = flood(port, 300)
    local function hup(text, expect)
      write(cfg, string.format(base, port, mport, text))
      local n0 = select(2, h.slurp(out):gsub("kept as it was", ""))
      os.execute("kill -HUP " .. pid)
      for _ = 1, 100 do
        if select(2, h.slurp(out):gsub("kept as it was", "")) > n0 then break end
        h.sleep(0.05)
      end
      local line = h.slurp(out):match("[^\n]*kept as it was[^\n]*\n$")
      assert.truthy(line, h.slurp(out))
      assert.matches(expect, line)
    end
    hup("max_pps = 'lots'", "error: SIGHUP: %-%-config [^ ]+ kept as it was: bad value for 'max_pps': 'lots' %(expected")
    hup("max_pps = 100, bogus_key = 1", "error: SIGHUP: %-%-config [^ ]+ kept as it was: unknown key 'bogus_key'")
    hup("max_pps = 100, reflected_control_min_interval_ns = 5000000, reflected_control_max_interval_ns = 1000000",
      "kept as it was: invalid value for %-%-reflected%-control%-max%-interval%-ns: 1000000 is below")
    hup("max_pps = -5", "kept as it was: bad value for 'max_pps': '%-5'")
    local after = flood(port, 300)
    assert.equal(4, metric(mport, "stamp_reload_failures_total"))
    -- the file fixed (the same max_pps as in force): nothing changed, nothing logged as changed
    write(cfg, string.format(base, port, mport, "max_pps = 100"))
    os.execute("kill -HUP " .. pid)
    h.sleep(0.5)
    h.stop(pid)
    local s = h.slurp(out)
    os.remove(out)
    assert.truthy(before >= 5 and before <= 20, before)  -- burst 10: the limit works
    assert.truthy(after >= 5 and after <= 20, after)     -- and still does
    assert.is_nil(s:find("max_pps 100 -> lots", 1, true), s)
    assert.is_nil(s:find("takes effect at restart", 1, true), s)
    assert.is_nil(s:find("SIGHUP: max_pps", 1, true), s)
  end)

  it("a short hmac_key says why (at start; SIGHUP runs the same check)", function()
    local cfg = write(os.tmpname(), "return { is_reflector = true, local_addr = '127.0.0.1', auth_mode = 'A', "
      .. "hmac_key = '0011223344556677' }", "600")
    local code, _, err = h.run(h.STAMP .. " --config " .. cfg)
    os.remove(cfg)
    assert.equal(2, code)
    assert.matches("bad value for 'hmac_key': %(16 characters, not shown%) %(a key of 8 octets; at least 16 needed%)", err)
  end)
end)

describe("SIGHUP compares with what is in force (review 911: 2)", function()
  local K1 = "00112233445566778899aabbccddeeff"
  local K2 = "ffeeddccbbaa99887766554433221100"
  local function received(port, key)
    local _, res = h.run(string.format("%s -r 127.0.0.1 -p %d -c 2 -d 2 -L 0.5 -A A --hmac-key %s", h.STAMP, port, key))
    return tonumber(res:match("Packets received: (%d+)"))
  end

  it("a key rotation refused for the file's mode (0644) applies at the next SIGHUP once it is chmod 600", function()
    local port = h.free_port()
    local cfg = os.tmpname()
    local text = "return { is_reflector = true, local_addr = '127.0.0.1', local_port = %d, auth_mode = 'A', hmac_key = '%s' }"
    write(cfg, string.format(text, port, K1), "600")
    local pid, out = h.spawn(h.STAMP .. " --config " .. cfg)
    finally(function() h.stop(pid) os.remove(cfg) end)
    assert.is_true(h.wait_for(out, "listening", 10), h.slurp(out))
    assert.equal(2, received(port, K1))
    write(cfg, string.format(text, port, K2), "644")
    os.execute("kill -HUP " .. pid)
    assert.is_true(h.wait_for(out, "readable by group or others", 5), h.slurp(out))
    local k1_kept = received(port, K1)
    os.execute("chmod 600 " .. cfg)
    os.execute("kill -HUP " .. pid)
    assert.is_true(h.wait_for(out, "SIGHUP: hmac_key changed", 5), h.slurp(out))
    local k2, k1 = received(port, K2), received(port, K1)
    h.stop(pid)
    local s = h.slurp(out)
    os.remove(out)
    assert.equal(2, k1_kept)
    assert.equal(2, k2)
    assert.equal(0, k1)
    for _, k in ipairs { K1, K2 } do assert.is_nil(s:lower():find(k, 1, true), s) end
  end)

  it("a group whose apply failed is applied at the next SIGHUP with the same file (stamp.ops)", function()
    local ops = require "stamp.ops"
    local cfg = write(os.tmpname(), "return { is_reflector = true, local_addr = '127.0.0.1', max_pps = 10 }")
    local calls, fail = {}, true
    local engine = {
      set_rate = function(_, pps, burst)
        calls[#calls + 1] = { pps, burst }
        if fail then return nil, "busy" end
        return true
      end,
    }
    local svc = { a = { config = cfg }, engine = engine, config = ops.load_config(cfg) }
    write(cfg, "return { is_reflector = true, local_addr = '127.0.0.1', max_pps = 50, reflector_rate_burst = 5 }")
    assert.is_false(ops.reload(svc))     -- set_rate refused: the old max_pps stays "in force"
    fail = false
    assert.is_true(ops.reload(svc))      -- the same file: max_pps 10 -> 50 again, applied now
    assert.is_true(ops.reload(svc))      -- and then nothing changed
    os.remove(cfg)
    assert.same({ { 50, 5 }, { 50, 5 } }, calls)
  end)
end)

describe("--hmac-key-dir says what it holds (review 911: 4)", function()
  local K1 = "00112233445566778899aabbccddeeff"
  local K2 = "0123456789abcdef0123456789abcdef"
  local K3 = "fedcba9876543210fedcba9876543210"
  local BAD = { "42.key", "002a.KEY", "002a.key.bak", "002a.key~" }

  it("at start and on SIGHUP: the SSIDs with their own key (never a key), one warning per misnamed file", function()
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -m 700 " .. dir)
    write(dir .. "/default.key", K1, "600")
    write(dir .. "/0001.key", K2, "600")
    write(dir .. "/00FF.key", K2, "600") -- upper-case hex is a key name
    for _, n in ipairs(BAD) do write(dir .. "/" .. n, K3, "600") end
    write(dir .. "/README", "not a key", "600")
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 -A A --hmac-key-dir " .. dir)
    finally(function() h.stop(pid) os.execute("rm -rf " .. dir) end)
    local start = h.slurp(out)
    os.execute("kill -HUP " .. pid)
    assert.is_true(h.wait_for(out, "SIGHUP: --hmac-key-dir", 5), h.slurp(out))
    h.sleep(0.2)
    -- SSID 42 is still on the default key: the misnamed files are not used
    local _, r3 = h.run(string.format("%s -r 127.0.0.1 -p %d -c 1 -d 2 -L 0.5 -A A --ssid 42 --hmac-key %s", h.STAMP, port, K3))
    h.stop(pid)
    local s = h.slurp(out)
    os.remove(out)
    local function count(text, pat) return select(2, text:gsub(pat, "")) end
    assert.matches("info: %-%-hmac%-key%-dir [^\n]*: own key for SSID 1, 255; default%.key for every other SSID\n", start)
    for _, n in ipairs(BAD) do
      local pat = "%-%-hmac%-key%-dir [^\n]*: '" .. n:gsub("%p", "%%%0") .. "' is ignored: a key file is named "
        .. "XXXX%.key"
      assert.equal(1, count(start, "warning: " .. pat), start)
      assert.equal(1, count(s, "warning: SIGHUP: " .. pat), s)
    end
    assert.matches("'42%.key' is ignored[^\n]*; rename it 002a%.key %(SSID 42%)", start)
    assert.matches("'002a%.KEY' is ignored[^\n]*; rename it 002a%.key\n", start)
    -- a backup is not told to take the key's name (review 911b: it would overwrite the key)
    assert.matches("'002a%.key%.bak' is ignored: a key file is named XXXX%.key [^\n;]*\n", start)
    assert.is_nil(start:find("README", 1, true), start)
    assert.matches("info: SIGHUP: %-%-hmac%-key%-dir [^\n]*: own key for SSID 1, 255", s)
    assert.matches("Packets received: 0", r3)
    for _, k in ipairs { K1, K2, K3 } do assert.is_nil(s:lower():find(k, 1, true), s) end
  end)
end)

describe("--hmac-key-dir on a sender (review 911: 4)", function()
  it("warns about a misnamed key file, without the info line or any key", function()
    local K1, K3 = "00112233445566778899aabbccddeeff", "fedcba9876543210fedcba9876543210"
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -m 700 " .. dir)
    write(dir .. "/default.key", K1, "600")
    write(dir .. "/42.key", K3, "600")
    local u = socket.udp()
    assert(u:setsockname("127.0.0.1", 0))
    local _, port = u:getsockname()
    local _, _, err = h.run(string.format("%s -r 127.0.0.1 -p %d -c 1 -L 0.1 -A A --ssid 42 --hmac-key-dir %s",
      h.STAMP, port, dir))
    u:close()
    os.execute("rm -rf " .. dir)
    assert.matches("warning: %-%-hmac%-key%-dir [^\n]*: '42%.key' is ignored[^\n]*rename it 002a%.key %(SSID 42%)", err)
    assert.is_nil(err:find("own key", 1, true), err)
    assert.is_nil(err:lower():find(K3, 1, true), err)
  end)
end)

describe("SIGHUP applies the TLV policy live (review 911: 9)", function()
  local MS = 1000000
  local function t12(seq, len, num, ival)
    return codec.encode_test { seq = seq } .. h.hex(string.format("800c000c %04x%04x %08x 00000000", len, num, ival))
  end
  local function u_flag(d) return d:byte(45) >= 128 end -- U of the first TLV
  local function udp(addr, port)
    local u = socket.udp()
    assert(u:setsockname(addr, port or 0))
    u:settimeout(0.5)
    return u
  end
  -- every reply to one request: the datagrams, until 0.3 s pass without one
  local function replies(u, pkt, port)
    assert(u:sendto(pkt, "127.0.0.1", port))
    local got = {}
    local d = u:receive()
    while d do
      got[#got + 1] = d
      u:settimeout(0.3)
      d = u:receive()
    end
    u:settimeout(0.5)
    return got
  end
  local function start(text)
    local cfg = write(os.tmpname(), text)
    local pid, out = h.spawn(h.STAMP .. " --config " .. cfg)
    assert.is_true(h.wait_for(out, "listening", 10), h.slurp(out))
    return pid, out, cfg
  end
  local function hup(pid, out, what)
    local n0 = select(2, h.slurp(out):gsub(what:gsub("%p", "%%%0"), ""))
    os.execute("kill -HUP " .. pid)
    for _ = 1, 100 do
      if select(2, h.slurp(out):gsub(what:gsub("%p", "%%%0"), "")) > n0 then return true end
      h.sleep(0.05)
    end
    return false
  end

  it("type 12: a request for 3 replies gets 3; after SIGHUP with count 0 it is answered once with U", function()
    local port = h.free_port()
    local text = "return { is_reflector = true, local_addr = '127.0.0.1', local_port = %d, reflected_control_max_count = %d }"
    local pid, out, cfg = start(string.format(text, port, 5))
    finally(function() h.stop(pid) os.remove(cfg) end)
    local u = udp("127.0.0.1")
    local before = replies(u, t12(1, 100, 3, 2 * MS), port)
    write(cfg, string.format(text, port, 0))
    assert.is_true(hup(pid, out, "SIGHUP: TLV policy in force"), h.slurp(out))
    local after = replies(u, t12(2, 100, 3, 2 * MS), port)
    h.stop(pid)
    local s = h.slurp(out)
    os.remove(out)
    assert.equal(3, #before)
    assert.is_false(u_flag(before[1]))
    assert.equal(1, #after)
    assert.is_true(u_flag(after[1]))
    assert.matches("SIGHUP: reflected_control_max_count 5 %-> 0", s)
    assert.matches("SIGHUP: TLV policy in force: type 12 off", s)
    assert.is_nil(s:find("takes effect at restart", 1, true), s)
  end)

  it("Return Address: allowed in 127.0.0.0/8, then SIGHUP narrowing it to 10.0.0.0/8: U, reply to the source", function()
    local port = h.free_port()
    local text = "return { is_reflector = true, local_addr = '127.0.0.1', local_port = %d, allow_return_address = '%s' }"
    local pid, out, cfg = start(string.format(text, port, "127.0.0.0/8"))
    finally(function() h.stop(pid) os.remove(cfg) end)
    local src = udp("127.0.0.1")
    local _, sport = src:getsockname()
    local ret = udp("127.0.0.5", sport) -- the Return Address, same port
    local function ask(seq)
      assert(src:sendto(codec.encode_test { seq = seq } .. h.hex("800a0008 80020004 7f000005"), "127.0.0.1", port))
      ret:settimeout(0.5)
      local at_ret = ret:receive()
      src:settimeout(at_ret and 0.1 or 0.5)
      return at_ret, src:receive()
    end
    local r1, s1 = ask(1)
    write(cfg, string.format(text, port, "10.0.0.0/8"))
    assert.is_true(hup(pid, out, "SIGHUP: TLV policy in force"), h.slurp(out))
    local r2, s2 = ask(2)
    h.stop(pid)
    local s = h.slurp(out)
    os.remove(out)
    assert.truthy(r1, s)          -- to the Return Address, U clear
    assert.is_false(u_flag(r1))
    assert.is_nil(s1)
    assert.is_nil(r2)             -- narrowed: to the source, U set
    assert.truthy(s2, s)
    assert.is_true(u_flag(s2))
    assert.matches("SIGHUP: allow_return_address 127%.0%.0%.0/8 %-> 10%.0%.0%.0/8", s)
  end)

  it("verify_tlv_hmac turned on: HMAC TLVs under a wrong key are flagged I from the next packet", function()
    local port = h.free_port()
    local K1, K2 = "00112233445566778899aabbccddeeff", "ffeeddccbbaa99887766554433221100"
    local text = "return { is_reflector = true, local_addr = '127.0.0.1', local_port = %d, hmac_key = '%s', "
      .. "verify_tlv_hmac = %s }"
    local pid, out, cfg = start(string.format(text, port, K1, "false"))
    os.execute("chmod 600 " .. cfg)
    finally(function() h.stop(pid) os.remove(cfg) end)
    local function send()
      local _, res = h.run(string.format("%s -r 127.0.0.1 -p %d -c 2 -d 2 -L 0.5 --timestamp-info --tlv-hmac "
        .. "--hmac-key %s", h.STAMP, port, K2))
      return tonumber(res:match("Packets received: (%d+)"))
    end
    local n1 = send()
    write(cfg, string.format(text, port, K1, "true"), "600")
    assert.is_true(hup(pid, out, "SIGHUP: TLV policy in force"), h.slurp(out))
    local n2 = send()
    h.stop(pid)
    local s = h.slurp(out)
    os.remove(out)
    assert.same({ 2, 2 }, { n1, n2 })       -- answered either way (I flags the TLVs, RFC 8972 4.8)
    assert.equal(2, tonumber(s:match("Packets failing the HMAC TLV %(I%): (%d+)")), s)
    assert.matches("SIGHUP: verify_tlv_hmac false %-> true", s)
  end)

  it("a running burst the new caps allow goes on; one they forbid stops, counted extra_cancelled", function()
    local port = h.free_port()
    local text = "return { is_reflector = true, local_addr = '127.0.0.1', local_port = %d, reflected_control_max_count = %d }"
    local pid, out, cfg = start(string.format(text, port, 10))
    finally(function() h.stop(pid) os.remove(cfg) end)
    local a, b = udp("127.0.0.1"), udp("127.0.0.1")
    assert(a:sendto(t12(1, 100, 3, 300 * MS), "127.0.0.1", port))   -- 0.6 s: Number 3, within a cap of 4
    assert(b:sendto(t12(1, 100, 8, 300 * MS), "127.0.0.1", port))   -- 2.1 s: Number 8, over it
    h.sleep(0.1)
    write(cfg, string.format(text, port, 4))
    assert.is_true(hup(pid, out, "SIGHUP: TLV policy in force"), h.slurp(out))
    local function count(u)
      local n = 0
      u:settimeout(1)
      while u:receive() do n = n + 1 end
      return n
    end
    local na, nb = count(a), count(b)
    h.stop(pid)
    local s = h.slurp(out)
    os.remove(out)
    assert.equal(3, na)
    assert.truthy(nb >= 1 and nb < 8, nb)
    assert.equal(8 - nb, tonumber(s:match("Type 12 extra replies cancelled: (%d+)")), s)
  end)

  it("a policy the reflector cannot take (type 12 on, off at start): one error line, type 12 kept off, the rest "
    .. "applied (a narrowed Return Address list does not wait for a restart, review 911b), tried again at the next SIGHUP", function()
    local port, mport = h.free_port(), h.tcp_port()
    local text = "return { is_reflector = true, local_addr = '127.0.0.1', local_port = %d, metrics_addr = '127.0.0.1:%d', "
      .. "reflected_control_max_count = %d, allow_return_address = '%s' }"
    local pid, out, cfg = start(string.format(text, port, mport, 0, "127.0.0.0/8"))
    finally(function() h.stop(pid) os.remove(cfg) end)
    write(cfg, string.format(text, port, mport, 5, "10.0.0.0/8"))
    assert.is_true(hup(pid, out, "type 12 kept off"), h.slurp(out))
    assert.is_true(hup(pid, out, "type 12 kept off"), h.slurp(out))
    local u = udp("127.0.0.1")
    local got = replies(u, t12(1, 100, 3, 2 * MS), port)
    local src = udp("127.0.0.1")
    local _, sport = src:getsockname()
    local ret = udp("127.0.0.5", sport)
    assert(src:sendto(codec.encode_test { seq = 1 } .. h.hex("800a0008 80020004 7f000005"), "127.0.0.1", port))
    local at_ret = ret:receive()
    local failures = metric(mport, "stamp_reload_failures_total")
    h.stop(pid)
    local s = h.slurp(out)
    os.remove(out)
    assert.matches("error: SIGHUP: type 12 kept off: type 12 was off when this reflector was created", s)
    assert.matches("info: SIGHUP: TLV policy in force but for type 12 %(kept off%): Return Address {10%.0%.0%.0/8}", s)
    assert.equal(1, #got)               -- type 12 still off: one reply, U
    assert.is_true(u_flag(got[1]))
    assert.is_nil(at_ret)               -- 127.0.0.0/8 no longer allowed: the reply went to the source
    assert.equal(2, failures)
  end)
end)

describe("reflector_machine:set_tlv_policy (review 911: 9)", function()
  local core = stamp.core
  local MS, S = 1000000, 1000000000
  local function meta(port, o)
    local m = { src_addr = "127.0.0.1", src_port = port or 40000, dst_addr = "127.0.0.1", dst_port = 862, ttl = 64 }
    for k, v in pairs(o or {}) do m[k] = v end
    return m
  end
  local function t12(seq, num, ival)
    return codec.encode_test { seq = seq } .. h.hex(string.format("800c000c %04x%04x %08x 00000000", 100, num, ival))
  end
  local function u_flag(d) return d:byte(45) >= 128 end

  it("the next input uses the new policy; a running burst over the new caps is cancelled; bad options raise", function()
    local m = assert(core.reflector_machine { reflected_max_count = 10 })
    local t = 1000 * S
    local r = assert(m:input(t12(1, 3, 10 * MS), meta(40001), t))
    assert.is_false(u_flag(r.data))
    assert(m:input(t12(1, 8, 10 * MS), meta(40002), t))
    assert.equal(2, #m:poll(t + 10 * MS))                       -- one extra reply of each burst
    assert.is_true(m:set_tlv_policy { reflected_max_count = 5 })
    local extra = m:poll(t + 20 * MS)                            -- the Number 8 burst stops
    assert.equal(1, #extra)
    assert.equal(40001, extra[1].to_port)
    assert.equal(6, m:counters().extra_cancelled)                -- 8 - 1 - 1 sent
    r = assert(m:input(t12(2, 8, 10 * MS), meta(40003), t + 30 * MS))
    assert.is_false(u_flag(r.data))                              -- over the count: C, not U
    assert.is_true(m:set_tlv_policy { reflected_max_count = 0 })
    r = assert(m:input(t12(3, 2, 10 * MS), meta(40003), t + 40 * MS))
    assert.is_true(u_flag(r.data))                               -- type 12 off: U
    assert.is_true(m:set_tlv_policy { reflected_max_count = 2 })  -- on again: the burst table is there
    r = assert(m:input(t12(4, 2, 10 * MS), meta(40003), t + 50 * MS))
    assert.is_false(u_flag(r.data))
    assert.has_error(function() m:set_tlv_policy { tlv_mode = "loud" } end)
    assert.has_error(function() m:set_tlv_policy { allow_return_address = { "300.1.1.1/8" } } end)
    assert.has_error(function() m:set_tlv_policy "x" end)
    m:close()
  end)

  it("cos_refuse, then back: the next packet's reply follows the policy in force (RP, TOS)", function()
    local m = assert(core.reflector_machine {})
    local function ask(seq)
      local pkt = codec.encode_test { seq = seq } .. codec.encode_tlvs { stamp.tlv.cos { dscp = 46, ecn = 0 } }
      local r = assert(m:input(pkt, meta(40001, { tos = 0 })))
      return r.tos, assert(codec.decode_reflected(r.data)).tlvs[1].rp
    end
    assert.same({ 184, 0 }, { ask(1) })     -- DSCP1 46 used for the reply
    assert.is_true(m:set_tlv_policy { cos_refuse = true })
    assert.same({ 0, 1 }, { ask(2) })       -- refused: the received DSCP kept, RP = 1
    assert.is_true(m:set_tlv_policy {})
    assert.same({ 184, 0 }, { ask(3) })
    m:close()
  end)

  it("type 12 cannot be turned on in a machine created with it off: nil, message, the old policy kept", function()
    local m = assert(core.reflector_machine {})
    local ok, err = m:set_tlv_policy { reflected_max_count = 5 }
    assert.is_nil(ok)
    assert.matches("type 12 was off when this reflector was created", err)
    local r = assert(m:input(t12(1, 3, 10 * MS), meta(40001), 1000 * S))
    assert.is_true(u_flag(r.data))
    m:close()
  end)
end)
