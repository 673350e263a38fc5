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
  local n, install, rpid, rout, rport, apid, aout, aport
  local KEY = string.rep("3c", 32)

  setup(function()
    install = ngxh.install()
    rpid, rout, rport = h.cli_reflector()
    apid, aout, aport = h.cli_reflector("--local-addr 127.0.0.1 -A A --hmac-key " .. KEY)
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
    location = /badopt {
      content_by_lua_block {
        local rs = require "resty.stamp"
        local _, e1 = pcall(rs.measure, { host = "127.0.0.1", port = 9, color = "red" })
        local _, e2 = pcall(rs.measure, { host = "127.0.0.1", port = 9, interval = -1 })
        local _, e3 = pcall(rs.measure, { host = "localhost", port = 9, dscp = 46 })
        ngx.say(e1, "\n", e2, "\n", e3)
      }
    }]]), http_port)
  end)

  teardown(function()
    if n then n.cleanup() end
    if rpid then h.stop(rpid) os.remove(rout) end
    if apid then h.stop(apid) os.remove(aout) end
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
    status, body = n.get("/stamp?host=127.0.0.1&count=0")
    assert.equal(400, status)
    assert.truthy(report.json_decode(body).error:find("count", 1, true), body)
    status, body = n.get("/badopt")
    assert.equal(200, status)
    assert.truthy(body:find("unknown option 'color'", 1, true), body)
    assert.truthy(body:find("bad option 'interval'", 1, true), body)
    assert.truthy(body:find("numeric address is needed with dscp", 1, true), body)
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
