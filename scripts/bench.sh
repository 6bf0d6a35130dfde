#!/usr/bin/env bash
# Benchmarks Drive side by side with s3s-fs (the same protocol library over the same disk)
# and the raw disk (dd with fdatasync), in one sitting: ROUNDS rounds, medians [min–max] reported.
# With eatmydata installed (Debian: apt-get install eatmydata) it also runs Drive with fsync
# made a no-op: not a way to run Drive, but the like-for-like with s3s-fs, which never fsyncs.
# Usage: scripts/bench.sh [ROUNDS]   (default 3; results in $BENCH_OUT, default ./bench-results;
# BENCH_SCENARIOS="1m" measures a subset of s3bench's scenarios: small 1m 64m 256m multipart list)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/drive-target}"
tools="${DRIVE_TOOLS_DIR:-$HOME/.cache/drive-tools}"
out="${BENCH_OUT:-$PWD/bench-results}"
work="$(mktemp -d "${BENCH_DIR:-/tmp}/drive-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
rm -f "$out"/*.txt

cargo build --release --locked -p drive -p s3-compat-tests --bin drive --bin s3bench
[ -x "$tools/bin/s3s-fs" ] || cargo install s3s-fs@0.14.1 --features binary --locked --root "$tools"
bench="$CARGO_TARGET_DIR/release/s3bench"
key=bench-access
secret=bench-secret-key

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "server on port $1 did not start" >&2
    return 1
}

run_server() { # name, then the command (with PORT and DATA placeholders substituted)
    local name="$1" round="$2"
    shift 2
    local port data pid
    port="$(free_port)"
    data="$work/$name-$round"
    mkdir -p "$data"
    "${@//@PORT@/$port}" >"$work/$name.log" 2>&1 &
    pid=$!
    wait_port "$port"
    echo "round $round: $name"
    # shellcheck disable=SC2086 # the scenario names are separate words
    "$bench" "http://127.0.0.1:$port" "$key" "$secret" ${BENCH_SCENARIOS:-} | tee "$out/$name-$round.txt"
    kill -TERM "$pid"
    wait "$pid" || true
    # The data stays until the end (about 3 GiB per server and round): deleting thousands
    # of files slows the next server's file creation on some filesystems (ext4 without a
    # journal skips recently freed inodes), which would make the order of servers matter.
}

for round in $(seq 1 "$rounds"); do
    DRIVE_ROOT_ACCESS_KEY=$key DRIVE_ROOT_SECRET_KEY=$secret DRIVE_LOG=warn \
        run_server drive "$round" "$CARGO_TARGET_DIR/release/drive" serve --listen 127.0.0.1:@PORT@ --data-dir "$work/drive-$round"
    if command -v eatmydata >/dev/null; then
        DRIVE_ROOT_ACCESS_KEY=$key DRIVE_ROOT_SECRET_KEY=$secret DRIVE_LOG=warn \
            run_server drive-nosync "$round" eatmydata "$CARGO_TARGET_DIR/release/drive" serve --listen 127.0.0.1:@PORT@ --data-dir "$work/drive-nosync-$round"
    fi
    run_server s3s-fs "$round" "$tools/bin/s3s-fs" --host 127.0.0.1 --port @PORT@ --access-key $key --secret-key $secret "$work/s3s-fs-$round"
    case " ${BENCH_SCENARIOS:-256m} " in *" 256m "*) ;; *) continue ;; esac
    echo "round $round: raw disk"
    head -c $((256 * 1024 * 1024)) /dev/urandom >"$work/src"
    w=$(dd if="$work/src" of="$work/dd" bs=1M conv=fdatasync 2>&1 | awk '/copied/ {print $(NF-1), $NF}')
    r=$(dd if="$work/dd" of=/dev/null bs=1M 2>&1 | awk '/copied/ {print $(NF-1), $NF}')
    python3 - "$w" "$r" >"$out/disk-$round.txt" <<'PY'
import sys
def mib(v):
    n, unit = v.split()
    scale = {"kB/s": 1e3, "MB/s": 1e6, "GB/s": 1e9}[unit]
    return float(n) * scale / 2**20
print(f"put_256m {mib(sys.argv[1]):.3f} MiB/s")
print(f"get_256m {mib(sys.argv[2]):.3f} MiB/s")
PY
    cat "$out/disk-$round.txt"
    rm -f "$work/src" "$work/dd"
done

python3 - "$out" <<'PY'
import glob, os, statistics, sys
out = sys.argv[1]
res = {}
units = {}
for path in glob.glob(os.path.join(out, "*.txt")):
    name = os.path.basename(path).rsplit("-", 1)[0]
    for line in open(path):
        metric, value, unit = line.split()
        res.setdefault(metric, {}).setdefault(name, []).append(float(value))
        units[metric] = unit
order = ["put_4k_c1", "get_4k_c1", "get_4k_c1_p50", "put_4k_c32", "get_4k_c32", "put_1m_c8", "get_1m_c8",
         "put_256m", "get_256m", "multipart_1g_c4", "list_10k"]
who_all = [w for w in ["drive", "drive-nosync", "s3s-fs", "disk"] if any(w in r for r in res.values())]
names = {"drive": "Drive", "drive-nosync": "Drive, fsync a no-op", "s3s-fs": "s3s-fs 0.14.1", "disk": "raw disk (dd)"}
print("\n| metric | unit | " + " | ".join(names[w] for w in who_all) + " |")
print("|---|---|" + "---|" * len(who_all))
for m in order:
    if m not in res:
        continue
    cells = []
    for who in who_all:
        v = res[m].get(who)
        cells.append(f"{statistics.median(v):.2f} [{min(v):.2f}–{max(v):.2f}]" if v else "—")
    print(f"| {m} | {units.get(m, '')} | " + " | ".join(cells) + " |")
PY
