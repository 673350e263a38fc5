#!/usr/bin/env lua5.4
-- Check the conformance matrix in docs/conformance/*.md:
--  * every table row has a status: Compliant, Partial, Deviation by choice or Not applicable;
--  * a Compliant row names at least one spec;
--  * every spec a row names, written `spec/FILE.lua: it-name`, exists and has an `it` of that name.
-- Usage: lua5.4 scripts/check-conformance.lua [MATRIX_DIR [ROOT]]
-- (defaults: docs/conformance and the repository root). Exit status 0 when clean, 1 otherwise.

local dir = arg[1] or "docs/conformance"
local root = arg[2] or "."

local STATUSES = { ["Compliant"] = true, ["Partial"] = true, ["Deviation by choice"] = true, ["Not applicable"] = true }

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

local function cells(line)
  local out = {}
  local body = line:match("^%s*|(.*)|%s*$")
  if not body then return nil end
  for c in (body .. "|"):gmatch("(.-)|") do out[#out + 1] = trim(c) end
  return out
end

-- The `it` names of a spec file (plain string literals only), cached.
local its = {}
local function it_names(file)
  if its[file] == nil then
    local src = slurp(root .. "/" .. file)
    if not src then
      its[file] = false
    else
      local set = {}
      for q, name in src:gmatch("%f[%w_]it%s*%(%s*([\"'])(.-)%1%s*,") do
        set[name] = true
        local _ = q
      end
      its[file] = set
    end
  end
  return its[file]
end

local errors, rows, counts = {}, 0, {}
local function fail(where, msg) errors[#errors + 1] = where .. ": " .. msg end

local p = io.popen('ls "' .. dir .. '"/*.md 2>/dev/null')
local files = {}
for f in p:lines() do files[#files + 1] = f end
p:close()
if #files == 0 then fail(dir, "no matrix files (*.md)") end

for _, path in ipairs(files) do
  local text = assert(slurp(path))
  local status_col, proof_col
  local n = 0
  for line in (text .. "\n"):gmatch("(.-)\r?\n") do
    n = n + 1
    local c = cells(line)
    if c then
      local where = path .. ":" .. n
      local separator = c[1] and c[1]:match("^:?%-%-")
      if separator then
        goto continue -- the row under the header
      end
      if not status_col then
        for i, h in ipairs(c) do
          if h == "Status" then status_col = i end
          if h == "Proof" then proof_col = i end
        end
        if not status_col or not proof_col then fail(where, "table header without 'Status' and 'Proof' columns") end
      elseif status_col and proof_col then
        rows = rows + 1
        local status, proof = c[status_col] or "", c[proof_col] or ""
        if status == "" then
          fail(where, "row without a status")
        elseif not STATUSES[status] then
          fail(where, "unknown status '" .. status .. "'")
        end
        counts[status] = (counts[status] or 0) + 1
        local named = 0
        for ref in proof:gmatch("`([^`]+)`") do
          local file, name = ref:match("^(spec/[%w_%-%./]+%.lua):%s*(.+)$")
          if file then
            named = named + 1
            local set = it_names(file)
            if set == false then
              fail(where, "names " .. file .. ", which does not exist")
            elseif not set[name] then
              fail(where, "names '" .. name .. "', which is no `it` in " .. file)
            end
          end
        end
        if status == "Compliant" and named == 0 then fail(where, "a Compliant row names no spec") end
      end
    else
      status_col, proof_col = nil, nil -- a table ended: the next one has its own header
    end
    ::continue::
  end
end

for _, e in ipairs(errors) do io.stderr:write(e, "\n") end
local parts = {}
for _, s in ipairs { "Compliant", "Partial", "Deviation by choice", "Not applicable" } do
  parts[#parts + 1] = string.format("%s %d", s, counts[s] or 0)
end
print(string.format("conformance matrix: %d files, %d rows (%s), %d problems", #files, rows,
  table.concat(parts, ", "), #errors))
os.exit(#errors == 0 and 0 or 1)
