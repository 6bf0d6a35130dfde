#!/usr/bin/env bash
# Benchmarks app instances on the local runtime (appstore/benches/instances.rs): cold start
# (import -> run -> first 200 through the router) of a Wave hello-world with warm package
# caches, with a cold and with a warm virtualenv cache, installing with pip and then with uv
# (the tools' uv, appstore --uv); then the router's overhead for a small page
# (Wave's index) against the same page straight from waved, in the same run, from a load
# generator in its own process, with the processes spread over both CPUs and then with the
# instance on CPU 1 and the rest on CPU 0 (taskset). Drive, the App
# Store and the launcher are release builds; the test OpenID provider signs the tokens.
# The first run fills the package caches in $DRIVE_TOOLS_DIR/appstore-pip-cache from PyPI.
# Usage: scripts/bench-instances.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/drive-target}"
export DRIVE_TOOLS_DIR="${DRIVE_TOOLS_DIR:-$HOME/.cache/drive-tools}"
# The tools (uv, the test OpenID provider) are installed and current.
bash s3-compat-tests/clients/setup.sh >/dev/null

cargo build --release --locked -p drive -p appstore-launcher --bin drive --bin appstore-launcher
export DRIVE_BIN="$CARGO_TARGET_DIR/release/drive"
exec cargo bench --locked -p appstore --bench instances
