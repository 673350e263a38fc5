-- The nginx harness the embedding specs stand on: Debian's nginx + http Lua module, temporary
-- prefix, 127.0.0.1 only, this checkout's modules (stamp.core built for LuaJIT).
local ngxh = require "nginx_helper"

describe("nginx harness", function()
  it("starts nginx, loads stamp.core under LuaJIT, and stops it cleanly", function()
    local port = ngxh.free_tcp_port()
    local n = ngxh.start(ngxh.config([[
  server {
    listen 127.0.0.1:]] .. port .. [[;
    location = /version {
      content_by_lua_block {
        local core = require "stamp.core"
        ngx.say(jit.version, " ", core._VERSION, " ", package.loaded["resty.core"] and "resty.core" or "no resty.core")
      }
    }
  }]]), port)
    local ok, err = pcall(function()
      local status, body = n.get("/version")
      assert.equal(200, status, body)
      assert.truthy(body:match("^LuaJIT 2%.1"), body)
      assert.truthy(body:find(require("stamp.core")._VERSION, 1, true), body)
      assert.truthy(body:find("resty.core", 1, true), body)
    end)
    local stopped = n.stop()
    local log = n.log()
    n.cleanup()
    assert(ok, err)
    assert.is_true(stopped, "nginx did not stop on SIGQUIT")
    assert.same({}, ngxh.errors(log))
    assert.truthy(log:find("gracefully shutting down", 1, true), log)
  end)
end)
