--- Human-readable output: per-packet lines and summaries in the form
-- stamp-suite users know.
-- @module stamp.report
local M = {}

local function ms(ns) return string.format("%.3f", ns / 1e6) end

local SYNC = { [1] = "NTP", [2] = "PTP", [3] = "SSU", [4] = "GNSS", [5] = "LOCAL" }
local METHOD = { [1] = "HW", [2] = "SW", [3] = "CP" }

local function hostport(addr, port)
  if not addr then return "?" end
  if addr:find(":", 1, true) then return "[" .. addr .. "]:" .. (port or "?") end
  return addr .. ":" .. (port or "?")
end

-- What each reflected TLV reported, one formatter per key.
local TLV_TEXT = {
  location = function(t)
    return string.format("src=%s dst=%s", hostport(t.src_addr, t.src_port), hostport(t.dst_addr, t.dst_port))
  end,
  timestamp_info = function(t)
    return string.format("sync_in=%s ts_in=%s sync_out=%s ts_out=%s", SYNC[t.sync_in] or t.sync_in,
      METHOD[t.method_in] or t.method_in, SYNC[t.sync_out] or t.sync_out, METHOD[t.method_out] or t.method_out)
  end,
  cos = function(t, r)
    local s = string.format("dscp1=%d dscp2=%d ecn2=%d rp=%d", t.dscp1, t.dscp2, t.ecn2, t.rp)
    if r.reply_tos then s = s .. string.format(" reply_dscp=%d reply_ecn=%d", math.floor(r.reply_tos / 4), r.reply_tos % 4) end
    return s
  end,
  direct_measurement = function(t) return string.format("s_txc=%d r_rxc=%d r_txc=%d", t.s_txc, t.r_rxc, t.r_txc) end,
  access_report = function(t) return string.format("access_id=%d return_code=%d", t.id, t.return_code) end,
  follow_up = function(t)
    return string.format("fu_seq=%d fu_ts=%s fu_mode=%s", t.seq, t.timestamp and tostring(t.timestamp) or "none",
      METHOD[t.mode] or t.mode)
  end,
  hmac = function(_, r) return "tlv_hmac=" .. (r.tlv_hmac_ok == nil and "unchecked" or r.tlv_hmac_ok and "ok" or "FAIL") end,
  destination = function(t) return "dest=" .. tostring(t.addr) end,
  return_path = function(t)
    return "return_path=" .. (t.return_addr and tostring(t.return_addr) or t.control_code and ("cc" .. t.control_code) or "set")
  end,
  micro_session = function(t) return string.format("micro=%d:%d", t.sender_id, t.reflector_id) end,
  reflected_control = function(t)
    return string.format("refl_ctrl=%d/%d/%dns", t.count, t.reflected_length, t.interval)
  end,
  padding = function(t) return "padding=" .. t.length end,
}

--- Text for the TLVs of a result (`cos: dscp2=10 ...`), flags shown as `[U]`, `[M]`, `[I]`, `[C]`.
-- @tparam table r result
-- @treturn string|nil
function M.tlv_text(r)
  if not r.tlv_list then return nil end
  local out = {}
  for _, t in ipairs(r.tlv_list) do
    local flags = (t.u and "U" or "") .. (t.m and "M" or "") .. (t.i and "I" or "") .. (t.c and "C" or "")
    local f = TLV_TEXT[t.key]
    local body = (f and not t.u and not t.m and not t.i and not t.truncated) and f(t, r) or ("type=" .. t.type)
    out[#out + 1] = t.key .. (flags ~= "" and ("[" .. flags .. "]") or "") .. ": " .. body
  end
  return table.concat(out, " | ")
end

--- One `-R` line for a per-packet result.
-- `seq=0 rtt=0.523ms ttl=64 reflector_recv_ts=... reflector_send_ts=...` then extra fields.
-- @tparam table r result from `sender:step`
-- @treturn string
function M.packet_line(r)
  if r.lost then return string.format("seq=%d lost", r.seq) end
  local t = {
    string.format("seq=%d rtt=%sms ttl=%d reflector_recv_ts=%d reflector_send_ts=%d",
      r.seq, ms(r.rtt), r.ttl, r.t2, r.t3),
    string.format("fwd=%sms bwd=%sms refl_seq=%d", ms(r.fwd), ms(r.bwd), r.refl_seq),
  }
  if r.reply_ttl then t[#t + 1] = "reply_ttl=" .. r.reply_ttl end
  if r.ssid and r.ssid ~= 0 then t[#t + 1] = "ssid=" .. r.ssid end
  local tl = M.tlv_text(r)
  if tl then t[#t + 1] = "| " .. tl end
  return table.concat(t, " ")
end

--- The summary block.
-- @tparam table s summary from `stamp.stats`
-- @treturn string
function M.text_summary(s)
  local out = {
    "--- STAMP Statistics ---",
    "Packets sent: " .. s.sent,
    "Packets received: " .. s.received,
    string.format("Packets lost: %d (%.1f%%)", s.lost, s.loss_pct),
  }
  if s.rtt then
    out[#out + 1] = "Min RTT: " .. ms(s.rtt.min) .. " ms"
    out[#out + 1] = "Max RTT: " .. ms(s.rtt.max) .. " ms"
    out[#out + 1] = "Avg RTT: " .. ms(s.rtt.avg) .. " ms"
  end
  if (s.duplicates or 0) > 0 then out[#out + 1] = "Duplicates: " .. s.duplicates end
  if (s.late or 0) > 0 then out[#out + 1] = "Late replies: " .. s.late end
  return table.concat(out, "\n")
end

local REFLECTOR_ROWS = {
  { "rx", "Packets received" },
  { "reflected", "Packets reflected" },
  { "short_padded", "Short packets answered zero-filled" },
  { "drop_short", "Dropped (too short)" },
  { "drop_truncated", "Dropped (too large)" },
  { "drop_hmac", "Dropped (HMAC failure)" },
  { "drop_sessions", "Dropped (session table full)" },
  { "drop_tx", "Dropped (send failed)" },
  { "drop_micro", "Dropped (micro-session ID mismatch)" },
  { "no_reply", "Not answered (Return Path: no reply)" },
  { "extra_replies", "Extra replies (type 12)" },
  { "tlv_unknown", "Packets with unknown TLVs (U)" },
  { "tlv_malformed", "Packets with malformed TLVs (M)" },
  { "tlv_integrity", "Packets failing the HMAC TLV (I)" },
  { "sessions_active", "Sessions active" },
  { "sessions_created", "Sessions created" },
  { "sessions_reaped", "Sessions reaped" },
}

--- The reflector's counters block.
-- @tparam table c `reflector:counters()`
-- @treturn string
function M.reflector_counters(c)
  local out = { "--- STAMP Reflector Counters ---" }
  for _, row in ipairs(REFLECTOR_ROWS) do out[#out + 1] = string.format("%s: %d", row[2], c[row[1]] or 0) end
  return table.concat(out, "\n")
end

return M
