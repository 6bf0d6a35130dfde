#!/usr/bin/env bash
# Installs the tools the client compatibility suite needs, idempotently:
#   - a Python venv with requirements.txt, kept outside the repo in
#     ${DRIVE_TOOLS_DIR:-$HOME/.cache/drive-tools}/venv and reused across runs;
#   - rclone from Debian's packages when it is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools_dir="${DRIVE_TOOLS_DIR:-$HOME/.cache/drive-tools}"
venv="$tools_dir/venv"
req="$here/requirements.txt"
stamp="$venv/.drive-requirements.sha256"
python="${PYTHON:-python3}"

mkdir -p "$tools_dir"

if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating venv in $venv"
    "$python" -m venv "$venv"
fi

want="$(sha256sum "$req" | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
    echo "setup: installing $(grep -cvE '^\s*(#|$)' "$req") pinned packages from requirements.txt"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    echo "$want" > "$stamp"
else
    echo "setup: venv up to date ($venv)"
fi

if ! command -v rclone >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    if ! apt-cache show rclone >/dev/null 2>&1; then
        echo "setup: apt-get update"
        $sudo apt-get update -qq
    fi
    echo "setup: installing rclone with apt-get"
    if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq rclone >/dev/null; then
        echo "setup: apt-get install failed, retrying after apt-get update"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq rclone >/dev/null
    fi
fi
echo "setup: rclone $(rclone version 2>/dev/null | head -n1 | awk '{print $2}'), $("$venv/bin/aws" --version 2>&1)"
