-- Test harness for the embedding specs: Debian's nginx with the http Lua module, run in the
-- foreground from a temporary prefix, listening on 127.0.0.1 only, its Lua paths pointing at
-- this checkout (lua/ and the LuaJIT build of stamp.core in build-luajit/).
local h = require "helper"
local socket = require "socket"

local M = {}

M.NGINX = os.getenv("STAMP_NGINX") or "/usr/sbin/nginx"
M.MODULES = os.getenv("STAMP_NGINX_MODULES") or "/usr/lib/nginx/modules"
M.BUILD = h.ROOT .. "/build-luajit"

-- Build (or bring up to date) stamp.core for LuaJIT, the Lua nginx runs. Raises on failure:
-- a spec that needs nginx never skips silently.
function M.build_luajit()
  local code, out, err = h.run("(cmake -S " .. h.ROOT .. " -B " .. M.BUILD
    .. " -DLUA_VERSION=luajit -DLUADIR=share/lua/5.1 -DLIBDIR=lib/lua/5.1 && cmake --build " .. M.BUILD .. " -j2)")
  assert(code == 0, "building stamp.core for LuaJIT failed:\n" .. out .. err)
end

-- The lines every config needs to find this checkout's modules, for an `http {}` block.
function M.lua_paths()
  return string.format('lua_package_path "%s/lua/?.lua;%s/lua/?/init.lua;;";\n'
    .. '  lua_package_cpath "%s/?.so;;";', h.ROOT, h.ROOT, M.BUILD)
end

-- Main-context lines for a temporary prefix: modules, foreground, logs and pid inside it.
local function main_lines(prefix)
  local t = {
    "load_module " .. M.MODULES .. "/ndk_http_module.so;",
    "load_module " .. M.MODULES .. "/ngx_http_lua_module.so;",
    "pid " .. prefix .. "/logs/nginx.pid;",
    "error_log " .. prefix .. "/logs/error.log info;",
  }
  return table.concat(t, "\n") .. "\n"
end

-- Temp paths nginx would otherwise take from its build (/var/lib/nginx/...).
local function temp_lines(prefix)
  local t = {}
  for _, k in ipairs { "client_body", "proxy", "fastcgi", "uwsgi", "scgi" } do
    t[#t + 1] = string.format("  %s_temp_path %s/tmp/%s;", k, prefix, k)
  end
  return table.concat(t, "\n") .. "\n"
end

-- A config from an `http {}` body, with everything the harness needs around it.
-- `o.events` (string, optional) goes into `events {}`; `o.main` (string) into the main context.
function M.config(http_body, o)
  o = o or {}
  return "@MAIN@" .. (o.main or "") .. "\nworker_processes 1;\nevents { " .. (o.events or "worker_connections 256;")
    .. " }\nhttp {\n@TEMP@  access_log off;\n  " .. M.lua_paths() .. "\n" .. http_body .. "\n}\n"
end

-- Start nginx with `conf` (text; "@MAIN@" and "@TEMP@" are replaced by the harness's main-context
-- and temp-path lines). `port` is the TCP port the config listens on (127.0.0.1). Returns a handle
-- with `prefix`, `port`, `pid`, `get(path)`, `log()`, `reload()`, `stop()`.
function M.start(conf, port)
  M.build_luajit()
  local prefix = assert(io.popen("mktemp -d /tmp/stamp-nginx.XXXXXX")):read("*l")
  assert(os.execute("mkdir -p " .. prefix .. "/logs " .. prefix .. "/tmp " .. prefix .. "/conf"))
  conf = conf:gsub("@MAIN@", function() return main_lines(prefix) end)
  conf = conf:gsub("@TEMP@", function() return temp_lines(prefix) end)
  assert(not conf:find("listen%s+[^1%s]"), "configs in specs listen on 127.0.0.1 only")
  local f = assert(io.open(prefix .. "/conf/nginx.conf", "w"))
  f:write(conf)
  f:close()
  local g = "daemon off; master_process on;"
  if h.run("test $(id -u) -eq 0") == 0 then g = g .. " user root;" end -- workers must read the checkout
  local code, out, err = h.run(M.NGINX .. " -t -p " .. prefix .. " -e " .. prefix .. "/logs/error.log -c "
    .. prefix .. "/conf/nginx.conf -g '" .. g .. "'")
  assert(code == 0, "nginx -t failed:\n" .. out .. err .. h.slurp(prefix .. "/logs/error.log"))
  local pid, stdout = h.spawn(M.NGINX .. " -p " .. prefix .. " -e " .. prefix .. "/logs/error.log -c " .. prefix
    .. "/conf/nginx.conf -g '" .. g .. "'")
  local self = { prefix = prefix, port = port, pid = pid, stdout = stdout }

  function self.log() return h.slurp(prefix .. "/logs/error.log") end

  -- One HTTP/1.0 GET; returns status, body, seconds taken (or nil, err).
  function self.get(path, timeout)
    local t0 = socket.gettime()
    local c = socket.tcp()
    c:settimeout(timeout or 10)
    local ok, e = c:connect("127.0.0.1", port)
    if not ok then c:close() return nil, e end
    c:send("GET " .. path .. " HTTP/1.0\r\nHost: localhost\r\n\r\n")
    local resp, e2, partial = c:receive("*a")
    c:close()
    resp = resp or partial
    if not resp or resp == "" then return nil, e2 end
    local status = tonumber(resp:match("^HTTP/%d%.%d (%d+)"))
    local body = resp:match("\r\n\r\n(.*)$") or ""
    return status, body, socket.gettime() - t0
  end

  -- Send a GET and return a function that reads its answer later (status, body, seconds).
  function self.start_get(path, timeout)
    local t0 = socket.gettime()
    local c = socket.tcp()
    c:settimeout(timeout or 30)
    assert(c:connect("127.0.0.1", port))
    assert(c:send("GET " .. path .. " HTTP/1.0\r\nHost: localhost\r\n\r\n"))
    return function()
      local resp, e, partial = c:receive("*a")
      c:close()
      resp = resp or partial
      if not resp or resp == "" then return nil, e end
      return tonumber(resp:match("^HTTP/%d%.%d (%d+)")), resp:match("\r\n\r\n(.*)$") or "", socket.gettime() - t0
    end
  end

  function self.master_pid()
    return tonumber(h.slurp(prefix .. "/logs/nginx.pid"):match("%d+"))
  end

  -- `nginx -s reload`, then wait until the old workers are gone.
  function self.reload()
    local c, o, e = h.run(M.NGINX .. " -p " .. prefix .. " -e " .. prefix .. "/logs/error.log -c " .. prefix
      .. "/conf/nginx.conf -g '" .. g:gsub("daemon off; ", "") .. "' -s reload")
    assert(c == 0, "nginx -s reload failed: " .. o .. e)
  end

  -- Graceful stop (SIGQUIT to the master), bounded; returns true when nginx exited by itself.
  function self.stop()
    if self.stopped then return true end
    self.stopped = true
    local mp = self.master_pid() or pid
    os.execute("kill -QUIT " .. mp .. " 2>/dev/null")
    for _ = 1, 200 do
      if not os.execute("kill -0 " .. mp .. " 2>/dev/null") then
        os.remove(stdout)
        return true
      end
      h.sleep(0.05)
    end
    os.execute("kill -KILL " .. mp .. " 2>/dev/null")
    return false
  end

  -- remove the prefix (call after stop, once the logs were looked at)
  function self.cleanup()
    self.stop()
    os.execute("rm -rf " .. prefix)
  end

  -- wait until it answers TCP
  local up = false
  for _ = 1, 100 do
    local c = socket.tcp()
    c:settimeout(0.2)
    if c:connect("127.0.0.1", port) then c:close() up = true break end
    c:close()
    if not os.execute("kill -0 " .. pid .. " 2>/dev/null") then break end
    h.sleep(0.05)
  end
  if not up then
    local log = self.log() .. h.slurp(stdout)
    self.cleanup()
    error("nginx did not start:\n" .. log)
  end
  return self
end

-- `cmake --install` of the LuaJIT build into a temporary prefix, as the README tells users to
-- install (LUADIR share/lua/5.1, LIBDIR lib/lua/5.1). Returns the prefix.
function M.install()
  M.build_luajit()
  local prefix = assert(io.popen("mktemp -d /tmp/stamp-install.XXXXXX")):read("*l")
  local code, out, err = h.run("cmake --install " .. M.BUILD .. " --prefix " .. prefix)
  assert(code == 0, "cmake --install failed:\n" .. out .. err)
  return prefix
end

-- examples/openresty/nginx.conf made to run here: its lines that name the HTTP port, the
-- reflector's UDP port and the install paths replaced (each must be found exactly once).
-- `extra` (optional): spec-only locations, put into the example's server block.
function M.example_conf(http_port, udp_port, install_prefix, extra)
  local conf = h.slurp(h.ROOT .. "/examples/openresty/nginx.conf")
  local function sub(from, to)
    local n
    conf, n = conf:gsub(from:gsub("%p", "%%%0"), (to:gsub("%%", "%%%%")))
    assert(n == 1, "examples/openresty/nginx.conf: expected one '" .. from .. "', found " .. n)
  end
  sub("error_log logs/error.log;", "error_log logs/error.log info;")
  sub("listen 127.0.0.1:8080;", "listen 127.0.0.1:" .. http_port .. ";")
  sub("local_port = 8620", "local_port = " .. udp_port)
  sub("/usr/local/share/lua/5.1/?.lua;/usr/local/share/lua/5.1/?/init.lua;;",
    install_prefix .. "/share/lua/5.1/?.lua;" .. install_prefix .. "/share/lua/5.1/?/init.lua;;")
  sub("/usr/local/lib/lua/5.1/?.so;;", install_prefix .. "/lib/lua/5.1/?.so;;")
  if extra then sub("    location = /ping {", extra .. "\n    location = /ping {") end
  return conf
end

-- A free TCP port on 127.0.0.1.
function M.free_tcp_port()
  for _ = 1, 50 do
    local s = socket.tcp()
    s:setoption("reuseaddr", true)
    local port = math.random(31000, 39000)
    local ok = s:bind("127.0.0.1", port)
    s:close()
    if ok then return port end
  end
  error("no free TCP port")
end

-- Lines of the error log at level error or worse (Lua errors land there).
function M.errors(log)
  local t = {}
  for line in log:gmatch("[^\n]+") do
    if line:find("%[error%]") or line:find("%[crit%]") or line:find("%[alert%]") or line:find("%[emerg%]") then
      t[#t + 1] = line
    end
  end
  return t
end

return M
