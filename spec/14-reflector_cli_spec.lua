-- The reflector command's abuse-resistance and replay flags, over loopback.
local h = require "helper"
local socket = require "socket"
local codec = require "stamp.codec"
local core = require "stamp.core"

local KEYHEX = string.rep("5a", 32)
local KEY = h.hex(KEYHEX)

local function finish(pid, out)
  h.stop(pid)
  local s = h.slurp(out)
  os.remove(out)
  return s
end

local function udp_from(addr)
  local u = socket.udp()
  assert(u:setsockname(addr, 0))
  u:settimeout(0)
  return u
end

local function drain(u, n)
  for _ = 1, 1000 do
    if not u:receive() then break end
    n = n + 1
  end
  return n
end

describe("stamp reflector command", function()
  it("--max-pps holds a flood from one source (within 10 %) while a second source loses nothing", function()
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 --max-pps 100 --reflector-rate-burst 20")
    local flood, calm = udp_from("127.0.0.1"), udp_from("127.0.0.2")
    local req = codec.encode_test { seq = 1 }
    local nflood, nrep, ncalm_sent, ncalm = 0, 0, 0, 0
    local t0 = core.mono()
    local tlast = t0
    -- about 1,000 packets/s for 2 s from one source, 20/s from the other
    for tick = 0, 199 do
      for _ = 1, 10 do
        assert(flood:sendto(req, "127.0.0.1", port))
        nflood = nflood + 1
      end
      tlast = core.mono()
      if tick % 5 == 0 then
        assert(calm:sendto(req, "127.0.0.1", port))
        ncalm_sent = ncalm_sent + 1
      end
      socket.sleep(0.01)
      nrep = drain(flood, nrep)
      ncalm = drain(calm, ncalm)
    end
    socket.sleep(0.3)
    nrep = drain(flood, nrep)
    ncalm = drain(calm, ncalm)
    local s = finish(pid, out)
    local secs = (tlast - t0) / 1e9
    local want = 100 * secs + 20
    assert.is_true(nrep >= 0.9 * want and nrep <= 1.1 * want, string.format("%d replies, %.0f expected", nrep, want))
    assert.equal(ncalm_sent, ncalm)
    local dropped = tonumber(s:match("Dropped %(over %-%-max%-pps%): (%d+)"))
    assert.equal(nflood - nrep, dropped)
  end)

  it("counts a replayed authenticated packet; with --drop-replayed it is not answered", function()
    for _, drop in ipairs { false, true } do
      local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 -A A --hmac-key " .. KEYHEX
        .. (drop and " --drop-replayed" or ""))
      local u = udp_from("127.0.0.1")
      local req = codec.encode_test({ seq = 9, ssid = 3, timestamp = core.now() }, "auth", KEY)
      local n = 0
      for _ = 1, 2 do
        assert(u:sendto(req, "127.0.0.1", port))
        for _ = 1, 50 do
          socket.sleep(0.01)
          local before = n
          n = drain(u, n)
          if n > before then break end
        end
      end
      local s = finish(pid, out)
      assert.equal(drop and 1 or 2, n)
      assert.matches("Replays seen %(authenticated mode%): 1\n", s)
      assert.matches("Dropped %(replayed%): " .. (drop and 1 or 0) .. "\n", s)
      u:close()
    end
  end)

  it("--max-sessions evicts the session idle longest", function()
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 --stateful-reflector --max-sessions 2")
    local req = codec.encode_test { seq = 1 }
    for _ = 1, 3 do
      local u = udp_from("127.0.0.1")
      assert(u:sendto(req, "127.0.0.1", port))
      socket.sleep(0.05)
      u:close()
    end
    local s = finish(pid, out)
    assert.matches("Sessions evicted %(%-%-max%-sessions%): 1\n", s)
    assert.matches("Sessions active: 2\n", s)
  end)

  it("refuses bad values naming the flag", function()
    for _, f in ipairs { "--max-pps -1", "--max-pps x", "--reflector-rate-burst 1.5", "--max-sessions 0" } do
      local code, o, e = h.run(h.STAMP .. " -i --local-addr 127.0.0.1 --local-port 0 " .. f)
      assert.equal(2, code, f)
      local flag = f:match("^(%-%-[%w-]+)"):gsub("%-", "%%-")
      assert.matches(flag, (o or "") .. (e or ""))
    end
  end)
end)

describe("stamp reflector command --workers", function()
  it("answers on N SO_REUSEPORT sockets and sums their counters", function()
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 --workers 3 --stateful-reflector")
    local req = codec.encode_test { seq = 1 }
    local got = 0
    for _ = 1, 20 do
      local u = udp_from("127.0.0.1")
      for _ = 1, 5 do assert(u:sendto(req, "127.0.0.1", port)) end
      local n = 0
      for _ = 1, 100 do
        n = drain(u, n)
        if n >= 5 then break end
        socket.sleep(0.01)
      end
      got = got + n
      u:close()
    end
    local s = finish(pid, out)
    assert.equal(100, got)
    assert.matches("Packets received: 100\n", s)
    assert.matches("Packets reflected: 100\n", s)
    assert.matches("Sessions created: 20\n", s)
  end)
end)
