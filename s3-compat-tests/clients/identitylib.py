"""Helpers of the identity tests: the test OpenID provider (s3-compat-tests/idp,
installed by setup.sh), a Drive that trusts it, tokens, forged JWTs, session
credential clients and the venv holding the public h2o-drive client.

The fixtures that use these live in conftest.py (idp, oidc_drive, h2o_python),
so that the session-scoped processes are started once for all test modules.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from clientlib import ServerLog

AUDIENCE = "urn:drive"
CLIENT_ID = "drive-cli"
ROLE_ARN = "arn:aws:iam::000000000000:role/drive"
SCOPE = "openid email profile groups"
DISCOVERY_PREFIX = "/.ai.h2o.cloud.discovery"
# Users of test-idp.mjs: password `<name>-pass`, these groups and roles.
USERS = {
    "alice": {"groups": ["team-a"], "roles": ["app-user"]},
    "bob": {"groups": ["team-a", "team-b"], "roles": ["app-user"]},
    "carol": {"groups": ["team-b"], "roles": ["app-user", "curator"]},
    "dave": {"groups": [], "roles": ["drive-admin"]},
    "erin": {"groups": [], "roles": ["guest"]},
}
# Drive logs this (info level) once per STS session it issues.
SESSION_ISSUED = "session credentials issued"

# urllib opener that never uses a proxy.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def tools_dir() -> Path:
    return Path(
        os.environ.get("DRIVE_TOOLS_DIR") or Path.home() / ".cache" / "drive-tools"
    )


def h2o_venv_python() -> Path:
    """The python of the venv with h2o-drive (requirements-h2o.txt)."""
    return tools_dir() / "venv-h2o" / "bin" / "python"


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict | None = None,
    timeout: float = 30.0,
) -> tuple[int, dict, bytes]:
    """One unauthenticated request; returns (status, headers, body), also for
    4xx/5xx answers."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def post_form(url: str, fields: dict, timeout: float = 30.0) -> tuple[int, dict, bytes]:
    return http(
        "POST",
        url,
        urllib.parse.urlencode(fields).encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
        timeout,
    )


def _wait_for_line(
    path: Path, prefix: str, proc: subprocess.Popen, timeout: float
) -> str | None:
    """The first line of the file `path` (a process's stdout) that starts with
    `prefix`, polling until it appears, the process exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith(prefix):
                    return line
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    return None


def stop_process(proc: subprocess.Popen, timeout: float = 40) -> int:
    """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


# --- the OpenID provider ----------------------------------------------------


class IdpError(Exception):
    pass


@dataclass
class Idp:
    issuer: str
    proc: subprocess.Popen
    key_file: Path
    log_path: Path

    def token_response(self, user: str, scope: str = SCOPE) -> dict:
        """A password grant for `user`: access_token (JWT for urn:drive),
        refresh_token (single use: each refresh answers a new one), expires_in."""
        status, _, body = post_form(
            self.issuer + "/token",
            {
                "grant_type": "password",
                "client_id": CLIENT_ID,
                "username": user,
                "password": f"{user}-pass",
                "scope": scope,
            },
        )
        if status != 200:
            raise IdpError(f"password grant for {user}: HTTP {status}: {body[:500]!r}")
        return json.loads(body)

    def access_token(self, user: str) -> str:
        return self.token_response(user)["access_token"]

    def refresh_token(self, user: str) -> str:
        return self.token_response(user)["refresh_token"]

    def refresh(self, refresh_token: str) -> tuple[int, dict]:
        status, _, body = post_form(
            self.issuer + "/token",
            {
                "grant_type": "refresh_token",
                "client_id": CLIENT_ID,
                "refresh_token": refresh_token,
            },
        )
        return status, json.loads(body)

    def signing_jwk(self) -> dict:
        return json.loads(self.key_file.read_text())

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]


def start_idp(workdir: Path, env: dict, script: Path | None = None) -> Idp:
    """Starts test-idp.mjs on a free loopback port; raises IdpError when it
    does not announce its issuer within 30 s."""
    script = script or tools_dir() / "idp" / "test-idp.mjs"
    if not script.is_file():
        raise IdpError(f"test OpenID provider not found at {script} (run setup.sh)")
    out_path = workdir / "idp.stdout"
    log_path = workdir / "idp.stderr.log"
    key_file = workdir / "key.json"
    penv = dict(env, PORT="0", KEY_FILE=str(key_file))
    with open(out_path, "wb") as out, open(log_path, "wb") as err:
        proc = subprocess.Popen(
            ["node", str(script)],
            stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=penv, cwd=workdir,
        )  # fmt: skip
    line = _wait_for_line(out_path, '{"issuer"', proc, 30)
    if line is None:
        stop_process(proc, 5)
        raise IdpError(
            "test-idp.mjs announced no issuer within 30 s "
            f"(exit code {proc.returncode})\n"
            f"stderr:\n{log_path.read_text(errors='replace')[-3000:]}"
        )
    return Idp(json.loads(line)["issuer"], proc, key_file, log_path)


# --- a Drive that trusts the provider ---------------------------------------


@dataclass
class OidcDrive(ServerLog):
    """A Drive started with --oidc-issuer; the same log interface as
    conftest.DriveServer, so failure reports can attach its log."""

    endpoint: str
    data_dir: Path
    log_path: Path
    stdout_path: Path
    proc: subprocess.Popen
    issuer: str
    access_key: str
    secret_key: str
    region: str
    backend: str = "fs"
    stdout_lines: list[str] = field(default_factory=list)

    def sessions_issued_since(self, offset: int) -> int:
        return self.log_since(offset).count(SESSION_ISSUED)


def start_oidc_drive(
    binary: Path,
    workdir: Path,
    data_dir: Path,
    env: dict,
    issuer: str,
    access_key: str,
    secret_key: str,
    region: str,
) -> OidcDrive:
    """Starts `drive serve` on the fs backend on a free port, trusting `issuer`
    for tokens with audience urn:drive; ready once it prints `Drive ready on`.
    Raises RuntimeError with its output when it does not get ready in 20 s."""
    log_path = workdir / "drive.stderr.log"
    out_path = workdir / "drive.stdout.log"
    denv = {k: v for k, v in env.items() if not k.startswith(("AWS_", "DRIVE_"))}
    denv.update(
        {
            "DRIVE_ROOT_ACCESS_KEY": access_key,
            "DRIVE_ROOT_SECRET_KEY": secret_key,
            "DRIVE_LOG": "info,s3s=off",  # info: one line per issued session
            "NO_COLOR": "1",
        }
    )
    cmd = [
        str(binary), "serve",
        "--listen", "127.0.0.1:0",
        "--data-dir", str(data_dir),
        "--region", region,
        "--oidc-issuer", issuer,
        "--oidc-audience", AUDIENCE,
        "--oidc-client-id", CLIENT_ID,
    ]  # fmt: skip
    with open(out_path, "wb") as out, open(log_path, "wb") as err:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=denv
        )
    line = _wait_for_line(out_path, "Drive ready on ", proc, 20)
    if line is None:
        stop_process(proc, 5)
        raise RuntimeError(
            f"drive with --oidc-issuer did not get ready within 20 s "
            f"(exit code {proc.returncode})\ncommand: {' '.join(cmd)}\n"
            f"stdout:\n{out_path.read_text(errors='replace')[-2000:]}\n"
            f"stderr:\n{log_path.read_text(errors='replace')[-4000:]}"
        )
    endpoint = line.removeprefix("Drive ready on ").strip().rstrip("/")
    return OidcDrive(
        endpoint, data_dir, log_path, out_path, proc, issuer,
        access_key, secret_key, region,
        stdout_lines=out_path.read_text(errors="replace").splitlines(),
    )  # fmt: skip


# --- STS --------------------------------------------------------------------


def strip_ns(elem: ET.Element) -> ET.Element:
    """Removes XML namespaces from the tags of elem's tree, in place."""
    for e in elem.iter():
        if isinstance(e.tag, str) and "}" in e.tag:
            e.tag = e.tag.split("}", 1)[1]
    return elem


def sts_form(
    endpoint: str, token: str, path: str = "/", **extra: str
) -> tuple[int, dict, ET.Element]:
    """An unsigned AssumeRoleWithWebIdentity form POST to `endpoint + path`, as
    the AWS SDKs send it; returns (status, headers, XML root without namespaces)."""
    fields = {
        "Action": "AssumeRoleWithWebIdentity",
        "Version": "2011-06-15",
        "RoleArn": ROLE_ARN,
        "RoleSessionName": "raw-form",
        "WebIdentityToken": token,
    }
    fields.update(extra)
    status, headers, body = post_form(endpoint + path, fields)
    try:
        root = strip_ns(ET.fromstring(body))
    except ET.ParseError as e:
        raise AssertionError(
            f"STS answered HTTP {status} with no XML ({e}): {body[:500]!r}"
        )
    return status, headers, root


def sts_client(endpoint: str, region: str):
    """boto3 STS client on Drive (AssumeRoleWithWebIdentity is unsigned)."""
    return boto3.session.Session(region_name=region).client(
        "sts",
        endpoint_url=endpoint,
        config=Config(retries={"max_attempts": 1}, connect_timeout=10, read_timeout=30),
    )


def assume(
    endpoint: str, region: str, token: str, session_name: str = "pytest", **kw
) -> dict:
    """AssumeRoleWithWebIdentity with boto3; returns the whole answer."""
    return sts_client(endpoint, region).assume_role_with_web_identity(
        RoleArn=ROLE_ARN, RoleSessionName=session_name, WebIdentityToken=token, **kw
    )


def session_s3(endpoint: str, region: str, creds: dict, **config):
    """boto3 S3 client with STS credentials (the Credentials of an
    AssumeRoleWithWebIdentity answer): path style, no retries."""
    settings = dict(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 1},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=32,
    )
    settings.update(config)
    return boto3.session.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds.get("SessionToken"),
        region_name=region,
    ).client("s3", endpoint_url=endpoint, config=Config(**settings))


# --- JWTs -------------------------------------------------------------------


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64url_encode(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt_parts(token: str) -> tuple[dict, dict]:
    """(header, claims) of a JWT, unverified."""
    h, p, _ = token.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(p))


def _jwk_int(jwk: dict, name: str) -> int:
    return int.from_bytes(b64url_decode(jwk[name]), "big")


# DER prefix of a PKCS#1 v1.5 DigestInfo for SHA-256 (RFC 8017, 9.2 note 1).
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def rs256_sign(message: bytes, jwk: dict) -> bytes:
    """RSASSA-PKCS1-v1_5 with SHA-256 (JWS RS256) with an RSA private JWK."""
    n, d = _jwk_int(jwk, "n"), _jwk_int(jwk, "d")
    k = (n.bit_length() + 7) // 8
    t = _SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    em = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    return pow(int.from_bytes(em, "big"), d, n).to_bytes(k, "big")


def forge_jwt(header: dict, claims: dict, jwk: dict) -> str:
    """A JWT signed RS256 with `jwk` (e.g. the provider's own key)."""
    signing_input = (
        b64url_encode(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    )
    return signing_input + "." + b64url_encode(rs256_sign(signing_input.encode(), jwk))


# Imported by the identity test modules (pytest finds fixtures they import).
@pytest.fixture(autouse=True)
def _attach_server_log(request, oidc_drive):
    """Replaces conftest's fixture of that name, which asks for the per-backend
    `drive`: these tests run once, and a failure shows the OIDC Drive's log."""
    request.node._drive_log_server = oidc_drive
    request.node._drive_log_offset = oidc_drive.log_size()
