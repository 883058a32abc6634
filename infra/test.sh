#!/usr/bin/env bash
# Runs every test of WeConnect: unit tests, the conformance scenarios on SQLite and on
# DynamoDB + SQS + EventBridge served by moto, the API end-to-end suite, the SAM lint,
# schemathesis against `weconnect serve`, and the console's browser test.
# Installs what it needs (moto_server, cfn-lint, schemathesis, Chromium, playwright-core)
# when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pip() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "installing $2 (for $1)"
    python3 -m pip install --quiet "$2"
  fi
}
need_pip moto_server 'moto[server]'
need_pip cfn-lint 'cfn-lint'
need_pip st 'schemathesis'

cfn-lint template.yaml
# The end-to-end suites start the real binaries.
cargo build --workspace --bins
cargo test --workspace "$@"
# The OpenAPI document checked against a running server (bounded examples per route), then
# the web console in headless Chromium (installed when missing).
python3 infra/schemathesis.py
tests/browser/run.sh
