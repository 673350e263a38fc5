-- Replies the kernel drops at the sender's own socket (its receive queue full) are not a silent part
-- of "lost": the sender reads the socket's drop count (SO_MEMINFO) and reports it (`rx_overflow`,
-- counters, summary, text and JSON of the command).
local h = require "helper"

describe("sender receive-queue overflow", function()
  it("counts the replies the kernel dropped at its socket, and they are exactly the lost ones", function()
    -- the smallest receive buffer the kernel allows (a couple of datagrams); the reflector answers a
    -- whole batch at once while the sender does not read: the kernel drops the rest at our socket
    local r, s = h.loopback_pair({}, { count = 200, send_delay = 0.01, timeout = 2, rcvbuf = 1 })
    local results = s:run { pump = function() r:step(0) end }
    local c = s:counters()
    s:close()
    local rc = r:counters()
    r:close()
    assert.equal(200, rc.reflected) -- every test packet was answered
    local lost = 0
    for _, res in ipairs(results) do if res.lost then lost = lost + 1 end end
    assert.is_true(c.rx_overflow > 0, "overflow " .. c.rx_overflow .. ", lost " .. lost)
    assert.equal(lost, c.rx_overflow) -- loopback loses nothing else
    assert.equal(200 - c.received, c.rx_overflow)
  end)

  it("the command says so, in text and JSON; no line when nothing overflowed", function()
    local port = h.free_port()
    local refl, log = h.spawn(h.STAMP .. " -i --local-addr 127.0.0.1 --local-port " .. port)
    assert.is_true(h.wait_for(log, "listening"), h.slurp(log))
    local code, out = h.run(h.STAMP .. " -r 127.0.0.1 -p " .. port .. " -c 20 -d 1 -L 1")
    assert.equal(0, code, out)
    assert.falsy(out:find("receive queue full", 1, true), out)
    code, out = h.run(h.STAMP .. " -r 127.0.0.1 -p " .. port .. " -c 20 -d 1 -L 1 --output-format json")
    assert.equal(0, code, out)
    local doc = assert(require("stamp.report").json_decode(out))
    assert.equal(0, doc.summary.rx_overflow, out)
    h.stop(refl)
    os.remove(log)
  end)
end)

describe("reflector receive-queue overflow", function()
  it("counts the test packets the kernel dropped at its socket (drop_kernel)", function()
    local stamp = require "stamp"
    local socket = require "socket"
    local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0, rcvbuf = 1 })
    local host, port = r:local_addr()
    local u = socket.udp()
    local pkt = string.rep("\0", 44)
    for _ = 1, 200 do assert(u:sendto(pkt, host, port)) end -- the reflector is not reading
    for _ = 1, 20 do r:step(0) end
    local c = r:counters()
    u:close()
    r:close()
    assert.is_true(c.drop_kernel > 0, "drop_kernel " .. c.drop_kernel)
    assert.equal(200, c.rx + c.drop_kernel) -- loopback loses nothing else
    -- the I/O-free machine has no socket: always 0, never garbage
    local m = assert(stamp.core.reflector_machine {})
    assert.equal(0, m:counters().drop_kernel)
  end)
end)
