-- busted output handler: a line per file, details of each failure, and a
-- closing line "N passed, N failed, N skipped" (errors count as failed).
return function(options)
  local busted = require "busted"
  local handler = require("busted.outputHandlers.base")()
  local pretty = require "pl.pretty"

  local function describe(element)
    local t = element.trace
    return (t and t.short_src or "?") .. ":" .. (t and t.currentline or "?") .. ": " .. handler.getFullName(element)
  end

  local function message(m)
    if type(m) == "string" then return m end
    if m == nil then return "nil error" end
    return pretty.write(m)
  end

  handler.fileEnd = function(file)
    io.stdout:write(string.format("  %s\n", file.name))
    io.stdout:flush()
    return nil, true
  end

  handler.suiteEnd = function()
    local failed = handler.failuresCount + handler.errorsCount
    for _, list in ipairs { handler.failures, handler.errors } do
      for _, f in ipairs(list) do
        io.stdout:write("\nFAILED ", describe(f.element), "\n", message(f.message), "\n")
        if f.trace and f.trace.traceback and options.verbose then io.stdout:write(f.trace.traceback, "\n") end
      end
    end
    io.stdout:write(string.format("\n%d passed, %d failed, %d skipped\n", handler.successesCount, failed,
      handler.pendingsCount))
    io.stdout:flush()
    return nil, true
  end

  busted.subscribe({ "file", "end" }, handler.fileEnd)
  busted.subscribe({ "suite", "end" }, handler.suiteEnd)
  return handler
end
