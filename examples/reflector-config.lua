-- A reflector's settings for `stamp --config examples/reflector-config.lua`.
-- Keys are the long flag names with "-" written "_"; flags given on the
-- command line win. The file runs in an empty environment: plain values only.
return {
  is_reflector = true,
  local_addr = "::",
  local_port = 862,
  stateful_reflector = true,
  session_timeout = 300,
  tlv_mode = "echo",
  -- authenticated mode with one key per SSID (DIR/002a.key for SSID 42, DIR/default.key)
  -- auth_mode = "A",
  -- hmac_key_dir = "/etc/stamp/keys",
  metrics = true,
  metrics_addr = "127.0.0.1:9090",
  user = "nobody",
  log_format = "json",
}
