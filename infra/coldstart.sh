#!/usr/bin/env bash
# Cold-start measurement of the four Lambda functions beside two references built with the
# same profile (`lambda`): a hello-world lambda_runtime binary (infra/coldstart/hello) and the
# SDK floor (infra/coldstart/sdk-floor: aws_config + the DynamoDB, SQS and EventBridge
# clients). Each bootstrap runs against a local Runtime API; init time = process start to its
# first `GET /runtime/invocation/next`. Also prints each function's binary and zip size.
#
#   infra/coldstart.sh [--runs 30] [--max-ratio 1.25]      (x86_64 build of this machine)
#   SKIP_BUILD=1 infra/coldstart.sh                          (measure what target/lambda holds)
#
# Needs cargo-lambda (`pip install cargo-lambda`). Exits 1 when a function's median init time
# is above --max-ratio (default 1.25) times the SDK floor's.
set -euo pipefail
cd "$(dirname "$0")/.."

bins=(api webhook worker cleanup coldstart-hello coldstart-sdk-floor)
if [[ -z "${SKIP_BUILD:-}" ]]; then
  args=()
  for b in "${bins[@]}"; do args+=(--bin "$b"); done
  cargo lambda build --profile lambda "${args[@]}"
fi

echo "sizes (lambda profile: opt-level s, lto, codegen-units 1, strip)"
echo
echo "| function | binary (MiB) | zip (MiB) |"
echo "|---|---:|---:|"
for b in "${bins[@]}"; do
  python3 - "$b" <<'PY'
import os, sys, tempfile, zipfile
name = sys.argv[1]
src = os.path.join("target", "lambda", name, "bootstrap")
with tempfile.TemporaryDirectory() as d:
    out = os.path.join(d, "bootstrap.zip")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.write(src, "bootstrap")
    print(f"| {name} | {os.path.getsize(src) / 1048576:.2f} | {os.path.getsize(out) / 1048576:.2f} |")
PY
done
echo

cargo build --quiet -p coldstart-measure
target/debug/coldstart --dir target/lambda "$@"
