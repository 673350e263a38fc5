-- Settings of stamp-reflector.service (stamp(1), --config). Keys are the long
-- flag names with "-" written "_". `systemctl reload stamp-reflector` re-reads
-- the keys in /etc/stamp/keys (one hex key per SSID, mode 0600, owner stamp).
return {
  is_reflector = true,
  local_addr = "::",
  local_port = 862,
  stateful_reflector = true,
  metrics = true,
  metrics_addr = "127.0.0.1:9090",
  -- auth_mode = "A",
  -- hmac_key_dir = "/etc/stamp/keys",
}
