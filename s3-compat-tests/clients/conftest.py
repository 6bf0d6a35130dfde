"""Fixtures for the real-client S3 compatibility suite.

One drive server is started per backend (from DRIVE_BIN, or
$CARGO_TARGET_DIR/debug/drive, or <repo>/target/debug/drive) on a free
loopback port with a temporary data directory and fixed root credentials,
and every test runs once per backend (test ids end in [fs] or [s3]):
  - fs: the filesystem backend in the data directory;
  - s3: the S3 backend over a throwaway SeaweedFS (venv/bin/weed, installed
    by setup.sh) holding every Drive bucket in its bucket "drive-data".
DRIVE_CLIENT_BACKENDS (a comma list, e.g. "fs") restricts the backends run.
Every test gets its own fresh bucket. When a test fails, the server log
lines written while it ran are attached to the failure report.

The identity tests (test_identity.py, test_h2o_drive.py) run once, not per
backend: they use their own fixtures below (idp: the test OpenID provider;
oidc_drive: a Drive on the fs backend trusting it; h2o_python: the venv with
the public h2o-drive client), with helpers in identitylib.py.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import boto3
import pytest
from botocore.config import Config

import identitylib
from clientlib import ServerLog

REPO = Path(__file__).resolve().parents[2]
ACCESS_KEY = "testaccess"
SECRET_KEY = "testsecret123"
REGION = "us-east-1"
AWS_READ_TIMEOUT = 20

BACKENDS = ("fs", "s3")
# SeaweedFS identity Drive signs in with, and the bucket holding Drive's buckets.
UPSTREAM_ACCESS_KEY = "upstream-access"
UPSTREAM_SECRET_KEY = "upstream-secret-key"
UPSTREAM_BUCKET = "drive-data"


def selected_backends() -> list[str]:
    """The backends named by DRIVE_CLIENT_BACKENDS (unset or empty: all);
    checked by pytest_configure."""
    raw = os.environ.get("DRIVE_CLIENT_BACKENDS", "")
    if not raw.strip():
        return list(BACKENDS)
    return list(dict.fromkeys(b.strip() for b in raw.split(",") if b.strip()))


def pytest_configure(config):
    names = selected_backends()
    if not names or any(b not in BACKENDS for b in names):
        raise pytest.UsageError(
            f"DRIVE_CLIENT_BACKENDS={os.environ.get('DRIVE_CLIENT_BACKENDS')!r}: "
            f"expected a comma list of {', '.join(BACKENDS)}"
        )


# Variables removed from the environment of the tests and of every client
# they run: CA bundles (rclone refuses AWS_CA_BUNDLE for http endpoints),
# proxies (all traffic must stay on loopback), and anything that would make a
# client read the user's own AWS or rclone configuration.
_CA_VARS = {
    "AWS_CA_BUNDLE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTPLIB2_CA_CERTS",
    "NIX_SSL_CERT_FILE",
}
_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "no_proxy"}


def _scrubbed(name: str) -> bool:
    return (
        name in _CA_VARS
        or name.lower() in _PROXY_VARS
        or name.startswith("AWS_")
        or name.startswith("RCLONE_")
        or name.startswith("BOTO_")
    )


def drive_binary() -> Path:
    if os.environ.get("DRIVE_BIN"):
        return Path(os.environ["DRIVE_BIN"]).resolve()
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        base = Path(target)
        if not base.is_absolute():
            base = REPO / base
        return base / "debug" / "drive"
    return REPO / "target" / "debug" / "drive"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = _free_port()
        if port not in ports:
            ports.append(port)
    return ports


# urllib opener that never uses a proxy.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 30.0) -> tuple[int, bytes]:
    """Plain unauthenticated GET; returns (status, body) also for 4xx/5xx."""
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def start_seaweedfs(workdir: Path) -> tuple[str, Callable[[], None]]:
    """Starts SeaweedFS (`weed mini`, one process) on free loopback ports with
    its data, identities and log in `workdir`, and creates UPSTREAM_BUCKET.
    Returns its S3 endpoint and a function that kills it."""
    tools_dir = Path(
        os.environ.get("DRIVE_TOOLS_DIR") or Path.home() / ".cache" / "drive-tools"
    )
    weed = tools_dir / "venv" / "bin" / "weed"
    if not weed.is_file():
        pytest.exit(f"SeaweedFS not found at {weed} (run setup.sh)", returncode=3)
    identities = workdir / "identities.json"
    identities.write_text(
        '{"identities":[{"name":"drive","credentials":[{"accessKey":"%s",'
        '"secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}'
        % (UPSTREAM_ACCESS_KEY, UPSTREAM_SECRET_KEY)
    )
    (workdir / "data").mkdir()
    port_flags = [
        "s3.port", "s3.port.grpc", "master.port", "master.port.grpc",
        "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
        "admin.port", "admin.port.grpc", "debug.port", "s3.debug.port",
    ]  # fmt: skip
    ports = dict(zip(port_flags, _free_ports(len(port_flags))))
    cmd = [
        str(weed),
        "mini",
        f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-admin.ui=false",
        "-webdav=false",
        "-master.telemetry=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={identities}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    log_path = workdir / "weed.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=workdir,
        )  # fmt: skip
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"

    def stop() -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    def fail(why: str) -> None:
        stop()
        tail = log_path.read_text(errors="replace")[-4000:]
        pytest.exit(f"SeaweedFS on {endpoint}: {why}\nlog tail:\n{tail}", returncode=3)

    # Ready when the S3 port answers anything; the filer may still need a
    # moment, so creating the bucket is retried too.
    client = boto3.session.Session(
        aws_access_key_id=UPSTREAM_ACCESS_KEY,
        aws_secret_access_key=UPSTREAM_SECRET_KEY,
        region_name=REGION,
    ).client(
        "s3",
        endpoint_url=endpoint,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            connect_timeout=2,
            read_timeout=10,
        ),
    )
    deadline = time.monotonic() + 60
    answered = False
    while True:
        if proc.poll() is not None:
            fail(f"exited with {proc.returncode} while starting")
        try:
            if not answered:
                http_get(endpoint + "/", timeout=1)
                answered = True
            client.create_bucket(Bucket=UPSTREAM_BUCKET)
            return endpoint, stop
        except Exception as e:  # connection refused, or the filer not ready
            if time.monotonic() > deadline:
                fail(
                    f"no bucket {UPSTREAM_BUCKET} within 60 s "
                    f"({'S3 port answered' if answered else 'S3 port silent'}): {e!r}"
                )
        time.sleep(0.2)


@dataclass
class DriveServer(ServerLog):
    endpoint: str
    port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen
    backend: str = "fs"
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION


_SERVER: DriveServer | None = None


@pytest.fixture(scope="session")
def client_env_base(tmp_path_factory) -> dict:
    """Sanitised environment: applied to this process (for boto3 and urllib)
    and used as the base of every subprocess client's environment."""
    cfg_dir = tmp_path_factory.mktemp("aws-config")
    config_file = cfg_dir / "config"
    # No retries: a retry would hide a failed or stalled request.
    config_file.write_text(
        f"[default]\nregion = {REGION}\nretry_mode = standard\nmax_attempts = 1\n"
    )
    creds_file = cfg_dir / "credentials"
    creds_file.write_text("")

    mp = pytest.MonkeyPatch()
    for name in list(os.environ):
        if _scrubbed(name):
            mp.delenv(name, raising=False)
    values = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": str(config_file),
        "AWS_SHARED_CREDENTIALS_FILE": str(creds_file),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    for k, v in values.items():
        mp.setenv(k, v)
    # The venv's bin dir first, so `aws` is the pinned awscli.
    bindir = str(Path(sys.executable).parent)
    mp.setenv("PATH", bindir + os.pathsep + os.environ.get("PATH", ""))
    yield dict(os.environ)
    mp.undo()


@pytest.fixture(scope="session", params=selected_backends())
def drive(request, client_env_base, tmp_path_factory) -> DriveServer:
    global _SERVER
    backend = request.param
    binary = drive_binary()
    if not binary.is_file():
        pytest.exit(
            f"drive binary not found at {binary} (build it, or set DRIVE_BIN)",
            returncode=3,
        )
    backend_flags: list[str] = []
    stop_upstream: Callable[[], None] = lambda: None
    upstream_dir = None
    if backend == "s3":
        upstream_dir = Path(tempfile.mkdtemp(prefix="drive-clients-seaweedfs-"))
        upstream, stop_upstream = start_seaweedfs(upstream_dir)
        backend_flags = [
            "--backend", "s3",
            "--s3-endpoint", upstream,
            "--s3-bucket", UPSTREAM_BUCKET,
            "--s3-access-key", UPSTREAM_ACCESS_KEY,
            "--s3-secret-key", UPSTREAM_SECRET_KEY,
            "--root-prefix", "clients",
        ]  # fmt: skip

    def stop_upstream_and_clean() -> None:
        stop_upstream()
        if upstream_dir is not None:
            shutil.rmtree(upstream_dir, ignore_errors=True)

    data_dir = Path(tempfile.mkdtemp(prefix="drive-clients-data-"))
    log_dir = tmp_path_factory.mktemp(f"drive-{backend}-log")
    log_path = log_dir / "drive.stderr.log"
    out_path = log_dir / "drive.stdout.log"
    port = _free_port()
    env = {
        k: v
        for k, v in client_env_base.items()
        if not k.startswith("AWS_") and not k.startswith("DRIVE_")
    }
    env.update(
        {
            "DRIVE_ROOT_ACCESS_KEY": ACCESS_KEY,
            "DRIVE_ROOT_SECRET_KEY": SECRET_KEY,
            "NO_COLOR": "1",
        }
    )
    with open(log_path, "wb") as err, open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [
                str(binary),
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                "--data-dir",
                str(data_dir),
                "--region",
                REGION,
                *backend_flags,
            ],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    endpoint = f"http://127.0.0.1:{port}"
    server = DriveServer(endpoint, port, data_dir, log_path, proc, backend)

    deadline = time.monotonic() + 20
    ready = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            status, body = http_get(endpoint + "/healthz", timeout=1)
            if status == 200 and body.strip() == b"ok":
                ready = True
                break
        except OSError:
            pass
        time.sleep(0.1)
    if not ready:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log = log_path.read_text(errors="replace")[-4000:]
        out = out_path.read_text(errors="replace")[-2000:]
        shutil.rmtree(data_dir, ignore_errors=True)
        stop_upstream_and_clean()
        pytest.exit(
            f"drive ({backend} backend) did not become ready on {endpoint} within 20 s "
            f"(exit code {proc.returncode})\nstdout:\n{out}\nstderr:\n{log}",
            returncode=3,
        )

    _SERVER = server
    try:
        yield server
    finally:
        _SERVER = None
        rc = None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                rc = proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        else:
            rc = proc.returncode
        shutil.rmtree(data_dir, ignore_errors=True)
        stop_upstream_and_clean()  # after drive, which may still talk to it
        assert rc == 0, (
            f"drive exited with {rc} on SIGTERM (expected 0); log tail:\n"
            + log_path.read_text(errors="replace")[-3000:]
        )


@pytest.fixture(autouse=True)
def _attach_server_log(request, drive):
    """Remembers where the server log stood when the test started, so a
    failure report can show the requests the test made."""
    request.node._drive_log_offset = drive.log_size()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    # The identity tests name their own server (see their _attach_server_log).
    server = getattr(item, "_drive_log_server", None) or _SERVER
    if rep.failed and server is not None:
        offset = getattr(item, "_drive_log_offset", None)
        if offset is not None:
            text = server.log_since(offset)
            if len(text) > 20000:
                text = "...(earlier lines cut)...\n" + text[-20000:]
            rep.sections.append(("drive server log during this test", text))


@pytest.fixture(scope="session")
def client_env(drive, client_env_base) -> dict:
    """Environment for subprocess S3 clients (aws, rclone)."""
    return dict(client_env_base)


def make_client(drive: DriveServer, s3_config=None, **config):
    """boto3 S3 client: path style, no retries; `config` overrides other
    botocore Config settings."""
    s3 = {"addressing_style": "path"}
    s3.update(s3_config or {})
    settings = dict(
        s3=s3,
        retries={"max_attempts": 1},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=32,
    )
    settings.update(config)
    return boto3.session.Session(
        aws_access_key_id=drive.access_key,
        aws_secret_access_key=drive.secret_key,
        region_name=drive.region,
    ).client("s3", endpoint_url=drive.endpoint, config=Config(**settings))


@pytest.fixture(scope="session")
def s3(drive):
    """boto3 S3 client on the server: path style, no retries."""
    return make_client(drive)


def _bucket_name(nodename: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", nodename.lower()).strip("-")
    base = re.sub(r"-+", "-", base)
    base = base.removeprefix("test-")[:40].strip("-")
    return f"t-{base}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def bucket(s3, request) -> str:
    """A fresh, empty bucket unique to this test."""
    name = _bucket_name(request.node.name)
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def aws(client_env, drive, tmp_path):
    """Runs the aws CLI against the server; returns CompletedProcess.
    check=True (default) fails the test with the CLI's output."""

    def run(*args, check=True, timeout=120, env=None):
        cmd = [
            "aws",
            "--endpoint-url",
            drive.endpoint,
            # Bounds a stalled request (aws-cli's default is 60 s).
            "--cli-read-timeout",
            str(AWS_READ_TIMEOUT),
            *map(str, args),
        ]
        p = subprocess.run(
            cmd,
            env=env or client_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=tmp_path,
        )
        if check and p.returncode != 0:
            pytest.fail(
                f"command failed ({p.returncode}): {' '.join(cmd)}\n"
                f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}"
            )
        return p

    return run


# --- identity: the OpenID provider, a Drive trusting it, the h2o-drive venv ---


@pytest.fixture(scope="session")
def idp(client_env_base, tmp_path_factory) -> identitylib.Idp:
    """The test OpenID provider (s3-compat-tests/idp/test-idp.mjs, installed by
    setup.sh) on a free loopback port."""
    workdir = tmp_path_factory.mktemp("idp")
    try:
        provider = identitylib.start_idp(workdir, client_env_base)
    except identitylib.IdpError as e:
        pytest.fail(str(e), pytrace=False)
    yield provider
    identitylib.stop_process(provider.proc, timeout=10)


@pytest.fixture(scope="session")
def oidc_drive(idp, client_env_base, tmp_path_factory) -> identitylib.OidcDrive:
    """A Drive on the fs backend that trusts `idp` (audience urn:drive, client
    id drive-cli announced by discovery), with the usual root credentials."""
    binary = drive_binary()
    if not binary.is_file():
        pytest.fail(f"drive binary not found at {binary} (build it, or set DRIVE_BIN)")
    workdir = tmp_path_factory.mktemp("drive-oidc")
    data_dir = Path(tempfile.mkdtemp(prefix="drive-clients-oidc-data-"))
    try:
        server = identitylib.start_oidc_drive(
            binary, workdir, data_dir, client_env_base, idp.issuer,
            ACCESS_KEY, SECRET_KEY, REGION,
        )  # fmt: skip
    except RuntimeError as e:
        shutil.rmtree(data_dir, ignore_errors=True)
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        rc = identitylib.stop_process(server.proc)
        shutil.rmtree(data_dir, ignore_errors=True)
        assert rc == 0, (
            f"drive (OIDC) exited with {rc} on SIGTERM (expected 0); log tail:\n"
            + server.log_path.read_text(errors="replace")[-3000:]
        )


@pytest.fixture(scope="session")
def h2o_python() -> Path:
    """The python of the venv holding the public h2o-drive client (setup.sh
    installs requirements-h2o.txt there: its aiobotocore pins a botocore that
    conflicts with requirements.txt's awscli/boto3)."""
    python = identitylib.h2o_venv_python()
    if not python.is_file():
        pytest.fail(f"h2o-drive venv not found: {python} (run setup.sh)")
    return python
