#!/usr/bin/env bash
# CI: libstamp as a C library. Install into a scratch prefix with `cmake --install`,
# build examples/c/loopback.c against that installation alone with
# `pkg-config --cflags --libs stamp`, and run it (exit 0: every packet came back).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== the C library: cmake --install, pkg-config, examples/c"
cmake -S . -B build >/dev/null && cmake --build build -j2 >/dev/null
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install build --prefix "$prefix" >/dev/null
PKG_CONFIG_PATH=$(dirname "$(find "$prefix" -name stamp.pc)")
export PKG_CONFIG_PATH
echo "pkg-config --cflags --libs stamp: $(pkg-config --cflags --libs stamp)"
cc -std=c11 -Wall -Wextra -Werror -o "$prefix/loopback" examples/c/loopback.c \
  $(pkg-config --cflags --libs stamp) -Wl,-rpath,"$(pkg-config --variable=libdir stamp)"
"$prefix/loopback" 5
