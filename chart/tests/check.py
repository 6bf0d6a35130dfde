"""Asserts what the platform needs of a rendered release (run by chart/tests/run.sh).

Usage: check.py REPO SCENARIO MANIFEST, where SCENARIO is `default`, `production` or
`filesystem` (the values files of run.sh). Exits non-zero with the failed assertions
listed.
"""

import re
import sys
import tomllib
from pathlib import Path

import yaml

# Variables the Kubernetes runtime of the App Store reads; they are being added to
# appstore/src/config.rs together with that runtime.
KUBERNETES_RUNTIME_ENV = {
    "APPSTORE_RUNTIME",
    "APPSTORE_INTERNAL_URL",
    "H2O_CLOUD_SCHEDULER_NAMESPACE",
    "H2O_CLOUD_SCHEDULER_SERVICE_TYPE",
    "H2O_CLOUD_SCHEDULER_STORAGE_CLASS",
    "H2O_CLOUD_SCHEDULER_APP_SERVICE_ACCOUNT",
    "H2O_CLOUD_SCHEDULER_RESOURCE_PATH",
    "H2O_CLOUD_SCHEDULER_DEFAULT_MEMORY_RESERVATION",
    "H2O_CLOUD_SCHEDULER_DEFAULT_CPU_LIMIT",
    "H2O_CLOUD_SCHEDULER_DEFAULT_CPU_RESERVATION",
    "H2O_CLOUD_SCHEDULER_DEFAULT_GPU_TYPE",
}

# The scheduler's rights in the instances' namespace: (API group, resource) -> verbs.
REQUIRED_RULES = {
    ("apps", "deployments"): {"get", "list", "watch", "create", "update", "patch", "delete"},
    ("apps", "deployments/scale"): {"get", "update", "patch"},
    ("", "services"): {"get", "list", "watch", "create", "update", "patch", "delete"},
    ("", "secrets"): {"get", "list", "watch", "create", "update", "patch", "delete"},
    ("", "persistentvolumeclaims"): {"get", "list", "watch", "create", "update", "patch", "delete"},
    ("", "pods"): {"get", "list", "watch", "delete"},
    ("", "pods/log"): {"get"},
}

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
    return condition


def source_env_names(repo):
    """The environment variables the servers read, from their sources."""
    names = set()
    for path in ("drive/src/config.rs", "appstore/src/config.rs"):
        names |= set(re.findall(r'env = "([A-Z0-9_]+)"', (repo / path).read_text()))
    names |= set(re.findall(r'env::var\("([A-Z0-9_]+)"\)', (repo / "drive/src/main.rs").read_text()))
    return names | KUBERNETES_RUNTIME_ENV


def toml_keys(repo):
    """The TOML keys of `appstore serve`: the fields of its ServeArgs."""
    text = (repo / "appstore/src/config.rs").read_text()
    body = text.split("pub struct ServeArgs {", 1)[1].split("\n}\n", 1)[0]
    return set(re.findall(r"pub (\w+):", body))


def main():
    repo, scenario, manifest = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    objects = {}
    for d in docs:
        key = (d["kind"], d["metadata"]["name"])
        check(key not in objects, f"{key} rendered twice")
        objects[key] = d

    def one(kind, suffix):
        found = [o for (k, n), o in objects.items() if k == kind and n.endswith(suffix)]
        check(len(found) == 1, f"one {kind} named *{suffix} expected, found {len(found)}")
        return found[0] if found else {}

    def optional(kind, suffix):
        return [o for (k, n), o in objects.items() if k == kind and n.endswith(suffix)]

    known_env = source_env_names(repo)
    drive = one("Deployment", "-drive")
    appstore = one("Deployment", "-appstore")
    drive_cm = one("ConfigMap", "-drive")
    appstore_cm = one("ConfigMap", "-appstore")
    config_file = one("ConfigMap", "-appstore-config")
    namespace = {"default": "default", "production": "platform", "filesystem": "default"}[scenario]

    # Replicas: stateless servers run at least two; the filesystem backend exactly one.
    want = {"default": (2, 2), "production": (3, 3), "filesystem": (1, 2)}[scenario]
    check(drive["spec"]["replicas"] == want[0], f"drive replicas {drive['spec']['replicas']} != {want[0]}")
    check(appstore["spec"]["replicas"] == want[1], f"appstore replicas {appstore['spec']['replicas']} != {want[1]}")
    if scenario != "filesystem":
        check(drive["spec"]["replicas"] >= 2 and appstore["spec"]["replicas"] >= 2, "replicas >= 2")

    for name, dep, cm in (("drive", drive, drive_cm), ("appstore", appstore, appstore_cm)):
        pod = dep["spec"]["template"]["spec"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        selector = dep["spec"]["selector"]["matchLabels"]
        check(selector.items() <= labels.items(), f"{name}: selector does not match the pod labels")
        psc = pod.get("securityContext", {})
        check(psc.get("runAsNonRoot") is True, f"{name}: pod runAsNonRoot")
        check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{name}: pod seccompProfile")
        (container,) = pod["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = container.get(probe, {}).get("httpGet", {})
            check(get.get("path") == path, f"{name}: {probe} on {path}")
            check(get.get("port") in ports, f"{name}: {probe} port is a container port")
        sc = container.get("securityContext", {})
        check(sc.get("runAsNonRoot") is True, f"{name}: runAsNonRoot")
        check(sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem")
        check(sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation false")
        check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: drop ALL capabilities")
        check(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{name}: seccompProfile")
        for kind in ("requests", "limits"):
            res = container.get("resources", {}).get(kind, {})
            check({"cpu", "memory"} <= res.keys(), f"{name}: resources.{kind} for cpu and memory")
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        check("emptyDir" in volumes.get(mounts.get("/tmp"), {}), f"{name}: an emptyDir at /tmp")

        # Every variable the pod gets is one the server reads.
        env = set(cm["data"]) | {e["name"] for e in container.get("env", [])}
        unknown = sorted(env - known_env)
        check(not unknown, f"{name}: variables no server reads: {unknown}")
        check(container["envFrom"][0]["configMapRef"]["name"] == cm["metadata"]["name"], f"{name}: envFrom its ConfigMap")
        # Files named by the environment are mounted.
        for var, value in cm["data"].items():
            if var.endswith("_FILE") or var == "APPSTORE_CONFIG":
                check(any(value.startswith(p + "/") for p in mounts), f"{name}: {var}={value} is not mounted")
        data_dir = cm["data"]["DRIVE_DATA_DIR" if name == "drive" else "APPSTORE_DATA_DIR"]
        check(data_dir in mounts, f"{name}: its data directory {data_dir} is a volume")

        # Secrets the pod reads exist with their keys, unless they are brought (existingSecret).
        refs = [e["valueFrom"]["secretKeyRef"] for e in container.get("env", []) if "valueFrom" in e]
        refs += [
            {"name": v["secret"]["secretName"], "key": i["key"]}
            for v in pod["volumes"] if "secret" in v for i in v["secret"].get("items", [])
        ]
        for ref in refs:
            secret = objects.get(("Secret", ref["name"]))
            if scenario == "production":
                check(secret is None, f"{name}: the chart made Secret {ref['name']} despite existingSecret")
            elif not ref.get("optional"):
                check(secret is not None and ref["key"] in secret.get("data", {}),
                      f"{name}: Secret {ref['name']} lacks {ref['key']}")

        # The Service and the PDB select these pods.
        svc = one("Service", f"-{name}")
        check(svc.get("spec", {}).get("selector", {}).items() <= labels.items(), f"{name}: Service selects the pods")
        pdbs = optional("PodDisruptionBudget", f"-{name}")
        if dep["spec"]["replicas"] > 1:
            check(len(pdbs) == 1 and pdbs[0]["spec"].get("minAvailable") == 1, f"{name}: PDB minAvailable 1")
        else:
            check(not pdbs, f"{name}: no PDB with one replica")

    # The App Store runs instances on Kubernetes and tells them where it is.
    data = appstore_cm["data"]
    check(data.get("APPSTORE_RUNTIME") == "kubernetes", "APPSTORE_RUNTIME=kubernetes")
    appstore_svc = one("Service", "-appstore")
    internal = f"http://{appstore_svc['metadata']['name']}.{namespace}.svc:{appstore_svc['spec']['ports'][0]['port']}"
    check(data.get("APPSTORE_INTERNAL_URL") == internal, f"APPSTORE_INTERNAL_URL {data.get('APPSTORE_INTERNAL_URL')} != {internal}")
    drive_svc = one("Service", "-drive")
    check(data.get("APPSTORE_DRIVE_ENDPOINT", "").startswith(f"http://{drive_svc['metadata']['name']}."),
          "APPSTORE_DRIVE_ENDPOINT is Drive's Service")
    # Drive trusts the issuer and the App Store's broker, with the broker's audience.
    issuers = drive_cm["data"]["DRIVE_OIDC_ISSUER"].split(",")
    check(data["H2O_CLOUD_OIDC_PROVIDER_URL"] in issuers, "Drive trusts the App Store's issuer")
    check(data["APPSTORE_PUBLIC_URL"] + "/broker" in issuers, "Drive trusts the App Store's token broker")
    check(data["APPSTORE_BROKER_AUDIENCE"] in drive_cm["data"]["DRIVE_OIDC_AUDIENCE"].split(","),
          "Drive accepts the broker's audience")

    # RBAC: the scheduler's Role in the instances' namespace, bound to the App Store's account.
    instances_ns = data["H2O_CLOUD_SCHEDULER_NAMESPACE"]
    role = one("Role", "-scheduler")
    check(role["metadata"].get("namespace") == instances_ns, "the Role is in the instances' namespace")
    granted = {}
    for rule in role.get("rules", []):
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    for (group, resource), verbs in REQUIRED_RULES.items():
        missing = verbs - granted.get((group, resource), set())
        check(not missing, f"Role: {group or 'core'}/{resource} lacks {sorted(missing)}")
    binding = one("RoleBinding", "-scheduler")
    account = appstore["spec"]["template"]["spec"]["serviceAccountName"]
    check(binding["roleRef"]["name"] == role["metadata"]["name"], "RoleBinding names the Role")
    check(binding["metadata"].get("namespace") == instances_ns, "RoleBinding in the instances' namespace")
    check(binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
          "RoleBinding binds the App Store's ServiceAccount")
    check(("ServiceAccount", account) in objects, "the App Store's ServiceAccount is rendered")
    # Instance pods run without a ServiceAccount (and API token) unless one is named or made.
    app_account = data.get("H2O_CLOUD_SCHEDULER_APP_SERVICE_ACCOUNT")
    made = [o for (k, n), o in objects.items() if k == "ServiceAccount" and n.endswith("-app")]
    want_account = {"default": None, "production": "apps-identity", "filesystem": "platform-h2o-drive-platform-app"}[scenario]
    check(app_account == want_account, f"instances' ServiceAccount {app_account} != {want_account}")
    if scenario == "filesystem":
        check(len(made) == 1 and made[0]["metadata"]["name"] == app_account
              and made[0]["metadata"].get("namespace") == instances_ns,
              "the chart makes the instances' ServiceAccount in their namespace")
        check(not any(s["name"] == app_account for b in objects.values() if b["kind"] == "RoleBinding" for s in b["subjects"]),
              "the instances' ServiceAccount has no API rights")
    else:
        check(not made, "no instances' ServiceAccount made")

    # Ingress: the App Store, Drive, and every instance host to the App Store.
    ingress = one("Ingress", "")
    backends = {
        r["host"]: r["http"]["paths"][0]["backend"]["service"]["name"] for r in ingress["spec"]["rules"]
    }
    apps_host = "*." + data["APPSTORE_APPS_DOMAIN"]
    check(backends.get(apps_host) == appstore_svc["metadata"]["name"], f"wildcard host {apps_host} to the App Store")
    app_host = data["APPSTORE_PUBLIC_URL"].split("://", 1)[1]
    drive_host = drive_cm["data"]["DRIVE_PUBLIC_URL"].split("://", 1)[1]
    check(backends.get(app_host) == appstore_svc["metadata"]["name"], "App Store host to the App Store")
    check(backends.get(drive_host) == drive_svc["metadata"]["name"], "Drive host to Drive")

    # The TOML file holds only keys `appstore serve` knows, runtime versions as RuntimeVersion.
    toml = tomllib.loads(config_file["data"]["appstore.toml"])
    stray = sorted(set(toml) - toml_keys(repo))
    check(not stray, f"appstore.toml: keys appstore serve does not know: {stray}")
    versions = toml.get("runtime_version", [])
    check(versions and all({"Name", "Image"} <= v.keys() <= {"Name", "Image", "Default", "Deprecated", "Aliases"} for v in versions),
          "appstore.toml: [[runtime_version]] tables with Name, Image, Default, Deprecated, Aliases")
    check(sum(1 for v in versions if v.get("Default")) == 1, "appstore.toml: one default runtime version")

    pvcs = optional("PersistentVolumeClaim", "-drive-data")
    if scenario == "filesystem":
        check(drive_cm["data"]["DRIVE_BACKEND"] == "fs", "DRIVE_BACKEND=fs")
        check(drive["spec"]["strategy"]["type"] == "Recreate", "filesystem: Recreate strategy")
        check(len(pvcs) == 1, "filesystem: a PVC")
        claim = [v for v in drive["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v]
        check(pvcs and claim and claim[0]["persistentVolumeClaim"]["claimName"] == pvcs[0]["metadata"]["name"],
              "filesystem: Drive mounts the PVC")
    else:
        check(not pvcs, "no PVC on a cloud backend")

    if scenario == "production":
        check(drive_cm["data"]["DRIVE_BACKEND"] == "s3" and drive_cm["data"]["DRIVE_S3_BUCKET"] == "ai-example-drive",
              "production: the s3 backend")
        check(data.get("H2O_CLOUD_SCHEDULER_ALLOWED_GPU_TYPES") == "nvidia-tesla-t4,nvidia-a100", "production: GPU types")
        check(data.get("H2O_CLOUD_SCHEDULER_STORAGE_CLASS") == "gp3", "production: storage class")
        check(instances_ns == "platform-apps", "production: instances in platform-apps")
        check(data.get("H2O_CLOUD_OIDC_WAVE_CLIENT_ID") == "wave", "production: the Wave client")
        check(data.get("APPSTORE_COOKIE_SECURE") == "true", "production: Secure cookies")
        check(data["H2O_CLOUD_OIDC_PROVIDER_URL"] == "https://sso.ai.example.com/realms/ai", "production: Keycloak issuer")
        hosts = {h for t in ingress["spec"].get("tls", []) for h in t["hosts"]}
        check({app_host, drive_host, apps_host} <= hosts, "production: TLS for the three hosts")
        env = {e["name"]: e for e in appstore["spec"]["template"]["spec"]["containers"][0]["env"]}
        check(env["APPSTORE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "platform-appstore",
              "production: the App Store's database URL from its existingSecret")
        check(env["APPSTORE_DRIVE_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "platform-drive",
              "production: Drive's root keys from Drive's existingSecret")

    if failures:
        print(f"FAIL {scenario}: {len(failures)} assertion(s) failed:")
        for f in failures:
            print(f"  - {f}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
