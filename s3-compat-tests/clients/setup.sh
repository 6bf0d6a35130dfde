#!/usr/bin/env bash
# Installs the tools the client compatibility suite needs, idempotently:
#   - a Python venv with requirements.txt (also helm and kubernetes-validate for the
#     chart tests), kept outside the repo in
#     ${DRIVE_TOOLS_DIR:-$HOME/.cache/drive-tools}/venv and reused across runs;
#   - a second venv, ${DRIVE_TOOLS_DIR}/venv-h2o, with requirements-h2o.txt (the
#     public h2o-drive client, whose aiobotocore pins a botocore that conflicts
#     with the awscli/boto3 of the first one), for test_h2o_drive.py;
#   - rclone from Debian's packages when it is missing;
#   - Azurite (npm) in ${DRIVE_TOOLS_DIR}/azurite, for the Azure backend suite;
#   - the test OpenID provider (s3-compat-tests/idp, npm's oidc-provider) in
#     ${DRIVE_TOOLS_DIR}/idp, for the identity tests;
#   - Debian's chromium and npm's playwright-core and axe-core in ${DRIVE_TOOLS_DIR}/ui, for the
#     web UI tests in a real headless browser (appstore/tests/ui.rs).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools_dir="${DRIVE_TOOLS_DIR:-$HOME/.cache/drive-tools}"
venv="$tools_dir/venv"
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

# ensure_venv DIR REQUIREMENTS: a venv in DIR with the pinned packages of the
# file REQUIREMENTS, (re)installed when the file's hash differs from DIR's stamp.
ensure_venv() {
    local dir="$1" req="$2"
    local stamp="$dir/.drive-requirements.sha256"
    if ! "$dir/bin/python" -m pip --version >/dev/null 2>&1; then
        echo "setup: creating venv in $dir"
        rm -rf "$dir"
        if ! "$python" -m venv "$dir" >/dev/null 2>&1; then
            # Debian's own python3 needs python3-venv for ensurepip.
            rm -rf "$dir"
            apt_install python3-venv
            "$python" -m venv "$dir"
        fi
    fi
    local want have
    want="$(sha256sum "$req" | cut -d' ' -f1)"
    have="$(cat "$stamp" 2>/dev/null || true)"
    if [ "$want" != "$have" ]; then
        echo "setup: installing $(grep -cvE '^\s*(#|$)' "$req") pinned packages from $(basename "$req") in $dir"
        "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
        "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
        echo "$want" > "$stamp"
    else
        echo "setup: venv up to date ($dir)"
    fi
}

ensure_venv "$venv" "$here/requirements.txt"
ensure_venv "$tools_dir/venv-h2o" "$here/requirements-h2o.txt"

if ! command -v rclone >/dev/null 2>&1; then
    apt_install rclone
fi
echo "setup: rclone $(rclone version 2>/dev/null | head -n1 | awk '{print $2}'), $("$venv/bin/aws" --version 2>&1)"
echo "setup: helm $("$venv/bin/helm" version --short 2>&1), kubernetes-validate $("$venv/bin/python" -m pip show kubernetes-validate 2>/dev/null | awk '/^Version:/ {print $2}')"

# npm_pinned DIR PACKAGE@VERSION...: the packages installed into DIR with npm, reinstalled
# only when DIR's stamp (the list) differs.
npm_pinned() {
    local dir="$1"
    shift
    if [ "$(cat "$dir/.drive-version" 2>/dev/null || true)" != "$*" ]; then
        if ! command -v npm >/dev/null 2>&1; then
            apt_install nodejs npm
        fi
        echo "setup: installing $*"
        rm -rf "$dir"
        mkdir -p "$dir"
        npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "$@" >/dev/null
        echo "$*" > "$dir/.drive-version"
    fi
}

azurite_version="3.37.0"
azurite="$tools_dir/azurite"
npm_pinned "$azurite" "azurite@$azurite_version"
echo "setup: azurite $azurite_version in $azurite"

idp_src="$here/../idp"
idp="$tools_dir/idp"
idp_stamp="$idp/.drive-package-lock.sha256"
idp_want="$(sha256sum "$idp_src/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$idp_stamp" 2>/dev/null || true)" != "$idp_want" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        apt_install nodejs npm
    fi
    echo "setup: installing the test OpenID provider's packages (npm ci)"
    rm -rf "$idp"
    mkdir -p "$idp"
    cp "$idp_src/package.json" "$idp_src/package-lock.json" "$idp/"
    (cd "$idp" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$idp_want" > "$idp_stamp"
fi
# The script beside its node_modules, so that its imports resolve there.
cp "$idp_src/test-idp.mjs" "$idp/"
idp_version="$(node -p 'require(process.argv[1]).version' "$idp/node_modules/oidc-provider/package.json")"
echo "setup: oidc-provider $idp_version in $idp"

if ! command -v chromium >/dev/null 2>&1; then
    apt_install chromium
fi
playwright_version="1.65.1"
axe_version="4.11.0"
ui="$tools_dir/ui"
npm_pinned "$ui" "playwright-core@$playwright_version" "axe-core@$axe_version"
echo "setup: $(chromium --version 2>/dev/null | head -n1), playwright-core $playwright_version, axe-core $axe_version in $ui"

# PostgreSQL for the replica tests (s3-compat-tests/src/database.rs): they use
# $DRIVE_TEST_POSTGRES, else postgres@127.0.0.1:$pg_port with trust auth. When nothing
# answers there, a throwaway cluster (Debian's postgresql, initdb + pg_ctl) is started in
# $tools_dir/postgres (as root: /var/tmp/drive-postgres, which the postgres user can reach);
# it keeps running for later runs.
pg_port="${DRIVE_SETUP_PG_PORT:-5432}"
pg_up() { (exec 3<>"/dev/tcp/127.0.0.1/$pg_port") 2>/dev/null; }
if [ -n "${DRIVE_TEST_POSTGRES:-}" ]; then
    echo "setup: PostgreSQL from DRIVE_TEST_POSTGRES"
elif pg_up; then
    echo "setup: PostgreSQL answers on 127.0.0.1:$pg_port"
else
    initdb="$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n1 || true)"
    if [ -z "$initdb" ]; then
        apt_install postgresql
        initdb="$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)"
    fi
    bin="$(dirname "$initdb")"
    pg="$tools_dir/postgres"
    # initdb and postgres refuse to run as root: run them as the postgres user then.
    as_pg=()
    if [ "$(id -u)" -eq 0 ]; then
        as_pg=(runuser -u postgres --)
        pg="${DRIVE_SETUP_PG_DIR:-/var/tmp/drive-postgres}"
    fi
    if [ ! -f "$pg/data/PG_VERSION" ]; then
        echo "setup: creating a PostgreSQL cluster in $pg"
        rm -rf "$pg"
        mkdir -p "$pg"
        if [ "$(id -u)" -eq 0 ]; then chown postgres "$pg"; fi
        "${as_pg[@]}" "$bin/initdb" -D "$pg/data" -U postgres --auth=trust >/dev/null
    fi
    echo "setup: starting PostgreSQL on 127.0.0.1:$pg_port ($pg)"
    "${as_pg[@]}" "$bin/pg_ctl" -D "$pg/data" -l "$pg/log" -w start \
        -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg" >/dev/null
    pg_up || { echo "setup: PostgreSQL did not start; see $pg/log" >&2; exit 1; }
fi
