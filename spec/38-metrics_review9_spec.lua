-- Review 9 (operations), metrics findings 25, 26, 30, 31, 32: a metrics server
-- outliving its engine, --metrics-addr alone, the sender's send errors, every
-- drop reason on the reflector's -R line, the processing histogram with --workers.
local h = require "spec.helper"
local socket = require "socket"
local http = require "socket.http"

local tcp_port = h.tcp_port

local function scrape(port)
  local body, code = http.request("http://127.0.0.1:" .. port .. "/metrics")
  return body, code
end

local function sample(text, name)
  for line in (text or ""):gmatch("[^\n]+") do
    local n, v = line:match("^(%S+) (%S+)$")
    if n == name then return tonumber(v) end
  end
end

local function promtool_check(text)
  if os.execute("command -v promtool >/dev/null 2>&1") ~= true then return end
  local f = os.tmpname()
  local fh = io.open(f, "wb")
  fh:write(text)
  fh:close()
  local code, out, err = h.run("promtool check metrics < " .. f)
  os.remove(f)
  assert.equal(0, code, out .. err)
end

-- run a Lua script in a child interpreter (a crash must not take busted down)
local function lua_child(src)
  local f = os.tmpname()
  local fh = io.open(f, "wb")
  fh:write('package.path = "' .. h.ROOT .. '/lua/?.lua;' .. h.ROOT .. '/lua/?/init.lua;" .. package.path\n')
  fh:write('package.cpath = "' .. h.ROOT .. '/build/?.so;" .. package.cpath\n')
  fh:write(src)
  fh:close()
  local code, out, err = h.run("lua5.4 " .. f)
  os.remove(f)
  return code, out, err
end

local SCRAPE = [[
local http = require "socket.http"
local function scrape(port)
  local body, code = http.request("http://127.0.0.1:" .. port .. "/metrics")
  return body, code
end
local function sample(text, name)
  for line in (text or ""):gmatch("[^\n]+") do
    local n, v = line:match("^(%S+) (%S+)$")
    if n == name then return tonumber(v) end
  end
end
]]

describe("review 9 #25: metrics attached to a closed engine", function()
  it("a reflector closed (then collected) under a serving metrics object: scrapes answer zeros, no crash", function()
    local code, out, err = lua_child(SCRAPE .. [[
local stamp, core = require "stamp", require "stamp.core"
local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0 })
local m = core.metrics("reflector"):attach(r)
local port = assert(m:serve("127.0.0.1:0"))
local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = select(2, r:local_addr()), count = 3,
  send_delay = 1, timeout = 0.5 })
s:run { pump = function() m:reflector_step(r, 0) end }
local b1, c1 = scrape(port)
r:close()
local b2, c2 = scrape(port)
r = nil
collectgarbage() collectgarbage()
local b3, c3 = scrape(port)
print(c1, sample(b1, "stamp_reflector_packets_received_total"), c2, sample(b2, "stamp_reflector_packets_received_total"),
  c3, sample(b3, "stamp_reflector_packets_received_total"))
m:close()
s:close()
]])
    assert.equal(0, code, out .. err)
    assert.equal("200\t3\t200\t0\t200\t0", out:match("[^\n]+"), out .. err)
  end)

  it("a sender closed under a serving metrics object: scrapes still answer", function()
    local code, out, err = lua_child(SCRAPE .. [[
local stamp, core = require "stamp", require "stamp.core"
local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = 9, count = 1 })
local m = core.metrics("sender"):attach(s)
local port = assert(m:serve("127.0.0.1:0"))
local _, c1 = scrape(port)
s:close()
s = nil
collectgarbage() collectgarbage()
local b2, c2 = scrape(port)
print(c1, c2, sample(b2, "stamp_sender_packets_sent_total"))
m:close()
]])
    assert.equal(0, code, out .. err)
    assert.equal("200\t200\t0", out:match("[^\n]+"), out .. err)
  end)
end)

describe("review 9 #32: processing histogram with --workers", function()
  it("counts the packets of every worker: _count = packets_received_total", function()
    local mport = tcp_port()
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 --workers 2 --metrics --metrics-addr 127.0.0.1:" .. mport)
    -- eight senders, each from its own port: SO_REUSEPORT spreads them over both sockets
    for _ = 1, 8 do
      local code, sout = h.run(string.format("%s -r 127.0.0.1 -p %d -o 0 -c 10 -d 1 -L 1", h.STAMP, port))
      assert.equal(0, code, sout)
    end
    local body, status = scrape(mport)
    h.stop(pid)
    assert.equal(200, status, h.slurp(out))
    assert.equal(80, sample(body, "stamp_reflector_packets_received_total"), body)
    assert.equal(80, sample(body, "stamp_reflector_processing_seconds_count"), body)
    assert.equal(80, sample(body, 'stamp_reflector_processing_seconds_bucket{le="+Inf"}'), body)
    assert.truthy(sample(body, "stamp_reflector_processing_seconds_sum") > 0)
    promtool_check(body)
  end)
end)

describe("review 9 #30: sender send errors in the metrics", function()
  it("stamp_sender_send_errors_total counts packets that never left the host", function()
    local mport = tcp_port()
    -- an IPv6 socket aimed at an IPv4 address: every sendmsg fails
    local spid, sout = h.spawn(string.format("%s -r 127.0.0.1 -p %d -S ::1 -c 0 -d 20 --metrics --metrics-addr 127.0.0.1:%d",
      h.STAMP, h.free_port(), mport))
    local body
    for _ = 1, 100 do
      h.sleep(0.05)
      body = scrape(mport)
      if (sample(body, "stamp_sender_send_errors_total") or 0) >= 5 then break end
    end
    h.stop(spid)
    assert.truthy((sample(body, "stamp_sender_send_errors_total") or 0) >= 5, tostring(body) .. h.slurp(sout))
    assert.equal(sample(body, "stamp_sender_packets_sent_total"), sample(body, "stamp_sender_send_errors_total"))
    assert.truthy(body:find("# TYPE stamp_sender_send_errors_total counter", 1, true))
    promtool_check(body)
  end)
end)

describe("review 9 #26: --metrics-addr without --metrics", function()
  it("implies --metrics (the endpoint is served)", function()
    local mport = tcp_port()
    local pid, out = h.cli_reflector("--local-addr 127.0.0.1 --metrics-addr 127.0.0.1:" .. mport)
    local body, status = scrape(mport)
    h.stop(pid)
    assert.equal(200, status, h.slurp(out))
    assert.equal(0, sample(body, "stamp_reflector_packets_received_total"), body)
  end)

  it("also as --metrics-addr=ADDR", function()
    local mport = tcp_port()
    local pid, out = h.cli_reflector("--local-addr 127.0.0.1 --metrics-addr=127.0.0.1:" .. mport)
    local _, status = scrape(mport)
    h.stop(pid)
    assert.equal(200, status, h.slurp(out))
  end)
end)

describe("review 9 #26: metrics_addr in --config", function()
  it("implies metrics too", function()
    local mport = tcp_port()
    local cfg = os.tmpname()
    local fh = io.open(cfg, "wb")
    fh:write(string.format('return { metrics_addr = "127.0.0.1:%d" }\n', mport))
    fh:close()
    local pid, out = h.cli_reflector("--local-addr 127.0.0.1 --config " .. cfg)
    local _, status = scrape(mport)
    h.stop(pid)
    os.remove(cfg)
    assert.equal(200, status, h.slurp(out))
  end)
end)

describe("review 9 #31: the reflector's -R line", function()
  it("shows every non-zero drop reason, so rx = reflected + drops", function()
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 -R")
    -- five packets asking for no reply (Return Path TLV), one datagram too large
    local code, sout = h.run(string.format("%s -r 127.0.0.1 -p %d -o 0 -c 5 -d 1 -L 0.3 --no-reply", h.STAMP, port))
    assert.truthy(code, sout)
    local u = socket.udp()
    u:setpeername("127.0.0.1", port)
    u:send(string.rep("\0", 50000))
    u:close()
    assert.truthy(h.wait_for(out, "rx=6 ", 5), h.slurp(out))
    h.sleep(0.3)
    h.stop(pid)
    local last
    for line in h.slurp(out):gmatch("[^\n]+") do
      if line:match("^rx=6 ") then last = line end
    end
    assert.truthy(last, h.slurp(out))
    assert.truthy(last:find(" no_reply=5", 1, true), last)
    assert.truthy(last:find(" drop_truncated=1", 1, true), last)
    local rx, refl = last:match("^rx=(%d+) reflected=(%d+)")
    local drops = 0
    for k, v in last:gmatch(" (%S+)=(%d+)") do
      if k:match("^drop_") or k == "no_reply" then drops = drops + tonumber(v) end
    end
    assert.equal(tonumber(rx), tonumber(refl) + drops, last)
  end)

  it("shows the Type 12 extra replies sent, once they have left (review 911b, 8)", function()
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 -R --reflected-control-max-count 5")
    local code, sout = h.run(string.format("%s -r 127.0.0.1 -p %d -o 0 -c 2 -d 50 -L 0.3 --reflected-count 4 "
      .. "--reflected-interval-ns 2000000", h.STAMP, port))
    assert.equal(0, code, sout)
    local ok = h.wait_for(out, " extra_replies=6", 5)
    h.stop(pid)
    assert.truthy(ok, h.slurp(out))
    os.remove(out)
  end)
end)

describe("review 911 #6: Type 12 in the metrics", function()
  it("the reflector counts the extra replies it sent and those it cancelled", function()
    local mport = tcp_port()
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 --reflected-control-max-count 5 --metrics-addr 127.0.0.1:" .. mport)
    local code, sout = h.run(string.format("%s -r 127.0.0.1 -p %d -o 0 -c 5 -d 20 -L 0.5 --reflected-count 3 "
      .. "--reflected-interval-ns 1000000", h.STAMP, port))
    assert.equal(0, code, sout)
    -- every granted extra reply is sent or counted cancelled (a reflector slowed down 20x, under valgrind,
    -- may see a session's next request before its burst ended: the new request replaces the burst)
    local function done(b)
      return (sample(b, "stamp_reflector_extra_replies_total") or 0) + (sample(b, "stamp_reflector_extra_cancelled_total") or 0)
    end
    local body, status
    for _ = 1, 200 do -- the last burst may still be leaving
      body, status = scrape(mport)
      if done(body) >= 10 then break end
      h.sleep(0.05)
    end
    h.stop(pid)
    assert.equal(200, status, h.slurp(out))
    os.remove(out)
    assert.equal(5, sample(body, "stamp_reflector_packets_reflected_total"), body)
    assert.equal(10, done(body), body)
    assert.truthy(sample(body, "stamp_reflector_extra_replies_total") >= 2, body)
    promtool_check(body)
  end)

  it("the sender counts extra replies received, missing, and replies whose Type 12 came back U", function()
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 --reflected-control-max-count 5")
    local upid, uout, uport = h.cli_reflector("--local-addr 127.0.0.1") -- type 12 off: U
    local function run(p)
      local mport = tcp_port()
      local spid, sout = h.spawn(string.format("%s -r 127.0.0.1 -p %d -c 0 -d 20 --reflected-count 3 "
        .. "--reflected-interval-ns 1000000 --metrics-addr 127.0.0.1:%d", h.STAMP, p, mport))
      local body
      for _ = 1, 100 do
        h.sleep(0.05)
        body = scrape(mport)
        if (sample(body, "stamp_sender_packets_received_total") or 0) >= 5 then break end
      end
      h.stop(spid)
      os.remove(sout)
      promtool_check(body)
      return body
    end
    local b1, b2 = run(port), run(uport)
    h.stop(pid)
    h.stop(upid)
    os.remove(out)
    os.remove(uout)
    assert.truthy(sample(b1, "stamp_sender_extra_replies_total") >= 8, b1) -- 2 per reply, the last burst may be on its way
    assert.equal(0, sample(b1, "stamp_sender_extra_unsupported_total"), b1)
    assert.truthy(sample(b1, "stamp_sender_extra_missing_total"), b1)
    assert.equal(0, sample(b2, "stamp_sender_extra_replies_total"), b2)
    assert.truthy(sample(b2, "stamp_sender_extra_unsupported_total") >= 5, b2)
    assert.equal(0, sample(b1, "stamp_sender_packets_no_reply_total"), b1)
  end)

  it("the sender counts packets that asked for no reply apart from lost ones (review 911b, 5)", function()
    local mport = tcp_port()
    local spid, sout = h.spawn(string.format("%s -r 127.0.0.1 -p %d -c 0 -d 20 -L 0.1 --no-reply --metrics-addr 127.0.0.1:%d",
      h.STAMP, h.free_port(), mport))
    local body
    for _ = 1, 100 do
      h.sleep(0.05)
      body = scrape(mport)
      if (sample(body, "stamp_sender_packets_no_reply_total") or 0) >= 5 then break end
    end
    h.stop(spid)
    os.remove(sout)
    assert.truthy((sample(body, "stamp_sender_packets_no_reply_total") or 0) >= 5, body)
    assert.equal(0, sample(body, "stamp_sender_packets_lost_total"), body)
  end)
end)
