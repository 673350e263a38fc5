#!/usr/bin/env bash
# CI: the conformance matrix (docs/conformance/) names only specs that exist, and every
# Compliant row names one.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== conformance matrix"
lua5.4 scripts/check-conformance.lua

# the TLV walk with hand-built octets, under ASan/UBSan when .ci/run built that module
if [ -f build-asan/stamp/core.so ]; then
  echo "== TLV trust and conformance specs under ASan/UBSan"
  LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" ASAN_OPTIONS=detect_leaks=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    lua5.4 /usr/bin/busted --output=utfTerminal --cpath="build-asan/?.so" spec/13-tlv_trust_spec.lua \
    spec/14-tlv_conformance_spec.lua >build-asan/tlv-specs.log 2>&1 || { cat build-asan/tlv-specs.log; exit 1; }
  grep -aE "successes" build-asan/tlv-specs.log
fi
