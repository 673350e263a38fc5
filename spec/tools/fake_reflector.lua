-- A scripted STAMP reflector for the specs, to answer the way a broken or foreign reflector does.
-- lua5.4 spec/tools/fake_reflector.lua MODE PORT [SECONDS]   (prints "listening" once bound)
-- Modes: light36 / light38: TWAMP-Light replies of 36 / 38 octets (no Sender TTL);
--   msid_none: Micro-session ID TLV dropped from the reply; msid_u: returned with U, unchanged;
--   msid_ok: answered (Reflector Member Link ID filled); dm_neg: Direct Measurement R_RxC = R_TxC = 1000;
--   dm_i: the same with I set on that TLV.
-- Exits after SECONDS (default 10) or 1000 packets.
local socket = require "socket"
local mode, port, secs = arg[1], tonumber(arg[2]), tonumber(arg[3] or "10")
local u = assert(socket.udp())
assert(u:setsockname("127.0.0.1", port))
u:settimeout(0.1)
io.write("listening\n") io.flush()
local function ntp()
  local t = socket.gettime() + 2208988800
  return string.pack(">I4I4", math.floor(t), math.floor((t % 1) * 2 ^ 32))
end
local t0, n = socket.gettime(), 0
while socket.gettime() - t0 < secs and n < 1000 do
  local d, ip, p = u:receivefrom()
  if d and #d >= 44 then
    n = n + 1
    local rx = ntp()
    local seq, sts, see, ssid = d:sub(1, 4), d:sub(5, 12), d:sub(13, 14), d:sub(15, 16)
    local r
    if mode:match("^light") then
      r = (seq .. ntp() .. "\128\1" .. "\0\0" .. rx .. seq .. sts .. see .. "\0\0"):sub(1, tonumber(mode:sub(6)))
    else
      r = seq .. ntp() .. "\128\1" .. ssid .. rx .. seq .. sts .. see .. "\0\0" .. "\64\0\0\0"
      local off = 45
      while off + 3 <= #d do
        local _, t, l = string.unpack(">BBI2", d, off)
        local f
        local v = d:sub(off + 4, off + 3 + l)
        if t == 11 then
          if mode == "msid_none" then f = nil
          elseif mode == "msid_u" then f = 0x80
          else f, v = 0, v:sub(1, 2) .. string.pack(">I2", string.unpack(">I2", v, 3) ~= 0 and string.unpack(">I2", v, 3) or 7) end
        elseif t == 5 and (mode == "dm_neg" or mode == "dm_i") then
          f, v = mode == "dm_i" and 0x20 or 0, v:sub(1, 4) .. string.pack(">I4I4", 1000, 1000)
        else
          f = 0
        end
        if f then r = r .. string.pack(">BBI2", f, t, l) .. v end
        off = off + 4 + l
      end
    end
    u:sendto(r, ip, p)
  end
end
