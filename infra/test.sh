#!/usr/bin/env bash
# Runs every test of WeConnect: unit tests, the conformance scenarios on SQLite and on
# DynamoDB + SQS + EventBridge served by moto, the API end-to-end suite, and the SAM lint.
# Installs what it needs (moto_server, cfn-lint) when missing.
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

cfn-lint template.yaml
# The end-to-end suites start the real binaries.
cargo build --workspace --bins
cargo test --workspace "$@"
