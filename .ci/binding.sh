#!/usr/bin/env bash
# CI for the binding: its specs on Lua 5.3, 5.1 and LuaJIT (the build-* dirs .ci/run made),
# then the C library (.ci/clib.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== binding: wire-zero, argument and C statistics specs on Lua 5.3, 5.1 and LuaJIT"
for v in 5.3 5.1 luajit; do
  cmake -S . -B "build-$v" -DLUA_VERSION=$v >/dev/null
  cmake --build "build-$v" -j2 >/dev/null
  lua=$([ "$v" = luajit ] && echo luajit || echo "lua$v")
  "$lua" /usr/bin/busted --output=utfTerminal --lpath="lua/?.lua;lua/?/init.lua;spec/?.lua" --cpath="build-$v/?.so" \
    spec/20-wire_zero_spec.lua spec/21-binding_args_spec.lua spec/48-cstats_spec.lua >"build-$v/binding.log" 2>&1 \
    || { cat "build-$v/binding.log"; exit 1; }
  grep -aE "successes" "build-$v/binding.log"
done
./.ci/clib.sh
