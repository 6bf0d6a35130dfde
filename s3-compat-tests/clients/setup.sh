#!/usr/bin/env bash
# Installs the tools the client compatibility suite needs, idempotently:
#   - a Python venv with requirements.txt, kept outside the repo in
#     ${DRIVE_TOOLS_DIR:-$HOME/.cache/drive-tools}/venv and reused across runs;
#   - rclone from Debian's packages when it is missing;
#   - Azurite (npm) in ${DRIVE_TOOLS_DIR}/azurite, for the Azure backend suite.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools_dir="${DRIVE_TOOLS_DIR:-$HOME/.cache/drive-tools}"
venv="$tools_dir/venv"
req="$here/requirements.txt"
stamp="$venv/.drive-requirements.sha256"
python="${PYTHON:-python3}"

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
apt_updated=""

# apt_install PACKAGE...: apt-get install, running apt-get update first only
# when the package lists don't know a package (or the install failed once).
apt_install() {
    local pkg
    for pkg in "$@"; do
        if [ -z "$apt_updated" ] && ! apt-cache show "$pkg" >/dev/null 2>&1; then
            echo "setup: apt-get update"
            $sudo apt-get update -qq
            apt_updated=1
        fi
    done
    echo "setup: apt-get install $*"
    if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null; then
        [ -n "$apt_updated" ] && return 1
        echo "setup: apt-get install failed, retrying after apt-get update"
        $sudo apt-get update -qq
        apt_updated=1
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
    fi
}

mkdir -p "$tools_dir"

if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    echo "setup: creating venv in $venv"
    rm -rf "$venv"
    if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
        # Debian's own python3 needs python3-venv for ensurepip.
        rm -rf "$venv"
        apt_install python3-venv
        "$python" -m venv "$venv"
    fi
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
    apt_install rclone
fi
echo "setup: rclone $(rclone version 2>/dev/null | head -n1 | awk '{print $2}'), $("$venv/bin/aws" --version 2>&1)"

azurite_version="3.37.0"
azurite="$tools_dir/azurite"
if [ "$(cat "$azurite/.drive-version" 2>/dev/null || true)" != "$azurite_version" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        apt_install nodejs npm
    fi
    echo "setup: installing azurite $azurite_version"
    rm -rf "$azurite"
    mkdir -p "$azurite"
    npm install --prefix "$azurite" --no-audit --no-fund --loglevel=error "azurite@$azurite_version" >/dev/null
    echo "$azurite_version" > "$azurite/.drive-version"
fi
echo "setup: azurite $azurite_version in $azurite"
