"""Scenarios of the public h2o-drive client (with h2o-authn and
h2o-cloud-discovery) against Drive, run by test_h2o_drive.py with the python of
the venv-h2o venv (requirements-h2o.txt; its aiobotocore cannot share a venv
with requirements.txt's awscli/boto3):

    python h2o_scenarios.py SCENARIO CONFIG.json

CONFIG holds base (Drive's URL), issuer, client_id, workdir, and
refresh_tokens: {user: [unused refresh tokens]} (single use: the provider
revokes a grant whose refresh token is replayed, so every token provider here
gets its own). Each scenario asserts what it checks, exits non-zero with a
traceback on failure, and prints a last line `RESULT <json>` for the test.
Only the standard library and the h2o packages are used.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import json
import os
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import h2o_authn
import h2o_authn.discovery
import h2o_authn.error
import h2o_discovery
import h2o_drive
from h2o_discovery import model

MiB = 1024 * 1024
SERVICES = ("drive-sts", "userdrive", "workspacedrive")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Config:
    def __init__(self, raw: dict):
        self.base: str = raw["base"]
        self.issuer: str = raw["issuer"]
        self.client_id: str = raw["client_id"]
        self.workdir = Path(raw["workdir"])
        self._tokens: dict[str, list[str]] = raw["refresh_tokens"]

    def refresh_token(self, user: str) -> str:
        """An unused refresh token of `user`."""
        tokens = self._tokens.get(user) or []
        assert tokens, f"scenario needs another refresh token of {user}"
        return tokens.pop(0)


# --- helpers ----------------------------------------------------------------


@contextlib.contextmanager
def environ(base: dict | None = None, **values: str | None):
    """Sets (or, for None, removes) environment variables for the block: those
    of `base`, then `values`."""
    values = {**(base or {}), **values}
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with _OPENER.open(url, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def jwt_claims(token: str) -> dict:
    payload = str(token).split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def hand_built_discovery(cfg: Config) -> h2o_discovery.Discovery:
    """What discovery would answer, built without asking Drive."""
    return model.Discovery(
        environment=model.Environment(
            h2o_cloud_environment=cfg.base,
            issuer_url=cfg.issuer,
            h2o_cloud_platform_oauth2_scope="openid offline_access",
        ),
        services={
            name: model.Service(
                name=f"services/{name}", display_name=name, uri=cfg.base
            )
            for name in SERVICES
        },
        clients={
            "platform": model.Client(
                name="clients/platform",
                display_name="Platform",
                oauth2_client_id=cfg.client_id,
            )
        },
    )


def token_provider(cfg: Config, user: str, **kw) -> h2o_authn.TokenProvider:
    return h2o_authn.TokenProvider(
        refresh_token=cfg.refresh_token(user),
        client_id=cfg.client_id,
        issuer_url=cfg.issuer,
        **kw,
    )


def connect(cfg: Config, provider) -> h2o_drive.Drive:
    """h2o_drive.connect with every URL given and a hand-built discovery."""
    return h2o_drive.connect(
        discovery=hand_built_discovery(cfg),
        userdrive_url=cfg.base,
        workspacedrive_url=cfg.base,
        sts_url=cfg.base,
        token_provider=provider,
    )


def write_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


async def expect_client_error(coro, status: int, codes: tuple[str, ...] = ()):
    """Awaits `coro`, which must fail with a botocore ClientError of HTTP
    `status` (and, if given, one of `codes`); returns the error."""
    try:
        await coro
    except botocore.exceptions.ClientError as e:
        got = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = e.response.get("Error", {}).get("Code")
        assert got == status or code == str(
            status
        ), f"expected HTTP {status}, got {got} {code}: {e.response}"
        if codes:
            assert code in codes, f"expected one of {codes}, got {code}: {e.response}"
        return e
    raise AssertionError(
        f"expected a ClientError with HTTP {status}, but the call succeeded"
    )


def check_discovery(cfg: Config, d: h2o_discovery.Discovery) -> None:
    assert d.environment.h2o_cloud_environment.rstrip("/") == cfg.base, d.environment
    assert d.environment.issuer_url == cfg.issuer, d.environment
    for name in SERVICES:
        assert name in d.services, sorted(d.services)
        assert d.services[name].uri.rstrip("/") == cfg.base, d.services[name]
    assert d.clients["platform"].oauth2_client_id == cfg.client_id, d.clients


# --- S1: discovery ----------------------------------------------------------


def s1_discovery(cfg: Config) -> dict:
    well_known = cfg.base + "/.ai.h2o.cloud.discovery"
    clean = {
        "H2O_CLOUD_ENVIRONMENT": None,
        "H2O_CLOUD_DISCOVERY": None,
        "H2OCONFIG": None,
    }

    with environ(clean, H2O_CLOUD_ENVIRONMENT=cfg.base):
        d = h2o_discovery.discover()
        check_discovery(cfg, d)
        assert dict(d.credentials) == {}, d.credentials
        check_discovery(cfg, asyncio.run(h2o_discovery.discover_async()))
    with environ(clean, H2O_CLOUD_DISCOVERY=well_known):
        check_discovery(cfg, h2o_discovery.discover())
    with environ(clean):
        check_discovery(cfg, h2o_discovery.discover(environment=cfg.base))
        check_discovery(cfg, h2o_discovery.discover(discovery_address=well_known))

    # The H2O CLI's configuration file: its token counts for its own endpoint only.
    rt = cfg.refresh_token("alice")
    toml = cfg.workdir / "h2o-cli-config.toml"
    toml.write_text(
        f'Endpoint = "{cfg.base}"\n'
        f'PlatformClientID = "{cfg.client_id}"\n'
        f'PlatformToken = "{rt}"\n'
    )
    with environ(clean, H2OCONFIG=str(toml)):
        d = h2o_discovery.discover()  # the endpoint comes from the file
        check_discovery(cfg, d)
        assert d.credentials["platform"].refresh_token == rt
        # ... and h2o_authn makes a token provider of it.
        token = h2o_authn.discovery.create(d)()
        claims = jwt_claims(token)
        assert (
            claims["preferred_username"] == "alice" and claims["iss"] == cfg.issuer
        ), claims

    other = cfg.workdir / "h2o-cli-config-other.toml"
    other.write_text(
        'Endpoint = "http://127.0.0.1:1"\n'
        f'PlatformClientID = "{cfg.client_id}"\nPlatformToken = "not-for-this-drive"\n'
    )
    with environ(clean, H2OCONFIG=str(other), H2O_CLOUD_ENVIRONMENT=cfg.base):
        d = h2o_discovery.discover()
        check_discovery(cfg, d)
        assert "platform" not in d.credentials, d.credentials

    with environ(
        clean,
        H2O_CLOUD_ENVIRONMENT=cfg.base,
        H2O_CLOUD_CLIENT_PLATFORM_TOKEN="from-env",
    ):
        d = h2o_discovery.discover()
        assert d.credentials["platform"].refresh_token == "from-env"
    return {"services": sorted(d.services), "components": sorted(d.components)}


# --- S2: token refresh ------------------------------------------------------


def s2_token_refresh(cfg: Config) -> dict:
    provider = token_provider(cfg, "alice")
    first, second = provider(), provider()
    assert isinstance(first, str) and first.count(".") == 2, first
    assert first == second, "an unexpired access token should be reused"
    claims = jwt_claims(first)
    assert claims["iss"] == cfg.issuer and claims["aud"] == "urn:drive", claims
    assert claims["preferred_username"] == "alice", claims

    # A threshold longer than the tokens' life refreshes on every call: three
    # refresh grants in a row, each with the refresh token the last one returned.
    eager = token_provider(cfg, "alice", expiry_threshold=datetime.timedelta(days=1))
    tokens = [eager() for _ in range(3)]
    assert len(set(tokens)) == 3, "each call should have refreshed"

    # The refreshed token is good for Drive's STS.
    sts = boto3.session.Session(region_name="us-east-1").client(
        "sts", endpoint_url=cfg.base
    )
    got = sts.assume_role_with_web_identity(
        RoleArn="drivedrivedrivedrive",
        RoleSessionName="h2o-s2",
        WebIdentityToken=tokens[-1],
    )
    assert got["Credentials"]["AccessKeyId"].startswith("ASIA"), got

    bad = h2o_authn.TokenProvider(
        refresh_token="not-a-refresh-token",
        client_id=cfg.client_id,
        issuer_url=cfg.issuer,
    )
    try:
        bad()
    except h2o_authn.error.TokenEndpointError as e:
        assert e.error == "invalid_grant", repr(e)
    else:
        raise AssertionError("a bad refresh token gave an access token")
    return {"refreshed": len(tokens)}


# --- S3: transfers, listings ------------------------------------------------


async def s3_transfers(cfg: Config) -> dict:
    # erin is used by this scenario only, so her home bucket's listing is exact.
    provider = token_provider(cfg, "erin")
    drive = connect(cfg, provider)
    bucket = drive.user_bucket()
    assert bucket.name == "_my"

    files = {
        "home/a.txt": b"hello, drive!\n",
        "home/empty.txt": b"",
        "home/big.bin": os.urandom(20 * MiB + 123),  # 3 parts of 8 MiB
    }
    up = cfg.workdir / "up"
    for key, data in files.items():
        await bucket.upload_file(write_file(up / key, data), key)

    # 1005 small keys, so that listing takes two ListObjects (v1) pages.
    many = {f"many/{i:04d}.txt": b"%d\n" % i for i in range(1005)}
    session = h2o_drive.create_session(
        discovery=hand_built_discovery(cfg), sts_url=cfg.base, token_provider=provider
    )
    s3_config = botocore.config.Config(
        s3={"addressing_style": "path"},
        max_pool_connections=32,
        request_checksum_calculation="when_required",
        retries={"max_attempts": 1},
    )
    started = time.monotonic()
    async with session.create_client(
        "s3", endpoint_url=cfg.base, config=s3_config
    ) as s3:
        limit = asyncio.Semaphore(32)

        async def put(key: str, data: bytes):
            async with limit:
                await s3.put_object(Bucket="_my", Key=key, Body=data)

        await asyncio.gather(*(put(k, v) for k, v in many.items()))
        many_seconds = time.monotonic() - started

        head = await s3.head_object(Bucket="_my", Key="home/big.bin")
        assert head["ContentLength"] == len(files["home/big.bin"])
        assert head["ETag"].endswith('-3"'), f"not a 3-part upload: {head['ETag']}"
        assert head["ETag"] != '"%s"' % hashlib.md5(files["home/big.bin"]).hexdigest()
        page = await s3.list_objects(Bucket="_my", Prefix="many/")
        assert page["IsTruncated"] is True and len(page["Contents"]) == 1000, (
            page["IsTruncated"],
            len(page.get("Contents", [])),
        )

    now = datetime.datetime.now(datetime.timezone.utc)
    listing = await bucket.list_objects()
    by_key = {o.key: o for o in listing}
    assert len(listing) == len(by_key), "a key was listed twice"
    expected = {**files, **many}
    assert set(by_key) == set(expected), (
        f"missing {sorted(set(expected) - set(by_key))[:5]}, "
        f"unexpected {sorted(set(by_key) - set(expected))[:5]}"
    )
    for key, data in expected.items():
        o = by_key[key]
        assert o.size == len(data), (key, o.size, len(data))
        assert o.last_modified.tzinfo is not None, o
        assert abs((o.last_modified - now).total_seconds()) < 600, (
            key,
            o.last_modified,
            now,
        )

    home = await bucket.list_objects(prefix="home/")
    assert sorted(o.key for o in home) == sorted(files)
    listed_many = await bucket.list_objects(prefix="many/")
    assert [o.key for o in listed_many] == sorted(many)  # in key order across pages

    prefixed = bucket.with_prefix("home/")
    assert sorted(o.key for o in await prefixed.list_objects()) == [
        "a.txt",
        "big.bin",
        "empty.txt",
    ]

    down = cfg.workdir / "down"
    for key, data in files.items():
        target = down / key
        target.parent.mkdir(parents=True, exist_ok=True)
        await bucket.download_file(key, target)
        got = target.read_bytes()
        assert len(got) == len(data) and got == data, f"{key}: content differs"
    await prefixed.download_file("a.txt", down / "prefixed-a.txt")
    assert (down / "prefixed-a.txt").read_bytes() == files["home/a.txt"]

    await bucket.delete_object("home/empty.txt")
    await prefixed.delete_object("a.txt")
    assert sorted(o.key for o in await bucket.list_objects(prefix="home/")) == [
        "home/big.bin"
    ]
    await expect_client_error(
        bucket.download_file("home/a.txt", down / "gone.txt"), 404
    )
    return {"listed": len(listing), "many_seconds": round(many_seconds, 2)}


# --- S4: presigned URLs -----------------------------------------------------


def _with_param(url: str, name: str, value: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, value if k == name else v) for k, v in query]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


async def s4_presign(cfg: Config) -> dict:
    drive = connect(cfg, token_provider(cfg, "alice"))
    bucket = drive.user_bucket()
    body = b"hello, drive!\n"
    await bucket.upload_file(write_file(cfg.workdir / "a.txt", body), "home/a.txt")

    url = await bucket.generate_presigned_url("home/a.txt", duration_seconds=600)
    assert isinstance(url, h2o_drive.PresignedURL), type(url)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert query["X-Amz-Expires"] == "600", query
    assert query["X-Amz-Credential"].startswith("ASIA"), query
    assert query.get("X-Amz-Security-Token"), query
    assert url.startswith(cfg.base + "/_my/home/a.txt?"), url
    assert http_get(url) == (200, body)

    sig = query["X-Amz-Signature"]
    tampered = _with_param(
        url, "X-Amz-Signature", sig[:-1] + ("0" if sig[-1] != "0" else "1")
    )
    status, answer = http_get(tampered)
    assert status == 403, (status, answer)
    other_key = url.replace("/home/a.txt?", "/home/b.txt?")
    assert http_get(other_key)[0] == 403

    # Prefixed buckets presign the full key.
    prefixed_url = await bucket.with_prefix("home/").generate_presigned_url(
        "a.txt", duration_seconds=60
    )
    assert http_get(prefixed_url) == (200, body)
    # Longer than a week: Drive refuses the URL, as AWS does.
    week_plus = await bucket.generate_presigned_url(
        "home/a.txt", duration_seconds=8 * 86400
    )
    assert http_get(week_plus)[0] == 403

    # A group workspace's object.
    team = drive.workspace_bucket("team-a")
    await team.upload_file(cfg.workdir / "a.txt", "presigned/a.txt")
    assert http_get(
        await team.generate_presigned_url("presigned/a.txt", duration_seconds=60)
    ) == (200, body)
    return {"url_host": urllib.parse.urlsplit(url).netloc}


# --- S5: isolation ----------------------------------------------------------


async def s5_isolation(cfg: Config) -> dict:
    alice = connect(cfg, token_provider(cfg, "alice"))
    bob = connect(cfg, token_provider(cfg, "bob"))
    carol = connect(cfg, token_provider(cfg, "carol"))
    files = cfg.workdir / "files"

    async def put(bucket, key: str, data: bytes):
        path = write_file(
            files / f"{bucket.name}-{len(data)}-{time.monotonic_ns()}", data
        )
        await bucket.upload_file(path, key)

    async def get(bucket, key: str) -> bytes:
        path = files / f"down-{time.monotonic_ns()}"
        await bucket.download_file(key, path)
        return path.read_bytes()

    async def keys(bucket, prefix=None) -> list[str]:
        return [o.key for o in await bucket.list_objects(prefix=prefix)]

    # Home buckets: same key, two users, two objects.
    a_home, b_home = alice.user_bucket(), bob.user_bucket()
    await put(a_home, "home/x.txt", b"alice's x")
    await put(b_home, "home/x.txt", b"bob's x")
    await put(a_home, "home/alice-only.txt", b"secret")
    assert await get(a_home, "home/x.txt") == b"alice's x"
    assert await get(b_home, "home/x.txt") == b"bob's x"
    bob_keys = await keys(b_home)
    assert "home/x.txt" in bob_keys and "home/alice-only.txt" not in bob_keys, bob_keys
    assert "home/alice-only.txt" in await keys(a_home)
    await expect_client_error(get(b_home, "home/alice-only.txt"), 404)

    # The personal workspace is personal too.
    a_default, b_default = alice.workspace_bucket("default"), bob.workspace_bucket(
        "default"
    )
    assert a_default.name == "default"
    await put(a_default, "d.txt", b"alice's default")
    assert await get(a_default, "d.txt") == b"alice's default"
    assert "d.txt" not in await keys(b_default)
    await expect_client_error(get(b_default, "d.txt"), 404)

    # A group workspace is shared by its members ...
    a_team = alice.workspace_bucket("team-a")
    b_team = bob.workspace_bucket("workspaces/team-a")  # h2o's resource-name form
    assert a_team.name == b_team.name == "team-a"
    await put(a_team, "shared/t.txt", b"team a data")
    assert "shared/t.txt" in await keys(b_team, "shared/")
    assert await get(b_team, "shared/t.txt") == b"team a data"
    await put(b_team, "shared/from-bob.txt", b"bob was here")
    assert await get(a_team, "shared/from-bob.txt") == b"bob was here"
    await put(bob.workspace_bucket("team-b"), "b.txt", b"team b data")
    assert await get(carol.workspace_bucket("team-b"), "b.txt") == b"team b data"

    # ... and closed to everyone else.
    c_team = carol.workspace_bucket("team-a")
    denied = ("AccessDenied", "403")
    await expect_client_error(c_team.list_objects(), 403, denied)
    await expect_client_error(get(c_team, "shared/t.txt"), 403, denied)
    await expect_client_error(put(c_team, "intruder.txt", b"x"), 403, denied)
    await expect_client_error(
        alice.workspace_bucket("team-b").list_objects(), 403, denied
    )
    await expect_client_error(
        alice.workspace_bucket("no-such-group").list_objects(), 403, denied
    )
    assert "intruder.txt" not in await keys(a_team)
    return {"bob_home_keys": len(bob_keys)}


# --- S6: everything from the environment; the h2o-drive CLI --------------------


def s6_auto_and_cli(cfg: Config) -> dict:
    clean = {"H2O_CLOUD_DISCOVERY": None, "H2OCONFIG": None, "AWS_CONFIG_FILE": None}
    data = b"connected from the environment\n"
    with environ(
        clean,
        H2O_CLOUD_ENVIRONMENT=cfg.base,
        H2O_CLOUD_CLIENT_PLATFORM_TOKEN=cfg.refresh_token("dave"),
    ):
        drive = h2o_drive.connect()  # discovery, URLs and token provider from the env

        async def roundtrip():
            bucket = drive.user_bucket()
            await bucket.upload_file(
                write_file(cfg.workdir / "auto.txt", data), "auto/a.txt"
            )
            listed = {o.key: o.size for o in await bucket.list_objects(prefix="auto/")}
            assert listed == {"auto/a.txt": len(data)}, listed
            await bucket.download_file("auto/a.txt", cfg.workdir / "auto.down")
            assert (cfg.workdir / "auto.down").read_bytes() == data

        asyncio.run(roundtrip())

    def cli(*args: str, token: str | None = None) -> str:
        env = dict(os.environ, H2O_CLOUD_ENVIRONMENT=cfg.base)
        for k in clean:
            env.pop(k, None)
        if token:
            env["H2O_CLOUD_CLIENT_PLATFORM_TOKEN"] = token
        p = subprocess.run(
            ["h2o-drive", *args], env=env, capture_output=True, text=True, timeout=120,
            cwd=cfg.workdir,
        )  # fmt: skip
        assert (
            p.returncode == 0
        ), f"h2o-drive {' '.join(args)}: {p.returncode}\n{p.stdout}\n{p.stderr}"
        return p.stdout

    creds = json.loads(cli("aws", "credentials", token=cfg.refresh_token("dave")))
    assert creds["Version"] == 1, creds
    assert creds["AccessKeyId"].startswith("ASIA"), creds
    assert creds["SecretAccessKey"] and creds["SessionToken"], creds

    legacy = cli("aws", "profile", "--legacy-userdrive", "--name", "t")
    workspaces = cli("aws", "profile", "--name", "t")
    for text, name in ((legacy, "t-userdrive"), (workspaces, "t-drive")):
        assert f"[profile {name}]" in text, text
        assert "credential_process = h2o-drive aws credentials" in text, text
        assert f"endpoint_url = {cfg.base}" in text, text
    aws_config = cfg.workdir / "aws-config"
    aws_config.write_text(legacy + "\n" + workspaces)

    # boto3 runs `h2o-drive aws credentials` (on PATH) once per session.
    with environ(
        clean, AWS_CONFIG_FILE=str(aws_config), H2O_CLOUD_ENVIRONMENT=cfg.base
    ):
        os.environ["H2O_CLOUD_CLIENT_PLATFORM_TOKEN"] = cfg.refresh_token("dave")
        s3 = boto3.Session(profile_name="t-userdrive").client("s3")
        s3.put_object(Bucket="_my", Key="cli/x.txt", Body=b"via the profile")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="_my").get("Contents", [])]
        assert "cli/x.txt" in keys and "auto/a.txt" in keys, keys
        assert (
            s3.get_object(Bucket="_my", Key="cli/x.txt")["Body"].read()
            == b"via the profile"
        )

        os.environ["H2O_CLOUD_CLIENT_PLATFORM_TOKEN"] = cfg.refresh_token("dave")
        ws = boto3.Session(profile_name="t-drive").client("s3")
        ws.put_object(Bucket="default", Key="cli/w.txt", Body=b"workspace")
        assert (
            ws.get_object(Bucket="default", Key="cli/w.txt")["Body"].read()
            == b"workspace"
        )
        os.environ.pop("H2O_CLOUD_CLIENT_PLATFORM_TOKEN")
    return {"keys": sorted(keys)}


# --- S7: a refused token; STS calls are cached ---------------------------------


async def s7_sts(cfg: Config) -> dict:
    refused = connect(cfg, h2o_drive.StaticTokenProvider("garbage-token"))
    e = await expect_client_error(refused.user_bucket().list_objects(), 400)
    assert e.response["Error"]["Code"] == "InvalidIdentityToken", e.response
    assert type(e).__name__ == "InvalidIdentityTokenException", type(e)

    inner = token_provider(cfg, "alice")
    calls = []

    def counting() -> str:
        calls.append(time.monotonic())
        return inner()

    drive = connect(cfg, counting)
    bucket = drive.user_bucket()
    await bucket.upload_file(write_file(cfg.workdir / "s7.txt", b"s7"), "s7/a.txt")
    for _ in range(10):
        assert [o.key for o in await bucket.list_objects(prefix="s7/")] == ["s7/a.txt"]
    assert len(calls) == 1, f"the token provider was called {len(calls)} times"
    return {"token_calls": len(calls)}


SCENARIOS = {
    "discovery": s1_discovery,
    "token-refresh": s2_token_refresh,
    "transfers": s3_transfers,
    "presign": s4_presign,
    "isolation": s5_isolation,
    "auto-and-cli": s6_auto_and_cli,
    "sts": s7_sts,
}


def main() -> int:
    name, config_path = sys.argv[1], sys.argv[2]
    cfg = Config(json.loads(Path(config_path).read_text()))
    fn = SCENARIOS[name]
    try:
        result = fn(cfg)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
    except Exception:
        traceback.print_exc()
        return 1
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
