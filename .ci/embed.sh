#!/usr/bin/env bash
# CI: the embedding specs (nginx + lua-resty, luv, cqueues), each under the interpreter its
# host runs: nginx's LuaJIT for OpenResty (stamp.core from build-luajit), Lua 5.4 and LuaJIT
# for luv and cqueues (Debian builds both for 5.1-5.4). Missing hosts fail the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== embedding: hosts present"
test -x /usr/sbin/nginx || { echo "nginx missing (scripts/install-deps installs it)"; exit 1; }
test -f /usr/lib/nginx/modules/ngx_http_lua_module.so || { echo "libnginx-mod-http-lua missing"; exit 1; }
for v in 5.4 5.1; do
  for m in luv.so _cqueues.so; do
    test -f "/usr/lib/x86_64-linux-gnu/lua/$v/$m" || { echo "lua $v: $m missing (lua-luv / lua-cqueues)"; exit 1; }
  done
done
nginx -v 2>&1
luajit -v

cmake -S . -B build >/dev/null && cmake --build build -j2 >/dev/null
cmake -S . -B build-luajit -DLUA_VERSION=luajit >/dev/null && cmake --build build-luajit -j2 >/dev/null

specs=(spec/30-embed_harness_spec.lua spec/31-event_loops_spec.lua spec/33-openresty_spec.lua spec/34-nginx_reflector_spec.lua)
echo "== embedding specs (Lua 5.4 drives nginx; nginx runs LuaJIT): ${specs[*]}"
lua5.4 /usr/bin/busted --output=utfTerminal "${specs[@]}" >build/embed-specs.log 2>&1 \
  || { cat build/embed-specs.log; exit 1; }
grep -aE "successes" build/embed-specs.log
if grep -aE "[1-9][0-9]* (skipped|pending)" build/embed-specs.log; then echo "embedding specs skipped something"; exit 1; fi

echo "== luv and cqueues under LuaJIT"
luajit /usr/bin/busted --output=utfTerminal --lpath="lua/?.lua;lua/?/init.lua;spec/?.lua" --cpath="build-luajit/?.so" \
  spec/31-event_loops_spec.lua >build-luajit/embed-specs.log 2>&1 || { cat build-luajit/embed-specs.log; exit 1; }
grep -aE "successes" build-luajit/embed-specs.log
