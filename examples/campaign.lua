-- A campaign file for `stamp --campaign examples/campaign.lua`: it gets the
-- `stamp` module as its argument and returns the campaign table. This one
-- starts two reflectors of its own on loopback so that it runs anywhere;
-- a real one would list remote reflectors only.
local stamp = ...
local tlv = stamp.tlv

local r1 = assert(stamp.reflector { local_addr = "127.0.0.1", local_port = 0 })
local r2 = assert(stamp.reflector { local_addr = "::1", local_port = 0, stateful = true })
local _, p1 = r1:local_addr()
local _, p2 = r2:local_addr()

return {
  reflectors = { r1, r2 },
  sessions = {
    { name = "fast-v4", remote_addr = "127.0.0.1", remote_port = p1, count = 40, send_delay = 5 },
    { name = "slow-v4", remote_addr = "127.0.0.1", remote_port = p1, count = 10, send_delay = 20,
      tlvs = { tlv.cos { dscp = 46 } } },
    { name = "fast-v6", remote_addr = "::1", remote_port = p2, count = 40, send_delay = 5, schedule = "poisson" },
    { name = "padded-v6", remote_addr = "::1", remote_port = p2, count = 20, send_delay = 10, padding = 1000,
      tlvs = { tlv.direct_measurement() } },
  },
}
