-- A sender's settings for `stamp --config examples/sender-config.lua -r HOST`.
return {
  remote_port = 862,
  count = 0, -- until interrupted
  send_delay = 1000,
  timeout = 5,
  output_format = "jsonl",
  metrics = true,
  metrics_addr = "127.0.0.1:9091",
}
