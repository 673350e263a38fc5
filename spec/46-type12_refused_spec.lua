-- A sender says when its Type 12 request was refused (C flag in the reply's TLV; review 9: 13).
local h = require "helper"
local report = require "stamp.report"

local STAMP = h.STAMP

local function run(rargs, sargs)
  local pid, rout, port = h.cli_reflector("--local-addr 127.0.0.1 " .. rargs)
  local code, out = h.run(string.format("%s -r 127.0.0.1 -p %d -o %d -c 3 -d 20 -L 1 %s", STAMP, port, h.free_port(),
    sargs))
  h.stop(pid)
  os.remove(rout)
  return code, out
end

describe("type 12 refused", function()
  it("counts the replies with C (interval 0 below the reflector's minimum): text warning and JSON extra_refused", function()
    local code, out = run("--reflected-control-max-count 4", "--reflected-count 2 --reflected-length 600")
    assert.equal(0, code)
    assert.matches("WARNING: Type 12 not granted by the reflector %(C%) on 3 replies", out)
    local _, js = run("--reflected-control-max-count 4",
      "--reflected-count 2 --reflected-length 600 --output-format json")
    local doc = assert(report.json_decode(js))
    assert.equal(3, doc.summary.extra_refused)
  end)

  it("a granted request counts none", function()
    local code, out = run("--reflected-control-max-count 4",
      "--reflected-count 2 --reflected-length 600 --reflected-interval-ns 1000000 --output-format json")
    assert.equal(0, code)
    local doc = assert(report.json_decode(out))
    assert.equal(0, doc.summary.extra_refused)
    assert.equal(3, doc.summary.extra_replies)
  end)
end)
