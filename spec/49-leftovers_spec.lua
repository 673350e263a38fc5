-- The findings two outside reviews left open on issues 11 (conformance, Type 12 of RFC 10052) and
-- 9 (operations), each pinned here by a spec that failed before its fix.
local h = require "helper"
local stamp = require "stamp"
local codec = stamp.codec
local core = stamp.core

local MS = 1000000
local S = 1000000000

-- A base test packet with one type 12 TLV: replies of `len` octets, `num` of them, `ival` ns apart.
local function t12(seq, len, num, ival)
  return codec.encode_test { seq = seq } .. h.hex(string.format("800c000c %04x%04x %08x 00000000", len, num, ival))
end

-- The flags octet of the TLV at `off` (0-based offset in the reply).
local function flags_at(d, off) return d:byte(off + 1) end
local function has(flags, bit) return math.floor(flags / bit) % 2 == 1 end
local C, U = 0x10, 0x80

-- Run `stamp ARGS` (killed after 10 s: a value wrongly accepted starts a reflector); exit code, stdout, stderr.
local function stamp_cmd(args) return h.run("timeout 10 " .. h.STAMP .. " " .. args) end

describe("type 12: an upper bound on the Interval (review 11: a burst slot held for (N-1) x 4.3 s)", function()
  it("reflector_machine: over reflected_max_interval_ns (1 s by default): one reply with C, counted extra_limited", function()
    local m = assert(core.reflector_machine { reflected_max_count = 10 })
    local mono = 10 * S
    -- Interval 0xFFFFFFFF (4.29 s): one reply, C, no burst
    local r = m:input(t12(1, 100, 3, 0xFFFFFFFF), { src_addr = "127.0.0.1", src_port = 1 }, mono)
    assert.is_true(has(flags_at(r.data, 44), C))
    assert.equal(100, #r.data)                 -- the computed length all the same (RFC 10052 3)
    assert.is_nil(m:next_due())               -- no burst queued
    assert.equal(1, m:counters().extra_limited)
    -- exactly 1 s: granted
    r = m:input(t12(1, 100, 2, S), { src_addr = "127.0.0.1", src_port = 2 }, mono)
    assert.is_false(has(flags_at(r.data, 44), C))
    assert.equal(1, #m:poll(mono + S))
    assert.equal(1, m:counters().extra_limited)
    -- a single reply (Number 1) has no interval to bound
    r = m:input(t12(1, 100, 1, 0xFFFFFFFF), { src_addr = "127.0.0.1", src_port = 3 }, mono)
    assert.is_false(has(flags_at(r.data, 44), C))
    -- raised: 4.3 s granted
    local m2 = assert(core.reflector_machine { reflected_max_count = 10, reflected_max_interval_ns = 0xFFFFFFFF })
    r = m2:input(t12(1, 100, 2, 0xFFFFFFFF), { src_addr = "127.0.0.1", src_port = 1 }, mono)
    assert.is_false(has(flags_at(r.data, 44), C))
    assert.equal(0, m2:counters().extra_limited)
    assert.has_error(function() core.reflector_machine { reflected_max_interval_ns = -1 } end)
    local ok, err = pcall(core.reflector_machine, { reflected_max_interval_ns = 4294967296 })
    assert.is_false(ok)
    assert.matches("bad option 'reflected_max_interval_ns' %(4294967296 out of range 0%.%.4294967295%)", err)
  end)

  it("reflector_machine: every per-request limit answered once with C is counted extra_limited", function()
    local m = assert(core.reflector_machine { reflected_max_count = 5, reflected_max_size = 200,
      reflected_min_interval_ns = MS })
    local mono = 10 * S
    local function ask(port, len, num, ival)
      local r = m:input(t12(1, len, num, ival), { src_addr = "127.0.0.1", src_port = port }, mono)
      return has(flags_at(r.data, 44), C)
    end
    assert.is_false(ask(1, 100, 3, MS))        -- within every limit
    assert.equal(0, m:counters().extra_limited)
    assert.is_true(ask(2, 100, 6, MS))         -- over the count
    assert.is_true(ask(3, 100, 3, MS - 1))     -- under the shortest interval
    assert.is_true(ask(4, 300, 3, MS))         -- over the size
    assert.is_true(ask(5, 100, 3, 2 * S))      -- over the longest interval
    assert.equal(4, m:counters().extra_limited)
  end)

  it("stamp.reflector on loopback: Interval 0xFFFFFFFF gets one reply with C, no burst slot held", function()
    local replies, c = h.exchange({ reflected_max_count = 5 }, t12(1, 100, 5, 0xFFFFFFFF), { wait = 0.3 })
    assert.equal(1, #replies)
    assert.is_true(has(flags_at(replies[1].data, 44), C))
    assert.equal(1, c.extra_limited)
    assert.equal(0, c.extra_replies)
  end)

  it("the command: --reflected-control-max-interval-ns, over it one reply with C; -R and the summary count it", function()
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 -R --reflected-control-max-count 5 "
      .. "--reflected-control-max-interval-ns 100000000")
    finally(function() h.stop(pid) end) -- stopped even when an assertion fails
    local u = h.udp_peer(0.5)
    assert(u:sendto(t12(1, 100, 3, 200 * MS), "127.0.0.1", port))  -- 200 ms > 100 ms
    local d = u:receive()
    assert(u:sendto(t12(2, 100, 3, 50 * MS), "127.0.0.1", port))   -- 50 ms: granted
    local got = {}
    for _ = 1, 3 do got[#got + 1] = u:receive() end
    u:close()
    assert.truthy(h.wait_for(out, "extra_limited=1", 5), h.slurp(out))
    h.stop(pid)
    local text = h.slurp(out)
    os.remove(out)
    assert.truthy(d, "no reply")
    assert.is_true(has(flags_at(d, 44), C))
    assert.equal(3, #got)
    assert.is_false(has(flags_at(got[1], 44), C))
    assert.truthy(text:find("Type 12 requests over a limit", 1, true), text)
  end)

  it("--reflected-control-max-interval-ns below --reflected-control-min-interval-ns is refused (one line, exit 2)", function()
    local code, o, err = stamp_cmd("-i --local-addr 127.0.0.1 --reflected-control-max-count 5 "
      .. "--reflected-control-min-interval-ns 2000000 --reflected-control-max-interval-ns 1000000")
    assert.equal(2, code)
    assert.equal("", o)
    assert.equal(1, select(2, err:gsub("\n", "")), err)
    assert.truthy(err:find("--reflected-control-max-interval-ns", 1, true), err)
  end)
end)

h.bad_flag_cases(it, {
  { "-i --reflected-control-max-interval-ns 4294967296", "--reflected-control-max-interval-ns" },
  { "-i --reflected-control-max-interval-ns x", "--reflected-control-max-interval-ns" },
})

describe("--session (review 11: silently unused in open admission; 7@::1:5 read as an address)", function()
  it("--session without --session-admission provisioned: one warning line, the reflector runs and answers", function()
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 --session 7")
    finally(function() h.stop(pid) end) -- stopped even when an assertion fails
    local u = h.udp_peer(1)
    assert(u:sendto(codec.encode_test { seq = 1, ssid = 9 }, "127.0.0.1", port))
    local d = u:receive()
    u:close()
    h.stop(pid)
    local s = h.slurp(out)
    os.remove(out)
    assert.truthy(d, "no reply")
    local lines = h.lines_matching(s, "warning")
    assert.equal(1, #lines, s)
    assert.matches("warning: %-%-session given but %-%-session%-admission is open", lines[1])
  end)

  it("with provisioned admission: no such warning", function()
    local pid, out = h.cli_reflector("--local-addr 127.0.0.1 --session 7 --session-admission provisioned")
    finally(function() h.stop(pid) end) -- stopped even when an assertion fails
    h.stop(pid)
    local s = h.slurp(out)
    os.remove(out)
    assert.is_nil(s:find("given but", 1, true), s)
  end)

  it("7@[::1]:5, 7@[::1] and 7@::1 are accepted; the Lua API refuses 7@::1:5 too", function()
    for _, v in ipairs { "7@[::1]:5", "7@[::1]", "7@::1", "7@2001:db8::1" } do
      local code, _, err = stamp_cmd("-i --local-addr 127.0.0.1 --session-admission provisioned --session " .. v
        .. " --local-port 1 --user no-such-user-leftovers")
      assert.is_nil(err:find("--session", 1, true), v .. ": " .. err)
      assert.equal(2, code) -- stopped by the (checked before binding) unknown --user, after --session passed
    end
    assert.truthy(core.reflector_machine { session_admission = "provisioned", sessions = { "7@[::1]:5", "7@::1" } })
    local ok, err = pcall(core.reflector_machine, { session_admission = "provisioned", sessions = { "7@::1:5" } })
    assert.is_false(ok)
    assert.matches("ambiguous", err)
  end)
end)

h.bad_flag_cases(it, {
  { "-i --session-admission provisioned --session 7@::1:5", "--session" },
  { "-i --session 7@fe80::1:862", "--session" },
})

it("--session 7@::1:5 says how to write it", function()
  local code, _, err = stamp_cmd("-i --session 7@::1:5")
  assert.equal(2, code)
  assert.matches("7@%[::1%]:5", err)
end)

describe("values the reflector cannot use (review 11)", function()
  h.bad_flag_cases(it, {
    { "-i --reflected-control-max-count 5 --reflected-control-max-size 1", "--reflected-control-max-size" },
    { "-i --reflected-control-max-count 5 --reflected-control-max-size 59", "--reflected-control-max-size" },
    { "-i -A A --hmac-key 00112233445566778899aabbccddeeff --reflected-control-max-size 127",
      "--reflected-control-max-size" },
    { "-r 127.0.0.1 --access-report 3", "--access-report" },
    { "-r 127.0.0.1 --access-report 0", "--access-report" },
  })

  it("--reflected-control-max-size 0 (no limit) and 60 are accepted; so are --access-report 1 and 2", function()
    for _, v in ipairs { "0", "60" } do
      local pid, out = h.cli_reflector("--local-addr 127.0.0.1 --reflected-control-max-count 5 "
        .. "--reflected-control-max-size " .. v)
      finally(function() h.stop(pid) end) -- stopped even when an assertion fails
      h.stop(pid)
      os.remove(out)
    end
    for _, id in ipairs { 1, 2 } do
      local u, port = h.udp_peer(0)
      local code, o, err = stamp_cmd(string.format("-r 127.0.0.1 -p %d -c 1 -L 0.2 --access-report %d "
        .. "--access-report-retries 0 --output-format json", port, id))
      u:close()
      assert.equal(1, code, err) -- 100 % loss (nothing answers), not a usage error
      assert.truthy(o:find('"sent"', 1, true), o)
    end
  end)

  it("Lua: reflected_max_size 1..59 (open) and 1..127 (authenticated) refused, naming the option", function()
    for _, cfg in ipairs { { reflected_max_size = 59 },
      { reflected_max_size = 127, auth = true, key = ("k"):rep(16) } } do
      local ok, err = pcall(core.reflector_machine, cfg)
      assert.is_false(ok)
      assert.matches("reflected_max_size", err)
    end
    assert.truthy(core.reflector_machine { reflected_max_size = 60 })
    assert.truthy(core.reflector_machine { reflected_max_size = 0 })
    assert.truthy(core.reflector_machine { reflected_max_size = 128, auth = true, key = ("k"):rep(16) })
  end)
end)

describe("two type 12 TLVs in one request (review 11: both said granted)", function()
  -- base packet + T12(100 octets, 3 replies, 1 ms) + T12(100 octets, 5 replies, 1 ms)
  local function two(seq)
    return codec.encode_test { seq = seq } .. h.hex("800c000c 00640003 000f4240 00000000"
      .. "800c000c 00640005 000f4240 00000000")
  end

  it("reflector_machine: only the first is acted on (C clear, its 3 replies); the second comes back with C", function()
    local m = assert(core.reflector_machine { reflected_max_count = 10 })
    local mono = 10 * S
    local r = m:input(two(1), { src_addr = "127.0.0.1", src_port = 1 }, mono)
    assert.equal(100, #r.data)
    assert.is_false(has(flags_at(r.data, 44), C))
    assert.is_true(has(flags_at(r.data, 60), C))
    assert.is_false(has(flags_at(r.data, 60), U))
    local extra = 0
    for k = 1, 6 do extra = extra + #m:poll(mono + k * MS) end
    assert.equal(2, extra)                        -- Number 3 of the first: 2 more, not the second's 4
    assert.equal(0, m:counters().extra_limited)   -- the grant stands; nothing was over a limit
  end)

  it("type 12 off: both come back with U", function()
    local m = assert(core.reflector_machine {})
    local r = m:input(two(1), { src_addr = "127.0.0.1", src_port = 1 }, 10 * S)
    assert.is_true(has(flags_at(r.data, 44), U))
    assert.is_true(has(flags_at(r.data, 60), U))
  end)

  it("stamp.reflector on loopback: 3 replies, each with the first C clear and the second C set", function()
    local replies, c = h.exchange({ reflected_max_count = 10, reflected_min_interval_ns = MS }, two(1), { wait = 0.3 })
    assert.equal(3, #replies)
    for _, d in ipairs(replies) do
      assert.is_false(has(flags_at(d.data, 44), C))
      assert.is_true(has(flags_at(d.data, 60), C))
    end
    assert.equal(2, c.extra_replies)
  end)
end)

describe("a session no longer provisioned (SIGHUP) stops its running burst (review 11)", function()
  local function t12s(seq, ssid, num, ival)
    return codec.encode_test { seq = seq, ssid = ssid }
      .. h.hex(string.format("800c000c 0064%04x %08x 00000000", num, ival))
  end

  it("reflector_machine: set_admission without the session: the rest of its burst is cancelled, counted", function()
    local m = assert(core.reflector_machine { reflected_max_count = 10, session_admission = "provisioned",
      sessions = { "7", "8" } })
    local mono = 10 * S
    local meta = { src_addr = "127.0.0.1", src_port = 1 }
    assert.truthy(m:input(t12s(1, 7, 6, MS), meta, mono))
    assert.truthy(m:input(t12s(1, 8, 6, MS), { src_addr = "127.0.0.1", src_port = 2 }, mono))
    assert.equal(2, #m:poll(mono + MS))           -- one extra reply of each burst
    assert.is_true(m:set_admission("provisioned", { "8" }))
    local sent = 0
    for k = 2, 8 do sent = sent + #m:poll(mono + k * MS) end
    assert.equal(4, sent)                          -- only session 8's burst goes on
    assert.equal(4, m:counters().extra_cancelled)  -- session 7's 4 left
    assert.is_nil(m:next_due())
  end)

  it("stamp.reflector on loopback: set_admission mid-burst, no reply of the removed session after it", function()
    local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0, reflected_max_count = 100,
      session_admission = "provisioned", sessions = { "7" } })
    local _, port = r:local_addr()
    local u = h.udp_peer(0)
    assert(u:sendto(t12s(1, 7, 40, 10 * MS), "127.0.0.1", port)) -- 40 replies over 390 ms
    local before, after = 0, 0
    local t0 = require("socket").gettime()
    local switched = false
    repeat
      r:step(5)
      local d = u:receive()
      while d do
        if switched then after = after + 1 else before = before + 1 end
        d = u:receive()
      end
      if not switched and require("socket").gettime() - t0 > 0.1 then
        r:step(0) -- what is due now leaves before the switch
        d = u:receive()
        while d do before = before + 1; d = u:receive() end
        assert.is_true(r:set_admission("provisioned", { "9" }))
        switched = true
      end
    until require("socket").gettime() - t0 > 0.6
    u:close()
    local c = r:counters()
    r:close()
    assert.is_true(before >= 2 and before < 40, "before: " .. before)
    assert.is_true(after <= 1, "after: " .. after) -- at most one already handed to the kernel
    assert.equal(40, before + after + c.extra_cancelled)
  end)
end)

describe("--user root (review 9: accepted without a word)", function()
  for _, u in ipairs { "0", "root", "root:root" } do
    it("--user " .. u .. ": one warning line that privileges are not dropped; the reflector runs", function()
      local pid, out = h.cli_reflector("--local-addr 127.0.0.1 --user " .. u)
      finally(function() h.stop(pid) end) -- stopped even when an assertion fails
      h.stop(pid)
      local s = h.slurp(out)
      os.remove(out)
      local lines = h.lines_matching(s, "warning")
      assert.equal(1, #lines, s)
      assert.matches("%-%-user " .. u .. " is root %(uid 0%): privileges are not dropped", lines[1])
    end)
  end

  it("--user nobody: no such warning", function()
    if select(2, h.run("id -u")) ~= "0\n" then
      pending("needs root (it drops to nobody)")
      return
    end
    local pid, out = h.cli_reflector("--local-addr 127.0.0.1 --user nobody")
    finally(function() h.stop(pid) end) -- stopped even when an assertion fails
    h.stop(pid)
    local s = h.slurp(out)
    os.remove(out)
    assert.is_nil(s:find("not dropped", 1, true), s)
  end)
end)

describe("SIGHUP applies hmac_key from the config file (review 9: only at restart)", function()
  local K1 = "00112233445566778899aabbccddeeff"
  local K2 = "ffeeddccbbaa99887766554433221100"
  local function write_cfg(path, port, key, mode)
    local f = assert(io.open(path, "wb"))
    f:write(string.format("return { is_reflector = true, local_addr = '127.0.0.1', local_port = %d, "
      .. "auth_mode = 'A', hmac_key = %q }", port, key))
    f:close()
    os.execute("chmod " .. (mode or "600") .. " " .. path)
  end
  local function received(port, key)
    local _, res = h.run(string.format("%s -r 127.0.0.1 -p %d -c 2 -d 2 -L 0.5 -A A --hmac-key %s", h.STAMP, port, key))
    return tonumber(res:match("Packets received: (%d+)"))
  end

  it("a new key is in force after SIGHUP (the old one refused), logged without the key; a short key, "
    .. "a non-hex key or a file others may read keep the key in force", function()
    local path = os.tmpname()
    local port = h.free_port()
    write_cfg(path, port, K1)
    local pid, out = h.spawn(h.STAMP .. " --config " .. path)
    finally(function() h.stop(pid) end) -- stopped even when an assertion fails
    assert.truthy(h.wait_for(out, "listening", 10), h.slurp(out))
    assert.equal(2, received(port, K1))
    write_cfg(path, port, K2)
    os.execute("kill -HUP " .. pid)
    assert.truthy(h.wait_for(out, "SIGHUP: hmac_key", 5), h.slurp(out))
    local k2, k1 = received(port, K2), received(port, K1)
    -- refused: each keeps K2 in force
    write_cfg(path, port, "0011223344556677")                   -- 8 octets
    os.execute("kill -HUP " .. pid)
    assert.truthy(h.wait_for(out, "at least 16", 5), h.slurp(out))
    write_cfg(path, port, K1 .. "zz")                             -- not hex
    os.execute("kill -HUP " .. pid)
    assert.truthy(h.wait_for(out, "hex digits", 5), h.slurp(out))
    write_cfg(path, port, K1, "644")                              -- readable by others
    os.execute("kill -HUP " .. pid)
    assert.truthy(h.wait_for(out, "readable by group or others", 5), h.slurp(out))
    local still = received(port, K2)
    h.stop(pid)
    local s = h.slurp(out)
    os.remove(out)
    os.remove(path)
    assert.equal(2, k2)
    assert.equal(0, k1)
    assert.equal(2, still)
    assert.matches("SIGHUP: hmac_key changed", s)
    assert.is_nil(s:find("it takes effect at restart", 1, true), s)
    for _, k in ipairs { K1, K2, "0011223344556677" } do assert.is_nil(s:lower():find(k, 1, true), s) end
  end)
end)

describe("--plot that --user cannot write (review 9: found only after the run)", function()
  local function as_root()
    return select(2, h.run("id -u")) == "0\n"
  end

  it("a directory only root may write: one line naming --plot at start, exit 2, nothing sent", function()
    if not as_root() then pending("needs root (it drops to nobody)") return end
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -m 700 " .. dir)
    local u, port = h.udp_peer(0)
    local t0 = os.time()
    local code, o, err = stamp_cmd(string.format("-r 127.0.0.1 -p %d -c 20 -d 50 --user nobody --plot %s/x.svg",
      port, dir))
    local got = u:receive()
    u:close()
    os.execute("rm -rf " .. dir)
    assert.equal(2, code)
    assert.equal("", o)
    assert.equal(1, select(2, err:gsub("\n", "")), err)
    assert.matches("invalid value for %-%-plot: '[^']*x%.svg' %(not writable as user 'nobody': Permission denied%)", err)
    assert.is_nil(got)                    -- refused before any packet
    assert.is_true(os.time() - t0 <= 1)
  end)

  it("a directory nobody may write: the run goes on and the plot is written", function()
    if not as_root() then pending("needs root (it drops to nobody)") return end
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -m 777 " .. dir)
    local rpid, rlog, rport = h.cli_reflector()
    finally(function() h.stop(rpid) end) -- stopped even when an assertion fails
    local code, _, err = stamp_cmd(string.format("-r 127.0.0.1 -p %d -c 2 -d 2 --user nobody --plot %s/x.svg",
      rport, dir))
    h.stop(rpid)
    os.remove(rlog)
    local svg = h.slurp(dir .. "/x.svg")
    os.execute("rm -rf " .. dir)
    assert.equal(0, code, err)
    assert.matches("<svg ", svg)
  end)

  it("core.path_writable_as: this process, and another user", function()
    local f = os.tmpname()
    assert.is_true(core.path_writable_as(f))
    assert.is_true(core.path_writable_as(f, "root"))
    local ok, err = core.path_writable_as("/nonexistent-leftovers/x.svg")
    assert.is_nil(ok)
    assert.matches("No such file or directory", err)
    if as_root() then
      os.execute("chmod 600 " .. f)
      ok, err = core.path_writable_as(f, "nobody")
      assert.is_nil(ok)
      assert.matches("not writable as user 'nobody'", err)
    end
    os.remove(f)
    assert.has_error(function() core.path_writable_as() end)
  end)
end)

describe("the config sandbox bounds memory too (review 9: 3.7 GB from a 57-octet file)", function()

  for _, c in ipairs {
    { "doubling a string 31 times", "local s = 'x' for i = 1, 31 do s = s .. s end return {}", "needs more than 67108864 octets of memory" },
    { "('x'):rep(2^30)", "return { is_reflector = true, local_addr = ('x'):rep(2^30) }", "attempt to index a string value" },
    { "a table of 10^8 entries", "local t = {} for i = 1, 1e8 do t[i] = i end return {}", "runs too long" },
  } do
    it(c[1] .. ": one line naming the file, exit 2", function()
      local f = h.tmpfile(c[2])
      local code, o, err = stamp_cmd("--config " .. f)
      os.remove(f)
      assert.equal(2, code)
      assert.equal("", o)
      assert.equal(1, select(2, err:gsub("\n", "")), err)
      assert.truthy(err:find(f, 1, true), err)
      assert.truthy(err:find(c[3], 1, true), err)
    end)
  end

  it("--config /dev/zero: refused as larger than 1 MiB (it was read without end)", function()
    local code, _, err = stamp_cmd("--config /dev/zero")
    assert.equal(2, code)
    assert.matches("invalid value for %-%-config: '/dev/zero' %(the config file is larger than 1048576 octets%)", err)
  end)

  it("core.config_eval: its own state, empty environment, memory and instruction bounds, data copied", function()
    local t = assert(core.config_eval("return { a = 1, b = 'x', c = true, d = { 'p', 'q' }, e = 1.5 }", "=t",
      1048576, 1000))
    assert.same({ a = 1, b = "x", c = true, d = { "p", "q" }, e = 1.5 }, t)
    local function fails(text, pattern, mem, ins)
      local ok, err = core.config_eval(text, "=t", mem or 1048576, ins or 100000)
      assert.is_nil(ok)
      assert.matches(pattern, err)
    end
    fails("local s = 'x' for i = 1, 30 do s = s .. s end return {}", "needs more than 1048576 octets")
    fails("while true do end", "runs too long")
    assert.same({}, core.config_eval("return { os = os, s = string, r = require, l = load, g = _G }", "=t",
      1048576, 1000))                                       -- nothing reachable
    fails("return { n = ('x'):len() }", "attempt to index a string value") -- no string methods
    fails("return { f = function() end }", "a function")
    fails("return 7", "must return a table")
    fails("\27Lua", "binary chunks")
    fails("return {", "^t:1: ")
  end)
end)
