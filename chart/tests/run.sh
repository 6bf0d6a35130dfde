#!/usr/bin/env bash
# Tests of the Helm chart in chart/: lints it, renders it with the default, production-like
# and filesystem values, validates every rendered object against the Kubernetes API schemas
# (kubernetes-validate, strict, Kubernetes 1.30 and the newest it knows), asserts what the
# platform needs of the objects (check.py), and checks that bad values are refused.
# helm, kubernetes-validate and PyYAML come from the tools venv that
# s3-compat-tests/clients/setup.sh installs in ${DRIVE_TOOLS_DIR:-$HOME/.cache/drive-tools}/venv.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
chart="$(dirname "$here")"
repo="$(dirname "$chart")"
bin="${DRIVE_TOOLS_DIR:-$HOME/.cache/drive-tools}/venv/bin"
helm="$bin/helm"
validate="$bin/kubernetes-validate"
python="$bin/python"
for tool in "$helm" "$validate" "$python"; do
    if [ ! -x "$tool" ]; then
        echo "chart tests: $tool is missing; run s3-compat-tests/clients/setup.sh first" >&2
        exit 1
    fi
done
k8s_versions=(1.30.0 "$("$python" -c 'import kubernetes_validate.utils as u; print(u.latest_version())')")

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Helm keeps its caches and settings here, not in the user's home.
export HELM_CACHE_HOME="$work/helm/cache" HELM_CONFIG_HOME="$work/helm/config" HELM_DATA_HOME="$work/helm/data"

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }

# Every template says in its first line what it is for.
for file in "$chart"/templates/*; do
    if head -n1 "$file" | grep -Eq '^\{\{- /\* .+ \*/ -\}\}$'; then
        pass "comment at the top of templates/$(basename "$file")"
    else
        fail "templates/$(basename "$file") does not start with a one-line {{- /* comment */ -}}"
    fi
done

# scenario NAME NAMESPACE [HELM ARGS...]: lint, render, validate, assert.
scenario() {
    local name="$1" namespace="$2"
    shift 2
    local out="$work/$name.yaml"
    if "$helm" lint --strict "$chart" --namespace "$namespace" "$@" >"$work/$name.lint" 2>&1; then
        pass "$name: helm lint --strict"
    else
        cat "$work/$name.lint"
        fail "$name: helm lint --strict"
    fi
    if ! "$helm" template platform "$chart" --namespace "$namespace" "$@" >"$out" 2>"$work/$name.err"; then
        cat "$work/$name.err"
        fail "$name: helm template"
        return
    fi
    pass "$name: helm template"
    local objects
    objects="$("$python" -c 'import sys, yaml; print(sum(1 for d in yaml.safe_load_all(open(sys.argv[1])) if d))' "$out")"
    local version report
    for version in "${k8s_versions[@]}"; do
        report="$work/$name-$version.validate"
        # A kind without a schema is only a warning to kubernetes-validate: anything but a
        # passed object fails here.
        if "$validate" --strict -k "$version" "$out" >"$report" 2>&1 \
            && ! grep -qv '^INFO .* passed for resource ' "$report" \
            && [ "$(grep -c '^INFO .* passed for resource ' "$report")" -eq "$objects" ]; then
            pass "$name: all $objects objects valid for Kubernetes $version (kubernetes-validate --strict)"
        else
            grep -v '^INFO' "$report" || true
            fail "$name: objects invalid for Kubernetes $version"
        fi
    done
    if "$python" "$here/check.py" "$repo" "$name" "$out"; then
        pass "$name: assertions"
    else
        fail "$name: assertions"
    fi
}

scenario default default
scenario production platform -f "$here/values-production.yaml"
scenario filesystem default -f "$here/values-filesystem.yaml"

# The validator itself refuses an object with a field Kubernetes does not have.
printf 'apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  portz: []\n' >"$work/bad.yaml"
if "$validate" --strict -k "${k8s_versions[0]}" "$work/bad.yaml" >/dev/null 2>&1; then
    fail "kubernetes-validate --strict accepted an unknown field"
else
    pass "kubernetes-validate --strict refuses an unknown field"
fi

# refused DESCRIPTION MESSAGE [HELM ARGS...]: `helm template` must fail and say MESSAGE.
refused() {
    local description="$1" message="$2"
    shift 2
    local err="$work/refused.err"
    if "$helm" template platform "$chart" "$@" >/dev/null 2>"$err"; then
        fail "accepted: $description"
    elif grep -qF -- "$message" "$err"; then
        pass "refused: $description"
    else
        cat "$err"
        fail "refused without \"$message\": $description"
    fi
}

refused "replicas as a string" "drive.replicas: Invalid type. Expected: integer, given: string" \
    --set-string drive.replicas=3
refused "an unknown backend type" 'drive.backend.type must be one of the following: "filesystem", "s3", "azure", "gcs"' \
    --set drive.backend.type=nfs
refused "the filesystem backend with 2 Drive replicas (schema)" "drive.replicas: Must be less than or equal to 1" \
    --set drive.backend.type=filesystem --set drive.replicas=2
refused "the filesystem backend with 2 Drive replicas (template, schema skipped)" \
    "the filesystem backend keeps objects on one volume: it needs drive.replicas 1" \
    --skip-schema-validation --set drive.backend.type=filesystem --set drive.replicas=2
refused "an unknown top-level key" "Additional property replicas is not allowed" \
    --set replicas=3
refused "an unknown nested key" "Additional property replica is not allowed" \
    --set appstore.replica=3
refused "zero replicas" "appstore.replicas: Must be greater than or equal to 1" \
    --set appstore.replicas=0
refused "an unknown routing mode" "appstore.routingMode must be one of the following" \
    --set appstore.routingMode=PATH
refused "a host with a scheme" "hosts.appsDomain: Does not match pattern" \
    --set hosts.appsDomain=https://apps.example.com
refused "a database URL that is not PostgreSQL" "postgresql.driveUrl: Does not match pattern" \
    --set postgresql.driveUrl=mysql://db/drive
refused "no runtime versions" "appstore.runtimeVersions: Array must have at least 1 items" \
    --set-json 'appstore.runtimeVersions=[]'
refused "two default runtime versions" "at most one runtime version may be the default" \
    --set 'appstore.runtimeVersions[0].name=a,appstore.runtimeVersions[0].image=i:1,appstore.runtimeVersions[0].default=true' \
    --set 'appstore.runtimeVersions[1].name=b,appstore.runtimeVersions[1].image=i:2,appstore.runtimeVersions[1].default=true'
refused "TLS at the Ingress with http URLs" "ingress.tls.enabled needs scheme https" \
    --set scheme=http --set ingress.tls.enabled=true --set ingress.tls.secretName=tls
refused "TLS without a certificate" "ingress.tls.enabled needs ingress.tls.secretName" \
    --set ingress.tls.enabled=true
refused "a Wave client without its secret" "oidc.waveClient.enabled needs oidc.waveClient.secret" \
    --set oidc.waveClient.enabled=true
refused "a default GPU type that is not allowed" "appstore.scheduler.defaultGpuType" \
    --set appstore.scheduler.defaultGpuType=nvidia-a100
refused "a short server key" "drive.serverKey: Does not match pattern" \
    --set drive.serverKey=short
refused "a memory limit that is not a quantity" "appstore.scheduler.defaultMemoryLimit: Does not match pattern" \
    --set appstore.scheduler.defaultMemoryLimit=2GB

echo
echo "chart: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
