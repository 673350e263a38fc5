-- Prometheus metrics: the command (--metrics, --metrics-addr) for both roles,
-- the Lua API (one renderer), promtool, a hostile scraper, Prometheus itself.
local h = require "spec.helper"
local socket = require "socket"
local http = require "socket.http"

local tcp_port = h.tcp_port

local function scrape(port, path)
  local body, code = http.request("http://127.0.0.1:" .. port .. (path or "/metrics"))
  return body, code
end

-- value of one sample line ("name" or "name{labels}")
local function sample(text, name)
  for line in text:gmatch("[^\n]+") do
    local n, v = line:match("^(%S+) (%S+)$")
    if n == name then return tonumber(v) end
  end
end

local function have(cmd)
  return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true
end

local function promtool_ok(text)
  local f = os.tmpname()
  local fh = io.open(f, "wb")
  fh:write(text)
  fh:close()
  local code, out, err = h.run("promtool check metrics < " .. f)
  os.remove(f)
  return code == 0, out .. err
end

describe("metrics: the command", function()
  it("a reflector with --metrics counts 20 packets, promtool accepts the text", function()
    local mport = tcp_port()
    local pid, out, port = h.cli_reflector("--local-addr 127.0.0.1 --metrics --metrics-addr 127.0.0.1:" .. mport)
    local code, sout = h.run(string.format("%s -r 127.0.0.1 -p %d -o 0 -c 20 -d 2", h.STAMP, port))
    assert.equal(0, code, sout)
    local body, status = scrape(mport)
    h.stop(pid)
    assert.equal(200, status)
    assert.equal(20, sample(body, "stamp_reflector_packets_received_total"), body)
    assert.equal(20, sample(body, "stamp_reflector_packets_reflected_total"))
    assert.equal(0, sample(body, 'stamp_reflector_packets_dropped_total{reason="hmac"}'))
    assert.equal(0, sample(body, "stamp_reflector_active_sessions"))
    assert.equal(20, sample(body, "stamp_reflector_processing_seconds_count"))
    assert.equal(20, sample(body, 'stamp_reflector_processing_seconds_bucket{le="+Inf"}'))
    assert.truthy(body:find("# TYPE stamp_reflector_processing_seconds histogram", 1, true))
    assert.truthy(h.slurp(out):find("metrics at http://127.0.0.1:" .. mport .. "/metrics", 1, true))
    if have("promtool") then
      local ok, msg = promtool_ok(body)
      assert.is_true(ok, msg)
    end
  end)

  it("counts HMAC failures and TLV errors by reason and flag", function()
    local mport = tcp_port()
    local pid, _, port = h.cli_reflector("--local-addr 127.0.0.1 -A A --hmac-key 00112233445566778899aabbccddeeff" ..
      " --metrics --metrics-addr 127.0.0.1:" .. mport)
    h.run(string.format("%s -r 127.0.0.1 -p %d -o 0 -c 3 -d 2 -L 0.2 -A A --hmac-key ffeeddccbbaa99887766554433221100",
      h.STAMP, port))
    local body = scrape(mport)
    h.stop(pid)
    assert.equal(3, sample(body, 'stamp_reflector_packets_dropped_total{reason="hmac"}'), body)
    assert.equal(3, sample(body, "stamp_reflector_hmac_failures_total"))
    assert.equal(0, sample(body, "stamp_reflector_packets_reflected_total"))
  end)

  it("counts rate-limit drops by reason, with received = reflected + dropped", function()
    local mport = tcp_port()
    local pid, _, port = h.cli_reflector("--local-addr 127.0.0.1 --max-pps 10 --reflector-rate-burst 1" ..
      " --metrics --metrics-addr 127.0.0.1:" .. mport)
    h.run(string.format("%s -r 127.0.0.1 -p %d -o 0 -c 20 -d 1 -L 0.3", h.STAMP, port))
    local body = scrape(mport)
    h.stop(pid)
    local rx = sample(body, "stamp_reflector_packets_received_total")
    local refl = sample(body, "stamp_reflector_packets_reflected_total")
    local rate = sample(body, 'stamp_reflector_packets_dropped_total{reason="rate_limit"}')
    assert.equal(20, rx, body)
    assert.truthy(rate and rate >= 17, body)
    assert.equal(rx, refl + rate)
    assert.equal(0, sample(body, 'stamp_reflector_packets_dropped_total{reason="replayed"}'))
    assert.equal(0, sample(body, "stamp_reflector_sessions_evicted_total"))
    if have("promtool") then
      local ok, msg = promtool_ok(body)
      assert.is_true(ok, msg)
    end
  end)

  it("a sender with --metrics serves sent, received and RTT while it runs", function()
    local mport = tcp_port()
    local rpid, _, port = h.cli_reflector()
    local spid, sout = h.spawn(string.format("%s -r 127.0.0.1 -p %d -o 0 -c 0 -d 5 --metrics --metrics-addr 127.0.0.1:%d",
      h.STAMP, port, mport))
    local body
    for _ = 1, 100 do
      h.sleep(0.05)
      body = scrape(mport)
      if body and (sample(body, "stamp_sender_packets_received_total") or 0) >= 10 then break end
    end
    h.stop(spid)
    h.stop(rpid)
    assert.truthy(body, h.slurp(sout))
    assert.truthy(sample(body, "stamp_sender_packets_sent_total") >= 10, body)
    assert.truthy(sample(body, "stamp_sender_packets_received_total") >= 10)
    assert.equal(0, sample(body, "stamp_sender_packets_lost_total"))
    assert.truthy(sample(body, "stamp_sender_rtt_seconds_count") >= 10)
    assert.truthy(body:find('stamp_build_info{version="', 1, true))
    if have("promtool") then
      local ok, msg = promtool_ok(body)
      assert.is_true(ok, msg)
    end
  end)

  it("answers every packet while a scraper holds connections open and sends nothing", function()
    local mport = tcp_port()
    local pid, _, port = h.cli_reflector("--local-addr 127.0.0.1 --metrics --metrics-addr 127.0.0.1:" .. mport)
    local idle = {}
    for i = 1, 4 do
      idle[i] = socket.tcp()
      idle[i]:settimeout(1)
      assert(idle[i]:connect("127.0.0.1", mport))
      idle[i]:send("GET /metr") -- and never finish the request
    end
    local code, sout = h.run(string.format("%s -r 127.0.0.1 -p %d -o 0 -c 200 -d 1", h.STAMP, port))
    local body = scrape(mport) -- another scraper is still served meanwhile
    for _, c in ipairs(idle) do c:close() end
    h.stop(pid)
    assert.truthy(body, "no answer to a scrape while idle connections are open")
    assert.equal(0, code)
    assert.truthy(sout:find("Packets received: 200", 1, true), sout)
    assert.equal(200, sample(body, "stamp_reflector_packets_reflected_total"))
  end)

  it("answers 404 elsewhere than /metrics", function()
    local mport = tcp_port()
    local pid = h.cli_reflector("--local-addr 127.0.0.1 --metrics --metrics-addr 127.0.0.1:" .. mport)
    local _, status = scrape(mport, "/nothing")
    h.stop(pid)
    assert.equal(404, status)
  end)

  it("a port already taken is one line and exit 1", function()
    local mport = tcp_port()
    local t = socket.tcp()
    assert(t:bind("127.0.0.1", mport))
    t:listen(1)
    local code, out, err = h.run(string.format("%s -i --local-addr 127.0.0.1 --local-port %d --metrics --metrics-addr 127.0.0.1:%d",
      h.STAMP, h.free_port(), mport))
    t:close()
    assert.equal(1, code, out)
    assert.equal(1, select(2, err:gsub("\n", "")), err)
    assert.truthy(err:find("cannot serve metrics on 127.0.0.1:" .. mport, 1, true), err)
  end)

  h.bad_flag_cases(it, {
    { "-i --metrics --metrics-addr localhost", "--metrics-addr" },
    { "-i --metrics --metrics-addr 127.0.0.1:99999", "--metrics-addr" },
    { "-i --metrics --metrics-addr ::1:9090", "--metrics-addr" },
  })
end)

describe("metrics: the Lua API", function()
  local stamp = require "stamp"
  local core = require("stamp.ops").core

  it("renders the counters of an in-process reflector and sender, the same text as the command", function()
    local r, s = h.loopback_pair({}, { count = 10 })
    local mr = core.metrics("reflector"):attach(r)
    local ms = core.metrics("sender"):attach(s)
    local results = s:run { pump = function() mr:reflector_step(r, 0) end, on_result = function(x) ms:observe(x) end }
    assert.equal(10, #results)
    local rt, st = mr:render(), ms:render()
    assert.equal(10, sample(rt, "stamp_reflector_packets_reflected_total"), rt)
    assert.equal(10, sample(rt, "stamp_reflector_processing_seconds_count"))
    assert.equal(10, sample(st, "stamp_sender_packets_sent_total"), st)
    assert.equal(10, sample(st, "stamp_sender_rtt_seconds_count"))
    assert.matches("^stamp.metrics %(reflector%)$", tostring(mr))
    mr:close()
    ms:close()
    assert.matches("closed", tostring(mr))
    assert.has_error(function() mr:render() end)
    r:close()
    s:close()
  end)

  it("one-way delay histograms only when both clocks say they are synchronized", function()
    local m = core.metrics("sender")
    m:observe { rtt = 1000000, fwd = 400000, bwd = 600000, sender_ee = { s = 1 }, refl_ee = { s = 0 } }
    m:observe { rtt = 1000000, fwd = 400000, bwd = 600000, sender_ee = { s = 1 }, refl_ee = { s = 1 } }
    m:observe { lost = true, t1 = 0 }
    local t = m:render()
    assert.equal(2, sample(t, "stamp_sender_rtt_seconds_count"))
    assert.equal(1, sample(t, "stamp_sender_forward_delay_seconds_count"))
    assert.equal(1, sample(t, 'stamp_sender_forward_delay_seconds_bucket{le="0.0005"}'))
    assert.equal(0, sample(t, 'stamp_sender_backward_delay_seconds_bucket{le="0.0005"}'))
    assert.equal(0.0006, sample(t, "stamp_sender_backward_delay_seconds_sum"))
    m:close()
  end)

  it("serves on an ephemeral port and refuses a bad address with nil, message", function()
    local r = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0 })
    local m = core.metrics("reflector"):attach(r)
    local port = assert(m:serve("127.0.0.1:0"))
    assert.truthy(port > 0)
    local body = scrape(port)
    assert.equal(0, sample(body, "stamp_reflector_packets_received_total"))
    local m2 = core.metrics("reflector")
    local ok, err = m2:serve("no-such-address:1")
    assert.is_nil(ok)
    assert.is_string(err)
    assert.has_error(function() core.metrics("bogus") end)
    m:close()
    m2:close()
    r:close()
  end)
end)

describe("metrics: Prometheus scrapes the reflector", function()
  it("reads stamp_reflector_packets_reflected_total = 20 through Prometheus's HTTP API", function()
    if not have("prometheus") then
      pending("prometheus is not installed (apt-get install prometheus)")
      return
    end
    local code, out, err = h.run("bash " .. h.ROOT .. "/.ci/prometheus-check.sh")
    assert.equal(0, code, out .. err)
    assert.truthy(out:find("stamp_reflector_packets_reflected_total = 20", 1, true), out)
  end)
end)
