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
    assert.is_nil(start:find("README", 1, true), start)
    assert.matches("info: SIGHUP: %-%-hmac%-key%-dir [^\n]*: own key for SSID 1, 255", s)
    assert.matches("Packets received: 0", r3)
    for _, k in ipairs { K1, K2, K3 } do assert.is_nil(s:lower():find(k, 1, true), s) end
  end)
end)
