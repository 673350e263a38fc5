#!/bin/bash
# The reflector's API specs (the I/O-free machine, trust, abuse resistance, keys, Type 12, sessions,
# session admission and Type 12 limits)
# on Lua 5.3, 5.1 and LuaJIT (build dirs made by .ci/run) and against the ASan/UBSan build.
set -euo pipefail
for v in 5.3 5.1 luajit; do
  [ -d "build-$v" ] || { cmake -S . -B "build-$v" -DLUA_VERSION=$v >/dev/null && cmake --build "build-$v" -j2 >/dev/null; }
  lua=$([ "$v" = luajit ] && echo luajit || echo "lua$v")
  "$lua" /usr/bin/busted --output=utfTerminal --lpath="lua/?.lua;lua/?/init.lua;spec/?.lua" --cpath="build-$v/?.so" \
    spec/13-reflector_machine_spec.lua spec/36-admission_spec.lua spec/37-type12_limits_spec.lua \
    >"build-$v/reflector-specs.log" 2>&1 || { cat "build-$v/reflector-specs.log"; exit 1; }
  grep -aE "successes" "build-$v/reflector-specs.log"
done
if [ -d build-asan ]; then
  LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" ASAN_OPTIONS=detect_leaks=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    lua5.4 /usr/bin/busted --output=utfTerminal --cpath="build-asan/?.so" spec/13-reflector_machine_spec.lua \
    >build-asan/reflector-specs.log 2>&1 || { cat build-asan/reflector-specs.log; exit 1; }
  grep -aE "successes" build-asan/reflector-specs.log
fi
