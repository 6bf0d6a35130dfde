#!/usr/bin/env bash
# Starts the platform on its embedded default, on this machine only: Drive (filesystem
# backend in ./data, SQLite, built-in development identity issuer, trusting the App Store's
# token broker) on 127.0.0.1:9000 and the App Store (SQLite in ./appstore-data, bundles in
# Drive's `appstore` bucket, signing in through Drive's development issuer, instances on the
# local runtime at http://<instance-id>.localhost:8080/) on 127.0.0.1:8080. Ctrl-C stops both;
# running instances are adopted by the next start.
# Development users come from DRIVE_DEV_USERS (NAME:PASSWORD[:GROUP+GROUP[:ROLE+ROLE]],
# comma-separated); when unset, one user `dev` gets a random password, printed below.
# Extra arguments go to `appstore serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/drive-target}"
cargo build --release --locked -p drive -p appstore -p appstore-launcher \
    --bin drive --bin appstore --bin appstore-launcher
bin="$CARGO_TARGET_DIR/release"

if [ -z "${DRIVE_DEV_USERS:-}" ]; then
    password="$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
    export DRIVE_DEV_USERS="dev:$password:dev:admin"
    echo "Development user: dev / $password (roles: admin)"
fi

# Drive's root keys from the environment, when given there, are the App Store's too.
if [ -n "${DRIVE_ROOT_ACCESS_KEY:-}" ]; then
    export APPSTORE_DRIVE_ACCESS_KEY="$DRIVE_ROOT_ACCESS_KEY"
    export APPSTORE_DRIVE_SECRET_KEY="${DRIVE_ROOT_SECRET_KEY:-}"
fi

# Drive trusts its own development issuer and the App Store's token broker, whose access
# tokens (audience `drive`) carry the instance they were minted for.
"$bin/drive" serve --dev-issuer true --oidc-issuer http://127.0.0.1:8080/broker \
    --oidc-audience drive &
drive_pid=$!
trap 'kill "$drive_pid" 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null http://127.0.0.1:9000/healthz 2>/dev/null; then
        break
    fi
    sleep 0.2
done
# The App Store reads Drive's generated root keys from data/root-credentials.toml and trusts
# Drive's development issuer; plain-HTTP localhost needs cookies without `Secure`.
echo "App Store:  http://127.0.0.1:8080  (web UI; API: /api/v1/openapi.json)"
echo "Drive:      http://127.0.0.1:9000  (S3 and STS; file browser: /_drive/ui/)"
echo "Instances:  http://<instance-id>.localhost:8080/ (any browser resolves *.localhost)"
echo "Try it:     $bin/appstore login --browser && $bin/appstore bundle appstore/tests/fixtures/hello"
echo "            $bin/appstore app import ai.h2o.test.hello.0.0.1.wave && $bin/appstore app run <app id>"
"$bin/appstore" serve --cookie-secure false "$@"
