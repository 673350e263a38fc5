-- The C library as a product (README "Using the C library"): `cmake --install`
-- puts libstamp.so, stamp.h and stamp.pc under a prefix; a C program builds with
-- `pkg-config --cflags --libs stamp` against that installation alone and runs.
local h = require "helper"

local function sh(cmd)
  local code, out, err = h.run(cmd)
  assert(code == 0, cmd .. "\nexit " .. tostring(code) .. "\n" .. out .. err)
  return out
end

describe("the installed C library", function()
  local prefix, env

  setup(function()
    prefix = os.tmpname()
    os.remove(prefix)
    sh("mkdir -p " .. prefix)
    sh("cmake --install '" .. h.ROOT .. "/build' --prefix " .. prefix)
    local libdir = sh("dirname $(find " .. prefix .. " -name stamp.pc)"):gsub("%s+$", "")
    env = "export PKG_CONFIG_PATH=" .. libdir .. "; "
  end)

  teardown(function()
    if prefix then os.execute("rm -rf " .. prefix) end
  end)

  it("installs libstamp.so, stamp.h and a stamp.pc naming the prefix", function()
    sh("test -f " .. prefix .. "/include/stamp.h")
    assert.truthy(sh("find " .. prefix .. " -name libstamp.so -path '*/lib/*' -not -path '*/lua/*'"):find("libstamp.so", 1, true))
    local flags = sh(env .. "pkg-config --cflags --libs stamp")
    assert.truthy(flags:find("-I" .. prefix .. "/include", 1, true), flags)
    assert.truthy(flags:find("-L" .. prefix .. "/", 1, true), flags)
    assert.truthy(flags:find("-lstamp", 1, true), flags)
    assert.equal("0.1.0", (sh(env .. "pkg-config --modversion stamp"):gsub("%s+$", "")))
  end)

  it("stamp.h is self-contained (C11 -pedantic and C++)", function()
    local src = prefix .. "/only.c"
    local f = assert(io.open(src, "w"))
    f:write("#include <stamp.h>\nint main(void) { stamp_result_t r; stamp_addr_t a; (void)r; (void)a;\n",
      "  return stamp_base_len(STAMP_MODE_OPEN) == STAMP_BASE_LEN ? 0 : 1; }\n")
    f:close()
    sh(env .. "cc -std=c11 -pedantic -Wall -Wextra -Werror -c " .. src .. " -o " .. prefix .. "/only.o $(pkg-config --cflags stamp)")
    sh(env .. "c++ -x c++ -std=c++11 -Wall -Werror -c " .. src .. " -o " .. prefix .. "/only2.o $(pkg-config --cflags stamp)")
  end)

  it("examples/c/loopback.c builds against the installation and measures", function()
    local bin = prefix .. "/loopback"
    sh(env .. "cc -std=c11 -Wall -Wextra -Werror -o " .. bin .. " '" .. h.ROOT .. "/examples/c/loopback.c'"
      .. " $(pkg-config --cflags --libs stamp) -Wl,-rpath,$(pkg-config --variable=libdir stamp)")
    -- it links the installed library, not the build tree's
    assert.truthy(sh("ldd " .. bin):find(prefix, 1, true))
    local out = sh(bin .. " 5")
    local engine, machine = 0, 0
    for line in out:gmatch("[^\n]+") do
      local who, rtt = line:match("^(%a+) +seq=%d+ rtt=([%d.]+) ms")
      if who == "engine" then engine = engine + 1 end
      if who == "machine" then machine = machine + 1 end
      if rtt then assert.is_true(tonumber(rtt) > 0) end
    end
    assert.equal(5, engine, out)
    assert.equal(5, machine, out)
    assert.truthy(out:find("engine: 5/5 answered; machine: 5/5 answered; reflector: 10 received, 10 reflected", 1, true), out)
  end)

  it("the README's minimal C program builds and measures", function()
    local readme = h.slurp(h.ROOT .. "/README.md")
    local section = assert(readme:match("\n## Using the C library\n(.-)\n## "), "README section")
    local code = assert(section:match("```c\n(.-)```"), "a C block in the section")
    local src, bin = prefix .. "/minimal.c", prefix .. "/minimal"
    local f = assert(io.open(src, "w"))
    f:write(code)
    f:close()
    sh(env .. "cc -std=c11 -Wall -Wextra -Werror -o " .. bin .. " " .. src
      .. " $(pkg-config --cflags --libs stamp) -Wl,-rpath,$(pkg-config --variable=libdir stamp)")
    local out = sh(bin)
    local n = 0
    for rtt in out:gmatch("seq=%d+ rtt=([%d.]+) ms") do
      n = n + 1
      assert.is_true(tonumber(rtt) > 0)
    end
    assert.equal(5, n, out)
  end)
end)
