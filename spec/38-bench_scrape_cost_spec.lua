-- bench/scrape_cost.sh (issue 9: what Prometheus scrapes cost the reflector under load), as
-- bench/README.md says to run it: its --quick smoke mode runs every part (the reflector with
-- --metrics, bench/loadgen.c, both scrapers) and prints what the README describes. No figure is
-- checked: the benchmark is run by hand on an idle machine.
local h = require "helper"

local SCRIPT = "cd " .. h.ROOT .. " && bench/scrape_cost.sh"

describe("bench/scrape_cost.sh", function()
  it("--quick runs the three conditions (none, 10/s, b2b), interleaved, and prints rounds, medians and ratios", function()
    local code, out, err = h.run(SCRIPT .. " --quick")
    assert.equal(0, code, err)
    local round = out:match("\nround 1:([^\n]*)")
    assert.truthy(round, out)
    assert.truthy(round:find("none %d+/s %(%d+%.%d+ us/reply%)"), round)
    for _, c in ipairs { "10/s", "b2b" } do
      local ok, failed = round:match(c:gsub("/", "%%/") .. " %d+/s %(%d+%.%d+ us/reply, (%d+) scrapes, (%d+) failed%)")
      assert.truthy(ok, c .. ": " .. round)
      assert.is_true(tonumber(ok) > 0, c .. ": no scrape answered: " .. round)
      assert.equal("0", failed, round)
    end
    assert.truthy(out:find("\nmedian none +%d+ replies/s"), out)
    for _, c in ipairs { "10/s", "b2b" } do
      assert.truthy(out:find("\nmedian " .. c:gsub("/", "%%/") .. " +%d+ replies/s .- ratio to none %d%.%d+ %(cost %-?%d+%.%d+ %%"), out)
    end
  end)

  it("a bad ROUNDS or SECONDS is refused with one line naming it, exit 2", function()
    for _, c in ipairs { { "x", "ROUNDS" }, { "0", "ROUNDS" }, { "1 0", "SECONDS" }, { "1 2s", "SECONDS" } } do
      local code, out, err = h.run(SCRIPT .. " " .. c[1])
      assert.equal(2, code, c[1])
      assert.equal("", out)
      assert.equal(1, select(2, err:gsub("\n", "")), err)
      assert.truthy(err:find(c[2], 1, true), err)
    end
  end)
end)
