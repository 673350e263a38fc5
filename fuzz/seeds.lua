-- Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/):
-- every TLV type of the registry (1-12) with its sub-TLVs, an unknown type,
-- base packets of both modes and directions. Run: lua5.4 fuzz/seeds.lua
-- (from the repository root). The output is committed; rerun after adding a type.
local function tlv(t, v, flags) return string.pack(">BBs2", flags or 0x80, t, v) end
local function sub(t, v) return string.pack(">BBs2", 0, t, v) end
local z = function(n) return string.rep("\0", n) end
local ip4 = function(a, b, c, d) return string.char(a, b, c, d) end
local lo6 = z(15) .. "\1"

local T = {
  padding = tlv(1, z(8)),
  location = tlv(2, string.pack(">I2I2", 862, 862) .. sub(4, z(16)) .. sub(7, z(16)) .. sub(1, z(8))),
  location6 = tlv(2, z(4) .. sub(6, lo6) .. sub(9, lo6)),
  tsinfo = tlv(3, z(4)),
  cos = tlv(4, string.pack(">I2I2", 46 << 10, 0)),
  dm = tlv(5, string.pack(">I4I4I4", 1, 0, 0)),
  access = tlv(6, string.char(0x10, 0x01, 0, 0)),
  followup = tlv(7, z(16)),
  hmac = tlv(8, z(16)),
  destnode4 = tlv(9, ip4(127, 0, 0, 2)),
  destnode6 = tlv(9, lo6),
  returnpath = tlv(10, sub(1, string.pack(">I4", 1)) .. sub(2, ip4(127, 0, 0, 1))),
  returnpath6 = tlv(10, sub(1, string.pack(">I4", 0)) .. sub(2, lo6) .. sub(3, z(4)) .. sub(4, z(16))),
  micro = tlv(11, string.pack(">I2I2", 1, 9)),
  reflctrl = tlv(12, string.pack(">I2I2I4I4", 200, 3, 1000, 0) .. sub(11, string.char(8, 0, 0, 0) .. ip4(127, 0, 0, 0))),
  reflctrl2 = tlv(12, string.pack(">I2I2I4I4", 60, 1, 0, 0) .. sub(10, z(8))),
  unknown = tlv(200, z(4)),
}
local order = { "padding", "location", "location6", "tsinfo", "cos", "dm", "access", "followup", "hmac", "destnode4",
  "destnode6", "returnpath", "returnpath6", "micro", "reflctrl", "reflctrl2", "unknown" }

-- every TLV before an HMAC TLV, then Extra Padding (the one TLV allowed after it)
local all = {}
for _, k in ipairs(order) do
  if k ~= "hmac" and k ~= "padding" then all[#all + 1] = T[k] end
end
local chain = table.concat(all) .. T.hmac .. T.padding

local function write(dir, name, s)
  os.execute("mkdir -p fuzz/corpus/" .. dir)
  local f = assert(io.open("fuzz/corpus/" .. dir .. "/" .. name, "wb"))
  f:write(s)
  f:close()
end

-- TLV areas: each type alone, the whole chain, a truncated chain
for _, k in ipairs(order) do
  write("fuzz_tlv_walk", k, T[k])
  write("fuzz_lua_codec", k, T[k])
end
write("fuzz_tlv_walk", "chain", chain)
write("fuzz_tlv_walk", "truncated", chain:sub(1, #chain - 3))
write("fuzz_lua_codec", "chain", chain)

-- fields: octet 0 picks the type (registry index), octet 1 = 0xff (whole value), value, new values
for i = 1, 12 do
  local k = ({ "padding", "location", "tsinfo", "cos", "dm", "access", "followup", "hmac", "destnode4",
    "returnpath", "micro", "reflctrl" })[i]
  local v = T[k]:sub(5)
  write("fuzz_tlv_fields", k, string.char(i - 1, #v) .. v .. string.rep("\x5a\xa5", 16))
end

-- reflector: switch octets (0x10 authenticated, 0x20 signed, 0x02 verify in open mode, 0x01 IPv6;
-- second octet: 0x01 stateful, 0x02 a previous sequence number, 0x08 egress MTU 1500), then the TLVs
write("fuzz_reflector", "open-chain", "\x02\x00" .. chain)
write("fuzz_reflector", "open-chain-signed", "\x22\x03" .. chain)
write("fuzz_reflector", "open6-chain-signed", "\x23\x08" .. chain)
write("fuzz_reflector", "auth-chain-signed", "\x30\x01" .. chain)
write("fuzz_reflector", "auth-chain-unsigned", "\x10\x00" .. chain)
write("fuzz_reflector", "auth-no-hmac", "\x30\x00" .. T.cos .. T.reflctrl .. T.returnpath)
write("fuzz_reflector", "auth-padding-only", "\x30\x00" .. T.padding)
write("fuzz_reflector", "open-type12-hmac", "\x22\x00" .. T.reflctrl .. T.hmac .. T.padding)
for _, k in ipairs(order) do write("fuzz_reflector", "open-" .. k, "\x00\x00" .. T[k]) end

-- base packets: test and reflected, open (44) and authenticated (112), and a TWAMP-Light-sized one
local ts = string.pack(">I4I4", 0xec000000, 0x80000000)
local open_test = string.pack(">I4", 1) .. ts .. string.pack(">I2I2", 0x8001, 7) .. z(28)
local open_refl = string.pack(">I4", 1) .. ts .. string.pack(">I2I2", 0x0101, 7) .. ts .. string.pack(">I4", 1) .. ts
  .. string.pack(">I2", 0x0101) .. z(2) .. "\64" .. z(3)
local auth_test = string.pack(">I4", 1) .. z(12) .. ts .. string.pack(">I2I2", 0x4001, 7) .. z(68) .. z(16)
write("fuzz_packet", "open-test", open_test)
write("fuzz_packet", "open-reflected", open_refl)
write("fuzz_packet", "auth-test", auth_test)
write("fuzz_packet", "twamp-light", open_test:sub(1, 14))
write("fuzz_packet", "open-test-chain", open_test .. chain)

-- sender (the I/O-free machine): configuration octet (0x01 authenticated, 0x02 SSID 77, 0x20 HMAC TLV,
-- 0x80 peer check), then operations: 0 = send what is due, 2 HOW HALFLEN REPLY (HOW 0x01 aim at a packet
-- in flight, 0x04 sign, 0x08 foreign source), 3 = expire, 4 = stop, 0x85 = abort
local auth_refl = string.pack(">I4", 1) .. z(12) .. ts .. string.pack(">I2I2", 0x4001, 77) .. z(4) .. ts .. z(8)
  .. string.pack(">I4", 1) .. z(12) .. ts .. string.pack(">I2", 0x0101) .. z(6) .. "\64" .. z(15) .. z(16)
local reply_tlvs = tlv(5, string.pack(">I4I4I4", 1, 1, 1), 0) .. tlv(8, z(16), 0)
local function reply(how, r)
  if #r % 2 == 1 then r = r .. "\0" end
  return "\2" .. string.char(how, #r // 2) .. r
end
local open_r, auth_r = open_refl .. reply_tlvs, auth_refl .. reply_tlvs
write("fuzz_sender", "open", "\x22" .. "\0" .. reply(0x05, open_r) .. "\0\0" .. reply(0x05, open_r) .. "\3")
write("fuzz_sender", "open-twice", "\x22" .. "\0" .. reply(0x05, open_r) .. reply(0x05, open_r) .. "\x84\3")
write("fuzz_sender", "open-foreign", "\xa2" .. "\0" .. reply(0x0d, open_r) .. "\3")
write("fuzz_sender", "auth-signed", "\x23" .. "\0" .. reply(0x05, auth_r) .. "\x60\3")
write("fuzz_sender", "auth-unsigned", "\x23" .. "\0" .. reply(0x01, auth_r) .. "\3")
write("fuzz_sender", "light", "\x00" .. "\0" .. reply(0x00, open_refl:sub(1, 14)) .. "\x85")
-- a TWAMP-Light reply of exactly STAMP_LIGHT_REPLY_MIN (36) octets aimed at a packet in flight: accepted in
-- open mode, shorter than the base packet
write("fuzz_sender", "light-reply-36", "\x00" .. "\0" .. reply(0x01, open_refl:sub(1, 36)) .. "\3")
-- regression: the input on which the socket-driven sender target (before the I/O-free machine) aborted on
-- "pkt_len >= stamp_base_len(mode)", wrong since open mode accepts 36-octet TWAMP-Light replies
write("fuzz_sender", "regress-light-reply-36-crash", "\x0e\x01\x00\x00\x01\xec\x00\x00\x00\x80\x00\x27\x00\x00\x00\x00\x00\x00\x00\x00\x01\x01\x00\x07\xec\x00\x00\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")
write("fuzz_sender", "many", "\x22" .. string.rep("\x60", 20) .. reply(0x15, open_r) .. "\3\4\x60\3")

-- reflector machine (stamp_rmach_*): switch octet (0x01 open mode, else authenticated; 0x02 stateless,
-- 0x04 two sessions at most, 0x08 strict, 0x10 100 pps per source, 0x20 replay window 1 s, 0x40 drop
-- replays, 0x80 one burst slot), then records: H N DATAGRAM (N octets, 0 = the rest). H: 0x03 source
-- (127.0.0.1, 127.0.0.9, ::1, ::ffff:127.0.0.5), 0x1c time step, 0x20 steps of seconds, 0x10 tick,
-- 0x40 behind a zeroed base and signed with the key, 0x80 a fresh Sender Timestamp
local function rec(h, d) return string.char(h, #d) .. d end
local t12 = T.reflctrl .. T.hmac .. T.padding
local rp = T.returnpath .. T.hmac
write("fuzz_rmach", "open-type12", "\x01" .. rec(0xc4, t12) .. rec(0xc5, t12) .. rec(0xc6, T.reflctrl2 .. T.hmac))
write("fuzz_rmach", "open-returnpath", "\x01" .. rec(0xc4, rp) .. rec(0xc7, T.returnpath6 .. T.hmac) .. rec(0x44, T.cos .. T.hmac))
write("fuzz_rmach", "open-light", "\x01" .. rec(0x04, open_test:sub(1, 14)) .. rec(0x05, open_test:sub(1, 30))
  .. rec(0x06, open_test) .. rec(0x07, open_test:sub(1, 13)))
write("fuzz_rmach", "open-rate", "\x11" .. string.rep(rec(0x00, open_test), 6) .. rec(0x3c, open_test))
write("fuzz_rmach", "open-chain", "\x01" .. rec(0xc4, "") .. "\xc5\0" .. chain)
write("fuzz_rmach", "open-stateless", "\x03" .. rec(0xc4, rp) .. rec(0xc5, t12) .. rec(0xc6, T.cos .. T.hmac))
write("fuzz_rmach", "auth-type12", "\x00" .. rec(0xc4, t12) .. rec(0xc5, t12) .. rec(0xd6, t12))
write("fuzz_rmach", "auth-replay", "\x60" .. rec(0xc4, T.hmac) .. rec(0xc4, T.hmac) .. rec(0x44, T.hmac) .. rec(0xe4, T.hmac))
write("fuzz_rmach", "auth-sessions", "\x84" .. rec(0xc4, t12) .. rec(0xc5, t12) .. rec(0xc6, t12) .. rec(0xc7, t12)
  .. rec(0xf0, T.hmac))
write("fuzz_rmach", "auth-unsigned", "\x00" .. rec(0x04, auth_test .. T.hmac) .. rec(0x05, auth_test:sub(1, 50)))
write("fuzz_rmach", "auth-chain", "\x20" .. "\xc4\0" .. chain)
