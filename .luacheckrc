std = "max"
max_line_length = 150
files["spec"] = { std = "+busted" }
exclude_files = { "build", "build*" }
files["lua/resty"] = { read_globals = { "ngx" } }
