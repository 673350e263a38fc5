#!/usr/bin/env bash
# CI for operations (issue 9): Prometheus scrapes a reflector, promtool checks
# both roles' metrics, the systemd unit is verified, the Debian package is built
# and the packaged command runs from a scratch root.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== ops: Prometheus reads the reflector's metrics"
bash .ci/prometheus-check.sh
# (promtool checks both roles' metrics in spec/30-ops_metrics_spec.lua, part of the test run)

echo "== ops: the Debian package, run from a scratch root; systemd-analyze verify on its unit"
bash .ci/deb-check.sh
