#!/usr/bin/env bash
# CI: build every libFuzzer target (clang, ASan/UBSan) and run each for
# FUZZ_SECONDS (default 30) from its committed seed corpus, two at a time;
# any crash or broken invariant fails the build (fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== fuzz: every target ${FUZZ_SECONDS:-30} s (libFuzzer, ASan/UBSan)"
JOBS=2 NICE=0 ./fuzz/run "${FUZZ_SECONDS:-30}"
