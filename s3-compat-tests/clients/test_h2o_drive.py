"""The public h2o-drive client (h2o-drive 5.1.0 with h2o-authn and
h2o-cloud-discovery) against Drive with the test OpenID provider.

h2o-drive's aiobotocore pins a botocore that conflicts with requirements.txt's
awscli/boto3, so it lives in a venv of its own (venv-h2o, requirements-h2o.txt,
made by setup.sh): each test runs one scenario of h2o_scenarios.py with that
venv's python, with a clean HOME, no AWS_* or H2O* variables and fresh refresh
tokens, and fails with the scenario's traceback. Run once, not per backend."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from identitylib import CLIENT_ID, _attach_server_log  # noqa: F401 (autouse fixture)

SCRIPT = Path(__file__).with_name("h2o_scenarios.py")



@pytest.fixture
def scenario(h2o_python, idp, oidc_drive, client_env_base, tmp_path):
    """Runs a scenario of h2o_scenarios.py; `tokens` says how many unused
    refresh tokens each user needs. Returns the scenario's RESULT."""

    def run(name: str, tokens: dict[str, int], timeout: float = 300) -> dict:
        workdir = tmp_path / "work"
        home = tmp_path / "home"
        workdir.mkdir()
        home.mkdir()
        config = {
            "base": oidc_drive.endpoint,
            "issuer": idp.issuer,
            "client_id": CLIENT_ID,
            "workdir": str(workdir),
            "refresh_tokens": {
                user: [idp.refresh_token(user) for _ in range(n)]
                for user, n in tokens.items()
            },
        }
        config_path = tmp_path / "scenario.json"
        config_path.write_text(json.dumps(config))
        env = {
            k: v
            for k, v in client_env_base.items()
            if not k.startswith(("AWS_", "H2O", "PYTHON", "VIRTUAL_ENV"))
        }
        env["HOME"] = str(home)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        # The venv's bin first: S6 runs its `h2o-drive` console script.
        env["PATH"] = str(h2o_python.parent) + os.pathsep + env.get("PATH", "")
        p = subprocess.run(
            [str(h2o_python), str(SCRIPT), name, str(config_path)],
            env=env, cwd=workdir, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        results = [line for line in p.stdout.splitlines() if line.startswith("RESULT ")]
        if p.returncode != 0 or not results:
            pytest.fail(
                f"h2o scenario {name!r} failed (exit code {p.returncode})\n"
                f"stdout:\n{p.stdout[-5000:]}\nstderr:\n{p.stderr[-15000:]}",
                pytrace=False,
            )
        return json.loads(results[-1].removeprefix("RESULT "))

    return run


def test_h2o_discovery(scenario):
    """S1: discover() from H2O_CLOUD_ENVIRONMENT, H2O_CLOUD_DISCOVERY, arguments
    and the H2O CLI's config file (whose token counts only for its endpoint)."""
    result = scenario("discovery", {"alice": 1})
    assert result["services"] == ["drive-sts", "userdrive", "workspacedrive"]


def test_h2o_token_refresh(scenario):
    """S2: h2o_authn.TokenProvider refreshes (rotating refresh tokens) against
    the provider; a bad refresh token is invalid_grant."""
    assert scenario("token-refresh", {"alice": 2}) == {"refreshed": 3}


def test_h2o_transfers_and_listings(scenario, oidc_drive):
    """S3: upload_file (14 B, empty, 20 MiB + 123 B multipart), list_objects
    (over 1000 keys: ListObjects v1 markers), download_file, delete_object."""
    offset = oidc_drive.log_size()
    result = scenario("transfers", {"erin": 1})
    assert result["listed"] == 3 + 1005
    # connect() and create_session() share one token provider, one session each.
    assert oidc_drive.sessions_issued_since(offset) == 2


def test_h2o_presigned_urls(scenario):
    """S4: generate_presigned_url: a plain GET without credentials reads the
    object; a tampered signature, another key or over a week is 403."""
    scenario("presign", {"alice": 1})


def test_h2o_isolation(scenario):
    """S5: home buckets and `default` are per user; team-a is shared by alice
    and bob; carol (team-b only) is AccessDenied on it."""
    scenario("isolation", {"alice": 1, "bob": 1, "carol": 1})


def test_h2o_auto_connect_and_cli(scenario):
    """S6: h2o_drive.connect() with nothing but H2O_CLOUD_ENVIRONMENT and
    H2O_CLOUD_CLIENT_PLATFORM_TOKEN; then `h2o-drive aws credentials` and
    `h2o-drive aws profile` profiles used by boto3 via credential_process."""
    result = scenario("auto-and-cli", {"dave": 4})
    assert "cli/x.txt" in result["keys"]


def test_h2o_refused_token_and_cached_session(scenario, oidc_drive):
    """S7: a garbage token is InvalidIdentityTokenException; ten listings on
    one Drive object make one STS call."""
    offset = oidc_drive.log_size()
    assert scenario("sts", {"alice": 1}) == {"token_calls": 1}
    log = oidc_drive.log_since(offset)
    assert oidc_drive.sessions_issued_since(offset) == 1, log[-5000:]
