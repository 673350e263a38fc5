-- resty.stamp in Debian's nginx, with examples/openresty/nginx.conf as installed by
-- `cmake --install`, against our reflector on loopback: GET /stamp answers with the JSON record
-- of `stamp --output-format json`, measurements never hold up the worker, and measure() returns
-- what `stamp.sender:run` returns.
local h = require "helper"
local ngxh = require "nginx_helper"
local report = require "stamp.report"

-- Sorted keys of t, leaving out `without` (a set).
local function keys(t, without)
  local k = {}
  for name in pairs(t) do if not (without and without[name]) then k[#k + 1] = name end end
  table.sort(k)
  return k
end

-- What a cosocket cannot know about a reply (no control messages): absent, as the core leaves
-- out what it does not know.
local NO_CMSG = { reply_ttl = true, reply_tos = true }

describe("resty.stamp in nginx", function()
  local n, install, rpid, rout, rport, apid, aout, aport, vpid, vout, vport
  local KEY = string.rep("3c", 32)

  setup(function()
    install = ngxh.install()
    rpid, rout, rport = h.cli_reflector()
    apid, aout, aport = h.cli_reflector("--local-addr 127.0.0.1 -A A --hmac-key " .. KEY)
    vpid, vout, vport = h.cli_reflector("--local-addr ::1")
    local http_port = ngxh.free_tcp_port()
    n = ngxh.start(ngxh.example_conf(http_port, h.free_port(), install, [[
    location = /shape {
      content_by_lua_block {
        local rs = require "resty.stamp"
        local results, summary = rs.measure { host = "127.0.0.1", port = tonumber(ngx.var.arg_port), count = 5,
          interval = 0.005, timeout = 1 }
        if not results then ngx.say(rs.json_error(summary)) return end
        local function keys(t)
          local k = {}
          for name in pairs(t) do if name ~= "packet" then k[#k + 1] = name end end
          table.sort(k)
          return k
        end
        local r = results[1]
        ngx.say(require("stamp.report").json { result_keys = keys(r), summary_keys = keys(summary),
          rtt_keys = keys(summary.rtt), received = summary.received, kernel_rx = r.kernel_rx })
      }
    }
    location = /dscp {
      content_by_lua_block {
        local rs, tlv = require "resty.stamp", require "stamp.tlv"
        local port = tonumber(ngx.var.arg_port)
        local out = {}
        for i, o in ipairs { { dscp = 46 }, { dscp = 46, ecn = 1 }, {} } do
          o.host, o.port, o.count, o.interval, o.timeout = "127.0.0.1", port, 3, 0.005, 1
          o.tlvs = { tlv.cos { dscp = 10 } }
          local results, summary = rs.measure(o)
          if not results then ngx.say(rs.json_error(summary)) return end
          local seen = {}
          for _, r in ipairs(results) do seen[#seen + 1] = r.tlvs and r.tlvs.cos and r.tlvs.cos.dscp2 or -1 end
          out[i] = { received = summary.received, dscp2 = seen }
        end
        ngx.say(require("stamp.report").json(out))
      }
    }
    location = /auth {
      content_by_lua_block {
        local rs, tlv = require "resty.stamp", require "stamp.tlv"
        local results, summary = rs.measure { host = "127.0.0.1", port = tonumber(ngx.var.arg_port), count = 4,
          interval = 0.005, timeout = 1, auth = true, hmac_key = ngx.var.arg_key, ssid = 4242, packet_len = 200,
          tlvs = { tlv.timestamp_info() } }
        if not results then ngx.say(rs.json_error(summary)) return end
        local r = results[1]
        ngx.say(require("stamp.report").json { received = summary.received, ssid = r.ssid, length = r.length,
          tsinfo = r.tlvs and r.tlvs.timestamp_info ~= nil, drop_hmac = summary.drop_hmac })
      }
    }
    location = /stopkeep {
      content_by_lua_block {
        local rs = require "resty.stamp"
        local seen = 0
        local results, summary = rs.measure { host = "127.0.0.1", port = tonumber(ngx.var.arg_port), count = 1000,
          interval = 0.002, timeout = 1, keep = false,
          on_result = function() seen = seen + 1 end,
          stop = function() return seen >= 20 end }
        if not results then ngx.say(rs.json_error(summary)) return end
        ngx.say(require("stamp.report").json { kept = #results, seen = seen, sent = summary.sent,
          received = summary.received, interrupted = summary.interrupted })
      }
    }
    location = /ttl {
      content_by_lua_block {
        local rs, tlv = require "resty.stamp", require "stamp.tlv"
        local out = {}
        for i, o in ipairs { {}, { ttl = 7 }, { host = "::1", port = tonumber(ngx.var.arg_v6port) },
          { host = "::1", port = tonumber(ngx.var.arg_v6port), ttl = 9, dscp = 46, tlvs = { tlv.cos { dscp = 10 } } } } do
          o.host, o.port = o.host or "127.0.0.1", o.port or tonumber(ngx.var.arg_port)
          o.count, o.interval, o.timeout = 3, 0.005, 1
          local results, summary = rs.measure(o)
          if not results then ngx.say(rs.json_error(summary)) return end
          local ttls, dscp = {}, {}
          for _, r in ipairs(results) do
            ttls[#ttls + 1] = r.ttl or -1
            dscp[#dscp + 1] = r.tlvs and r.tlvs.cos and r.tlvs.cos.dscp2 or -1
          end
          out[i] = { received = summary.received, ttl = ttls, dscp2 = dscp }
        end
        ngx.say(require("stamp.report").json(out))
      }
    }
    # 10,000 synthetic results (the example's largest count) through write_json: the worker must keep answering meanwhile
    location = /bigjson {
      default_type application/json;
      content_by_lua_block {
        local rs, stamp = require "resty.stamp", require "stamp"
        local acc, results = stamp.stats.new(), {}
        local t0 = 1795788553184702720
        for i = 1, 10000 do
          local t1 = t0 + i * 1e6
          local r = { seq = i - 1, t1 = t1, t2 = t1 + 2e4, t3 = t1 + 3e4, t4 = t1 + 5e4, rtt = 3e4, fwd = 2e4,
            bwd = 2e4, refl_seq = i - 1, ttl = 255, ssid = 0 }
          acc:add(r)
          results[i] = r
          if i % 1000 == 0 then ngx.sleep(0.001) end -- the setup must not hold up the worker either
        end
        rs.write_json(results, acc:summary())
      }
    }
    location = /badopt {
      content_by_lua_block {
        local rs = require "resty.stamp"
        local _, e1 = pcall(rs.measure, { host = "127.0.0.1", port = 9, color = "red" })
        local _, e2 = pcall(rs.measure, { host = "127.0.0.1", port = 9, interval = -1 })
        local _, e3 = pcall(rs.measure, { host = "localhost", port = 9, dscp = 46 })
        local _, e4 = pcall(rs.measure, { host = "127.0.0.1", port = 9, ttl = 0 })
        local _, e5 = pcall(rs.measure, { host = "localhost", port = 9, ttl = 64 })
        ngx.say(e1, "\n", e2, "\n", e3, "\n", e4, "\n", e5)
      }
    }]]), http_port)
  end)

  teardown(function()
    if n then n.cleanup() end
    if rpid then h.stop(rpid) os.remove(rout) end
    if apid then h.stop(apid) os.remove(aout) end
    if vpid then h.stop(vpid) os.remove(vout) end
    if install then os.execute("rm -rf " .. install) end
  end)

  local function stamp_url(count, interval_ms)
    return string.format("/stamp?host=127.0.0.1&port=%d&count=%d&interval_ms=%d", rport, count, interval_ms)
  end

  it("GET /stamp?count=200&interval_ms=10 returns the JSON record of stamp --output-format json, 200 received", function()
    local status, body = n.get(stamp_url(200, 10), 30)
    assert.equal(200, status, body)
    local rec = assert(report.json_decode(body))
    assert.equal(200, rec.summary.sent)
    assert.equal(200, rec.summary.received)
    assert.equal(0, rec.summary.lost)
    assert.equal(200, #rec.packets)
    assert.truthy(rec.summary.rtt_ms.median > 0)
    -- the same record as the command's, key for key
    local code, out = h.run(h.STAMP .. " -r 127.0.0.1 -p " .. rport .. " -o 0 -c 3 -d 5 --output-format json")
    assert.equal(0, code)
    local cli = assert(report.json_decode(out))
    assert.same(keys(cli), keys(rec))
    assert.same(keys(cli.summary), keys(rec.summary))
    assert.same(keys(cli.packets[1], NO_CMSG), keys(rec.packets[1]))
    -- the schedule, held to nginx's millisecond timers: 90 % of packets within 2 ms of their slot,
    -- and no drift (the last 20 packets' median lateness under 2 ms)
    local late = {}
    for _, p in ipairs(rec.packets) do late[p.seq + 1] = p.t1 end
    for i = 200, 1, -1 do late[i] = late[i] - (late[1] + (i - 1) * 10e6) end
    local within = 0
    for i = 1, 200 do if late[i] <= 2e6 then within = within + 1 end end
    assert.is_true(within >= 180, within .. " of 200 packets within 2 ms of their slot")
    local tail = { table.unpack(late, 181, 200) }
    table.sort(tail)
    assert.is_true(tail[10] < 2e6, string.format("the last packets left %.3f ms late (drift)", tail[10] / 1e6))
  end)

  it("GET /stamp under nginx's LuaJIT: T1..T4 in the JSON are exact to the ns, not doubles (multiples of 256 ns)", function()
    local status, body = n.get(stamp_url(40, 2), 30)
    assert.equal(200, status, body)
    local rec = assert(report.json_decode(body))
    assert.equal(40, rec.summary.received)
    -- near 2^60 ns a double steps by 256 ns: 40 exact clock readings all on that grid has odds 256^-40
    local off_grid = { t1 = 0, t2 = 0, t3 = 0, t4 = 0 }
    for _, p in ipairs(rec.packets) do
      for k in pairs(off_grid) do
        assert.equal("integer", math.type(p[k]), k)
        if p[k] % 256 ~= 0 then off_grid[k] = off_grid[k] + 1 end
      end
      -- the core's RTT, printed to the microsecond, is (T4 - T1) - (T3 - T2) of the printed times
      local rtt = (p.t4 - p.t1) - (p.t3 - p.t2)
      assert.is_true(math.abs(rtt - p.rtt_ms * 1e6) <= 501, string.format("rtt %d ns, rtt_ms %.3f", rtt, p.rtt_ms))
    end
    for k, c in pairs(off_grid) do assert.is_true(c > 0, k .. ": every value a multiple of 256 ns (a double)") end
  end)

  it("runs four measurements at once in one worker while 20 other requests answer in under 50 ms each", function()
    local pending = {}
    for i = 1, 4 do pending[i] = n.start_get(stamp_url(200, 10), 30) end
    local slow, t0 = {}, os.time()
    for _ = 1, 20 do
      local status, body, took = n.get("/ping", 5)
      assert.equal(200, status)
      assert.equal("pong\n", body)
      if took >= 0.05 then slow[#slow + 1] = took end
      h.sleep(0.05)
    end
    assert.is_true(os.time() - t0 < 3)
    for i = 1, 4 do
      local status, body = pending[i]()
      assert.equal(200, status, body)
      local rec = assert(report.json_decode(body))
      assert.equal(200, rec.summary.received, "measurement " .. i)
      assert.equal(200, #rec.packets)
    end
    assert.same({}, slow)
  end)

  it("measure() returns results and summary shaped as stamp.sender:run's", function()
    local status, body = n.get("/shape?port=" .. rport, 30)
    assert.equal(200, status, body)
    local got = assert(report.json_decode(body))
    local stamp = require "stamp"
    local s = assert(stamp.sender { remote_addr = "127.0.0.1", remote_port = rport, count = 5, send_delay = 5,
      timeout = 1 })
    local results, summary = s:run()
    s:close()
    local ok = results[1]
    ok.packet = nil -- raw octets are not JSON
    assert.same(keys(ok, NO_CMSG), got.result_keys)
    assert.same(keys(summary), got.summary_keys)
    assert.same(keys(summary.rtt), got.rtt_keys)
    assert.equal(5, got.received)
    assert.is_false(got.kernel_rx)
  end)

  it("sets DSCP/ECN on the cosocket's packets: the reflector's Class of Service TLV reports what arrived", function()
    local status, body = n.get("/dscp?port=" .. rport, 30)
    assert.equal(200, status, body)
    local got = assert(report.json_decode(body))
    assert.same({ received = 3, dscp2 = { 46, 46, 46 } }, got[1])
    assert.same({ received = 3, dscp2 = { 46, 46, 46 } }, got[2])
    -- without dscp the Class of Service TLV's own DSCP1 (10) goes on the test packets
    assert.same({ received = 3, dscp2 = { 10, 10, 10 } }, got[3])
  end)

  it("measures in authenticated mode with an SSID, TLVs and a packet length", function()
    local status, body = n.get("/auth?port=" .. aport .. "&key=" .. KEY, 30)
    assert.equal(200, status, body)
    local got = assert(report.json_decode(body))
    assert.equal(4, got.received, body)
    assert.equal(4242, got.ssid)
    assert.equal(200, got.length)
    assert.is_true(got.tsinfo)
    -- and with the wrong key the reflector drops every packet
    status, body = n.get("/auth?port=" .. aport .. "&key=" .. string.rep("11", 32), 30)
    assert.equal(200, status, body)
    assert.equal(0, report.json_decode(body).received, body)
  end)

  it("measure{} stops when stop() says so, awaiting packets in flight, and keeps nothing with keep = false", function()
    local status, body = n.get("/stopkeep?port=" .. rport, 30)
    assert.equal(200, status, body)
    local got = assert(report.json_decode(body))
    assert.equal(0, got.kept)
    assert.is_true(got.interrupted)
    assert.is_true(got.sent >= 20 and got.sent < 1000, body)
    assert.equal(got.sent, got.received, body)
    assert.equal(got.sent, got.seen, body)
  end)

  it("answers a bad query with 400 and a JSON error, and measure{} raises on a bad option", function()
    local status, body = n.get("/stamp?count=5")
    assert.equal(400, status)
    assert.truthy(report.json_decode(body).error:find("host", 1, true), body)
    -- a missing port is an error, not 862; numbers are decimal as the command takes them
    status, body = n.get("/stamp?host=127.0.0.1&count=5")
    assert.equal(400, status, body)
    assert.truthy(report.json_decode(body).error:find("'port' is required", 1, true), body)
    status, body = n.get("/stamp?host=127.0.0.1&port=" .. rport .. "&count=0x10")
    assert.equal(400, status, body)
    assert.truthy(report.json_decode(body).error:find("count", 1, true), body)
    status, body = n.get("/stamp?host=127.0.0.1&port=" .. rport .. "&count=10001")
    assert.equal(400, status, body)
    status, body = n.get("/stamp?host=127.0.0.1&port=" .. rport .. "&count=400&interval_ms=1000")
    assert.equal(400, status, body)
    assert.truthy(report.json_decode(body).error:find("300 s", 1, true), body)
    status, body = n.get("/stamp?host=127.0.0.1&port=" .. rport .. "&count=0")
    assert.equal(400, status)
    assert.truthy(report.json_decode(body).error:find("count", 1, true), body)
    status, body = n.get("/badopt")
    assert.equal(200, status)
    assert.truthy(body:find("unknown option 'color'", 1, true), body)
    assert.truthy(body:find("bad option 'interval'", 1, true), body)
    assert.truthy(body:find("numeric address is needed with dscp", 1, true), body)
    assert.truthy(body:find("bad option 'ttl'", 1, true), body)
    assert.truthy(body:find("numeric address is needed with ttl", 1, true), body)
  end)

  it("prints T1..T4 as integers and keys in the command's order: the same text form as the CLI's", function()
    local status, body = n.get(stamp_url(3, 5), 30)
    assert.equal(200, status, body)
    local code, out = h.run(h.STAMP .. " -r 127.0.0.1 -p " .. rport .. " -c 3 -d 5 --output-format json")
    assert.equal(0, code)
    -- every line in the same form: digits for digits, the same keys in the same order
    local function form(text)
      local t = {}
      for line in text:gmatch("[^\n]+") do
        line = line:gsub(',"reply_t[to][ls]":%d+', "") -- no control messages through a cosocket
        line = line:gsub('"t1_source":"%a+"', '"t1_source":"S"') -- a cosocket has no kernel transmit time
        t[#t + 1] = (line:gsub("%-?%d+%.?%d*", "N"))
      end
      return t
    end
    assert.same(form(out), form(body))
    for _, k in ipairs { "t1", "t2", "t3", "t4" } do
      local n4 = 0
      for v in body:gmatch('"' .. k .. '":([^,}]+)') do
        assert.truthy(v:match("^%d+$"), k .. ": " .. v)
        n4 = n4 + 1
      end
      assert.equal(3, n4)
    end
  end)

  it("streams a large JSON answer in pieces: /ping answers in under 50 ms meanwhile", function()
    local pending = n.start_get("/bigjson", 60)
    local worst, t0, times = 0, require("socket").gettime(), {}
    for _ = 1, 30 do
      local status, _, took = n.get("/ping", 5)
      assert.equal(200, status)
      worst = math.max(worst, took)
      times[#times + 1] = string.format("%.0f", took * 1000)
      h.sleep(0.01)
    end
    local status, body = pending()
    assert.equal(200, status)
    local rec = assert(report.json_decode(body))
    assert.equal(10000, #rec.packets)
    -- the first T1 as LuaJIT computed it (a double), printed as an integer
    assert.equal(string.format("%.0f", 1795788553184702720 + 1e6), body:match('"t1":(%d+)'))
    -- one block would hold every /ping for the whole encoding (0.25 s for 10,000 records); on the
    -- shared 2-core machine a ping or two may wait for the scheduler, never for the JSON
    local over = 0
    for _, t in ipairs(times) do if tonumber(t) >= 50 then over = over + 1 end end
    assert.is_true(over <= 2 and worst < 0.15, string.format("/ping took %.3f s while the JSON was built (ms: %s)",
      worst, table.concat(times, " ")))
    assert.is_true(require("socket").gettime() - t0 < 30)
  end)

  it("stops the measurement when the client goes away", function()
    local sink = assert(require("socket").udp())
    assert(sink:setsockname("127.0.0.1", 0))
    local _, sport = sink:getsockname()
    sink:settimeout(0)
    -- a 60 s measurement, one packet every 200 ms; the client gives up after 1 s
    local status = n.get("/stamp?host=127.0.0.1&port=" .. sport .. "&count=300&interval_ms=200&timeout_ms=100", 1)
    assert.is_nil(status)
    h.sleep(0.5)
    while sink:receive() do end -- what was sent before
    h.sleep(1)
    local after = 0
    while sink:receive() do after = after + 1 end
    sink:close()
    assert.equal(0, after, "packets still sent after the client went away")
  end)

  it("sends with TTL 255 (option ttl) and takes IPv6 literals bare, with DSCP through IPV6_TCLASS", function()
    local status, body = n.get("/ttl?port=" .. rport .. "&v6port=" .. vport, 30)
    assert.equal(200, status, body)
    local got = assert(report.json_decode(body))
    assert.same({ received = 3, ttl = { 255, 255, 255 }, dscp2 = { -1, -1, -1 } }, got[1])
    assert.same({ received = 3, ttl = { 7, 7, 7 }, dscp2 = { -1, -1, -1 } }, got[2])
    assert.same({ received = 3, ttl = { 255, 255, 255 }, dscp2 = { -1, -1, -1 } }, got[3])
    assert.same({ received = 3, ttl = { 9, 9, 9 }, dscp2 = { 46, 46, 46 } }, got[4])
    -- and through the example's query: host=::1 and host=[::1]
    for _, host in ipairs { "::1", "[::1]" } do
      local st, b = n.get("/stamp?host=" .. host .. "&port=" .. vport .. "&count=3&interval_ms=5", 30)
      assert.equal(200, st, b)
      assert.equal(3, report.json_decode(b).summary.received, b)
    end
  end)

  it("counts 'connection refused' in rx_errors and logs it at most once per measurement", function()
    local closed = h.free_port()
    local before = #n.log()
    local status, body = n.get("/stamp?host=127.0.0.1&port=" .. closed .. "&count=30&interval_ms=5&timeout_ms=50", 30)
    assert.equal(200, status, body)
    local rec = assert(report.json_decode(body))
    assert.equal(30, rec.summary.lost)
    assert.is_true((rec.summary.rx_errors or 0) >= 1, body:sub(1, 400))
    local log = n.log():sub(before + 1)
    local refused = 0
    for line in log:gmatch("[^\n]+") do
      if line:find("refused", 1, true) then refused = refused + 1 end
    end
    assert.equal(1, refused, log)
    assert.same({}, ngxh.errors(log))
  end)

  it("stops cleanly: a measurement in flight ends at once, interrupted; no errors logged", function()
    local pending = n.start_get(stamp_url(1000, 10), 30) -- 10 s of sending
    h.sleep(0.5)
    local t0 = require("socket").gettime()
    assert.is_true(n.stop(), "nginx did not stop on SIGQUIT")
    assert.is_true(require("socket").gettime() - t0 < 3, "nginx took over 3 s to stop")
    local status, body = pending()
    assert.equal(200, status, body)
    local rec = assert(report.json_decode(body))
    assert.is_true(rec.summary.interrupted)
    assert.is_true(rec.summary.sent < 1000 and rec.summary.sent > 10, body:sub(1, 300))
    assert.same({}, ngxh.errors(n.log()))
  end)
end)
