-- Shared helpers for the specs.
local assert = require "luassert"
local M = {}

function M.hex(s)
  return (s:gsub("%s+", ""):gsub("..", function(h) return string.char(tonumber(h, 16)) end))
end

function M.tohex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

M.ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/helper%.lua$")) or "."

-- Run a shell command, return its exit code, stdout and stderr.
function M.run(cmd)
  local out, err = os.tmpname(), os.tmpname()
  local ok, how, code = os.execute(cmd .. " >" .. out .. " 2>" .. err)
  local function slurp(p)
    local f = io.open(p, "rb")
    local s = f and f:read("*a") or ""
    if f then f:close() end
    os.remove(p)
    return s
  end
  if type(ok) == "number" then code = ok / 256 elseif how == "signal" then code = 128 + code end
  return code, slurp(out), slurp(err)
end

-- A port that is free right now on loopback (UDP and TCP), in a range the kernel does not hand out
-- (20000-29999). Several suites run at once on one machine (other checkouts, the valgrind run), and a
-- port checked free here is bound later by a child: two suites drawing from the same ports would
-- collide in that gap (a reflector failing to bind, a capture seeing another suite's packets). So
-- each process draws from its own block of 100 ports, chosen by its pid, and checks each port free.
local function my_pid()
  local f = io.open("/proc/self/stat", "r")
  local pid = f and tonumber((f:read("*l") or ""):match("^(%d+)"))
  if f then f:close() end
  return pid or (os.time() + math.random(0, 1e6))
end
local port_block = 20000 + (my_pid() % 100) * 100
local next_port = math.random(0, 99)

function M.free_port()
  local socket = require "socket"
  for _ = 1, 100 do
    next_port = (next_port + 1) % 100
    local port = port_block + next_port
    local u, t = socket.udp(), socket.tcp()
    local ok = u:setsockname("127.0.0.1", port) and t:bind("127.0.0.1", port)
    u:close()
    t:close()
    if ok then return port end
  end
  error("no free port in " .. port_block .. "-" .. (port_block + 99))
end

-- Start a background process; returns its pid and the file its stdout goes to.
-- A free TCP port on 127.0.0.1 (for metrics endpoints), checked by binding it.
function M.tcp_port()
  local socket = require "socket"
  for _ = 1, 50 do
    local p = M.free_port()
    local t = socket.tcp()
    local ok = t:bind("127.0.0.1", p)
    t:close()
    if ok then return p end
  end
  error("no free TCP port")
end

function M.spawn(cmd)
  local out = os.tmpname()
  local p = io.popen(cmd .. " >" .. out .. " 2>&1 & echo $!")
  local pid = tonumber(p:read("*l"))
  p:close()
  return pid, out
end

function M.slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

-- A temporary file holding `text`; returns its path.
function M.tmpfile(text)
  local p = os.tmpname()
  local f = assert(io.open(p, "wb"))
  f:write(text)
  f:close()
  return p
end

-- Build spec/tools/NAME.c against the static core (internal headers too, `flags` added to the link),
-- run it with `args`; returns what it printed (and the compiler's messages if it did not build).
function M.run_c_tool(name, args, flags)
  local bin = os.tmpname()
  local cmd = string.format("cc -std=c11 -Wall -Wextra -Werror -I'%s/csrc/core' -o %s '%s/spec/tools/%s.c' "
    .. "'%s/build/libstamp_static.a' $(pkg-config --libs libcrypto libmicrohttpd) -lpthread -lm %s 2>&1 && %s %s",
    M.ROOT, bin, M.ROOT, name, M.ROOT, flags or "", bin, args or "")
  local f = io.popen(cmd)
  local out = f:read("*a")
  f:close()
  os.remove(bin)
  return out
end

function M.sleep(s)
  require("socket").sleep(s)
end

-- Stop a background process with SIGINT and wait until it is gone.
function M.stop(pid)
  os.execute("kill -INT " .. pid .. " 2>/dev/null")
  for _ = 1, 100 do
    if not os.execute("kill -0 " .. pid .. " 2>/dev/null") then return end
    M.sleep(0.05)
  end
  os.execute("kill -KILL " .. pid .. " 2>/dev/null")
end

-- Wait until `path` contains `pattern` (plain text).
function M.wait_for(path, pattern, timeout)
  local t = 0
  while t < (timeout or 5) do
    if M.slurp(path):find(pattern, 1, true) then return true end
    M.sleep(0.05)
    t = t + 0.05
  end
  return false
end

M.STAMP = M.ROOT .. "/bin/stamp"

-- Start `stamp -i ARGS` on a free port; returns its pid, the file its output goes to, and the port.
function M.cli_reflector(args)
  local port = M.free_port()
  local pid, out = M.spawn(M.STAMP .. " -i --local-port " .. port .. " " .. (args or "--local-addr 127.0.0.1"))
  assert(M.wait_for(out, "listening", 30), "reflector did not start: " .. M.slurp(out)) -- slow under valgrind
  return pid, out, port
end

-- A reflector on an ephemeral loopback port and a sender aimed at it, both in this process.
-- `scfg` defaults: send_delay 2 ms, timeout 1 s.
function M.loopback_pair(rcfg, scfg)
  local stamp = require "stamp"
  rcfg.local_addr = rcfg.local_addr or "127.0.0.1"
  rcfg.local_port = 0
  local r = assert(stamp.reflector(rcfg))
  local host, port = r:local_addr()
  scfg.remote_addr = scfg.remote_addr or host
  scfg.remote_port = port
  scfg.send_delay = scfg.send_delay or 2
  scfg.timeout = scfg.timeout or 1
  return r, assert(stamp.sender(scfg)), port
end

-- One `it` per case: `stamp ARGS` must print nothing on stdout, exactly one line on
-- stderr naming FLAG, and exit with code 2. `cases` is a list of { ARGS, FLAG }.
-- (Killed after 10 s: a value wrongly accepted would start a reflector that never ends.)
function M.bad_flag_cases(it, cases) -- busted gives each spec file its own `it`
  for _, c in ipairs(cases) do
    it("'" .. c[1] .. "' prints one line naming " .. c[2] .. " and exits 2", function()
      local code, out, err = M.run("timeout 10 " .. M.STAMP .. " " .. c[1])
      assert.equal(2, code)
      assert.equal("", out)
      assert.equal(1, select(2, err:gsub("\n", "")), "one line expected: " .. err)
      assert.truthy(err:find(c[2], 1, true), err)
    end)
  end
end


-- Hand-built exchanges: octets we write ourselves against our reflector or sender.

-- A luasocket UDP socket on an ephemeral loopback port (127.0.0.1, or ::1 with `family6`),
-- receive timeout `timeout` seconds (0: never waits); returns it and its port.
function M.udp_peer(timeout, family6)
  local socket = require "socket"
  local u = family6 and socket.udp6() or socket.udp()
  assert(u:setsockname(family6 and "::1" or "127.0.0.1", 0))
  u:settimeout(timeout or 0)
  local _, port = u:getsockname()
  return u, tonumber(port)
end

-- Send `pkt` from a luasocket UDP socket to an in-process reflector made with `rcfg` (on
-- 127.0.0.1 unless `rcfg.local_addr` says otherwise, ephemeral port) and collect what comes
-- back for `o.wait` seconds (0.15). `o.family6` (an IPv6 client socket), `o.client` (its
-- address, 127.0.0.1), `o.to` (where to send, 127.0.0.1). Returns the replies
-- ({ data =, from = } each) and the reflector's counters.
function M.exchange(rcfg, pkt, o)
  local stamp, socket = require "stamp", require "socket"
  o = o or {}
  rcfg.local_addr = rcfg.local_addr or "127.0.0.1"
  rcfg.local_port = 0
  local r = assert(stamp.reflector(rcfg))
  local _, port = r:local_addr()
  local u = o.family6 and socket.udp6() or socket.udp()
  u:setsockname(o.client or "127.0.0.1", 0)
  u:settimeout(0)
  assert(u:sendto(pkt, o.to or "127.0.0.1", port))
  local replies = {}
  local t0 = socket.gettime()
  repeat
    r:step(5)
    local d, from = u:receivefrom()
    if d then replies[#replies + 1] = { data = d, from = from } end
  until socket.gettime() - t0 > (o.wait or 0.15)
  u:close()
  local c = r:counters()
  r:close()
  return replies, c
end

-- A `pump` for `sender:run` that plays a hand-made reflector on the socket `u` (`udp_peer`):
-- each test packet waiting there is answered with `stamp.codec.encode_reflected` of what a
-- reflector must send (`seq` and `sender_seq` = the packet's, its Timestamp and Error Estimate
-- echoed, T2 = T3 = now), with the fields `fields(t)` returns put over them (t: the decoded
-- test packet).
function M.hand_reflector(u, fields)
  local stamp = require "stamp"
  return function()
    local data, ip, p = u:receivefrom()
    if not data then return end
    local t = stamp.codec.decode_test(data)
    local now = stamp.core.now()
    local f = { seq = t.seq, sender_seq = t.seq, sender_timestamp_raw = t.timestamp_raw, sender_ee = t.ee,
      timestamp = now, rx_timestamp = now }
    for k, v in pairs(fields and fields(t) or {}) do f[k] = v end
    u:sendto(stamp.codec.encode_reflected(f), ip, p)
  end
end

-- Run `fn(port)` against the scripted reflector `spec/tools/fake_reflector.lua MODE` on a free
-- port; the reflector is stopped (and its output file removed) whatever fn does. Returns fn's values.
function M.with_fake_reflector(mode, fn)
  local port = M.free_port()
  local pid, out = M.spawn("lua5.4 " .. M.ROOT .. "/spec/tools/fake_reflector.lua " .. mode .. " " .. port .. " 10")
  if not M.wait_for(out, "listening", 5) then
    local log = M.slurp(out)
    M.stop(pid)
    os.remove(out)
    error("fake reflector did not start: " .. log, 2)
  end
  local function finish(ok, ...)
    M.stop(pid)
    os.remove(out)
    if not ok then error((...), 0) end
    return ...
  end
  return finish(pcall(fn, port))
end

-- The lines of `text` that match the Lua pattern `pattern` (e.g. '"type":"packet"', "^seq=%d+ rtt=").
function M.lines_matching(text, pattern)
  local lines = {}
  for line in text:gmatch("[^\n]+") do
    if line:find(pattern) then lines[#lines + 1] = line end
  end
  return lines
end

return M
