-- LUA_INIT for the `stamp` command in specs: records which way the sender ran, "pump" (results in
-- C, no Lua per packet) or "step" (a table per result), one line each the first time, in the file
-- named by STAMP_PATH_PROBE. Usage: LUA_INIT=@spec/tools/path_probe.lua STAMP_PATH_PROBE=FILE bin/stamp ...
local root = os.getenv("STAMP_ROOT")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/?.so;" .. package.cpath
local m = require("stamp.core").methods.sender
local seen = {}
for _, name in ipairs { "pump", "step" } do
  local f = m[name]
  m[name] = function(...)
    if not seen[name] then
      seen[name] = true
      local fh = assert(io.open(os.getenv("STAMP_PATH_PROBE"), "a"))
      fh:write(name, "\n")
      fh:close()
    end
    return f(...)
  end
end
