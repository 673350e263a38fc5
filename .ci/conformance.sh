#!/usr/bin/env bash
# CI: the conformance matrix (docs/conformance/) names only specs that exist, and every
# Compliant row names one.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== conformance matrix"
lua5.4 scripts/check-conformance.lua
