--- Human-readable output: per-packet lines and summaries in the form
-- stamp-suite users know.
-- @module stamp.report
local M = {}

local function ms(ns) return string.format("%.3f", ns / 1e6) end

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
