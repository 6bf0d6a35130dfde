#!/usr/bin/env bash
# Benchmarks identity on loopback: STS AssumeRoleWithWebIdentity latency (p50/p99/mean) with a
# warm key-set cache, and 4 KiB GETs per second with session credentials against root
# credentials in the same run, ROUNDS rounds alternating root / session, medians reported.
# Drive (fs backend, temporary data directory) trusts the test OpenID provider of
# s3-compat-tests/idp, which s3-compat-tests/clients/setup.sh installs when it is missing.
# Usage: scripts/bench-identity.sh [STS_CALLS] [CONCURRENCY] [SECONDS] [ROUNDS]
#        (defaults 2000, 8, 5, 3; passed to idbench, s3-compat-tests/src/bin/idbench.rs)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/drive-target}"
source scripts/ensure-idp.sh

cargo build --release --locked -p drive -p s3-compat-tests --bin drive --bin idbench
export DRIVE_BIN="$CARGO_TARGET_DIR/release/drive"
exec "$CARGO_TARGET_DIR/release/idbench" "$@"
