-- Review 9 (operations and trust): key files and the key directory on every
-- path (start, SIGHUP, environment, --hmac-key-file), --user checked before
-- anything is bound, the metrics endpoint's connection limits, the clock's
-- sync state under a seccomp filter, the systemd unit.
local h = require "spec.helper"
local socket = require "socket"
local http = require "socket.http"

local KEY1 = "00112233445566778899aabbccddeeff"

local function tmpdir()
  local p = io.popen("mktemp -d")
  local d = p:read("*l")
  p:close()
  return d
end

local function write(path, text, mode)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  os.execute("chmod " .. (mode or "600") .. " " .. path)
end

local function is_root()
  local _, out = h.run("id -u")
  return out:match("^0") ~= nil
end

local function have(cmd)
  return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true or
    os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == 0
end

-- one line on stderr, exit 2, nothing bound
local function usage_error(cmd, pattern)
  local code, out, err = h.run("timeout 10 " .. cmd)
  assert.equal(2, code, out .. err)
  assert.equal(1, select(2, err:gsub("\n", "")), err)
  assert.not_matches("traceback", err)
  assert.not_matches("listening", out)
  assert.matches(pattern, err)
  return err
end

local function answered(port, key, extra)
  local _, res = h.run(string.format("%s -r 127.0.0.1 -p %d -o 0 -c 3 -d 2 -L 0.3 -A A --hmac-key %s %s",
    h.STAMP, port, key, extra or ""))
  return tonumber(res:match("Packets received: (%d+)"))
end

describe("review 9: keys", function()
  it("SIGHUP refuses a key shorter than 16 octets and keeps the keys in force (finding 2)", function()
    local dir = tmpdir()
    write(dir .. "/default.key", KEY1)
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 -A A --hmac-key-dir " .. dir)
    write(dir .. "/002a.key", "0011\n")
    os.execute("kill -HUP " .. pid)
    local kept = h.wait_for(out, "SIGHUP: keys kept as they were", 5)
    local n = answered(port, KEY1)
    h.stop(pid)
    os.execute("rm -rf " .. dir)
    local log = h.slurp(out)
    assert.truthy(kept, log)
    assert.not_matches("keys reloaded", log)
    assert.matches("002a%.key: a key of 2 octets; at least 16 needed", log)
    assert.equal(3, n)
  end)

  it("a short key in the directory or STAMP_HMAC_KEY at start: one line, exit 2 (findings 3, 11)", function()
    local dir = tmpdir()
    write(dir .. "/default.key", "0011\n")
    usage_error(string.format("%s -i --local-addr 127.0.0.1 -o %d -A A --hmac-key-dir %s", h.STAMP, h.free_port(), dir),
      "^stamp: invalid value for %-%-hmac%-key%-dir: .*default%.key: a key of 2 octets; at least 16 needed")
    os.execute("rm -rf " .. dir)
    local err = usage_error(string.format("env STAMP_HMAC_KEY=deadbeefcafe %s -i -A A --local-addr 127.0.0.1 -o %d",
      h.STAMP, h.free_port()), "^stamp: invalid value for STAMP_HMAC_KEY %(a key of 6 octets; at least 16 needed%)")
    assert.not_matches("deadbeef", err)
  end)

  it("--hmac-key-file that group or others may read is refused (finding 10)", function()
    local f = os.tmpname()
    write(f, KEY1, "644")
    usage_error(string.format("%s -i -A A --local-addr 127.0.0.1 -o %d --hmac-key-file %s", h.STAMP, h.free_port(), f),
      "^stamp: invalid value for %-%-hmac%-key%-file: .*readable by group or others %(mode 0644; chmod 600 it%)")
    write(f, KEY1, "600")
    local pid = h.cli_reflector("--local-addr 127.0.0.1 -A A --hmac-key-file " .. f)
    h.stop(pid)
    os.remove(f)
  end)

  it("a key directory group or others may write is refused (finding 5a)", function()
    local dir = tmpdir()
    write(dir .. "/default.key", KEY1)
    os.execute("chmod 777 " .. dir)
    usage_error(string.format("%s -i --local-addr 127.0.0.1 -o %d -A A --hmac-key-dir %s", h.STAMP, h.free_port(), dir),
      "writable by group or others %(mode 0777; chmod go%-w it%)")
    os.execute("rm -rf " .. dir)
  end)

  it("a key file owned by another user is refused (finding 5b)", function()
    if not is_root() then pending("needs root (chown)") return end
    local dir = tmpdir()
    write(dir .. "/default.key", KEY1)
    os.execute("chown nobody " .. dir .. "/default.key")
    usage_error(string.format("%s -i --local-addr 127.0.0.1 -o %d -A A --hmac-key-dir %s", h.STAMP, h.free_port(), dir),
      "default%.key: owned by uid 65534")
    os.execute("rm -rf " .. dir)
  end)

  it("a FIFO in the key directory: refused at start, and on SIGHUP the reflector goes on (findings 5c, 5d)", function()
    local dir = tmpdir()
    write(dir .. "/default.key", KEY1)
    os.execute("mkfifo -m 600 " .. dir .. "/0001.key")
    usage_error(string.format("%s -i --local-addr 127.0.0.1 -o %d -A A --hmac-key-dir %s", h.STAMP, h.free_port(), dir),
      "0001%.key is not a regular file")
    os.remove(dir .. "/0001.key")
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 -A A --hmac-key-dir " .. dir)
    os.execute("mkfifo -m 600 " .. dir .. "/0001.key")
    os.execute("kill -HUP " .. pid)
    local kept = h.wait_for(out, "SIGHUP: keys kept as they were", 5)
    local n = answered(port, KEY1)
    os.execute("kill -TERM " .. pid)
    local gone = false
    for _ = 1, 40 do
      if not os.execute("kill -0 " .. pid .. " 2>/dev/null") then gone = true break end
      h.sleep(0.05)
    end
    h.stop(pid)
    os.execute("rm -rf " .. dir)
    assert.truthy(kept, h.slurp(out))
    assert.equal(3, n)
    assert.is_true(gone, "SIGTERM did not stop the reflector")
  end)
end)

describe("review 9: --user", function()
  it("a user that does not exist is a usage error found before binding (finding 7)", function()
    usage_error(string.format("%s -i --local-addr 127.0.0.1 -o %d --user no-such-user-here", h.STAMP, h.free_port()),
      "^stamp: invalid value for %-%-user: 'no%-such%-user%-here' %(no such user")
    usage_error(string.format("%s -i --local-addr 127.0.0.1 -o %d --user nobody:no-such-group", h.STAMP, h.free_port()),
      "no such group 'no%-such%-group'")
  end)

  it("refuses to start when --user could not read the key directory on SIGHUP (finding 4)", function()
    if not is_root() then pending("needs root") return end
    local dir = tmpdir()
    write(dir .. "/default.key", KEY1)
    local code, out, err = h.run(string.format("timeout 10 %s -i --local-addr 127.0.0.1 -o %d -A A --hmac-key-dir %s --user nobody",
      h.STAMP, h.free_port(), dir))
    assert.equal(1, code, out .. err)
    assert.matches("not readable as %-%-user nobody, so SIGHUP could not change the keys", err)
    -- owned by that user: it runs, and a rotation works
    os.execute("chown -R nobody " .. dir)
    local pid, rout, port = h.cli_reflector("--local-addr 127.0.0.1 -A A --hmac-key-dir " .. dir .. " --user nobody")
    local KEY2 = "ffeeddccbbaa99887766554433221100"
    write(dir .. "/default.key", KEY2)
    os.execute("chown nobody " .. dir .. "/default.key")
    os.execute("kill -HUP " .. pid)
    local ok = h.wait_for(rout, "SIGHUP: keys reloaded", 5)
    local new, old = answered(port, KEY2), answered(port, KEY1)
    h.stop(pid)
    os.execute("rm -rf " .. dir)
    assert.truthy(ok, h.slurp(rout))
    assert.equal(3, new)
    assert.equal(0, old)
  end)
end)

describe("review 9: the metrics endpoint's connection limits (finding 1)", function()
  local tcp_port = h.tcp_port

  local function hold(from, mport, n)
    local list = {}
    for i = 1, n do
      local c = socket.tcp()
      c:settimeout(1)
      assert(c:bind(from, 0))
      assert(c:connect("127.0.0.1", mport))
      list[i] = c
    end
    return list
  end

  it("40 idle connections from 5 addresses lock no other scraper out; 8 per address; idle ones closed after 2 s", function()
    local mport = tcp_port()
    local pid = h.cli_reflector("--local-addr 127.0.0.1 --metrics --metrics-addr 127.0.0.1:" .. mport)
    local idle = {}
    for a = 2, 6 do
      for _, c in ipairs(hold("127.0.0." .. a, mport, 8)) do idle[#idle + 1] = c end
    end
    h.sleep(0.2)
    local body = http.request("http://127.0.0.1:" .. mport .. "/metrics")
    -- a ninth connection from an address that holds 8 gets nothing
    local ninth = hold("127.0.0.2", mport, 1)[1]
    ninth:send("GET /metrics HTTP/1.0\r\n\r\n")
    local nine = ninth:receive("*a")
    ninth:close()
    -- an idle connection is closed by the server within a few seconds
    local c = idle[1]
    c:settimeout(5)
    local t0 = socket.gettime()
    local _, cerr = c:receive(1)
    local waited = socket.gettime() - t0
    for _, s in ipairs(idle) do s:close() end
    h.stop(pid)
    assert.truthy(body and body:find("stamp_reflector_packets_received_total", 1, true), "scrape locked out")
    assert.is_nil(nine and nine:find("stamp_reflector", 1, true))
    assert.equal("closed", cerr)
    assert.is_true(waited < 4.5, "idle connection held " .. waited .. " s")
  end)
end)

describe("review 9: the clock's sync state (finding 14)", function()
  it("warns when the sync state cannot be read (a seccomp filter / ProtectClock)", function()
    if not have("strace") then pending("needs strace") return end
    local port = h.free_port()
    local pid, out = h.spawn(string.format("strace -f -o /dev/null -e inject=clock_adjtime:error=EPERM %s -i --local-addr 127.0.0.1 -o %d",
      h.STAMP, port))
    local ok = h.wait_for(out, "listening", 10)
    local warned = h.wait_for(out, "synchronization state", 3)
    os.execute("pkill -INT -P " .. pid .. " 2>/dev/null")
    h.stop(pid)
    assert.truthy(ok, h.slurp(out))
    assert.truthy(warned, h.slurp(out))
    assert.matches("warning: cannot read the clock's synchronization state %(adjtimex: Operation not permitted%)", h.slurp(out))
  end)

  it("the shipped unit lets the reflector read the clock's sync state, and nothing more", function()
    local unit = h.slurp(h.ROOT .. "/dist/stamp-reflector.service")
    assert.not_matches("\nProtectClock=yes", unit)
    assert.matches("\nSystemCallFilter=clock_adjtime\n", unit)
    assert.matches("\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n", unit) -- no CAP_SYS_TIME: cannot set it
  end)
end)

describe("review 9: SIGHUP storms, keys in errors and config files", function()
  it("survives 200 SIGHUPs 2 ms apart during key reloads and still answers (finding 22)", function()
    local dir = tmpdir()
    write(dir .. "/default.key", KEY1)
    for i = 1, 50 do write(string.format("%s/%04x.key", dir, i), KEY1) end
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 -A A --hmac-key-dir " .. dir)
    os.execute("for i in $(seq 200); do kill -HUP " .. pid .. " 2>/dev/null || break; sleep 0.002; done")
    h.sleep(0.3)
    local alive = os.execute("kill -0 " .. pid .. " 2>/dev/null")
    local n = answered(port, KEY1)
    h.stop(pid)
    os.execute("rm -rf " .. dir)
    local log = h.slurp(out)
    assert.truthy(alive == true or alive == 0, log)
    assert.equal(3, n)
    assert.not_matches("traceback", log)
    assert.matches("Packets received: 3", log)
  end)

  it("a bad key is never echoed, on the command line or in a config file (finding 27)", function()
    local bad = KEY1 .. "0011223344556677889900aabbccddeeX"
    local err = usage_error(string.format("%s -i -A A --local-addr 127.0.0.1 -o %d --hmac-key %s", h.STAMP, h.free_port(), bad),
      "^stamp: invalid value for %-%-hmac%-key: %(65 characters, not shown%)")
    assert.not_matches(KEY1, err)
    local f = os.tmpname()
    write(f, 'return { is_reflector = true, local_addr = "127.0.0.1", auth_mode = "A", hmac_key = "' .. bad .. '" }')
    err = usage_error(h.STAMP .. " --config " .. f, "bad value for 'hmac_key': %(65 characters, not shown%)")
    assert.not_matches(KEY1, err)
    -- a long value of another setting is cut (finding 6)
    write(f, 'return { is_reflector = true, local_port = "' .. ("9"):rep(100000) .. '" }')
    err = usage_error(h.STAMP .. " --config " .. f, "bad value for 'local_port'")
    assert.is_true(#err < 400, #err)
    os.remove(f)
  end)

  it("a config file holding hmac_key that group or others may read is refused (finding 15)", function()
    local f = os.tmpname()
    write(f, 'return { is_reflector = true, local_addr = "127.0.0.1", auth_mode = "A", hmac_key = "' .. KEY1 .. '" }', "644")
    local err = usage_error(string.format("%s --config %s -o %d", h.STAMP, f, h.free_port()),
      "holds hmac_key: refusing key file .*readable by group or others %(mode 0644; chmod 600 it%)")
    assert.not_matches(KEY1, err)
    write(f, 'return { is_reflector = true, local_addr = "127.0.0.1", auth_mode = "A", hmac_key = "' .. KEY1 .. '" }', "600")
    local port = h.free_port()
    local pid, out = h.spawn(string.format("%s --config %s -o %d", h.STAMP, f, port))
    assert.truthy(h.wait_for(out, "listening", 5), h.slurp(out))
    local n = answered(port, KEY1)
    h.stop(pid)
    os.remove(f)
    assert.equal(3, n)
  end)

  it("--config not readable after --user: one warning at start (finding 15)", function()
    if not is_root() then pending("needs root") return end
    local f = os.tmpname()
    write(f, 'return { is_reflector = true, local_addr = "127.0.0.1", max_pps = 100 }', "600")
    local port = h.free_port()
    local pid, out = h.spawn(string.format("%s --config %s -o %d --user nobody", h.STAMP, f, port))
    local warned = h.wait_for(out, "SIGHUP cannot re-read it", 5)
    h.stop(pid)
    os.remove(f)
    assert.truthy(warned, h.slurp(out))
  end)

  it("keys or replay flags without -A A: one warning that nothing is authenticated (finding 20)", function()
    local dir = tmpdir()
    write(dir .. "/default.key", KEY1)
    local pid, out = h.cli_reflector("--local-addr 127.0.0.1 --hmac-key-dir " .. dir)
    h.stop(pid)
    local pid2, out2 = h.cli_reflector("--local-addr 127.0.0.1 --drop-replayed")
    h.stop(pid2)
    local pid3, out3 = h.cli_reflector("--local-addr 127.0.0.1 -A A --hmac-key-dir " .. dir)
    h.stop(pid3)
    os.execute("rm -rf " .. dir)
    assert.matches("warning: %-%-hmac%-key%-dir given but %-%-auth%-mode is O: keys are not used", h.slurp(out))
    assert.matches("warning: %-%-drop%-replayed given but %-%-auth%-mode is O", h.slurp(out2))
    assert.not_matches("auth%-mode is O", h.slurp(out3))
  end)
end)

describe("review 9: replay window and a restarted sender (finding 18)", function()
  it("--drop-replayed: a sender that starts again on the same port is answered in full", function()
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 -A A --hmac-key " .. KEY1 .. " --drop-replayed")
    local sport = h.free_port()
    local function run()
      local _, res = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 10 -d 5 -L 0.5 -A A --hmac-key %s",
        h.STAMP, port, sport, KEY1))
      return tonumber(res:match("Packets received: (%d+)"))
    end
    local first, second = run(), run()
    h.stop(pid)
    local log = h.slurp(out)
    assert.equal(10, first)
    assert.equal(10, second, log)
    assert.matches("Dropped %(replayed%): 0", log)
  end)
end)

describe("review 9: rate-limited drop warnings (finding 17)", function()
  it("count since the last line printed, and what was held back is printed at exit", function()
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 -A A --hmac-key " .. KEY1)
    local WRONG = "ffeeddccbbaa99887766554433221100"
    h.run(string.format("%s -r 127.0.0.1 -p %d -o 0 -c 1 -L 0.2 -A A --hmac-key %s", h.STAMP, port, WRONG))
    local first = h.wait_for(out, "failed HMAC verification", 5)
    h.run(string.format("%s -r 127.0.0.1 -p %d -o 0 -c 5 -d 1 -L 0.2 -A A --hmac-key %s", h.STAMP, port, WRONG))
    h.sleep(1.5) -- a tick or two inside the 10 s: held back
    h.stop(pid)
    local log = h.slurp(out)
    assert.truthy(first, log)
    assert.matches("warning: 1 packets failed HMAC verification[^\n]*total=1", log)
    assert.matches("warning: 5 packets failed HMAC verification[^\n]*total=6", log)
  end)
end)

describe("review 9: start-up errors stay one line (finding 21)", function()
  it("a path holding a newline and an escape is escaped", function()
    local code, _, err = h.run(h.STAMP .. " --config \"$(printf '/nonexistent/a\\n{\"level\":\"fake\"}\\033[31m.lua')\"")
    assert.equal(2, code)
    assert.equal(1, select(2, err:gsub("\n", "")), err)
    assert.not_matches("\27", err)
    assert.truthy(err:find("/nonexistent/a", 1, true), err)
  end)
end)
