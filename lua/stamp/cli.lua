--- The `stamp` command: argument parsing (argparse) and the two roles.
-- `bin/stamp` only calls `main`.
-- @module stamp.cli
local argparse = require "argparse"
local stamp = require "stamp"
local report = require "stamp.report"
local ops = require "stamp.ops"
local core = stamp.core

local M = {}

-- Value checks, one per kind; each returns the converted value or nil.
local function int_in(lo, hi)
  return function(s)
    local n = tonumber(s)
    -- decimal only; an integral value written as a float (64.0, 1e3) is that integer, as in the Lua options
    if n and n == math.floor(n) and n >= lo and n <= hi and s:match("^%s*[-+]?%d*%.?%d*[eE]?[-+]?%d*%s*$") then
      return math.tointeger and math.tointeger(n) or math.floor(n)
    end
  end, string.format("an integer from %d to %d", lo, hi)
end

local function num_in(lo, hi)
  return function(s)
    local n = tonumber(s)
    if n and n == n and n >= lo and n <= hi then return n end
  end, string.format("a number from %s to %s", tostring(lo), tostring(hi))
end

local function addr_ok(a) return (pcall(core.tlv_encode, { { type = 9, addr = a } })) end

-- `7@::1:5`: an IPv6 address written without brackets whose last group could be a port
-- (::1 port 5, or the address ::1:5); nil when the session is not written that way.
local function session_ambiguous(s)
  local host = s:match("^%d+@([^%[]*:[^%[]*:[^%[]*)$")
  local addr, port = (host or ""):match("^(.*):(%d+)$")
  if addr and tonumber(port) <= 65535 and addr_ok(addr) then
    return string.format("'%s' is ambiguous: write %s@[%s]:%s for the address %s port %s, or %s@[%s] for the "
      .. "address %s", s, s:match("^%d+"), addr, port, addr, port, s:match("^%d+"), host, host)
  end
end

-- A provisioned session SSID[@ADDR[:PORT]] (IPv6 with a port in brackets: 7@[::1]:862).
local function session_spec()
  return function(s)
    local ssid, rest = s:match("^(%d+)(.*)$")
    if not ssid or tonumber(ssid) > 65535 then return nil end
    if rest == "" then return s end
    if session_ambiguous(s) then return nil end
    local host, port = rest:match("^@%[([^%]]+)%]:(%d+)$")
    if not host then host = rest:match("^@%[([^%]]+)%]$") end
    if not host then host, port = rest:match("^@([%d.]+):(%d+)$") end
    if not host then host = rest:match("^@([^%[%]]+)$") end
    port = tonumber(port)
    if host and addr_ok(host) and (not port or (port >= 1 and port <= 65535)) then return s end
  end, "SSID[@ADDR[:PORT]], SSID 0-65535, [IPv6]:PORT"
end

local function one_of(...)
  local set, list = {}, { ... }
  for _, v in ipairs(list) do set[v:upper()] = v end
  return function(s) return set[s:upper()] end, "one of " .. table.concat(list, ", ")
end


-- HMAC keys: at least 16 octets (RFC 8762 §4.4 keys are up to 256 octets long).
local MIN_KEY = 16

local function hex_key(s)
  local k = core.hex_decode(s)
  if k and #k >= MIN_KEY then return k end
end

-- name, short, long, argument name, default, description, check, check description
local OPTIONS = {
  { "remote_addr", "-r", "--remote-addr", "REMOTE_ADDR", nil, "Address of the Session-Reflector (sender; required)" },
  { "local_addr", "-S", "--local-addr", "LOCAL_ADDR", "0.0.0.0", "Local address to bind to" },
  { "remote_port", "-p", "--remote-port", "REMOTE_PORT", "862", "UDP port of the Session-Reflector (sender's destination)",
    int_in(1, 65535) },
  { "local_port", "-o", "--local-port", "LOCAL_PORT", nil,
    "Local UDP port to bind (sender: 0 = any, the default; reflector: 862)", int_in(0, 65535) },
  { "clock_source", "-K", "--clock-source", "CLOCK_SOURCE", "NTP", "Clock source to be used (NTP or PTP)", one_of("NTP", "PTP") },
  { "send_delay", "-d", "--send-delay", "SEND_DELAY", "1000", "Delay between packets in milliseconds (fractions allowed)",
    num_in(0, 3600000) },
  { "count", "-c", "--count", "COUNT", "1000", "Number of packets to send (0: until interrupted)", int_in(0, 4294967295) },
  { "duration", nil, "--duration", "SECONDS", nil, "Send for SECONDS seconds (instead of --count packets, unless both are given)",
    num_in(0.000001, 31536000) },
  { "timeout", "-L", "--timeout", "TIMEOUT", "5", "Timeout for lost packets in seconds", num_in(0.001, 3600) },
  { "auth_mode", "-A", "--auth-mode", "AUTH_MODE", "O", "Work mode: A=authenticated, O=open", one_of("A", "O") },
  { "session_timeout", nil, "--session-timeout", "SECONDS", "300", "Session timeout for stateful mode", num_in(0.001, 31536000) },
  { "hmac_key", nil, "--hmac-key", "HEX", nil, "HMAC key in hex format, 16 to 256 octets", hex_key,
    "an even number of hex digits, 16 to 256 octets" },
  { "hmac_key_file", nil, "--hmac-key-file", "PATH", nil, "Path to file containing HMAC key (hex, or raw octets)" },
  { "ssid", nil, "--ssid", "ID", nil, "Session-Sender Identifier, 0-65535 (0: none, the default)", int_in(0, 65535) },
  { "ttl", nil, "--ttl", "TTL", "255", "TTL / Hop Limit of sent packets", int_in(1, 255) },
  -- output and campaigns
  { "output_format", nil, "--output-format", "FORMAT", "text", "Sender output: text, json, csv or jsonl",
    one_of("text", "json", "csv", "jsonl") },
  { "report_interval", nil, "--report-interval", "SEC", nil, "Print a summary of each interval of SEC seconds",
    num_in(0.1, 86400) },
  { "plot", nil, "--plot", "FILE.svg", nil, "Write an SVG plot of the run (delays over time, losses, histogram)" },
  { "campaign", nil, "--campaign", "FILE.lua", nil, "Run the campaign that FILE.lua returns (see README)" },
  { "schedule", nil, "--schedule", "SCHEDULE", "periodic", "Sending schedule: periodic or poisson (mean --send-delay)",
    one_of("periodic", "poisson") },
  -- TLVs (RFC 8972, RFC 9503, RFC 9534, reflected packet control)
  { "tlv_mode", nil, "--tlv-mode", "MODE", "echo", "Reflector TLV handling: echo (process, RFC 8972) or ignore (return unprocessed)",
    one_of("echo", "ignore") },
  { "dscp", nil, "--dscp", "VALUE", nil, "DSCP for the CoS TLV (DSCP1) and the test packets (0-63)", int_in(0, 63) },
  { "ecn", nil, "--ecn", "VALUE", nil, "ECN of the test packets (0-3)", int_in(0, 3) },
  { "packet_dscp", nil, "--packet-dscp", "VALUE", nil, "DSCP of the test packets when it differs from --dscp", int_in(0, 63) },
  { "access_report", nil, "--access-report", "ID", nil, "Access Report TLV with this Access ID (1 3GPP, 2 non-3GPP)",
    int_in(1, 2) },
  { "access_return_code", nil, "--access-return-code", "CODE", "1", "Return Code for the Access Report TLV", int_in(0, 255) },
  { "access_report_timeout", nil, "--access-report-timeout", "S", "3",
    "Access Report: resend it when no reply echoed it within S seconds (RFC 8972 4.6)", num_in(0.001, 3600) },
  { "access_report_retries", nil, "--access-report-retries", "N", "4", "Access Report: give up after N resends",
    int_in(0, 1000) },
  { "padding", nil, "--padding", "N", nil, "Extra Padding TLV of N octets (pseudo-random)", int_in(0, 9000) },
  { "destination_address", nil, "--destination-address", "ADDR", nil, "Destination Node Address TLV (RFC 9503)" },
  { "return_address", nil, "--return-address", "ADDR", nil, "Return Path TLV asking for replies to ADDR (RFC 9503)" },
  { "micro_session_id", nil, "--micro-session-id", "S[:R]", nil,
    "Micro-session ID TLV: our member link S, expected reflector link R (RFC 9534)" },
  { "reflected_count", nil, "--reflected-count", "N", nil, "Reflected Test Packet Control TLV: ask for N replies", int_in(0, 65535) },
  { "reflected_length", nil, "--reflected-length", "N", nil, "... and replies of N octets", int_in(0, 65535) },
  { "reflected_interval_ns", nil, "--reflected-interval-ns", "NS", nil, "... sent NS nanoseconds apart", int_in(0, 4294967295) },
  { "allow_return_address", nil, "--allow-return-address", "PREFIX", nil,
    "Reflector: honour Return Address TLVs inside these prefixes (comma-separated; default none)" },
  { "reflector_member_link_id", nil, "--reflector-member-link-id", "ID", nil, "Reflector: our member link ID (RFC 9534)",
    int_in(1, 65535) },
  { "reflected_control_max_count", nil, "--reflected-control-max-count", "N", "0",
    "Reflector: most replies granted per request by a type 12 TLV (0 = off)", int_in(0, 1000) },
  { "reflected_control_max_size", nil, "--reflected-control-max-size", "N", "1500",
    "Reflector: largest reply granted by a type 12 TLV (octets)", int_in(0, 9216) },
  { "reflected_control_min_interval_ns", nil, "--reflected-control-min-interval-ns", "NS", "1000000",
    "Reflector: shortest interval between type 12 replies", int_in(0, 3600000000000) },
  { "reflected_control_max_interval_ns", nil, "--reflected-control-max-interval-ns", "NS", "1000000000",
    "Reflector: longest interval between type 12 replies (0 = no bound; a burst holds a slot (N-1) x NS)",
    int_in(0, 4294967295) },
  { "reflected_control_max_bursts_per_source", nil, "--reflected-control-max-bursts-per-source", "N", "16",
    "Reflector: type 12 bursts running at once from one source address (0 = no bound)", int_in(0, 1048576) },
  { "reflected_control_max_rate", nil, "--reflected-control-max-rate", "OCTETS_PER_S", nil,
    "Reflector: type 12 replies granted across all sessions, octets/s (default 1250000 with type 12 on; 0 = unlimited)",
    num_in(0, 1e12) },
  { "reflected_control_max_volume", nil, "--reflected-control-max-volume", "OCTETS", nil,
    "Reflector: most octets of type 12 replies granted at once (default max(rate/10, 9216))", num_in(0, 1e12) },
  { "session_admission", nil, "--session-admission", "MODE", "open",
    "Reflector: open (every SSID answered) or provisioned (only --session sessions; RFC 8972 3)",
    one_of("open", "provisioned") },
  { "session", nil, "--session", "SSID[@ADDR[:PORT]]", nil,
    "Reflector: a provisioned session (repeatable; config key 'sessions', a list)", session_spec() },
  -- reflector abuse resistance and replay protection
  { "max_pps", nil, "--max-pps", "N", nil, "Reflector: most packets/s answered per source address (default unlimited)",
    num_in(0, 1e9) },
  { "reflector_rate_burst", nil, "--reflector-rate-burst", "N", nil,
    "Reflector: packets a source may send back to back above --max-pps (default max(1, N/10))", int_in(0, 1000000000) },
  { "max_sessions", nil, "--max-sessions", "N", "65536",
    "Reflector: most sessions kept; when full, the one idle longest is evicted", int_in(1, 16777216) },
  { "workers", nil, "--workers", "N", "1", "Reflector: N sockets on the port (SO_REUSEPORT), one thread each",
    int_in(1, 64) },
  { "replay_max_age", nil, "--replay-max-age", "SECONDS", nil,
    "Reflector, authenticated mode: a Sender Timestamp further than this from the receive time is a replay",
    num_in(0, 1e9) },
}

local FLAGS = {
  { "R", "-R", nil, "Print individual statistics for each packet" },
  { "quiet", "-q", "--quiet", "No live progress line on the terminal" },
  { "is_reflector", "-i", "--is-reflector", "Run as Session Reflector instead of Sender" },
  { "stateful_reflector", nil, "--stateful-reflector", "Enable stateful reflector mode (RFC 8972 Section 4)" },
  { "strict_packets", nil, "--strict-packets", "Reflector: drop packets shorter than the STAMP base packet" },
  { "drop_replayed", nil, "--drop-replayed", "Reflector, authenticated mode: do not answer replays (counted either way)" },
  { "cos", nil, "--cos", "Class of Service TLV (with --dscp/--ecn)" },
  { "location", nil, "--location", "Location TLV" },
  { "timestamp_info", nil, "--timestamp-info", "Timestamp Information TLV" },
  { "direct_measurement", nil, "--direct-measurement", "Direct Measurement TLV" },
  { "follow_up_telemetry", nil, "--follow-up-telemetry", "Follow-Up Telemetry TLV" },
  { "tlv_hmac", nil, "--tlv-hmac", "HMAC TLV protecting the TLVs (needs --hmac-key)" },
  { "no_reply", nil, "--no-reply", "Return Path TLV asking for no reply (one-way measurement)" },
  { "verify_tlv_hmac", nil, "--verify-tlv-hmac", "Reflector: verify HMAC TLVs (needs --hmac-key)" },
  { "drop_ssid_zero", nil, "--drop-ssid-zero", "Sender: with --ssid, drop replies carrying SSID 0 (legacy reflectors) instead of accepting them" },
  { "cos_refuse", nil, "--cos-refuse", "Reflector: local policy refuses CoS DSCP1 (replies keep the received DSCP, RP=1)" },
}

-- metrics, config, privileges, keys, logs: stamp.ops
for _, o in ipairs(ops.OPTIONS) do OPTIONS[#OPTIONS + 1] = o end
for _, f in ipairs(ops.FLAGS) do FLAGS[#FLAGS + 1] = f end

-- Options given any number of times (a list in args and a list in --config).
local REPEATABLE = { session = true }

local function build_parser()
  local p = argparse("stamp", "Simple Two-Way Active Measurement Protocol (RFC 8762, RFC 8972) sender and reflector")
    :add_help(false)
  p:flag("-h --help", "Print help"):action(function() io.stdout:write(p:get_help(), "\n") os.exit(0) end)
  p:flag("-V --version", "Print version"):action(function() print("stamp " .. stamp._VERSION) os.exit(0) end)
  for _, o in ipairs(OPTIONS) do
    local names = o[2] and (o[2] .. " " .. o[3]) or o[3]
    local opt = p:option(names, o[6]):argname("<" .. o[4] .. ">")
    if o[5] then opt:default(o[5]) end
    if REPEATABLE[o[1]] then opt:count("*") end
  end
  for _, f in ipairs(FLAGS) do
    local names = f[2] and f[3] and (f[2] .. " " .. f[3]) or (f[2] or f[3])
    p:flag(names, f[4])
  end
  return p
end

-- `--count -5` would be read as an unknown option "-5": glue negative
-- numbers to the option that takes them, so the error names the flag.
local function glue_negative(argv)
  local takes = {}
  for _, o in ipairs(OPTIONS) do
    takes[o[3]] = o[3]
    if o[2] then takes[o[2]] = o[3] end
  end
  local out, i = {}, 1
  while i <= #argv do
    local a = argv[i]
    local long = takes[a]
    if long and argv[i + 1] and argv[i + 1]:match("^%-[%d.]") then
      out[#out + 1] = long .. "=" .. argv[i + 1]
      i = i + 2
    else
      out[#out + 1] = a
      i = i + 1
    end
  end
  return out
end

local function fail(msg)
  msg = tostring(msg)
  -- a flag the --config file set: the message names its key too (the file says `max_pps`, not `--max-pps`)
  local fc = ops.from_config
  local flag = fc and msg:match("^[^(]-(%-%-[%w%-]+)")
  if flag and fc[flag] then msg = msg .. string.format(" [config key '%s' in %s]", fc[flag], fc.path) end
  -- one line whatever a path or value holds (control characters escaped, as in log lines)
  msg = msg:gsub("%c", function(c) return c == "\n" and "\\n" or string.format("\\x%02x", c:byte()) end)
  io.stderr:write("stamp: ", msg, "\n")
  return 2
end

local function read_key_file(path, uid)
  local okp, perr = core.key_path_check(path, "file", uid)
  if not okp then return nil, perr end
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local data = f:read("*a") or ""
  f:close()
  local hex = data:gsub("%s+", "")
  local key = hex:match("^%x+$") and core.hex_decode(hex)
  if key then return key end
  if #data == 0 then return nil, "empty file" end
  return data
end

--- Parse and check the command line.
-- With `reload` (SIGHUP: the same command line, its `--config` file read again), the same checks
-- run but nothing is printed, no key file is read (keys have their own reload) and a failure
-- returns nil and the message.
-- @tparam table argv
-- @tparam[opt] table reload `{ has_key = boolean }`: whether a key is in force (for the checks that need one)
-- @treturn table|nil args, or nil and the exit code after printing one line (with `reload`: nil and the message)
function M.parse(argv, reload)
  local p = build_parser()
  if #argv == 0 then
    if reload then return nil, "no command line" end
    io.stderr:write(p:get_usage(), "\n")
    return nil, 2
  end
  local function bad(msg)
    if reload then return nil, msg end
    return nil, fail(msg)
  end
  local cerr
  local argv0 = argv
  argv, cerr = ops.merge_config(argv, OPTIONS, FLAGS)
  if not argv then return bad(cerr) end
  local ok, args = p:pparse(glue_negative(argv))
  if not ok then return bad((args:gsub("\n.*", ""))) end
  args.argv = argv0
  for _, v in ipairs(argv) do -- --duration alone sends as many packets as fit in it
    if v == "-c" or v:match("^%-%-count") or v:match("^%-c.") then args.count_given = true end
    -- --metrics-addr (flag or config key) implies --metrics: an address nobody serves on would be silent
    if v == "--metrics-addr" or v:match("^%-%-metrics%-addr=") then args.metrics = true end
  end
  for _, o in ipairs(OPTIONS) do
    local check, what = o[7], o[8]
    local v = args[o[1]]
    if REPEATABLE[o[1]] and type(v) == "table" then
      for _, x in ipairs(v) do
        local amb = o[1] == "session" and session_ambiguous(x)
        if amb then return bad(string.format("invalid value for %s: %s", o[3], amb)) end
        if check(x) == nil then return bad(string.format("invalid value for %s: '%s' (expected %s)", o[3], x, what)) end
      end
    elseif check and v ~= nil then
      local conv = check(v)
      if conv == nil then
        return bad(string.format("invalid value for %s: %s (expected %s)", o[3], ops.shown_value(o[3], v), what))
      end
      args[o[1]] = conv
    end
  end
  -- the smallest reply a type 12 request can get: the base packet and the type 12 TLV (12 octets of Value)
  local smax, smin = args.reflected_control_max_size, (args.auth_mode == "A" and 112 or 44) + 16
  if smax and smax ~= 0 and smax < smin then
    return bad(string.format("invalid value for --reflected-control-max-size: %d (0 = no limit, or at least %d "
      .. "octets: the smallest reply to a type 12 request%s)", smax, smin, args.auth_mode == "A" and ", authenticated" or ""))
  end
  if args.session and #args.session > 0 and args.session_admission ~= "provisioned" and not reload then
    ops.set_log_format(args.log_format)
    local key = ops.from_config and ops.from_config["--session"] -- named as the user wrote it
    ops.log("warning", (key and string.format("'%s' in %s", key, ops.from_config.path) or "--session")
      .. " given but --session-admission is open: every SSID is answered and the sessions "
      .. "are not used (add --session-admission provisioned)")
  end
  local imax, imin = args.reflected_control_max_interval_ns, args.reflected_control_min_interval_ns
  if imax and imin and imax ~= 0 and imax < imin then
    return bad(string.format("invalid value for --reflected-control-max-interval-ns: %d is below "
      .. "--reflected-control-min-interval-ns %d (every type 12 burst would be refused)", imax, imin))
  end
  if reload then
    -- keys are read again by their own reload (the key directory) or the config's hmac_key; a file
    -- given by --hmac-key-file stays as read at start (it may no longer be readable as --user)
    if args.hmac_key_file and args.hmac_key then return bad("give either --hmac-key or --hmac-key-file, not both") end
    if args.hmac_key_dir and args.hmac_key then
      return bad("give either --hmac-key-dir or --hmac-key/--hmac-key-file, not both")
    end
    args.key_in_force = reload.has_key
  elseif args.hmac_key_file then
    if args.hmac_key then return bad("give either --hmac-key or --hmac-key-file, not both") end
    if args.user and not args.user_uid then args.user_uid = core.user_lookup(args.user) end
    local key, err = read_key_file(args.hmac_key_file, args.user_uid)
    if key and #key < MIN_KEY then key, err = nil, string.format("a key of %d octets; at least %d needed", #key, MIN_KEY) end
    if not key then return bad(string.format("invalid value for --hmac-key-file: '%s' (%s)", args.hmac_key_file, err)) end
    args.hmac_key = key
  end
  local kerr = not reload and ops.resolve_keys(args)
  if kerr then return bad(kerr) end
  if args.plot and args.user and not reload then -- written at the end of the run as --user: found unwritable now (review 9)
    local wok, werr = core.path_writable_as(args.plot, args.user)
    if not wok then return bad(string.format("invalid value for --plot: '%s' (%s)", args.plot, werr)) end
  end
  args.auth = args.auth_mode == "A"
  if not args.auth and not args.tlv_hmac and not args.verify_tlv_hmac then
    local unused = args.hmac_key_dir and "--hmac-key-dir" or args.hmac_key_file and "--hmac-key-file"
      or (args.hmac_key and not args.hmac_key_from_env) and "--hmac-key"
      or args.drop_replayed and "--drop-replayed" or args.replay_max_age and "--replay-max-age"
    if unused and not reload then
      ops.set_log_format(args.log_format)
      ops.log("warning", unused .. " given but --auth-mode is O: keys are not used, nothing is authenticated "
        .. "(add -A A, or --verify-tlv-hmac)")
    end
  end
  if args.auth and not (args.hmac_key or args.key_in_force) then
    return bad("invalid value for --auth-mode: 'A' (authenticated mode needs --hmac-key or --hmac-key-file)")
  end
  if (args.tlv_hmac or args.verify_tlv_hmac) and not (args.hmac_key or args.key_in_force) then
    return bad(string.format("invalid value for %s: HMAC TLVs need --hmac-key or --hmac-key-file",
      args.tlv_hmac and "--tlv-hmac" or "--verify-tlv-hmac"))
  end
  if args.allow_return_address then
    local list = {}
    for pfx in args.allow_return_address:gmatch("[^,%s]+") do
      local addr, plen = pfx:match("^([^/]+)/?(%d*)$")
      local okaddr, oct = pcall(core.tlv_encode, { { type = 9, addr = addr or "" } })
      plen = tonumber(plen)
      if not okaddr or (plen and plen > (#oct - 4) * 8) then
        return bad(string.format("invalid value for --allow-return-address: '%s' (expected PREFIX/LEN)", pfx))
      end
      list[#list + 1] = pfx
    end
    args.allow_return_address = list
  end
  -- RFC 9503 4.1 and 3, RFC 10052 4.3: combinations a sender must never send
  if args.no_reply and args.return_address then
    return bad("invalid value for --no-reply: a Control Code goes with no Return Address (RFC 9503 4.1)")
  end
  if args.no_reply and args.reflected_count ~= 0 and (args.reflected_count or args.reflected_length or args.reflected_interval_ns) then
    return bad("invalid value for --no-reply: never together with a type 12 request (RFC 10052 4.3)")
  end
  local n12, gap12 = args.reflected_count or 1, args.reflected_interval_ns or 0
  if n12 > 1 and (n12 - 1) * gap12 > (args.send_delay or 1000) * 1e6 then
    return bad(string.format("invalid value for --reflected-interval-ns: %d replies %d ns apart outlast "
      .. "--send-delay (%g ms); the next request must not start before the burst ends (RFC 10052 5)", n12, gap12,
      args.send_delay or 1000))
  end
  -- RFC 10052 5 SHOULD NOT: with Poisson gaps (exponential, mean --send-delay) any burst can outlast
  -- a gap; we warn (one line) with the chance that it does, and send as asked
  local burst_ms = n12 > 1 and (n12 - 1) * gap12 / 1e6 or 0
  if args.schedule == "poisson" and burst_ms > 0 and not args.is_reflector and not reload then
    local mean = args.send_delay or 1000
    local share = mean > 0 and 1 - math.exp(-burst_ms / mean) or 1
    ops.set_log_format(args.log_format)
    ops.log("warning", string.format("--schedule poisson with a type 12 burst of %d replies %d ns apart "
      .. "(%g ms): %.0f%% of the gaps (mean %g ms) are shorter, so the next request may start before the burst "
      .. "ends (RFC 10052 5 SHOULD NOT); use the periodic schedule to avoid it", n12, gap12, burst_ms, share * 100, mean))
  end
  if args.destination_address and (args.ssid or 0) == 0 then
    return bad("invalid value for --destination-address: needs a non-zero --ssid (RFC 9503 3)")
  end
  for _, k in ipairs { "destination_address", "return_address" } do
    local v = args[k]
    if v and not pcall(core.tlv_encode, { { type = 9, addr = v } }) then
      return bad(string.format("invalid value for --%s: '%s' (expected an IPv4 or IPv6 address)", k:gsub("_", "-"), v))
    end
  end
  if args.micro_session_id then
    local sid, rid = args.micro_session_id:match("^(%d+):?(%d*)$")
    sid, rid = tonumber(sid), tonumber(rid) or 0
    if not sid or sid > 65535 or rid > 65535 then
      return bad(string.format("invalid value for --micro-session-id: '%s' (expected S or S:R, 0-65535)", args.micro_session_id))
    end
    args.micro_session_id = { sender_id = sid, reflector_id = rid }
  end
  if not args.is_reflector and not args.campaign and not args.remote_addr then
    return bad("missing --remote-addr (the Session-Reflector to measure; -i to be one)")
  end
  return args
end

local function out(s)
  io.stdout:write(s, "\n")
  io.stdout:flush()
end

local function run_reflector(a)
  a.local_port = a.local_port or 862
  local r, err = stamp.reflector{
    local_addr = a.local_addr, local_port = a.local_port, clock = a.clock_source,
    auth = a.auth,
    stateful = a.stateful_reflector or false, session_timeout = a.session_timeout,
    strict_packets = a.strict_packets or false, ttl = a.ttl,
    tlv_mode = a.tlv_mode, verify_tlv_hmac = a.verify_tlv_hmac or false, cos_refuse = a.cos_refuse or false,
    key = a.hmac_key, allow_return_address = a.allow_return_address, member_link_id = a.reflector_member_link_id,
    reflected_max_count = a.reflected_control_max_count, reflected_max_size = a.reflected_control_max_size,
    reflected_min_interval_ns = a.reflected_control_min_interval_ns,
    reflected_max_interval_ns = a.reflected_control_max_interval_ns,
    reflected_max_bursts_per_source = a.reflected_control_max_bursts_per_source,
    max_pps = a.max_pps, rate_burst = a.reflector_rate_burst, max_sessions = a.max_sessions,
    replay_max_age = a.replay_max_age, drop_replayed = a.drop_replayed or false, workers = a.workers,
    reflected_max_rate = a.reflected_control_max_rate, reflected_max_volume = a.reflected_control_max_volume,
    session_admission = a.session_admission, sessions = a.session,
  }
  if not r then
    io.stderr:write(string.format("stamp: cannot listen on %s port %d: %s\n", a.local_addr, a.local_port, err))
    return 1
  end
  local host, port = r:local_addr()
  core.trap_signals(true) -- SIGHUP too: a reflector survives it (and reloads, see stamp.ops)
  local svc, serr = ops.service("reflector", a, r)
  if not svc then
    io.stderr:write("stamp: ", serr, "\n")
    r:close()
    return 1
  end
  -- "listening" once everything is up (the metrics endpoint too): scripts may wait for this line
  out(string.format("STAMP reflector listening on %s port %d (%s, %s%s)", host, port,
    a.auth and "authenticated" or "open", a.clock_source, a.stateful_reflector and ", stateful" or ""))
  if a.session_admission == "provisioned" then
    local list = a.session or {}
    if #list == 0 then
      ops.log("warning", "session admission provisioned with no --session: every packet is dropped (drop_unprovisioned)")
    else
      ops.log("info", string.format("session admission provisioned, %d session(s) {%s}", #list, table.concat(list, ", ")))
    end
  end
  local last = ""
  -- the other drop reasons, each shown once non-zero: rx = reflected + every drop on each -R line
  local function other_drops(ctr)
    local t = {}
    -- and the Type 12 extra replies sent and cancelled (what the reflector sends beyond `reflected`)
    for _, k in ipairs { "drop_truncated", "drop_sessions", "drop_tx", "drop_micro", "no_reply", "drop_group",
      "drop_kernel", "extra_replies", "extra_cancelled" } do
      if (ctr[k] or 0) ~= 0 then t[#t + 1] = string.format(" %s=%d", k, ctr[k]) end
    end
    return table.concat(t)
  end
  -- SIGHUP: the config file is checked exactly as at start (the same command line parsed again)
  svc.check_config = function()
    return M.parse(a.argv, { has_key = a.hmac_key ~= nil or a.hmac_keys ~= nil })
  end
  local c, rerr = svc:run{
    reload = function() return ops.reload(svc) end,
    on_tick = a.R and function(ctr)
      local now = ctr.rx .. "/" .. ctr.extra_replies -- a line when packets came in or extra replies left
      if now ~= last then
        last = now
        out(string.format("rx=%d reflected=%d drop_hmac=%d drop_short=%d sessions=%d drop_rate=%d replayed=%d drop_replayed=%d"
          .. " drop_unprovisioned=%d extra_limited=%d",
          ctr.rx, ctr.reflected, ctr.drop_hmac, ctr.drop_short, ctr.sessions_active, ctr.drop_rate, ctr.replayed,
          ctr.drop_replayed, ctr.drop_unprovisioned, ctr.extra_limited) .. other_drops(ctr))
      end
    end or nil,
  }
  if not c then
    io.stderr:write("stamp: ", tostring(rerr), "\n")
    c = r:counters()
  end
  out(report.reflector_counters(c))
  svc:close()
  r:close()
  return 0
end

-- The TLV list the sender flags ask for, in a fixed order (HMAC last but for padding).
local function sender_tlvs(a)
  local tlv = stamp.tlv
  local t = {}
  if a.location then t[#t + 1] = tlv.location() end
  if a.timestamp_info then t[#t + 1] = tlv.timestamp_info() end
  if a.cos then t[#t + 1] = tlv.cos { dscp = a.dscp or 0, ecn = a.ecn or 0 } end
  if a.direct_measurement then t[#t + 1] = tlv.direct_measurement() end
  if a.access_report then t[#t + 1] = tlv.access_report { id = a.access_report, return_code = a.access_return_code } end
  if a.follow_up_telemetry then t[#t + 1] = tlv.follow_up() end
  if a.destination_address then t[#t + 1] = tlv.destination { addr = a.destination_address } end
  if a.return_address or a.no_reply then
    t[#t + 1] = tlv.return_path { return_addr = a.return_address, no_reply = a.no_reply }
  end
  if a.micro_session_id then t[#t + 1] = tlv.micro_session(a.micro_session_id) end
  if a.reflected_count or a.reflected_length or a.reflected_interval_ns then
    t[#t + 1] = tlv.reflected_control { count = a.reflected_count or 1, length = a.reflected_length or 0,
      interval_ns = a.reflected_interval_ns or 0 }
  end
  if a.tlv_hmac then t[#t + 1] = tlv.hmac() end
  if a.padding then t[#t + 1] = tlv.padding { length = a.padding } end
  return t
end

-- Where results go: one object per output format, shared by single runs and campaigns. Nothing grows
-- with the packet count: records are written as they complete (`--output-format json` spools them to
-- a temporary file until the summary is known), the plot keeps a thinned series of at most PLOT_MAX points.
local PLOT_MAX = 10000

local function make_output(a, campaign)
  local fmt = a.output_format
  local o = {}
  local spool = fmt == "json" and not campaign and assert(io.tmpfile())
  local nspool = 0
  local points, stride, seen = {}, 1, 0
  local interval_acc, interval_start = nil, core.mono()
  local progress = not a.quiet and core.isatty(2)
  local prog = { sent = 0, received = 0, sum = 0, last = nil, last_draw = 0 }

  if fmt == "csv" then out((campaign and "session," or "") .. report.csv_header()) end
  -- does any output need the results one by one? (-R lines, records, plots, intervals; the progress
  -- line needs only the running figures, `acc:progress()`)
  o.per_packet = fmt ~= "text" or a.R or a.plot or a.report_interval or false

  function o.packet(r, session)
    if r.aborted or r.no_reply then -- abandoned by a second Ctrl-C / none asked for: in the records only
      if fmt == "text" and a.R then out((session and ("[" .. session .. "] ") or "") .. report.packet_line(r))
      elseif fmt == "csv" then out((session and (session .. ",") or "") .. report.csv_row(r))
      elseif fmt == "jsonl" then
        out(report.packet_json(r, session))
      elseif spool then
        spool:write(nspool > 0 and ",\n    " or "\n    ", report.packet_json(r))
        nspool = nspool + 1
      end
      return
    end
    if spool then
      spool:write(nspool > 0 and ",\n    " or "\n    ", report.packet_json(r))
      nspool = nspool + 1
    end
    if a.plot then
      seen = seen + 1
      if (seen - 1) % stride == 0 then
        points[#points + 1] = { seq = r.seq, t1 = r.t1, lost = r.lost, rtt = r.rtt, fwd = r.fwd, bwd = r.bwd,
          session = session }
        if #points >= PLOT_MAX then -- thin evenly: every other point, and from now on every 2^k-th packet
          local kept = {}
          for i = 1, #points, 2 do kept[#kept + 1] = points[i] end
          points, stride = kept, stride * 2
        end
      end
    end
    if fmt == "text" then
      if a.R then out((session and ("[" .. session .. "] ") or "") .. report.packet_line(r)) end
    elseif fmt == "csv" then
      out((session and (session .. ",") or "") .. report.csv_row(r))
    elseif fmt == "jsonl" then
      out(report.packet_json(r, session))
    end
    if a.report_interval then
      interval_acc = interval_acc or stamp.stats.new()
      interval_acc:add(r)
    end
    prog.sent = prog.sent + 1
    if not r.lost then
      prog.received, prog.sum, prog.last = prog.received + 1, prog.sum + r.rtt, r.rtt
    end
  end

  --- The JSON document: the summary, then the spooled packet records.
  function o.json_document(summary_rec)
    io.stdout:write(report.json_head(summary_rec))
    spool:seek("set", 0)
    while true do
      local chunk = spool:read(65536)
      if not chunk then break end
      io.stdout:write(chunk)
    end
    spool:close()
    io.stdout:write(report.json_tail(nspool))
    io.stdout:flush()
  end

  -- called often; throttles itself (`final`: flush the last, partial interval)
  -- `acc`: the run's statistics so far (`acc:progress()`), else the packets seen by o.packet (campaigns)
  function o.tick(total, done_count, final, acc, no_reply)
    local now = core.mono()
    if a.report_interval and (now - interval_start >= a.report_interval * 1e9 or (final and interval_acc)) then
      local sum = (interval_acc or stamp.stats.new()):summary()
      local t = (now - (o.t0 or interval_start)) / 1e9
      if fmt == "jsonl" then
        local rec = report.summary_record(sum)
        rec.type, rec.elapsed_s = "interval", t
        out(report.json(rec))
      elseif fmt == "text" then
        out(report.interval_line(t, sum))
      else
        io.stderr:write(report.interval_line(t, sum), "\n")
      end
      interval_acc, interval_start = nil, now
    end
    if progress and now - prog.last_draw >= 1e9 then
      prog.last_draw = now
      local eta
      if total and total > 0 and done_count and a.send_delay then
        eta = (total - done_count) * a.send_delay / 1000
      end
      local line = { sent = prog.sent, received = prog.received, last_rtt = prog.last,
        avg_rtt = prog.received > 0 and prog.sum / prog.received or nil, eta = eta }
      if acc then
        local p = acc:progress()
        line.sent, line.received, line.last_rtt, line.avg_rtt = p.received + p.lost, p.received, p.rtt_last, p.rtt_mean
        line.no_reply = no_reply -- asked for none: sent, neither received nor lost
        if no_reply then line.sent = line.sent + no_reply end
      end
      io.stderr:write("\r\27[K", report.progress_line(line))
      io.stderr:flush()
    end
  end

  function o.finish()
    o.tick(nil, nil, true)
    if progress and prog.last_draw > 0 then io.stderr:write("\r\27[K") io.stderr:flush() end
  end

  -- `summary`: the run's (or the campaign's overall) figures, for the subtitle
  function o.write_plot(title, summary)
    if not a.plot then return true end
    local ok, err = stamp.plot.write(a.plot, points, { title = title, summary = summary })
    if not ok then
      ops.log("error", "cannot write --plot file: " .. tostring(err))
      return false
    end
    return true
  end

  o.t0 = core.mono()
  return o
end

-- errno values of a failed bind: the local side is to blame, not the remote
local BIND_ERRORS = { [-98] = true, [-99] = true, [-13] = true, [98] = true, [99] = true, [13] = true }

--- The one-line message for a sender that could not start: bind errors name the local address and port.
-- @tparam table a parsed arguments
-- @tparam string err message
-- @tparam[opt] number code error code (negative errno)
-- @treturn string
function M.sender_error(a, err, code)
  if BIND_ERRORS[code] then
    return string.format("cannot bind to local address %s port %d: %s", a.local_addr or "0.0.0.0", a.local_port or 0, err)
  end
  return string.format("cannot send to %s port %d: %s", a.remote_addr, a.remote_port, err)
end

local function run_sender(a)
  local tos
  if a.dscp or a.ecn or a.packet_dscp then tos = (a.packet_dscp or a.dscp or 0) * 4 + (a.ecn or 0) end
  local s, err, code = stamp.sender{
    tlvs = sender_tlvs(a), tos = tos, schedule = a.schedule,
    remote_addr = a.remote_addr, remote_port = a.remote_port,
    local_addr = a.local_addr, local_port = a.local_port,
    count = (a.duration and not a.count_given) and 0 or a.count, duration = a.duration,
    send_delay = a.send_delay, timeout = a.timeout,
    ssid = a.ssid or 0, drop_ssid_zero = a.drop_ssid_zero or false, clock = a.clock_source,
    auth = a.auth, key = a.hmac_key, ttl = a.ttl,
    access_report_timeout = a.access_report_timeout, access_report_retries = a.access_report_retries,
  }
  if not s then
    io.stderr:write("stamp: ", M.sender_error(a, err, code), "\n")
    return 1
  end
  core.trap_signals("stop") -- SIGHUP (terminal hang-up) ends the run with its summary, like SIGTERM
  local svc, serr = ops.service("sender", a, s)
  if not svc then
    io.stderr:write("stamp: ", serr, "\n")
    s:close()
    return 1
  end
  local o = make_output(a)
  local results, summary = s:run {
    keep = false, stateful_reflector = a.stateful_reflector or nil,
    -- per-packet Lua work only for an output that shows packets; otherwise the results stay in C
    on_result = o.per_packet and o.packet or nil,
    metrics = svc.metrics,
    tick = function(snd, acc)
      local c = snd:counters()
      o.tick((a.duration and not a.count_given) and 0 or a.count, c.sent, false, acc, c.no_reply)
    end,
  }
  o.finish()
  svc:close()
  if not results then
    ops.log("error", tostring(summary)) -- a failure while running: a log line (timestamped, --log-format)
    s:close()
    return 1
  end
  s:close()
  local fmt = a.output_format
  if summary.access_report and summary.access_report.gave_up then
    ops.log("warning", string.format("no reply echoed the Access Report TLV; gave up after %d resends "
      .. "(RFC 8972 4.6)", summary.access_report.retransmits))
  end
  if fmt == "text" then
    if a.R then out("") end
    out(report.text_summary(summary))
  elseif fmt == "json" then
    o.json_document(report.run_record({}, summary).summary)
  elseif fmt == "jsonl" then
    out(report.json(report.summary_record(summary)))
  end
  if not o.write_plot(string.format("STAMP %s port %d", a.remote_addr, a.remote_port), summary) then return 1 end
  -- like ping: 1 when nothing came back, unless nothing was asked to come back
  return (summary.received > 0 or (summary.no_reply > 0 and summary.lost == 0)) and 0 or 1
end

local function run_campaign(a)
  local chunk, err = loadfile(a.campaign)
  if not chunk then
    io.stderr:write("stamp: invalid value for --campaign: '", a.campaign, "' (", tostring(err), ")\n")
    return 2
  end
  local ok, cfg = pcall(chunk, stamp)
  if not ok or type(cfg) ~= "table" then
    io.stderr:write("stamp: invalid value for --campaign: '", a.campaign, "' (",
      ok and "it must return a campaign table" or tostring(cfg), ")\n")
    return 2
  end
  core.trap_signals("stop")
  if cfg.keep == nil then cfg.keep = false end -- the outputs stream what they need
  local o = make_output(a, true)
  local user_result, user_tick = cfg.on_result, cfg.on_tick
  cfg.on_result = function(name, r, sess)
    o.packet(r, name)
    if user_result then user_result(name, r, sess) end
  end
  cfg.on_tick = function(st)
    o.tick()
    if user_tick then user_tick(st) end
  end
  local rok, rep, rerr = pcall(stamp.campaign, cfg)
  o.finish()
  if not rok then
    io.stderr:write("stamp: invalid value for --campaign: '", a.campaign, "' (", tostring(rep):gsub("^.-:%d+: ", ""), ")\n")
    return 2
  end
  if not rep then
    io.stderr:write("stamp: ", tostring(rerr), "\n")
    return 1
  end
  local fmt = a.output_format
  if fmt == "text" then
    for _, sess in ipairs(rep.sessions) do
      out(string.format("=== %s (%s) ===", sess.name, sess.remote))
      out(report.text_summary(sess.summary))
      out("")
    end
    out("=== overall ===")
    out(report.text_summary(rep.overall))
  else
    local sessions = {}
    for i, sess in ipairs(rep.sessions) do
      local rec = report.summary_record(sess.summary)
      rec.session, rec.remote = sess.name, sess.remote
      sessions[i] = rec
    end
    local overall = report.summary_record(rep.overall)
    overall.session = "overall"
    if fmt == "json" then
      out(report.json({ sessions = sessions, overall = overall }, true))
    elseif fmt == "jsonl" then
      for _, rec in ipairs(sessions) do out(report.json(rec)) end
      out(report.json(overall))
    end
  end
  if not o.write_plot("STAMP campaign " .. a.campaign, rep.overall) then return 1 end
  return rep.overall.received > 0 and 0 or 1
end

--- Run the command line.
-- @tparam table argv arguments (without the program name)
-- @treturn integer exit code
function M.main(argv)
  local a, code = M.parse(argv)
  if not a then return code end
  if a.is_reflector then return run_reflector(a) end
  if a.campaign then return run_campaign(a) end
  return run_sender(a)
end

return M
