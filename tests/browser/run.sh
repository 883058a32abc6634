#!/usr/bin/env bash
# The web console's tests in headless Chromium: Debian's `chromium` driven by `playwright-core`
# (pinned in package-lock.json). Run from anywhere after `cargo build` made target/debug/weconnect;
# installs Chromium (apt) and playwright-core (npm ci) when missing. Screenshots of the main
# views are written to target/console-screenshots/.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "tests/browser: Node.js 20+ and npm are needed (apt-get install nodejs npm)" >&2
  exit 1
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "tests/browser: installing Debian's chromium" >&2
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "tests/browser: /usr/bin/chromium is missing and this user cannot apt-get install it" >&2; exit 1; }
    sudo=sudo
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d tests/browser/node_modules/playwright-core ] \
  || [ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

export WECONNECT_BIN="${WECONNECT_BIN:-$root/target/debug/weconnect}"
export SCREENSHOT_DIR="${SCREENSHOT_DIR:-$root/target/console-screenshots}"
if [ ! -x "$WECONNECT_BIN" ]; then
  echo "tests/browser: $WECONNECT_BIN is missing: run cargo build -p weconnect first" >&2
  exit 1
fi
cd tests/browser
exec node --test --test-concurrency=1 console.test.mjs
