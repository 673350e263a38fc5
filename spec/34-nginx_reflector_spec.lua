-- A STAMP reflector inside nginx (resty.stamp.reflector: the reflector in a thread pool thread),
-- with examples/openresty/nginx.conf as installed by `cmake --install`: it answers, never holds
-- up the worker's requests, survives `nginx -s reload` and stops with nginx.
local h = require "helper"
local ngxh = require "nginx_helper"
local socket = require "socket"

local function workers(master)
  local p = io.popen("ps -o pid= --ppid " .. master)
  local t = {}
  for l in p:lines() do t[#t + 1] = tonumber(l) end
  p:close()
  return t
end

local function alive(pid) return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true end

-- `stamp` sender against the in-nginx reflector; returns the decoded JSON summary.
local function measure(udp_port, count)
  local code, out, err = h.run(h.STAMP .. " -r 127.0.0.1 -p " .. udp_port .. " -o 0 -c " .. count
    .. " -d 5 --timeout 1 --output-format json")
  assert(code == 0 or code == 1, "stamp sender failed: " .. err) -- 1: some packets lost, like ping
  return require("stamp.report").json_decode(out).summary
end

describe("reflector inside nginx (thread pool)", function()
  local n, install, udp_port

  setup(function()
    install = ngxh.install()
    local http_port = ngxh.free_tcp_port()
    udp_port = h.free_port()
    n = ngxh.start(ngxh.example_conf(http_port, udp_port, install), http_port)
  end)

  teardown(function()
    if n then n.cleanup() end
    if install then os.execute("rm -rf " .. install) end
  end)

  it("reflects 200 packets while every other request answers in under 50 ms", function()
    -- wait until the reflector is up (its first slice published the counters)
    local up
    for _ = 1, 100 do
      local status, body = n.get("/stamp/reflector")
      if status == 200 and body:find('"up":true', 1, true) then up = true break end
      h.sleep(0.05)
    end
    assert.is_true(up, "the reflector did not come up: " .. n.log())
    local pid, out = h.spawn(h.STAMP .. " -r 127.0.0.1 -p " .. udp_port .. " -o 0 -c 200 -d 5 --timeout 1 --output-format json")
    local slow = {}
    for _ = 1, 20 do
      local status, body, took = n.get("/ping", 5)
      assert.equal(200, status)
      assert.equal("pong\n", body)
      if took >= 0.05 then slow[#slow + 1] = took end
      h.sleep(0.03)
    end
    for _ = 1, 1200 do -- 1 s of sending; up to 60 s for a sender slowed down (valgrind)
      if not alive(pid) then break end
      h.sleep(0.05)
    end
    local text = h.slurp(out)
    assert.truthy(text:match("%b{}"), "the sender printed no summary: " .. text)
    local summary = require("stamp.report").json_decode(text:match("%b{}")).summary
    os.remove(out)
    assert.same({}, slow)
    assert.equal(200, summary.sent)
    assert.equal(200, summary.received)
    local _, body = n.get("/stamp/reflector")
    local c = require("stamp.report").json_decode(body)
    assert.is_true(c.rx >= 200 and c.reflected >= 200, body)
  end)

  it("hands over to the new worker on reload: the old worker exits, the reflector answers again", function()
    local master = n.master_pid()
    local old = workers(master)
    assert.equal(1, #old)
    n.reload()
    local gone = false
    for _ = 1, 100 do
      if not alive(old[1]) then gone = true break end
      h.sleep(0.05)
    end
    assert.is_true(gone, "the old worker did not exit after the reload")
    local summary
    for _ = 1, 3 do -- the new worker binds the port within a slice of the old one letting go
      summary = measure(udp_port, 50)
      if summary.received == 50 then break end
      h.sleep(0.2)
    end
    assert.equal(50, summary.received)
    local new = workers(master)
    assert.equal(1, #new)
    assert.are_not.equal(old[1], new[1])
  end)

  it("stops with nginx: every worker exits with code 0, no errors logged, the port is free afterwards", function()
    local worker = workers(n.master_pid())[1]
    assert.is_true(n.stop(), "nginx did not stop on SIGQUIT")
    local log = n.log()
    assert.same({}, ngxh.errors(log))
    assert.truthy(log:find("worker process " .. worker .. " exited with code 0", 1, true), log)
    assert.falsy(log:find("exited on signal", 1, true), log)
    local u = socket.udp()
    assert.truthy(u:setsockname("127.0.0.1", udp_port))
    u:close()
  end)
end)

describe("reflector inside nginx, its port taken", function()
  it("logs the bind failure once, naming the address and port, and keeps retrying", function()
    local install = ngxh.install()
    local http_port, udp_port = ngxh.free_tcp_port(), h.free_port()
    local holder = assert(socket.udp())
    assert(holder:setsockname("127.0.0.1", udp_port))
    local n = ngxh.start(ngxh.example_conf(http_port, udp_port, install), http_port)
    h.sleep(7) -- over the 5 s a reload may hold the port
    local log = n.log()
    n.cleanup()
    holder:close()
    os.execute("rm -rf " .. install)
    local errs = ngxh.errors(log)
    assert.equal(1, #errs, log:sub(-2000))
    assert.truthy(errs[1]:find("stamp reflector: cannot serve on 127.0.0.1 port " .. udp_port, 1, true), errs[1])
    local infos = 0
    for _ in log:gmatch("stamp reflector: [^\n]*in use") do infos = infos + 1 end
    assert.equal(1, infos, "the failure was logged " .. infos .. " times")
  end)
end)
