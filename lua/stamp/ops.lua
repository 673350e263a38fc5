--- Running `stamp` as a service: Prometheus metrics, the config file, privilege
-- drop and process name, per-SSID key files, SIGHUP reload, timestamped logs.
--
-- The C side (one exposition renderer, the HTTP thread, setuid and friends)
-- is in `stamp.core`, so a Lua host (an OpenResty location) can do
--
--     local m = require("stamp.core").metrics("reflector"):attach(r)
--     ngx.print(m:render())
--
-- @module stamp.ops
local core = require "stamp.core"

local M = {}
M.core = core

--- The command's flags of this area, in the format of `stamp.cli`'s tables:
-- options { name, short, long, ARG, default, help[, check, what] } and flags { name, short, long, help }.
M.OPTIONS = {
  { "config", nil, "--config", "FILE", nil, "Read settings from a Lua file returning a table (flags override it)" },
  { "metrics_addr", nil, "--metrics-addr", "ADDR", "127.0.0.1:9090", "Metrics server bind address (ADDR:PORT, [IPv6]:PORT); implies --metrics",
    function(s)
      local port = s:match("^%[[%x:.]+%]:(%d+)$") or s:match("^%d+%.%d+%.%d+%.%d+:(%d+)$")
      if port and tonumber(port) <= 65535 then return s end
    end, "ADDR:PORT or [IPv6]:PORT" },
  { "user", nil, "--user", "USER[:GROUP]", nil, "Drop root for this user (and group) once the sockets are bound" },
  { "hmac_key_dir", nil, "--hmac-key-dir", "DIR", nil,
    "Reflector: one hex key per SSID (DIR/002a.key for SSID 42) and DIR/default.key; SIGHUP reloads" },
  { "log_format", nil, "--log-format", "FORMAT", "text", "Log lines on stderr: text or json",
    function(s) return (s == "text" or s == "json") and s or nil end, "text or json" },
}
M.FLAGS = {
  { "metrics", nil, "--metrics", "Enable Prometheus metrics endpoint" },
}

-- ---------------------------------------------------------------- logging

local log_format = "text"
local last_warn = {}

local function json_str(s)
  return '"' .. tostring(s):gsub('[%c"\\]', function(c)
    local map = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\t'] = '\\t', ['\r'] = '\\r' }
    return map[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function timestamp()
  local ns = core.now()
  local s = math.floor(ns / 1e9)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. string.format(".%03dZ", math.floor((ns % 1e9) / 1e6))
end

--- Choose how `log` writes: "text" or "json".
-- @tparam string fmt
function M.set_log_format(fmt) log_format = fmt or "text" end

--- Write one timestamped line on stderr.
-- @tparam string level "info", "warning" or "error"
-- @tparam string msg the message (one line)
-- @tparam[opt] table fields extra key/value pairs (strings or numbers)
-- @treturn string the line written
function M.log(level, msg, fields)
  local line
  if log_format == "json" then
    local parts = { '"ts":' .. json_str(timestamp()), '"level":' .. json_str(level), '"msg":' .. json_str(msg) }
    local keys = {}
    for k in pairs(fields or {}) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local v = fields[k]
      parts[#parts + 1] = json_str(k) .. ":" .. (type(v) == "number" and string.format("%.17g", v) or json_str(v))
    end
    line = "{" .. table.concat(parts, ",") .. "}"
  else
    local extra = {}
    local keys = {}
    for k in pairs(fields or {}) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do extra[#extra + 1] = k .. "=" .. tostring(fields[k]) end
    msg = tostring(msg):gsub("%c", function(c) return c == "\n" and "\\n" or " " end)
    line = timestamp() .. " " .. level .. ": " .. msg .. (#extra > 0 and (" " .. table.concat(extra, " ")) or "")
  end
  io.stderr:write(line, "\n")
  io.stderr:flush()
  return line
end

--- Like `log`, but at most once per `every` seconds for the same `key` (a
-- noisy peer cannot flood the log); the lines held back are counted in the next one.
-- @tparam string key e.g. "hmac:192.0.2.1"
-- @tparam number every seconds
-- @tparam string level
-- @tparam string msg
-- @tparam[opt] table fields
-- @treturn boolean whether a line was written
function M.log_limited(key, every, level, msg, fields)
  local now = core.mono() / 1e9
  local st = last_warn[key]
  if st and now - st.t < every then
    st.held = st.held + 1
    return false
  end
  fields = fields or {}
  if st and st.held > 0 then fields.suppressed = st.held end
  last_warn[key] = { t = now, held = 0 }
  M.log(level, msg, fields)
  return true
end

-- ---------------------------------------------------------------- config file

-- HMAC keys: at least 16 octets (RFC 8762 4.4), on every path (start, SIGHUP, environment).
local MIN_KEY = 16
M.MIN_KEY = MIN_KEY

local function load_text(text, name)
  local env = {}
  local chunk, err
  if setfenv then -- Lua 5.1, LuaJIT
    if text:byte(1) == 27 then return nil, "binary chunks are not accepted" end
    chunk, err = loadstring(text, name)
    if chunk then setfenv(chunk, env) end
  else
    chunk, err = load(text, name, "t", env)
  end
  return chunk, err
end

-- Bounds of a config file: its size, the memory and the instructions its program may use.
M.CONFIG_MAX_SIZE = 1024 * 1024
M.CONFIG_MAX_MEMORY = 64 * 1024 * 1024
local CONFIG_MAX_INSTRUCTIONS = 1000000

--- Load a config file: Lua text returning a table, run in an empty environment
-- (no globals reachable, no string methods) in a Lua state of its own, with a bounded
-- size (1 MiB), memory (64 MiB) and number of instructions.
-- @tparam string path
-- @treturn table|nil the table, or nil and a message
function M.load_config(path)
  local f, oerr = io.open(path, "rb")
  if not f then return nil, oerr end
  local text = f:read(M.CONFIG_MAX_SIZE + 1) or ""
  f:close()
  if #text > M.CONFIG_MAX_SIZE then
    return nil, string.format("the config file is larger than %d octets", M.CONFIG_MAX_SIZE)
  end
  if core.config_eval then
    local t, err = core.config_eval(text, "@" .. path, M.CONFIG_MAX_MEMORY, CONFIG_MAX_INSTRUCTIONS)
    if t ~= false then return t, err end -- false: no state of its own here (LuaJIT): the sandbox below
  end
  local chunk, err = load_text(text, "@" .. path)
  if not chunk then return nil, err end
  local co = coroutine.create(chunk)
  local base, left = collectgarbage("count"), CONFIG_MAX_INSTRUCTIONS / 100
  debug.sethook(co, function()
    if collectgarbage("count") - base > M.CONFIG_MAX_MEMORY / 1024 then
      error(string.format("the config file needs more than %d octets of memory", M.CONFIG_MAX_MEMORY), 0)
    end
    left = left - 1
    if left <= 0 then error("the config file runs too long", 0) end
  end, "", 100)
  local ok, t = coroutine.resume(co)
  if not ok then return nil, tostring(t) end
  if coroutine.status(co) ~= "dead" then return nil, "the config file must not yield" end
  if type(t) ~= "table" then return nil, "it must return a table of settings" end
  return t
end

-- The long names (and the short forms) a command line sets.
local function given(argv, options, flags)
  local short = {}
  for _, o in ipairs(options) do if o[2] then short[o[2]] = o[3] end end
  for _, f in ipairs(flags) do if f[2] and f[3] then short[f[2]] = f[3] end end
  local set = {}
  for _, a in ipairs(argv) do
    local long = a:match("^(%-%-[^=]+)")
    if long then
      set[long] = true
    elseif a:match("^%-%a") then
      -- -o862 or a group of short flags -iq
      if short[a:sub(1, 2)] then set[short[a:sub(1, 2)]] = true end
      for c in a:sub(2):gmatch("%a") do
        if short["-" .. c] then set[short["-" .. c]] = true end
      end
    end
  end
  return set
end

--- A setting's value as an error line may show it: never a key (its length
-- only), anything else cut to 64 characters.
-- @tparam string name the setting (`hmac_key`, `--hmac-key`, ...)
-- @param v the value
-- @treturn string
function M.shown_value(name, v)
  v = tostring(v)
  if tostring(name):find("key", 1, true) and not tostring(name):find("key_dir", 1, true)
      and not tostring(name):find("key-dir", 1, true) and not tostring(name):find("file", 1, true) then
    return string.format("(%d characters, not shown)", #v)
  end
  v = v:gsub("%c", "?")
  if #v > 64 then v = v:sub(1, 61) .. "..." end
  return "'" .. v .. "'"
end

-- Config keys holding a list, and the repeatable option each item becomes.
local LIST_KEYS = { sessions = "session" }

local function config_path(argv)
  for i, a in ipairs(argv) do
    if a == "--config" then return argv[i + 1] or "" end
    local v = a:match("^%-%-config=(.*)$")
    if v then return v end
  end
end

--- Merge `--config FILE` into the command line: each setting the command line
-- does not give becomes flags in front of it. Unknown keys and bad values are
-- refused with one line naming the key.
-- @tparam table argv the command line
-- @tparam table options `stamp.cli`'s option table
-- @tparam table flags `stamp.cli`'s flag table
-- @treturn table|nil the new argv, or nil and the message
function M.merge_config(argv, options, flags)
  local path = config_path(argv)
  if not path then return argv end
  local cfg, err = M.load_config(path)
  if not cfg then return nil, string.format("invalid value for --config: %s (%s)", M.shown_value("config", path), err) end
  if cfg.hmac_key ~= nil then
    local ok, perr = core.key_path_check(path, "file")
    if not ok then return nil, string.format("config %s holds hmac_key: %s", M.shown_value("config", path), perr) end
  end
  local by_key = {}
  for _, o in ipairs(options) do by_key[o[3]:sub(3):gsub("-", "_")] = { opt = o } end
  for _, fl in ipairs(flags) do if fl[3] then by_key[fl[3]:sub(3):gsub("-", "_")] = { flag = fl } end end
  local set = given(argv, options, flags)
  M.cli_given = set
  M.from_config = { path = path } -- flag -> config key, for the flags the file set (messages name the key)
  local keys = {}
  for k in pairs(cfg) do
    if type(k) ~= "string" then return nil, string.format("config %s: bad key %s (setting names are strings)", path, tostring(k)) end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local front = {}
  for _, k in ipairs(keys) do
    local v, e = cfg[k], by_key[k]
    local list = LIST_KEYS[k]
    if list and by_key[list] then
      -- a list of values: one --flag=value each (e.g. sessions -> --session)
      local o = by_key[list].opt
      if type(v) ~= "table" then
        return nil, string.format("config %s: bad value for '%s': %s (expected a list of %s)", path, k, tostring(v), o[8])
      end
      for _, x in ipairs(v) do
        x = tostring(x)
        if o[7] and o[7](x) == nil then
          return nil, string.format("config %s: bad value for '%s': '%s' (expected %s)", path, k, x, o[8])
        end
        if not set[o[3]] then
          front[#front + 1] = o[3] .. "=" .. x
          M.from_config[o[3]] = k
        end
      end
      e = nil
    elseif not e or k == "config" then
      return nil, string.format("config %s: unknown key '%s'", path, k)
    end
    if not e then -- luacheck: ignore 542 (a list, done above)
    elseif e.flag then
      if type(v) ~= "boolean" then
        return nil, string.format("config %s: bad value for '%s': %s (expected true or false)", path, k, tostring(v))
      end
      if v and not set[e.flag[3]] then
        front[#front + 1] = e.flag[3]
        M.from_config[e.flag[3]] = k
      end
    else
      local o = e.opt
      if type(v) == "table" and k == "allow_return_address" then v = table.concat(v, ",") end
      if type(v) == "number" and v == math.floor(v) and math.abs(v) < 2 ^ 53 then v = string.format("%d", v) end
      if type(v) == "table" then -- e.g. `session = {...}` for `sessions`
        local hint
        for lk, fl in pairs(LIST_KEYS) do if fl == k then hint = lk end end
        return nil, string.format("config %s: bad value for '%s': a list (expected %s%s)", path, k,
          o[8] or "a string or a number", hint and string.format("; a list goes in '%s'", hint) or "")
      end
      if type(v) ~= "string" and type(v) ~= "number" then
        return nil, string.format("config %s: bad value for '%s': %s (expected %s)", path, k,
          M.shown_value(k, tostring(v)), o[8] or "a string or a number")
      end
      v = tostring(v)
      local short = k == "hmac_key" and core.hex_decode((v:gsub("%s+", "")))
      if short and #short < MIN_KEY then -- say why, as a key file does
        return nil, string.format("config %s: bad value for '%s': %s (a key of %d octets; at least %d needed)", path, k,
          M.shown_value(k, v), #short, MIN_KEY)
      end
      if o[7] and o[7](v) == nil then
        return nil, string.format("config %s: bad value for '%s': %s (expected %s)", path, k, M.shown_value(k, v), o[8])
      end
      if not set[o[3]] then
        front[#front + 1] = o[3] .. "=" .. v
        M.from_config[o[3]] = k
      end
    end
  end
  local out = {}
  for _, a in ipairs(front) do out[#out + 1] = a end
  for _, a in ipairs(argv) do out[#out + 1] = a end
  return out
end

-- ---------------------------------------------------------------- keys


--- Read the per-SSID keys of a directory: `XXXX.key` (4 hex digits, the SSID)
-- and `default.key`, hex digits each, at least 16 octets. Refused: a directory
-- group or others may write, files group or others may access, anything not
-- owned by root, by the effective user or by `uid`, anything not a regular file.
-- @tparam string dir
-- @tparam[opt] integer uid the `--user` one, also accepted as owner
-- @treturn table|nil { default = octets|nil, [ssid] = octets }, or nil and a message
function M.read_key_dir(dir, uid)
  local ok, derr = core.key_path_check(dir, "dir", uid)
  if not ok then return nil, derr end
  local names, lerr = core.key_dir_list(dir)
  if not names then return nil, lerr end
  local keys, n = {}, 0
  table.sort(names)
  for _, name in ipairs(names) do
    local ssid = name:match("^(%x%x%x%x)%.key$")
    if ssid or name == "default.key" then
      local path = dir .. "/" .. name
      local fok, ferr = core.key_path_check(path, "file", uid)
      if not fok then return nil, ferr end
      local key, err = core.key_file_read(path)
      if not key then return nil, err end
      if #key < MIN_KEY then
        return nil, string.format("key file %s: a key of %d octets; at least %d needed", path, #key, MIN_KEY)
      end
      keys[ssid and tonumber(ssid, 16) or "default"] = key
      n = n + 1
    end
  end
  if n == 0 then return nil, string.format("no key in %s (expected XXXX.key per SSID, or default.key)", dir) end
  return keys
end

-- What a misnamed key file was probably meant to be (a hint for the warning), or nil.
-- The name a misnamed key file was meant to have, for a rename hint; nil for a backup (`002a.key.bak`,
-- `002a.key~`) or when that name holds a key already (renaming would overwrite it).
local function meant_as(name, keys)
  local stem = name:match("^(.-)%.[kK][eE][yY]$")
  if not stem then return nil end
  if stem:match("^%x%x%x%x$") then
    return not keys[tonumber(stem, 16)] and stem:lower() .. ".key" or nil
  end
  if stem:lower() == "default" then return not keys.default and "default.key" or nil end
  local n = stem:match("^%d+$") and tonumber(stem)
  if n and n <= 65535 and not keys[n] then return string.format("%04x.key (SSID %d)", n, n) end
end

--- Say what a key directory holds, at start and on every SIGHUP: the SSIDs that have their own key
-- (never the keys), and one warning per name that looks meant as a key but is ignored (`42.key`,
-- `002a.KEY`, `002a.key.bak`, `002a.key~`: not `XXXX.key` with 4 hex digits nor `default.key`), so a
-- misnamed per-SSID key does not silently leave its SSID on the default key.
-- @tparam string dir
-- @tparam table keys what `read_key_dir` returned
-- @tparam[opt] string prefix put in front of each line (e.g. "SIGHUP: ")
-- @tparam[opt] boolean quiet no info line (warnings only; e.g. a sender)
function M.report_key_dir(dir, keys, prefix, quiet)
  prefix = prefix or ""
  if not quiet then
    local own = {}
    for k in pairs(keys) do if k ~= "default" then own[#own + 1] = k end end
    table.sort(own)
    for i, k in ipairs(own) do own[i] = string.format("%d", k) end
    M.log("info", string.format("%s--hmac-key-dir %s: %s; %s", prefix, dir,
      #own > 0 and ("own key for SSID " .. table.concat(own, ", ")) or "no SSID has its own key",
      keys.default and "default.key for every other SSID" or "no default.key: other SSIDs are not answered"))
  end
  local names, err = core.key_dir_misnamed(dir)
  if not names then
    M.log("warning", prefix .. "--hmac-key-dir " .. dir .. ": names not checked: " .. tostring(err))
    return
  end
  table.sort(names)
  for _, name in ipairs(names) do
    local hint = meant_as(name, keys or {})
    M.log("warning", string.format("%s--hmac-key-dir %s: '%s' is ignored: a key file is named XXXX.key (the SSID "
      .. "in 4 hex digits) or default.key%s", prefix, dir, name:gsub("%c", "?"),
      hint and ("; rename it " .. hint) or ""))
  end
end

--- A short, key-free description of a key table and what changed from `old`.
-- @tparam table new
-- @tparam[opt] table old
-- @treturn table fields for `log`
function M.describe_keys(new, old)
  local added, removed, changed = {}, {}, {}
  local function name(k) return k == "default" and "default" or string.format("%d", k) end
  for k, v in pairs(new) do
    if not old or old[k] == nil then added[#added + 1] = name(k)
    elseif old[k] ~= v then changed[#changed + 1] = name(k) end
  end
  for k in pairs(old or {}) do if new[k] == nil then removed[#removed + 1] = name(k) end end
  table.sort(added) table.sort(removed) table.sort(changed)
  local n = 0
  for _ in pairs(new) do n = n + 1 end
  return { keys = n, added = table.concat(added, ","), removed = table.concat(removed, ","),
    changed = table.concat(changed, ",") }
end

--- Keys from `--hmac-key-dir` or the `STAMP_HMAC_KEY` environment variable
-- (when no `--hmac-key`/`--hmac-key-file` is given). Sets `a.hmac_key` (the
-- default key, or the `--ssid` one for a sender) and `a.hmac_keys`.
-- @tparam table a the parsed command line
-- @treturn string|nil a message naming the flag when something is wrong
function M.resolve_keys(a)
  if a.user then
    -- a name that does not resolve is a usage error, found before anything is bound
    local uid, uerr = core.user_lookup(a.user)
    if not uid then return "invalid value for --user: '" .. a.user .. "' (" .. uerr .. ")" end
    a.user_uid = uid
    if uid == 0 then -- accepted, but nothing is dropped: say so (review 9)
      M.set_log_format(a.log_format)
      M.log("warning", "--user " .. a.user .. " is root (uid 0): privileges are not dropped "
        .. "(name an unprivileged user, e.g. --user nobody)")
    end
  end
  if a.hmac_key_dir then
    if a.hmac_key or a.hmac_key_file then
      return "give either --hmac-key-dir or --hmac-key/--hmac-key-file, not both"
    end
    local keys, err = M.read_key_dir(a.hmac_key_dir, a.user_uid)
    if not keys then return string.format("invalid value for --hmac-key-dir: '%s' (%s)", a.hmac_key_dir, err) end
    a.hmac_keys = keys
    M.set_log_format(a.log_format)
    M.report_key_dir(a.hmac_key_dir, keys, nil, not a.is_reflector)
    a.hmac_key = (not a.is_reflector and a.ssid and keys[a.ssid]) or keys.default
    if not a.hmac_key then
      for _, v in pairs(keys) do a.hmac_key = a.hmac_key or v end
    end
  elseif not a.hmac_key and not a.hmac_key_file then
    local env = os.getenv("STAMP_HMAC_KEY")
    if env and env ~= "" then
      local key = core.hex_decode((env:gsub("%s+", "")))
      if not key then return "invalid value for STAMP_HMAC_KEY (expected an even number of hex digits)" end
      if #key < MIN_KEY then
        return string.format("invalid value for STAMP_HMAC_KEY (a key of %d octets; at least %d needed)", #key, MIN_KEY)
      end
      a.hmac_key = key
      a.hmac_key_from_env = true
    end
  end
end

-- Settings a running reflector can change (config key -> how), and the others.
local LIVE = { max_pps = "rate", reflector_rate_burst = "rate", session_admission = "admission", sessions = "admission",
  reflected_control_max_rate = "t12", reflected_control_max_volume = "t12", hmac_key = "key",
  -- the TLV policy (stamp_tlv_policy_t): replaced whole
  tlv_mode = "policy", verify_tlv_hmac = "policy", cos_refuse = "policy", allow_return_address = "policy",
  reflector_member_link_id = "policy", reflected_control_max_count = "policy", reflected_control_max_size = "policy",
  reflected_control_min_interval_ns = "policy", reflected_control_max_interval_ns = "policy",
  reflected_control_max_bursts_per_source = "policy" }

-- A setting as a log shows it (a list: its items, comma-separated).
local function shown(v)
  if type(v) == "table" then
    local t = {}
    for i, x in ipairs(v) do t[i] = tostring(x) end
    return "{" .. table.concat(t, ", ") .. "}"
  end
  return tostring(v)
end

-- Call a setter of the engine: nil when it took the value, else why not (it raised, or returned nil, message).
local function call_setter(set, engine, ...)
  local ok, res, msg = pcall(set, engine, ...)
  if not ok then return tostring(res) end
  if not res then return tostring(msg) end
end

-- What a running reflector is told when a live group changed; a message when it cannot be.
-- `n` is the new command line as `stamp.cli` parses it (the file checked as at start: every value
-- converted and in range, the command line's flags winning over the file).
local APPLY = {
  rate = function(svc, n)
    local set = svc.engine.set_rate
    if not set then return "this reflector cannot change its rate limit while it runs" end
    local err = call_setter(set, svc.engine, n.max_pps or 0, n.reflector_rate_burst or 0)
    if err then return "rate limit kept as it was: " .. err end
  end,
  admission = function(svc, n)
    local mode, list = n.session_admission or "open", n.session or {}
    local set = svc.engine.set_admission
    if not set then return "this reflector cannot change its session admission while it runs" end
    local ok, err = pcall(set, svc.engine, mode, list)
    if not ok then return "session admission kept as it was: " .. tostring(err) end
    M.log("info", string.format("SIGHUP: session admission %s%s", mode,
      mode == "provisioned" and string.format(", %d session(s) %s", #list, shown(list)) or ""))
    if mode ~= "provisioned" and #list > 0 then -- as at start (--session without provisioned admission)
      M.log("warning", "SIGHUP: sessions given but session_admission is open: every SSID is answered and the "
        .. "sessions are not used")
    end
    if mode == "provisioned" and #list == 0 then -- as at start
      M.log("warning", "SIGHUP: session admission provisioned with no sessions: every packet is dropped "
        .. "(drop_unprovisioned)")
    end
  end,
  -- the default key, with the rules of a key file: hex, at least 16 octets, the file not readable by
  -- group or others; on any failure the key in force stays; the key is never logged
  key = function(svc, n)
    local a = svc.a
    local what = "hmac_key in " .. a.config .. " kept as it was"
    if a.hmac_key_dir then return what .. ": --hmac-key-dir gives the keys" end
    local key = n.hmac_key
    if type(key) ~= "string" then return what .. ": a key is needed (none in the file)" end
    if #key < MIN_KEY then
      return string.format("%s: a key of %d octets; at least %d needed", what, #key, MIN_KEY)
    end
    local okp, perr = core.key_path_check(a.config, "file", a.user_uid)
    if not okp then return what .. ": " .. tostring(perr) end
    local set = svc.engine.set_keys
    if not set then return "this reflector cannot change its key while it runs" end
    local err = call_setter(set, svc.engine, { default = key })
    if err then return what .. ": " .. err end
    a.hmac_key = key
    M.log("info", string.format("SIGHUP: hmac_key changed: the new key (%d octets, not shown) is in force", #key))
  end,
  -- the whole TLV policy from the new settings (what is not given takes its default, as at start)
  policy = function(svc, n)
    local set = svc.engine.set_tlv_policy
    if not set then return "this reflector cannot change its TLV policy while it runs" end
    local p = {
      tlv_mode = n.tlv_mode, verify_tlv_hmac = n.verify_tlv_hmac or false, cos_refuse = n.cos_refuse or false,
      allow_return_address = n.allow_return_address, member_link_id = n.reflector_member_link_id,
      reflected_max_count = n.reflected_control_max_count, reflected_max_size = n.reflected_control_max_size,
      reflected_min_interval_ns = n.reflected_control_min_interval_ns,
      reflected_max_interval_ns = n.reflected_control_max_interval_ns,
      reflected_max_bursts_per_source = n.reflected_control_max_bursts_per_source,
    }
    local err = call_setter(set, svc.engine, p)
    if err and (p.reflected_max_count or 0) > 0 then
      -- Type 12 cannot be turned on in a reflector started without it: the rest (a narrowed Return Address
      -- list, verify_tlv_hmac, ...) must not wait for a restart; applied with Type 12 kept off, and this
      -- group is retried at the next SIGHUP (counted as a failed reload)
      p.reflected_max_count = 0
      if not call_setter(set, svc.engine, p) then
        M.log("info", string.format("SIGHUP: TLV policy in force but for type 12 (kept off): Return Address %s",
          n.allow_return_address and #n.allow_return_address > 0 and shown(n.allow_return_address) or "refused"))
        return "type 12 kept off: " .. err
      end
    end
    if err then return "TLV policy kept as it was: " .. err end
    M.log("info", string.format("SIGHUP: TLV policy in force: type 12 %s, Return Address %s", (n.reflected_control_max_count
      or 0) > 0 and string.format("up to %d replies", n.reflected_control_max_count) or "off",
      n.allow_return_address and #n.allow_return_address > 0 and shown(n.allow_return_address) or "refused"))
  end,
  t12 = function(svc, n)
    local set = svc.engine.set_reflected_limit
    if not set then return "this reflector cannot change its type 12 limit while it runs" end
    -- the defaults of the constructor: 1,250,000 octets/s with type 12 on, the volume from the rate
    local rate = n.reflected_control_max_rate or ((n.reflected_control_max_count or 0) > 0 and 1250000 or 0)
    local err = call_setter(set, svc.engine, rate, n.reflected_control_max_volume or 0)
    if err then return "type 12 limit kept as it was: " .. err end
  end,
}

-- The new settings, checked exactly as at start: the command's parser over the same command line
-- (`svc.check_config`, set by `stamp.cli`), or over `--config FILE -i` for a host that set none.
local function check_config(svc)
  if svc.check_config then return svc.check_config() end
  local a = svc.a
  return require("stamp.cli").parse({ "-i", "--config", a.config }, { has_key = a.hmac_key ~= nil or a.hmac_keys ~= nil })
end

-- SIGHUP with --config: read the file again and check it as at start (anything wrong: everything
-- stays as it was, one line naming the key); apply what can change live (each group of settings
-- compared with what is in force: a group that failed is tried again at the next SIGHUP), say which
-- other settings changed (they take effect at restart). Returns nil when nothing failed, else false.
local function reload_config(svc)
  local a = svc.a
  local function kept(why)
    M.log("error", "SIGHUP: --config " .. a.config .. " kept as it was: " .. tostring(why))
    return false
  end
  local cfg, err = M.load_config(a.config)
  if not cfg then return kept(err) end
  local n, nerr = check_config(svc)
  if not n then
    -- "config FILE: bad value for 'max_pps': ..." -> "bad value for 'max_pps': ..."
    nerr = tostring(nerr)
    local prefix = "config " .. a.config .. ": "
    if nerr:sub(1, #prefix) == prefix then nerr = nerr:sub(#prefix + 1) end
    return kept(nerr)
  end
  local given_set = M.cli_given or {}
  local old = svc.config or {}
  local keys = {}
  for k in pairs(cfg) do keys[#keys + 1] = tostring(k) end
  for k in pairs(old) do if cfg[k] == nil then keys[#keys + 1] = tostring(k) end end
  table.sort(keys)
  local changed, groups = {}, {}
  for i, k in ipairs(keys) do
    local flag = "--" .. (LIST_KEYS[k] or k):gsub("_", "-")
    if k ~= keys[i - 1] and shown(cfg[k]) ~= shown(old[k]) and not given_set[flag] then
      if LIVE[k] then
        if not changed[LIVE[k]] then groups[#groups + 1] = LIVE[k] end
        changed[LIVE[k]] = true
        if LIVE[k] ~= "key" then M.log("info", "SIGHUP: " .. k .. " " .. shown(old[k]) .. " -> " .. shown(cfg[k])) end
      else
        M.log("warning", "SIGHUP: " .. k .. " changed in " .. a.config .. "; it takes effect at restart")
      end
    elseif k ~= keys[i - 1] and shown(cfg[k]) ~= shown(old[k]) then -- shadowed: say so, never silently
      M.log("info", "SIGHUP: " .. k .. " changed in " .. a.config .. " but " .. flag
        .. " on the command line stays in force")
    end
  end
  -- what is in force from now: the new file, but for a group that failed its settings as they were
  local now = {}
  for k, v in pairs(cfg) do now[k] = v end
  local failed = false
  for _, g in ipairs(groups) do
    local aerr = APPLY[g](svc, n)
    if aerr then
      M.log("error", "SIGHUP: " .. aerr)
      failed = true
      for k, grp in pairs(LIVE) do if grp == g then now[k] = old[k] end end
    end
  end
  svc.config = now
  if failed then return false end
end

--- SIGHUP: read the config file and the key directory again, apply what can
-- change live and log what changed (never the keys).
-- @tparam table svc the service
-- @treturn boolean whether the new settings are in force
function M.reload(svc)
  local a = svc.a
  if svc.engine.refresh then svc.engine:refresh() end -- interface MTUs are read again
  if not a.hmac_key_dir and not a.config then
    M.log("info", "SIGHUP: nothing to reload yet; the reflector goes on")
    return true
  end
  local cfg_ok = true
  if a.config then cfg_ok = reload_config(svc) ~= false end
  if not a.hmac_key_dir then return cfg_ok end
  local keys, err = M.read_key_dir(a.hmac_key_dir, a.user_uid)
  if not keys then
    M.log("error", "SIGHUP: keys kept as they were: " .. err)
    return false
  end
  local what = M.describe_keys(keys, a.hmac_keys)
  local set = svc.engine.set_keys
  if not set then
    M.log("error", "SIGHUP: this reflector cannot change its keys while it runs", what)
    return false
  end
  local ok, serr = set(svc.engine, keys)
  if not ok then
    M.log("error", "SIGHUP: keys kept as they were: " .. tostring(serr))
    return false
  end
  a.hmac_keys = keys
  M.log("info", "SIGHUP: keys reloaded", what)
  M.report_key_dir(a.hmac_key_dir, keys, "SIGHUP: ")
  return cfg_ok
end

-- ---------------------------------------------------------------- the service around an engine

local Service = {}
Service.__index = Service

--- Set up what the command needs around a reflector or sender that is bound:
-- metrics endpoint, privilege drop, process name, SIGHUP.
-- @tparam string role "reflector" or "sender"
-- @tparam table a the parsed command line
-- @param engine the reflector or sender object
-- @treturn table|nil the service, or nil and a message
function M.service(role, a, engine)
  M.set_log_format(a.log_format)
  local self = setmetatable({ role = role, a = a, engine = engine }, Service)
  if a.config then self.config = M.load_config(a.config) end
  if a.metrics then
    local m = core.metrics(role):attach(engine)
    local port, err = m:serve(a.metrics_addr)
    if not port then
      m:close()
      return nil, string.format("cannot serve metrics on %s: %s", a.metrics_addr, err)
    end
    self.metrics = m
    M.log("info", "metrics at http://" .. a.metrics_addr:gsub(":%d+$", ":" .. port) .. "/metrics")
  end
  if a.user then
    local ok, err = core.drop_privileges(a.user)
    if not ok then
      self:close()
      return nil, "--user " .. a.user .. ": " .. err
    end
    M.log("info", "running as " .. a.user)
    if a.config and role == "reflector" then
      local cf = io.open(a.config, "rb")
      if cf then cf:close() else
        M.log("warning", "--config " .. a.config .. " is not readable as --user " .. a.user
          .. ": SIGHUP cannot re-read it (make it readable by that user)")
      end
    end
    if a.hmac_key_dir then
      -- SIGHUP reads the keys as this user: refuse a rotation that could never work
      local keys, kerr = M.read_key_dir(a.hmac_key_dir, a.user_uid)
      if not keys then
        self:close()
        return nil, string.format("--hmac-key-dir %s: not readable as --user %s, so SIGHUP could not change the keys "
          .. "(make the directory and its keys owned by that user): %s", a.hmac_key_dir, a.user, kerr)
      end
    end
  end
  if role == "reflector" and a.hmac_keys then
    -- the whole per-SSID table (the constructor got the default key)
    local set = engine.set_keys
    if set then
      local ok, err = set(engine, a.hmac_keys)
      if not ok then
        self:close()
        return nil, "--hmac-key-dir " .. a.hmac_key_dir .. ": " .. tostring(err)
      end
    else
      local n = 0
      for k in pairs(a.hmac_keys) do if k ~= "default" then n = n + 1 end end
      if n > 0 then M.log("warning", "this reflector takes one key: per-SSID keys ignored, the default key used") end
    end
  end
  local cok, cerr = core.clock_state_check()
  if not cok then
    M.log("warning", cerr .. ": every timestamp is marked unsynchronized (S=0), one-way delays are lost; "
      .. "under systemd allow clock_adjtime (no ProtectClock=)")
  end
  core.set_process_name("stamp " .. role)
  return self
end

--- Record a sender result in the metrics (no-op without `--metrics`).
-- @tparam table r
function Service:observe(r)
  if self.metrics then self.metrics:observe(r) end
end

--- One reflector step (timed for the processing histogram with `--metrics`).
-- @tparam integer wait milliseconds
-- @treturn integer|nil datagrams handled, or nil, message, code
function Service:step(wait)
  if self.metrics then return self.metrics:reflector_step(self.engine, wait) end
  return self.engine:step(wait)
end

-- Drops worth a warning (counter, what it means); absent counters are skipped.
local NOISY = {
  { "drop_hmac", "packets failed HMAC verification (wrong key or forged)" },
  { "tlv_integrity", "packets failed the HMAC TLV check" },
  { "drop_rate", "packets over --max-pps were not answered" },
  { "replayed", "authenticated packets were replays" },
  { "drop_short", "packets were too short to answer" },
  { "drop_unprovisioned", "packets matched no provisioned session (--session-admission provisioned)" },
  { "drop_kernel", "packets were dropped by the kernel, the socket's receive queue full (try --workers)" },
}

--- Warn about drops, at most once per `every` seconds per kind (the lines held back are counted).
-- @tparam table c the counters now
-- @tparam[opt=10] number every seconds
function Service:warn_drops(c, every)
  self.seen = self.seen or {}
  for _, n in ipairs(NOISY) do
    local k, now = n[1], c[n[1]]
    if now then
      -- the count since the last line printed (not since the last tick)
      local before = self.seen[k] or 0
      if now > before and M.log_limited("drops:" .. k, every or 10, "warning",
          string.format("%d %s", now - before, n[2]), { total = now }) then
        self.seen[k] = now
      end
    end
  end
end

--- Run the reflector like `reflector:run`, handling SIGHUP with `reload`.
-- @tparam table o `on_tick(counters)` about once a second, `reload()` on SIGHUP
-- @treturn table|nil the counters, or nil, message, code
function Service:run(o)
  o = o or {}
  local r = self.engine
  -- the engine's wait also wakes (to the nanosecond) when a type 12 extra reply is due
  local wait = 200
  local last_tick = core.mono()
  while not core.interrupted() do
    if core.hangups() > 0 then
      local ok = true
      if o.reload then
        -- whatever goes wrong in a reload (a signal, a file that vanished) keeps what is in force
        local pok, res = pcall(o.reload)
        if not pok then M.log("error", "SIGHUP: settings and keys kept as they were: " .. tostring(res)) end
        ok = pok and res ~= false
      else M.log("info", "SIGHUP: nothing to reload yet; the reflector goes on") end
      if self.metrics then self.metrics:reloaded(ok) end
    end
    local n, err, code = self:step(wait)
    if not n then return nil, err, code end
    if core.mono() - last_tick >= 1e9 then
      last_tick = core.mono()
      local c = r:counters()
      self:warn_drops(c)
      if o.on_tick then o.on_tick(c) end
    end
  end
  self:warn_drops(r:counters(), 0) -- what the rate limit held back, before the counters block
  return r:counters()
end

--- Stop the metrics endpoint (before the engine closes).
function Service:close()
  if self.metrics then
    self.metrics:close()
    self.metrics = nil
  end
end

return M
