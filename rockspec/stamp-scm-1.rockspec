rockspec_format = "3.0"
package = "stamp"
version = "scm-1"
source = {
  url = "git+https://example.invalid/stamp.git",
}
description = {
  summary = "STAMP (RFC 8762/8972) Session-Sender and Session-Reflector: a Lua module with a C core",
  detailed = [[
Measure round-trip and one-way delay, delay variation and loss between two hosts
with the Simple Two-Way Active Measurement Protocol, from the `stamp` command or from Lua.
]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
  "argparse >= 0.6",
  "dkjson >= 2.5",
}
external_dependencies = {
  CRYPTO = { header = "openssl/evp.h", library = "crypto" },
  MHD = { header = "microhttpd.h", library = "microhttpd" },
}
build = {
  type = "cmake",
  variables = {
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    STAMP_WERROR = "OFF",
    STAMP_INSTALL_CLIB = "OFF",
  },
  install = {
    bin = { stamp = "bin/stamp" },
  },
}
test = {
  type = "busted",
}
