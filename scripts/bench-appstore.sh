#!/usr/bin/env bash
# Benchmarks the App Store's repository on loopback (appstore/benches/repository.rs): import
# throughput of 5 MiB bundles (sequential and 4 at once) against a plain S3 PUT of the same
# bytes to the same Drive, then list latency (p50/p99) with 10 000 apps against the same page
# read straight from the database. Drive (release, fs backend) stores the bundles; the test
# OpenID provider of s3-compat-tests/idp signs the tokens; metadata lives in PostgreSQL
# (127.0.0.1:5432 or $DRIVE_TEST_POSTGRES), or SQLite with BENCH_DB=sqlite.
# Usage: scripts/bench-appstore.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/drive-target}"
source scripts/ensure-idp.sh

cargo build --release --locked -p drive --bin drive
export DRIVE_BIN="$CARGO_TARGET_DIR/release/drive"
exec cargo bench --locked -p appstore --bench repository
