#!/usr/bin/env bash
# Runs the real-client S3 compatibility suite against the drive binary, once
# per backend: fs, and s3 over a throwaway SeaweedFS (test ids end in [fs]/[s3]).
# Extra arguments go to pytest, e.g.: ./run.sh -k rclone -x
# DRIVE_CLIENT_BACKENDS=fs (or s3, or fs,s3) restricts the backends run.
# The identity tests (test_identity.py, test_h2o_drive.py) run once, on their own
# Drive (fs backend) trusting the test OpenID provider; the h2o-drive ones use
# the second venv that setup.sh makes (venv-h2o, requirements-h2o.txt).
# DRIVE_BIN overrides the server binary (default: <repo>/target/debug/drive,
# or $CARGO_TARGET_DIR/debug/drive when CARGO_TARGET_DIR is set).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools_dir="${DRIVE_TOOLS_DIR:-$HOME/.cache/drive-tools}"

bash "$here/setup.sh" || { echo "run: setup.sh failed" >&2; exit 2; }

PYTHONDONTWRITEBYTECODE=1 "$tools_dir/venv/bin/python" -m pytest -q -p no:cacheprovider "$here" "$@"
exit $?
