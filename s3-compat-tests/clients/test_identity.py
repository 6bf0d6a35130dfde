"""Identity with real clients: STS AssumeRoleWithWebIdentity (form POST,
aws-cli, boto3), session credentials on S3 requests and in presigned URLs, the
per-user bucket namespace (`_my`, `default`, group workspaces) and H2O cloud
discovery, against one Drive (fs backend) that trusts the test OpenID provider
(fixtures idp and oidc_drive in conftest.py). Run once, not per backend.
The h2o-drive client has its own module, test_h2o_drive.py."""

from __future__ import annotations

import datetime
import json
import subprocess
import time
import urllib.parse
import uuid

import pytest
from botocore.exceptions import ClientError

from clientlib import random_bytes, write
from conftest import ACCESS_KEY, REGION, SECRET_KEY, make_client
from identitylib import (  # noqa: F401 (_attach_server_log: autouse fixture)
    _attach_server_log,
    CLIENT_ID,
    DISCOVERY_PREFIX,
    ROLE_ARN,
    USERS,
    assume,
    b64url_encode,
    forge_jwt,
    http,
    jwt_parts,
    session_s3,
    sts_client,
    sts_form,
)

AWS_READ_TIMEOUT = 20



@pytest.fixture
def creds(oidc_drive, idp):
    """STS credentials of a user, from a fresh access token."""

    def get(user: str) -> dict:
        got = assume(oidc_drive.endpoint, REGION, idp.access_token(user))
        return got["Credentials"]

    return get


@pytest.fixture
def user_s3(oidc_drive, creds):
    """A boto3 S3 client with a user's session credentials."""

    def get(user: str):
        return session_s3(oidc_drive.endpoint, REGION, creds(user))

    return get


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def http_status(excinfo) -> int:
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def assert_denied(call, *args, **kwargs):
    with pytest.raises(ClientError) as e:
        call(*args, **kwargs)
    assert http_status(e) == 403, e.value.response
    # HEAD answers have no body, hence no code beyond the status.
    assert error_code(e) in ("AccessDenied", "403"), e.value.response


def list_keys(s3, bucket: str, prefix: str = "") -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix
    ):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def seconds_until(when) -> float:
    if isinstance(when, str):
        when = datetime.datetime.fromisoformat(when.replace("Z", "+00:00"))
    return (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()


# --- H2O cloud discovery ----------------------------------------------------


def get_json(url: str) -> dict:
    status, headers, body = http("GET", url)
    assert status == 200, f"GET {url}: {status} {body[:300]!r}"
    ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    assert ctype.startswith("application/json"), f"GET {url}: content-type {ctype!r}"
    return json.loads(body)


def test_discovery_documents(oidc_drive, idp):
    base = oidc_drive.endpoint
    root = base + DISCOVERY_PREFIX + "/v1/"

    env = get_json(root + "environment")["environment"]
    assert env["h2oCloudEnvironment"] == base
    assert env["issuerUrl"] == idp.issuer
    assert isinstance(env["h2oCloudPlatformOauth2Scope"], str)

    services = get_json(root + "services")
    assert "nextPageToken" not in services
    by_name = {s["name"]: s for s in services["services"]}
    assert sorted(by_name) == [
        "services/drive-sts",
        "services/userdrive",
        "services/workspacedrive",
    ]
    for s in by_name.values():
        assert s["uri"] == base, s
        assert s["displayName"]

    clients = get_json(root + "clients")["clients"]
    assert [(c["name"], c["oauth2ClientId"]) for c in clients] == [
        ("clients/platform", CLIENT_ID)
    ]
    assert clients[0]["displayName"]

    assert get_json(root + "links") == {"links": []}
    for c in get_json(root + "components")["components"]:
        assert c["name"].startswith("components/") and c["displayName"] and c["version"]


def test_discovery_pages_and_unknown_paths(oidc_drive):
    root = oidc_drive.endpoint + DISCOVERY_PREFIX + "/v1/"
    names, token, pages = [], None, 0
    while True:
        query = "pageSize=1" + (
            f"&pageToken={urllib.parse.quote(token)}" if token else ""
        )
        page = get_json(root + "services?" + query)
        pages += 1
        assert len(page["services"]) == 1, page
        names += [s["name"] for s in page["services"]]
        token = page.get("nextPageToken")
        if not token:
            break
        assert pages < 10, "discovery pages never end"
    assert pages == 3
    assert sorted(names) == [
        "services/drive-sts",
        "services/userdrive",
        "services/workspacedrive",
    ]
    for path in ("v1/nothing", "v2/environment"):
        status, _, _ = http("GET", oidc_drive.endpoint + DISCOVERY_PREFIX + "/" + path)
        assert status == 404, path


# --- STS over plain HTTP ----------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/any/path"])
def test_sts_form_post_issues_session(oidc_drive, idp, path):
    token = idp.access_token("alice")
    claims = jwt_parts(token)[1]
    status, _, root = sts_form(
        oidc_drive.endpoint, token, path, RoleSessionName="raw-1"
    )
    assert status == 200, root
    assert root.tag == "AssumeRoleWithWebIdentityResponse"
    result = root.find("AssumeRoleWithWebIdentityResult")
    assert result.findtext("SubjectFromWebIdentityToken") == claims["sub"]
    assert result.findtext("AssumedRoleUser/Arn").endswith("/raw-1")
    c = result.find("Credentials")
    key = c.findtext("AccessKeyId")
    assert key.startswith("ASIA"), key
    assert c.findtext("SecretAccessKey") and c.findtext("SessionToken")
    # One hour by default.
    assert 3300 < seconds_until(c.findtext("Expiration")) <= 3605
    assert root.findtext("ResponseMetadata/RequestId")

    s3 = session_s3(
        oidc_drive.endpoint,
        REGION,
        {
            "AccessKeyId": key,
            "SecretAccessKey": c.findtext("SecretAccessKey"),
            "SessionToken": c.findtext("SessionToken"),
        },
    )
    s3.put_object(Bucket="_my", Key="raw/hello.txt", Body=b"hello")
    assert s3.get_object(Bucket="_my", Key="raw/hello.txt")["Body"].read() == b"hello"


@pytest.mark.parametrize(
    "extra,code",
    [
        ({}, "InvalidIdentityToken"),  # the token is garbage
        ({"DurationSeconds": "899"}, "ValidationError"),
        ({"DurationSeconds": "43201"}, "ValidationError"),
        ({"RoleSessionName": "not a valid name!"}, "ValidationError"),
        ({"Action": "GetCallerIdentity"}, None),  # any client error code
    ],
    ids=[
        "garbage-token",
        "duration-899",
        "duration-43201",
        "bad-session-name",
        "other-action",
    ],
)
def test_sts_form_errors_are_aws_shaped(oidc_drive, extra, code):
    status, _, root = sts_form(oidc_drive.endpoint, "garbage-token", **extra)
    assert status == 400, (status, root)
    assert root.tag == "ErrorResponse"
    assert root.findtext("Error/Type") == "Sender"
    if code:
        assert root.findtext("Error/Code") == code
    else:
        assert root.findtext("Error/Code")
    assert root.findtext("Error/Message")
    assert root.findtext("RequestId")


@pytest.mark.parametrize("duration", [900, 43200])
def test_sts_duration_seconds(oidc_drive, idp, duration):
    got = assume(
        oidc_drive.endpoint, REGION, idp.access_token("erin"), DurationSeconds=duration
    )
    left = seconds_until(got["Credentials"]["Expiration"])
    assert duration - 120 < left <= duration + 5


# --- boto3 ------------------------------------------------------------------


def test_boto3_assume_role_and_namespaces(oidc_drive, idp):
    token = idp.access_token("alice")
    got = sts_client(oidc_drive.endpoint, REGION).assume_role_with_web_identity(
        RoleArn=ROLE_ARN, RoleSessionName="boto3-alice", WebIdentityToken=token
    )
    c = got["Credentials"]
    assert c["AccessKeyId"].startswith("ASIA")
    assert 3300 < seconds_until(c["Expiration"]) <= 3605
    assert got["SubjectFromWebIdentityToken"] == jwt_parts(token)[1]["sub"]
    assert got["AssumedRoleUser"]["Arn"].endswith("/boto3-alice")

    s3 = session_s3(oidc_drive.endpoint, REGION, c)
    prefix = unique("ns") + "/"
    for bucket in ("_my", "default", "team-a"):
        data = random_bytes(1000)
        key = f"{prefix}{bucket}.bin"
        s3.put_object(Bucket=bucket, Key=key, Body=data)
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
        assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(data)
        assert list_keys(s3, bucket, prefix) == [key]
        listing = s3.list_objects(Bucket=bucket, Prefix=prefix)  # v1 too
        assert [o["Key"] for o in listing["Contents"]] == [key]
        s3.delete_object(Bucket=bucket, Key=key)
        assert list_keys(s3, bucket, prefix) == []
    # Multipart on the home bucket.
    mpu = s3.create_multipart_upload(Bucket="_my", Key=prefix + "mp.bin")
    parts = [random_bytes(5 * 1024 * 1024), random_bytes(100)]
    etags = [
        s3.upload_part(
            Bucket="_my", Key=prefix + "mp.bin", UploadId=mpu["UploadId"],
            PartNumber=i + 1, Body=p,
        )["ETag"]
        for i, p in enumerate(parts)
    ]  # fmt: skip
    s3.complete_multipart_upload(
        Bucket="_my", Key=prefix + "mp.bin", UploadId=mpu["UploadId"],
        MultipartUpload={
            "Parts": [{"ETag": e, "PartNumber": n} for n, e in enumerate(etags, 1)]
        },
    )  # fmt: skip
    got = s3.get_object(Bucket="_my", Key=prefix + "mp.bin")["Body"].read()
    assert got == b"".join(parts)


def test_boto3_home_and_default_are_per_user(user_s3):
    alice, bob = user_s3("alice"), user_s3("bob")
    key = unique("same") + ".txt"
    for bucket in ("_my", "default"):
        alice.put_object(Bucket=bucket, Key=key, Body=b"alice's " + bucket.encode())
        bob.put_object(Bucket=bucket, Key=key, Body=b"bob's " + bucket.encode())
        assert (
            alice.get_object(Bucket=bucket, Key=key)["Body"].read()
            == b"alice's " + bucket.encode()
        )
        assert (
            bob.get_object(Bucket=bucket, Key=key)["Body"].read()
            == b"bob's " + bucket.encode()
        )
    only = unique("alice-only") + ".txt"
    alice.put_object(Bucket="_my", Key=only, Body=b"x")
    alice.put_object(Bucket="default", Key=only, Body=b"x")
    for bucket in ("_my", "default"):
        assert only in list_keys(alice, bucket)
        assert only not in list_keys(bob, bucket)
        with pytest.raises(ClientError) as e:
            bob.get_object(Bucket=bucket, Key=only)
        assert http_status(e) == 404


def test_boto3_group_workspaces(user_s3):
    alice, bob, carol, erin = (user_s3(u) for u in ("alice", "bob", "carol", "erin"))
    key = unique("ws") + ".txt"
    alice.put_object(Bucket="team-a", Key=key, Body=b"for team a")
    assert bob.get_object(Bucket="team-a", Key=key)["Body"].read() == b"for team a"
    assert key in list_keys(bob, "team-a")
    bob.put_object(Bucket="team-b", Key=key, Body=b"for team b")
    assert carol.get_object(Bucket="team-b", Key=key)["Body"].read() == b"for team b"

    # Not a member: denied, whether the workspace has objects or not.
    for client, bucket in ((carol, "team-a"), (erin, "team-a"), (alice, "team-b")):
        assert_denied(client.get_object, Bucket=bucket, Key=key)
        assert_denied(client.put_object, Bucket=bucket, Key="intruder.txt", Body=b"x")
        assert_denied(client.list_objects_v2, Bucket=bucket)
        assert_denied(client.head_bucket, Bucket=bucket)
    for bucket in ("team-zzz", "no-such-bucket", "home"):
        assert_denied(alice.list_objects_v2, Bucket=bucket)
    # Users do not create or delete buckets.
    assert_denied(alice.create_bucket, Bucket=unique("mine"))
    assert_denied(alice.delete_bucket, Bucket="team-a")


def test_admin_reaches_buckets_by_name(oidc_drive, user_s3):
    root = make_client(oidc_drive)
    name = unique("admin")
    root.create_bucket(Bucket=name)
    root.put_object(Bucket=name, Key="by-root.txt", Body=b"root")
    assert any(b["Name"] == name for b in root.list_buckets()["Buckets"])

    dave = user_s3("dave")  # realm role drive-admin
    assert dave.get_object(Bucket=name, Key="by-root.txt")["Body"].read() == b"root"
    dave.put_object(Bucket=name, Key="by-dave.txt", Body=b"dave")
    assert sorted(list_keys(root, name)) == ["by-dave.txt", "by-root.txt"]
    dave.put_object(Bucket="_my", Key="dave.txt", Body=b"mine")  # admins have homes too

    alice = user_s3("alice")
    assert_denied(alice.get_object, Bucket=name, Key="by-root.txt")
    assert_denied(alice.list_objects_v2, Bucket=name)


def _forged(idp, token: str, header: dict | None = None, **claims) -> str:
    h, c = jwt_parts(token)
    h.update(header or {})
    c.update(claims)
    return forge_jwt(h, c, idp.signing_jwk())


def flip_middle(s: str) -> str:
    i = len(s) // 2
    return s[:i] + ("A" if s[i] != "A" else "B") + s[i + 1 :]


def _unsigned(token: str, **claims) -> str:
    h, c = jwt_parts(token)
    c.update(claims)
    return (
        b64url_encode(json.dumps({"alg": "none", "typ": h.get("typ", "JWT")}).encode())
        + "."
        + b64url_encode(json.dumps(c).encode())
        + "."
    )


def _payload_edited(token: str) -> str:
    """alice's token with bob's groups, under alice's signature."""
    h, _, sig = token.split(".")
    c = jwt_parts(token)[1]
    c["groups"] = ["team-a", "team-b"]
    return ".".join([h, b64url_encode(json.dumps(c).encode()), sig])


BAD_TOKENS = {
    "garbage": (lambda idp, t: "garbage", "InvalidIdentityToken"),
    "truncated-signature": (lambda idp, t: t[:-8], "InvalidIdentityToken"),
    "payload-edited": (lambda idp, t: _payload_edited(t), "InvalidIdentityToken"),
    "alg-none": (lambda idp, t: _unsigned(t), "InvalidIdentityToken"),
    "wrong-audience": (
        lambda idp, t: _forged(idp, t, aud="urn:other"),
        "InvalidIdentityToken",
    ),
    "wrong-issuer": (
        lambda idp, t: _forged(idp, t, iss="http://127.0.0.1:1"),
        "InvalidIdentityToken",
    ),
    "unknown-kid": (
        lambda idp, t: _forged(idp, t, {"kid": "no-such-key"}),
        "InvalidIdentityToken",
    ),
    "expired": (
        lambda idp, t: _forged(
            idp, t, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600
        ),
        "ExpiredTokenException",
    ),
}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
def test_boto3_refused_tokens(oidc_drive, idp, kind):
    make, code = BAD_TOKENS[kind]
    token = make(idp, idp.access_token("alice"))
    client = sts_client(oidc_drive.endpoint, REGION)
    with pytest.raises(ClientError) as e:
        client.assume_role_with_web_identity(
            RoleArn=ROLE_ARN, RoleSessionName="refused", WebIdentityToken=token
        )
    assert error_code(e) == code, e.value.response
    assert http_status(e) == 400
    expected = {
        "InvalidIdentityToken": client.exceptions.InvalidIdentityTokenException,
        "ExpiredTokenException": client.exceptions.ExpiredTokenException,
    }[code]
    assert isinstance(e.value, expected), type(e.value)
    # The same claims signed properly are accepted (the forgery is what fails).
    if kind in ("wrong-audience", "expired"):
        assume(oidc_drive.endpoint, REGION, _forged(idp, idp.access_token("alice")))


def test_session_credentials_are_checked(oidc_drive, creds):
    c = creds("carol")
    ok = session_s3(oidc_drive.endpoint, REGION, c)
    ok.put_object(Bucket="_my", Key="checked.txt", Body=b"x")

    def s3_with(**changes):
        return session_s3(oidc_drive.endpoint, REGION, dict(c, **changes))

    cases = {
        "no session token": (s3_with(SessionToken=None), "InvalidToken"),
        "altered session token": (
            s3_with(SessionToken=flip_middle(c["SessionToken"])),
            "InvalidToken",
        ),
        "wrong secret": (s3_with(SecretAccessKey="x" * 40), "SignatureDoesNotMatch"),
        "unknown key": (
            s3_with(AccessKeyId="ASIA" + "Z" * 16),
            ("InvalidAccessKeyId", "InvalidToken"),
        ),
        "root key with a session token": (
            s3_with(AccessKeyId=ACCESS_KEY, SecretAccessKey=SECRET_KEY),
            "InvalidToken",
        ),
    }
    for what, (client, codes) in cases.items():
        with pytest.raises(ClientError) as e:
            client.get_object(Bucket="_my", Key="checked.txt")
        assert error_code(e) in ((codes,) if isinstance(codes, str) else codes), (
            what,
            e.value.response,
        )
        assert http_status(e) in (400, 403), (what, e.value.response)


def test_boto3_presigned_urls_with_session_credentials(oidc_drive, creds):
    s3 = session_s3(oidc_drive.endpoint, REGION, creds("bob"), signature_version="s3v4")
    key = unique("presigned") + "/file name ü.txt"
    s3.put_object(Bucket="_my", Key=key, Body=b"presigned body")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "_my", "Key": key}, ExpiresIn=300
    )
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["X-Amz-Credential"][0].startswith("ASIA")
    assert query["X-Amz-Security-Token"]
    status, _, body = http("GET", url)
    assert (status, body) == (200, b"presigned body")

    sig = query["X-Amz-Signature"][0]
    bad_sig = url.replace(sig, sig[:-1] + ("0" if sig[-1] != "0" else "1"))
    status, _, body = http("GET", bad_sig)
    assert status == 403 and b"SignatureDoesNotMatch" in body, body
    token = query["X-Amz-Security-Token"][0]
    no_token = url.replace(
        "X-Amz-Security-Token=" + urllib.parse.quote(token, safe=""),
        "X-Amz-Security-Token=x",
    )
    assert no_token != url
    status, _, _ = http("GET", no_token)
    assert status in (400, 403)

    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": "_my", "Key": key + ".put"}, ExpiresIn=300
    )
    status, _, body = http("PUT", put_url, b"uploaded via URL")
    assert status == 200, body
    assert (
        s3.get_object(Bucket="_my", Key=key + ".put")["Body"].read()
        == b"uploaded via URL"
    )


# --- aws-cli ----------------------------------------------------------------


def aws_env(client_env_base, tmp_path, profiles: str = "", **extra) -> dict:
    """Environment for aws-cli without any credentials, its own config file
    (region, no retries, plus `profiles`), an empty credentials file and a
    HOME of its own (aws-cli caches web-identity sessions in ~/.aws/cli/cache)."""
    env = {k: v for k, v in client_env_base.items() if not k.startswith("AWS_")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env["HOME"] = str(home)
    cfg = tmp_path / "aws-config"
    cfg.write_text(
        f"[default]\nregion = {REGION}\nretry_mode = standard\nmax_attempts = 1\n\n"
        + profiles
    )
    creds = tmp_path / "aws-credentials"
    creds.write_text("")
    env.update(
        {
            "AWS_CONFIG_FILE": str(cfg),
            "AWS_SHARED_CREDENTIALS_FILE": str(creds),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_PAGER": "",
        }
    )
    env.update(extra)
    return env


def run_aws(
    env, tmp_path, *args, check=True, timeout=120
) -> subprocess.CompletedProcess:
    cmd = ["aws", "--cli-read-timeout", str(AWS_READ_TIMEOUT), *map(str, args)]
    p = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp_path
    )
    if check and p.returncode != 0:
        pytest.fail(
            f"command failed ({p.returncode}): {' '.join(cmd)}\n"
            f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}"
        )
    return p


def test_awscli_assume_role_with_web_identity(
    oidc_drive, idp, client_env_base, tmp_path
):
    env = aws_env(client_env_base, tmp_path)
    token = idp.access_token("bob")
    p = run_aws(
        env, tmp_path,
        "sts", "assume-role-with-web-identity",
        "--endpoint-url", oidc_drive.endpoint,
        "--role-arn", ROLE_ARN,
        # AWS (and botocore's validation) want 2 to 64 characters.
        "--role-session-name", "cli-bob",
        "--web-identity-token", token,
        "--output", "json",
    )  # fmt: skip
    out = json.loads(p.stdout)
    c = out["Credentials"]
    assert c["AccessKeyId"].startswith("ASIA")
    assert out["SubjectFromWebIdentityToken"] == jwt_parts(token)[1]["sub"]
    assert 3300 < seconds_until(c["Expiration"]) <= 3605

    senv = dict(
        env,
        AWS_ACCESS_KEY_ID=c["AccessKeyId"],
        AWS_SECRET_ACCESS_KEY=c["SecretAccessKey"],
        AWS_SESSION_TOKEN=c["SessionToken"],
    )
    data = random_bytes(70_000)
    src = write(tmp_path / "up.bin", data)
    prefix = unique("cli")
    ep = ("--endpoint-url", oidc_drive.endpoint)

    def s3(*args, check=True):
        return run_aws(senv, tmp_path, "s3", *args, *ep, check=check)

    s3("cp", src, f"s3://_my/{prefix}/up.bin", "--only-show-errors")
    s3("cp", src, f"s3://team-a/{prefix}/up.bin", "--only-show-errors")
    ls = s3("ls", f"s3://_my/{prefix}/").stdout
    assert ls.split()[-2:] == [str(len(data)), "up.bin"], ls
    down = tmp_path / "down.bin"
    s3("cp", f"s3://_my/{prefix}/up.bin", down, "--only-show-errors")
    assert down.read_bytes() == data
    assert f"{prefix}/" in s3("ls", "s3://team-a/").stdout
    # Copies and moves inside the home bucket name `_my` as their source: CopyObject for
    # the small file, UploadPartCopy for one over the CLI's 8 MiB multipart threshold.
    big = random_bytes(9 * 1024 * 1024)
    s3("cp", write(tmp_path / "big.bin", big), f"s3://_my/{prefix}/big.bin", "--only-show-errors")
    s3("mv", f"s3://_my/{prefix}/up.bin", f"s3://_my/{prefix}/moved.bin", "--only-show-errors")
    s3("cp", f"s3://_my/{prefix}/big.bin", f"s3://_my/{prefix}/big-copy.bin", "--only-show-errors")
    s3("cp", f"s3://_my/{prefix}/moved.bin", f"s3://team-a/{prefix}/from-home.bin", "--only-show-errors")
    for key, want in (("moved.bin", data), ("big-copy.bin", big)):
        s3("cp", f"s3://_my/{prefix}/{key}", down, "--only-show-errors")
        assert down.read_bytes() == want, key
    ls = s3("ls", f"s3://_my/{prefix}/").stdout
    assert "up.bin" not in ls and "moved.bin" in ls, ls
    s3("ls", "s3://team-b/")  # bob is in team-b too
    p = s3("ls", "s3://team-zzz/", check=False)
    assert p.returncode != 0 and "AccessDenied" in p.stderr, p.stderr


@pytest.mark.parametrize("endpoints", ["services-section", "endpoint-env-vars"])
def test_awscli_web_identity_profile(
    oidc_drive, idp, client_env_base, tmp_path, endpoints
):
    """The CLI exchanges a token file for session credentials by itself."""
    token_file = tmp_path / "token.jwt"
    token_file.write_text(idp.access_token("carol"))
    profile = (
        "[profile web]\n"
        f"region = {REGION}\n"
        "max_attempts = 1\n"
        f"role_arn = {ROLE_ARN}\n"
        "role_session_name = cli-profile\n"
        f"web_identity_token_file = {token_file}\n"
    )
    extra = {"AWS_PROFILE": "web"}
    if endpoints == "services-section":
        profile += (
            "services = drive-local\n\n"
            "[services drive-local]\n"
            f"sts =\n  endpoint_url = {oidc_drive.endpoint}\n"
            f"s3 =\n  endpoint_url = {oidc_drive.endpoint}\n"
        )
    else:
        extra.update(
            AWS_ENDPOINT_URL_STS=oidc_drive.endpoint,
            AWS_ENDPOINT_URL_S3=oidc_drive.endpoint,
        )
    env = aws_env(client_env_base, tmp_path, profile, **extra)
    offset = oidc_drive.log_size()

    data = random_bytes(9 * 1024 * 1024 + 5)  # multipart (8 MiB parts)
    src = write(tmp_path / "up.bin", data)
    prefix = unique("profile")
    run_aws(
        env,
        tmp_path,
        "s3",
        "cp",
        src,
        f"s3://_my/{prefix}/up.bin",
        "--only-show-errors",
    )
    run_aws(
        env,
        tmp_path,
        "s3",
        "cp",
        src,
        f"s3://default/{prefix}/up.bin",
        "--only-show-errors",
    )
    ls = run_aws(env, tmp_path, "s3", "ls", f"s3://_my/{prefix}/").stdout
    assert ls.split()[-2:] == [str(len(data)), "up.bin"], ls
    down = tmp_path / "down.bin"
    run_aws(
        env,
        tmp_path,
        "s3",
        "cp",
        f"s3://_my/{prefix}/up.bin",
        down,
        "--only-show-errors",
    )
    assert down.read_bytes() == data
    p = run_aws(env, tmp_path, "s3", "ls", "s3://team-a/", check=False)
    assert p.returncode != 0 and "AccessDenied" in p.stderr, p.stderr
    # The CLI exchanged the token file itself (aws-cli caches the session
    # in $HOME/.aws/cli/cache, so once or up to once per command).
    assert 1 <= oidc_drive.sessions_issued_since(offset) <= 5

    # The same user through boto3 sees the object in the same home bucket.
    other = session_s3(
        oidc_drive.endpoint,
        REGION,
        assume(oidc_drive.endpoint, REGION, idp.access_token("carol"))["Credentials"],
    )
    assert other.get_object(Bucket="_my", Key=f"{prefix}/up.bin")["Body"].read() == data


def test_awscli_refused_token(oidc_drive, client_env_base, tmp_path):
    env = aws_env(client_env_base, tmp_path)
    p = run_aws(
        env, tmp_path,
        "sts", "assume-role-with-web-identity",
        "--endpoint-url", oidc_drive.endpoint,
        "--role-arn", ROLE_ARN, "--role-session-name", "cli-bad",
        "--web-identity-token", "not-a-jwt",
        check=False,
    )  # fmt: skip
    assert p.returncode != 0
    assert "InvalidIdentityToken" in p.stderr, p.stderr


def test_users_have_expected_claims(idp):
    """Guards the fixtures' assumptions about test-idp.mjs's users."""
    for user, want in USERS.items():
        claims = jwt_parts(idp.access_token(user))[1]
        assert claims["preferred_username"] == user
        assert claims["groups"] == want["groups"]
        assert claims["realm_access"]["roles"] == want["roles"]
        assert claims["aud"] == "urn:drive" and claims["iss"] == idp.issuer
