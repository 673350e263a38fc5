#!/usr/bin/env lua5.4
-- Fails when a public function has no documentation comment:
--  * every C function registered by a file of csrc/lua/ needs a /*** ... */ block;
--  * every public Lua function in lua/stamp/*.lua and lua/resty/ needs a --- comment just above it.
local missing = {}

local function slurp(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- C binding: every file of csrc/lua/ (registration tables in each file's *_open,
-- class methods in its bind_class_t; the shared methods are documented in class.c)
local registered = {}
local lsc = io.popen("ls csrc/lua/*.c")
for path in lsc:lines() do
  local c = slurp(path)
  for name, fn in c:gmatch('{"([%w_]+)",%s*([%w_]+)}') do registered[#registered + 1] = { name, fn, path, c } end
  for name, fn in c:gmatch('setmethod%(L, cls, "([%w_]+)", ([%w_]+)%)') do
    if not name:match("^__") then registered[#registered + 1] = { name, fn, path, c } end
  end
  for name, fn in c:gmatch('%.short_name = "([%w_]+)".-%.ctor = ([%w_]+)') do registered[#registered + 1] = { name, fn, path, c } end
end
lsc:close()
for _, r in ipairs(registered) do
  local fn, path, c = r[2], r[3], r[4]
  local pos = c:find("\nstatic int " .. fn .. "%(lua_State")
  if not pos then
    missing[#missing + 1] = path .. ": no definition of " .. fn
  else
    local before = c:sub(1, pos)
    local last_doc = before:match(".*()/%*%*%*")
    local last_end = before:match(".*()%*/")
    if not last_doc or not last_end or last_end < last_doc or before:sub(last_end):find("\n%s*[%w_]+[^\n]*%b()%s*\n{") then
      missing[#missing + 1] = path .. ": " .. fn .. " (" .. r[1] .. ") has no /*** */ block"
    end
  end
end

-- Lua modules
local p = io.popen("ls lua/stamp/*.lua lua/resty/*.lua lua/resty/stamp/*.lua")
for path in p:lines() do
  local prev = ""
  local n = 0
  for line in io.lines(path) do
    n = n + 1
    local public = line:match("^function [%w_]+[.:]([%w_]+)%(") or line:match("^M%.([%w_]+) = function")
    if public and not prev:match("^%-%-") then
      missing[#missing + 1] = string.format("%s:%d: %s has no --- comment", path, n, public)
    end
    if line:match("%S") then prev = line end
  end
end
p:close()

for _, m in ipairs(missing) do io.stderr:write(m, "\n") end
if #missing > 0 then os.exit(1) end
print(string.format("documentation: %d C functions and every public Lua function documented", #registered))
