-- Option checks at the Lua layer and on the command line: one error naming the option, before any C.
local stamp = require "stamp"
local h = require "helper"

local function err_of(f)
  local ok, e = pcall(f)
  assert.is_false(ok)
  return tostring(e)
end

describe("option checks", function()
  it("session_timeout of 1e10 is refused naming it", function()
    assert.matches("bad option 'session_timeout'", err_of(function() stamp.reflector { session_timeout = 1e10 } end))
  end)

  it("NaN and huge floats are refused with one line naming the option", function()
    local nan, big = 0 / 0, 1e300
    for _, c in ipairs {
      { "send_delay", { remote_addr = "127.0.0.1", send_delay = nan } },
      { "timeout", { remote_addr = "127.0.0.1", timeout = nan } },
      { "count", { remote_addr = "127.0.0.1", count = big } },
      { "count", { remote_addr = "127.0.0.1", count = math.huge } },
      { "ttl", { remote_addr = "127.0.0.1", ttl = nan } },
      { "seed", { remote_addr = "127.0.0.1", seed = big } },
    } do
      local e = err_of(function() stamp.sender(c[2]) end)
      assert.matches("bad option '" .. c[1] .. "'", e)
      assert.not_matches("\n", e)
    end
    for _, c in ipairs { { "session_timeout", nan }, { "max_sessions", big }, { "reflected_min_interval_ns", math.huge } } do
      local e = err_of(function() stamp.reflector { [c[1]] = c[2] } end)
      assert.matches("bad option '" .. c[1] .. "'", e)
    end
  end)

  it("integers given as integral floats are accepted (ttl = 64.0 reaches the wire as 64); 64.5 is refused", function()
    local r, s = h.loopback_pair({}, { count = 2, ttl = 64.0, ssid = 7.0 })
    local res = assert(s:run { pump = function() r:step(0) end })
    assert.equal(2, #res)
    assert.equal(64, res[1].ttl)
    assert.equal(7, res[1].ssid)
    s:close()
    r:close()
    local r2 = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0, ttl = 200.0, max_sessions = 8.0 })
    r2:close()
    assert.matches("bad option 'ttl'", err_of(function() stamp.sender { remote_addr = "127.0.0.1", ttl = 64.5 } end))
    assert.matches("bad option 'local_port'", err_of(function() stamp.reflector { local_port = 862.5 } end))
  end)
end)

describe("option checks on the command line", function()
  h.bad_flag_cases(it, {
    { "-r 127.0.0.1 --send-delay nan", "--send-delay" },
    { "-r 127.0.0.1 --timeout 1e400", "--timeout" },
    { "-r 127.0.0.1 --send-delay inf", "--send-delay" },
    { "-i --session-timeout 1e10", "--session-timeout" },
    { "-i --session-timeout nan", "--session-timeout" },
    { "-r 127.0.0.1 --ttl 64.5", "--ttl" },
    { "-r 127.0.0.1 --count 0x10", "--count" },
  })

  it("integral values written as floats are integers there too", function()
    local pid, rout, port = h.cli_reflector()
    local code, out, err = h.run(string.format("%s -r 127.0.0.1 -p %d -c 2.0 -d 1 --ttl 64.0 -R", h.STAMP, port))
    h.stop(pid)
    os.remove(rout)
    assert.equal(0, code, err)
    assert.matches("seq=1 rtt=[%d.]+ms ttl=64 ", out)
  end)
end)

describe("what the README says about options", function()
  local options = require "stamp.options"

  it("packet_len pads with zero octets, whatever the heap held before", function()
    for i = 1, 200 do assert(#string.rep(string.char(0x5a), 100 + i) > 0) end -- garbage with known octets
    collectgarbage()
    local c = options.sender { remote_addr = "127.0.0.1", packet_len = 300 }
    assert.equal(300 - 44, #c.tlvs)
    assert.equal(1, c.tlvs:byte(2)) -- an Extra Padding TLV
    assert.equal(string.rep("\0", 300 - 44 - 4), c.tlvs:sub(5))
    -- and on the wire: the reflector sees the same length
    local r, s = h.loopback_pair({}, { count = 1, packet_len = 300 })
    local res = assert(s:run { pump = function() r:step(0) end })
    assert.equal(300, res[1].length)
    s:close()
    r:close()
  end)

  it("--send-delay takes fractions of a millisecond (0.5 ms = 500,000 ns between packets)", function()
    assert.equal(500000, options.sender { remote_addr = "127.0.0.1", send_delay = 0.5 }.interval_ns)
    assert.equal(1500, options.sender { remote_addr = "127.0.0.1", send_delay = 0.0015 }.interval_ns)
    local pid, rout, port = h.cli_reflector()
    local code, out = h.run(string.format("%s -r 127.0.0.1 -p %d -c 10 -d 0.5", h.STAMP, port))
    h.stop(pid)
    os.remove(rout)
    assert.equal(0, code)
    assert.matches("Packets received: 10\n", out)
  end)

  it("the help texts of -p, -o and --ssid say what they do", function()
    local _, out = h.run(h.STAMP .. " -h")
    assert.matches("%-%-remote%-port <REMOTE_PORT>%s+UDP port of the Session%-Reflector %(sender's destination%)", out)
    assert.matches("%-%-local%-port <LOCAL_PORT>%s+Local UDP port to bind %(sender: 0 = any, the default; reflector: 862%)", out)
    assert.matches("%-%-ssid <ID>%s+Session%-Sender Identifier, 0%-65535 %(0: none, the default%)", out)
    assert.matches("%-%-hmac%-key <HEX>%s+HMAC key in hex format, 16 to 256 octets", out)
    assert.matches("Delay between packets in milliseconds %(fractions allowed%)", out)
  end)
end)

describe("dscp and ecn options", function()
  it("set the test packets' TOS (instead of tos) and reach the reflector", function()
    local options = require "stamp.options"
    assert.equal(46 * 4 + 1, options.sender { remote_addr = "127.0.0.1", dscp = 46, ecn = 1 }.tos)
    assert.has_error(function() options.sender { remote_addr = "127.0.0.1", dscp = 46, tos = 4 } end)
    local r, s = h.loopback_pair({}, { count = 2, dscp = 26, tlvs = { stamp.tlv.cos { dscp = 26 } } })
    local res = assert(s:run { pump = function() r:step(0) end })
    assert.equal(26, res[1].tlvs.cos.dscp2)
    s:close()
    r:close()
  end)
end)
