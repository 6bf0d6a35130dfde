#!/usr/bin/env bash
# The whole test suite. Installs what the tests need (Python clients and emulators in a venv,
# helm and kubernetes-validate for the chart, rclone, Azurite, s3s-e2e) outside the clone,
# and reuses the cargo target dir and tools across runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/drive-target}"
export DRIVE_TOOLS_DIR="${DRIVE_TOOLS_DIR:-$HOME/.cache/drive-tools}"
export DRIVE_BIN="$CARGO_TARGET_DIR/debug/drive"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --all-targets --locked

step "test tools: clients and emulators"
bash s3-compat-tests/clients/setup.sh

step "Helm chart: lint, render, validate against Kubernetes' schemas, refuse bad values"
bash chart/tests/run.sh

step "unit and conformance tests (Rust)"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi

step "real clients: aws-cli, rclone, boto3"
bash s3-compat-tests/clients/run.sh

step "peer suite: s3s-e2e"
bash s3-compat-tests/peers/s3s-e2e.sh
