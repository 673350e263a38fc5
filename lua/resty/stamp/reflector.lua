--- A STAMP Session-Reflector inside nginx, in a thread pool (`ngx.run_worker_thread`).
--
-- The http Lua module cannot listen on UDP, and a reflector stepped by the worker's timers
-- would block its event loop or lose packets. This module runs the reflector of `stamp`
-- (the socket engine, with kernel receive timestamps, TTL and PKTINFO) in a thread of an
-- nginx thread pool: the worker only waits for the thread's task to finish, which never
-- blocks its event loop. The thread steps the reflector for a short slice (0.1 s) and
-- returns; the worker starts the next slice until it is shutting down (`nginx -s quit`,
-- `-s reload`), then closes the reflector's socket in the thread. After a reload the new
-- worker binds the port as soon as the old one has let go of it (within one slice).
--
--     # main context
--     thread_pool stamp threads=1;
--     # http context
--     lua_shared_dict stamp 64k;      # optional: the reflector's counters for any worker
--     init_worker_by_lua_block {
--       require("resty.stamp.reflector").start { local_addr = "127.0.0.1", local_port = 862, shdict = "stamp" }
--     }
--
-- One worker runs the reflector (worker 0 unless `worker` says otherwise): a UDP port can be
-- bound once. The reflector object lives in the thread pool's Lua VM (one VM per pool thread,
-- which is why the pool has one thread), not in the worker's.
-- @module resty.stamp.reflector
local ngx = ngx

local _M = {}

-- ---------------------------------------------------------------------------
-- Thread side: runs in the thread pool's own Lua VM (no ngx.* I/O there).
-- ---------------------------------------------------------------------------

-- The reflector of this pool thread's VM and the options it was opened with.
local thread_state = { r = nil, key = nil }

local function cfg_key(cfg)
  local keys = {}
  for k in pairs(cfg) do keys[#keys + 1] = k end
  table.sort(keys)
  local t = {}
  for _, k in ipairs(keys) do t[#t + 1] = k .. "=" .. tostring(cfg[k]) end
  return table.concat(t, ";")
end

--- (thread pool) Open the reflector if needed, serve it for `slice_ms`, return its counters.
-- @tparam table cfg options of `stamp.reflector` (plain values)
-- @tparam number slice_ms how long to serve before returning
-- @treturn table|nil counters, or `nil, message`
function _M.serve(cfg, slice_ms)
  local stamp = require "stamp"
  local key = cfg_key(cfg)
  if thread_state.r and thread_state.key ~= key then
    thread_state.r:close()
    thread_state.r = nil
  end
  if not thread_state.r then
    local r, err = stamp.reflector(cfg)
    if not r then return nil, err end
    thread_state.r, thread_state.key = r, key
  end
  local r, core = thread_state.r, stamp.core
  local deadline = core.mono() + slice_ms * 1e6
  while true do
    local left = math.floor((deadline - core.mono()) / 1e6)
    if left <= 0 then break end
    local n, err = r:step(left)
    if not n then return nil, err end
  end
  local c, out = r:counters(), {}
  for k, v in pairs(c) do -- every counter the reflector has: plain values cross back to the worker
    if type(k) == "string" and (type(v) == "number" or type(v) == "boolean") then out[k] = v end
  end
  return out
end

--- (thread pool) Close the reflector's socket.
-- @treturn boolean true
function _M.close()
  if thread_state.r then thread_state.r:close() end
  thread_state.r, thread_state.key = nil, nil
  return true
end

-- ---------------------------------------------------------------------------
-- Worker side
-- ---------------------------------------------------------------------------

local OWN = { pool = "string", worker = "number", slice = "number", shdict = "string" }

--- Start the reflector from `init_worker_by_lua*`. Options: those of `stamp.reflector`
-- (`local_addr`, `local_port`, `auth`, `key`/`hmac_key`, `stateful`, ...; plain values) and
-- `pool` (thread pool name, "stamp"), `worker` (which worker runs it, 0), `slice` (seconds per
-- thread task, 0.1), `shdict` (a `lua_shared_dict` to publish the counters in, as `reflector.<name>`).
-- Argument errors raise; returns true (also in the workers that do not run it).
-- @tparam table o options
-- @treturn boolean|nil true, or `nil, err` when the timer could not be created
function _M.start(o)
  if type(o) ~= "table" then error("bad argument #1 to 'start' (table expected, got " .. type(o) .. ")", 2) end
  local cfg = {}
  for k, v in pairs(o) do
    if OWN[k] then
      if type(v) ~= OWN[k] then error("bad option '" .. k .. "' (" .. OWN[k] .. " expected)", 2) end
    elseif type(v) == "table" or type(v) == "function" or type(v) == "userdata" then
      error("bad option '" .. tostring(k) .. "' (plain values only: it crosses into the thread pool)", 2)
    else
      cfg[k] = v
    end
  end
  -- validate the reflector options here, where an error can still be raised
  require("stamp.options").reflector(cfg, 2)
  local pool, slice_ms = o.pool or "stamp", math.floor((o.slice or 0.1) * 1000)
  if slice_ms < 1 or slice_ms > 10000 then error("bad option 'slice' (seconds 0.001..10 expected)", 2) end
  if ngx.worker.id() ~= (o.worker or 0) then return true end
  local dict = o.shdict and ngx.shared[o.shdict]
  if o.shdict and not dict then error("bad option 'shdict' (no lua_shared_dict '" .. o.shdict .. "')", 2) end

  local function loop(premature)
    if premature then return end
    local failing_since, logged_at, failures = nil, nil, 0
    local where = tostring(cfg.local_addr or "*") .. " port " .. tostring(cfg.local_port or 862)
    while not ngx.worker.exiting() do
      local ok, counters, err = ngx.run_worker_thread(pool, "resty.stamp.reflector", "serve", cfg, slice_ms)
      if ok and counters then
        if logged_at then ngx.log(ngx.NOTICE, "stamp reflector: serving on ", where) end
        failing_since, logged_at, failures = nil, nil, 0
        if dict then
          local names = {}
          for k, v in pairs(counters) do
            dict:set("reflector." .. k, v)
            names[#names + 1] = k
          end
          table.sort(names)
          dict:set("reflector.names", table.concat(names, ","))
          dict:set("reflector.up", true)
        end
      else
        -- e.g. the port is still held by the worker a reload replaces: retry (20 times a second);
        -- complain when it lasts over 5 s, then at most once a minute
        local msg = tostring(ok and err or counters)
        local now = ngx.now()
        failing_since, failures = failing_since or now, failures + 1
        if dict then dict:set("reflector.up", false) end
        if now - failing_since > 5 and (not logged_at or now - logged_at >= 60) then
          ngx.log(ngx.ERR, "stamp reflector: cannot serve on ", where, ": ", msg, " (", failures,
            " attempts since ", failing_since, "; retrying, logged again in 60 s at the earliest)")
          logged_at = now
        end
        ngx.sleep(0.05)
      end
    end
    ngx.run_worker_thread(pool, "resty.stamp.reflector", "close")
    if dict then dict:set("reflector.up", false) end
    ngx.log(ngx.INFO, "stamp reflector: closed")
  end
  return ngx.timer.at(0, loop)
end

--- The counters `start` published in a shared dict, as a table (`up`: the reflector is serving).
-- @tparam string shdict the `lua_shared_dict` given to `start`
-- @treturn table
function _M.counters(shdict)
  local dict = ngx.shared[shdict]
  if not dict then error("bad argument #1 to 'counters' (no lua_shared_dict '" .. tostring(shdict) .. "')", 2) end
  local t = { up = dict:get("reflector.up") or false }
  for k in (dict:get("reflector.names") or ""):gmatch("[^,]+") do t[k] = dict:get("reflector." .. k) end
  return t
end

--- The same as JSON (`stamp.report`'s encoder).
-- @tparam string shdict
-- @treturn string
function _M.counters_json(shdict)
  return require("stamp.report").json(_M.counters(shdict))
end

return _M
