-- TLVs end to end through the `stamp` command.
local h = require "helper"

local STAMP = h.STAMP

local function with_reflector(args, fn)
  local pid, out, port = h.cli_reflector(args)
  local ok, err = pcall(fn, port)
  h.stop(pid)
  local rep = h.slurp(out)
  os.remove(out)
  assert(ok, err)
  return rep
end

-- `want`: the exit status (1 when no reply arrives, as ping)
local function sender(port, args, want)
  local code, out, err = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 3 -d 5 -L 0.5 -R %s", STAMP, port, h.free_port(), args))
  assert.equal(want or 0, code, err)
  return out
end

describe("stamp command with TLVs", function()
  it("--cos --dscp 46 from packets carrying DSCP 10: DSCP2 = 10 and the reply arrives with DSCP 46", function()
    with_reflector("--local-addr 127.0.0.1", function(port)
      local out = sender(port, "--cos --dscp 46 --packet-dscp 10 --ecn 1")
      local n = 0
      for line in out:gmatch("seq=[^\n]+") do
        n = n + 1
        assert.matches("cos: dscp1=46 dscp2=10 ecn2=1 rp=0 reply_dscp=46", line)
      end
      assert.equal(3, n)
    end)
  end)

  it("--cos-refuse on the reflector: RP = 1 and the reply keeps DSCP 10", function()
    with_reflector("--local-addr 127.0.0.1 --cos-refuse", function(port)
      assert.matches("cos: dscp1=46 dscp2=10 ecn2=0 rp=1 reply_dscp=10", sender(port, "--cos --dscp 46 --packet-dscp 10"))
    end)
  end)

  it("--location on a wildcard reflector reports the real destination address", function()
    with_reflector("--local-addr 0.0.0.0", function(port)
      local code, out = h.run(string.format("%s -r 127.0.0.3 -p %d -o %d -c 2 -d 5 -R --location", STAMP, port, h.free_port()))
      assert.equal(0, code)
      assert.matches("location: src=127%.0%.0%.1:%d+ dst=127%.0%.0%.3:" .. port, out)
    end)
  end)

  it("--timestamp-info, --direct-measurement, --follow-up-telemetry (stateful reflector), --access-report", function()
    with_reflector("--local-addr 127.0.0.1 --stateful-reflector", function(port)
      local out = sender(port, "--timestamp-info --direct-measurement --follow-up-telemetry --access-report 1 --access-return-code 2")
      assert.matches("timestamp_info: sync_in=%u+ ts_in=SW sync_out=%u+ ts_out=SW", out)
      assert.matches("direct_measurement: s_txc=3 r_rxc=3 r_txc=3", out)
      -- RFC 8972 4.7: a reply's Follow-Up Telemetry names a reply the reflector sent before it in
      -- this session (its sequence number and the time it actually left); the first reply has none.
      -- Which earlier reply is named depends on timing: two test packets read in one recvmmsg batch
      -- both name the reply sent before that batch.
      local sent, replies = {}, 0
      for line in out:gmatch("seq=[^\n]+") do
        replies = replies + 1
        local r, t3 = tonumber(line:match(" refl_seq=(%d+)")), math.tointeger(tonumber(line:match(" reflector_send_ts=(%d+)")))
        local fu, fts, fmode = line:match("follow_up: fu_seq=(%d+) fu_ts=(%S+) fu_mode=(%S+)")
        assert.truthy(r and t3 and fu, line)
        fu = tonumber(fu)
        if r == 0 then
          assert.same({ 0, "none" }, { fu, fts }, line)
        else
          assert.equal("SW", fmode, line)
          assert.is_true(fu < r, line)
          fts = math.tointeger(tonumber(fts))
          assert.truthy(fts, line)
          if sent[fu] then assert.is_true(fts >= sent[fu], line) end -- after the T3 that reply carries
        end
        sent[r] = t3
      end
      assert.equal(3, replies)
      assert.matches("access_report: access_id=1 return_code=2", out)
    end)
  end)

  it("--tlv-hmac with --verify-tlv-hmac: verified; a wrong key sets I on every TLV", function()
    local key = string.rep("ab", 32)
    local rep = with_reflector("--local-addr 127.0.0.1 --verify-tlv-hmac --hmac-key " .. key, function(port)
      assert.matches("hmac: tlv_hmac=ok", sender(port, "--cos --tlv-hmac --hmac-key " .. key))
      local out = sender(port, "--cos --tlv-hmac --hmac-key " .. string.rep("cd", 32))
      assert.matches("cos%[UI%]: type=4 | hmac%[UI%]: type=8", out)
    end)
    assert.matches("Packets failing the HMAC TLV %(I%): 3", rep)
  end)

  it("--destination-address: ours is understood, another one is flagged U", function()
    with_reflector("--local-addr 127.0.0.1", function(port)
      assert.matches("destination: dest=127%.0%.0%.1", sender(port, "--ssid 7 --destination-address 127.0.0.1"))
      assert.matches("destination%[U%]: type=9", sender(port, "--ssid 7 --destination-address 192.0.2.1"))
    end)
  end)

  it("--return-address: honoured only inside --allow-return-address", function()
    with_reflector("--local-addr 127.0.0.1 --allow-return-address 127.0.0.0/8", function(port)
      local code, out = h.run(string.format("%s -r 127.0.0.1 -p %d -S 0.0.0.0 -o %d -c 2 -d 5 -L 0.5 -R --return-address 127.0.0.7",
        STAMP, port, h.free_port()))
      assert.equal(0, code)
      assert.matches("return_path: return_path=127%.0%.0%.7", out)
      assert.matches("Packets received: 2", out)
    end)
    with_reflector("--local-addr 127.0.0.1", function(port)
      assert.matches("return_path%[U%]: type=10", sender(port, "--return-address 127.0.0.7"))
    end)
  end)

  it("--no-reply: the reflector stays silent and counts it", function()
    local rep = with_reflector("--local-addr 127.0.0.1", function(port)
      local out = sender(port, "--no-reply") -- none asked for: not lost, exit 0 (review 911, 5)
      assert.matches("Packets lost: 0", out)
      assert.matches("No reply asked for: 3", out)
    end)
    assert.matches("Not answered %(no reply asked for: Return Path, type 12 Number 0%): 3", rep)
  end)

  it("--micro-session-id against --reflector-member-link-id", function()
    local rep = with_reflector("--local-addr 127.0.0.1 --reflector-member-link-id 9", function(port)
      assert.matches("micro_session: micro=4:9", sender(port, "--micro-session-id 4"))
      assert.matches("Packets lost: 3", sender(port, "--micro-session-id 4:5", 1))
    end)
    assert.matches("Dropped %(micro%-session ID mismatch%): 3", rep)
  end)

  it("type 12 asks for more than the caps: one reply with C per request (RFC 10052 3), no extra replies", function()
    local rep = with_reflector("--local-addr 127.0.0.1 --reflected-control-max-count 2 --reflected-control-max-size 300",
      function(port)
        local out = sender(port, "--reflected-count 5 --reflected-length 2000 --reflected-interval-ns 1000000")
        assert.matches("reflected_control%[C%]: refl_ctrl=5/2000/1000000ns", out)
        assert.matches("padding: padding=%d+", out)
        h.sleep(0.2)
      end)
    assert.matches("Packets reflected: 3\n", rep)
    assert.matches("Extra replies %(type 12%): 0\n", rep)
  end)

  it("--padding makes larger test packets that come back whole", function()
    with_reflector("--local-addr 127.0.0.1", function(port)
      assert.matches("padding: padding=1400", sender(port, "--padding 1400"))
    end)
  end)

  it("--tlv-mode ignore returns TLVs unprocessed (U kept), the reply as long as the request", function()
    with_reflector("--local-addr 127.0.0.1 --tlv-mode ignore", function(port)
      local out = sender(port, "--cos")
      assert.not_matches("cos:", out)
      assert.matches("cos%[U%]", out)
      assert.matches("Packets received: 3", out)
    end)
  end)

  describe("bad TLV flag values", function()
    h.bad_flag_cases(it, {
      { "--dscp 64", "--dscp" }, { "--ecn 4", "--ecn" }, { "--access-report 16", "--access-report" },
      { "--tlv-mode bogus", "--tlv-mode" }, { "--tlv-hmac", "--tlv-hmac" }, { "--verify-tlv-hmac", "--verify-tlv-hmac" },
      { "--destination-address nope", "--destination-address" }, { "--allow-return-address 10.0.0.0/99", "--allow-return-address" },
      { "--micro-session-id x", "--micro-session-id" }, { "--padding -1", "--padding" },
      { "--reflected-control-max-count 5000", "--reflected-control-max-count" },
    })
  end)
end)
