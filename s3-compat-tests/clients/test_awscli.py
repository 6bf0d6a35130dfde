"""aws-cli (v1, from PyPI) against drive: s3 high-level commands and s3api."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse

import pytest

from clientlib import (
    MiB,
    UNICODE_NAME,
    assert_same_tree,
    make_tree,
    md5_etag,
    multipart_etag,
    multipart_etag_of_parts,
    random_bytes,
    write,
)
from conftest import http_get

LS_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\s+(\d+) (.+)$")
PRE_LINE = re.compile(r"^\s+PRE (.+)$")


def parse_ls(stdout: str) -> tuple[list[str], dict[str, int]]:
    """Returns (prefixes, {key: size}) of `aws s3 ls` output."""
    prefixes, objects = [], {}
    for line in stdout.splitlines():
        if not line.strip():
            continue
        m = PRE_LINE.match(line)
        if m:
            prefixes.append(m.group(1))
            continue
        m = LS_LINE.match(line)
        assert m, f"unexpected `aws s3 ls` line: {line!r}"
        objects[m.group(3)] = int(m.group(2))
    return prefixes, objects


def test_cp_small_roundtrip(aws, s3, bucket, tmp_path):
    data = random_bytes(10_000)
    src = write(tmp_path / "small.bin", data)
    aws("s3", "cp", src, f"s3://{bucket}/dir/small.bin", "--only-show-errors")

    head = s3.head_object(Bucket=bucket, Key="dir/small.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == md5_etag(data)

    out = tmp_path / "down.bin"
    aws("s3", "cp", f"s3://{bucket}/dir/small.bin", out, "--only-show-errors")
    assert out.read_bytes() == data


def test_cp_multipart_20mib(aws, s3, bucket, tmp_path):
    data = random_bytes(20 * MiB)
    src = write(tmp_path / "big.bin", data)
    # aws-cli's defaults: multipart_threshold = multipart_chunksize = 8 MiB,
    # so this is a 3-part upload (8 + 8 + 4 MiB).
    aws("s3", "cp", src, f"s3://{bucket}/big.bin", "--only-show-errors")

    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == multipart_etag(data, 8 * MiB)

    out = tmp_path / "big.down"
    # The download is done with parallel ranged GETs.
    aws("s3", "cp", f"s3://{bucket}/big.bin", out, "--only-show-errors")
    assert out.stat().st_size == len(data)
    assert out.read_bytes() == data


def test_sync_tree_up_and_down(aws, bucket, tmp_path):
    src = tmp_path / "src"
    files = make_tree(src)
    assert f"uni/{UNICODE_NAME}" in files
    # Stores keep LastModified in whole seconds (AWS S3, and Drive's S3 backend with it);
    # aws-cli uploads again when a file is newer than the object, so the files are dated
    # a few seconds back, as files synced in practice are.
    past = time.time() - 5
    for name in files:
        os.utime(src / name, (past, past))

    aws("s3", "sync", src, f"s3://{bucket}/tree/", "--only-show-errors")

    # A second sync finds nothing to upload.
    again = aws("s3", "sync", src, f"s3://{bucket}/tree/", "--no-progress")
    assert again.stdout.strip() == "", again.stdout

    dst = tmp_path / "dst"
    aws("s3", "sync", f"s3://{bucket}/tree/", dst, "--only-show-errors")
    assert_same_tree(dst, files)

    # And nothing to download a second time.
    again = aws("s3", "sync", f"s3://{bucket}/tree/", dst, "--no-progress")
    assert again.stdout.strip() == "", again.stdout

    # A changed local file (different size) is uploaded again, and
    # --delete removes what is gone locally.
    write(src / "a/b/two.txt", b"changed\n")
    (src / "top.txt").unlink()
    files["a/b/two.txt"] = b"changed\n"
    del files["top.txt"]
    out = aws("s3", "sync", src, f"s3://{bucket}/tree/", "--delete", "--no-progress")
    lines = sorted(out.stdout.splitlines())
    assert len(lines) == 2, out.stdout
    assert lines[0].startswith("delete: s3://") and lines[0].endswith("/tree/top.txt")
    assert lines[1].startswith("upload: ") and lines[1].endswith("/tree/a/b/two.txt")

    dst2 = tmp_path / "dst2"
    aws("s3", "sync", f"s3://{bucket}/tree/", dst2, "--only-show-errors")
    assert_same_tree(dst2, files)


def test_sync_empty_file_then_more_on_one_connection(aws, bucket, tmp_path, client_env):
    """aws-cli sends `Expect: 100-continue` with every upload, empty files
    included. When a server answers the empty upload without a `100 Continue`
    and keeps the connection open, botocore parses the next response on that
    connection with the stale status line (boto/botocore#3755) and the next
    upload stalls until the read timeout. With one request at a time, every
    upload after the empty file reuses its connection."""
    cfg = write(
        tmp_path / "aws-config-seq",
        b"[default]\nregion = us-east-1\nmax_attempts = 1\n"
        b"s3 =\n    max_concurrent_requests = 1\n",
    )
    env = dict(client_env, AWS_CONFIG_FILE=str(cfg))
    src = tmp_path / "src"
    files = {
        "0-first.txt": b"first\n",
        "1-empty.txt": b"",
        "2-after.txt": b"after the empty one\n",
        "3-last.txt": b"last\n" * 100,
    }
    for rel, data in files.items():
        write(src / rel, data)

    started = time.monotonic()
    aws("s3", "sync", src, f"s3://{bucket}/seq/", "--only-show-errors", env=env)
    elapsed = time.monotonic() - started
    assert elapsed < 15, f"sync took {elapsed:.1f} s"

    dst = tmp_path / "dst"
    aws("s3", "sync", f"s3://{bucket}/seq/", dst, "--only-show-errors", env=env)
    assert_same_tree(dst, files)


def test_ls(aws, s3, bucket):
    s3.put_object(Bucket=bucket, Key="top.txt", Body=b"12345")
    s3.put_object(Bucket=bucket, Key="dir/a.txt", Body=b"a" * 10)
    s3.put_object(Bucket=bucket, Key="dir/sub/b.txt", Body=b"b" * 20)
    s3.put_object(Bucket=bucket, Key=f"dir/{UNICODE_NAME}", Body=b"u" * 7)

    buckets = aws("s3", "ls").stdout
    assert any(line.split()[-1] == bucket for line in buckets.splitlines()), buckets

    prefixes, objects = parse_ls(aws("s3", "ls", f"s3://{bucket}/").stdout)
    assert prefixes == ["dir/"]
    assert objects == {"top.txt": 5}

    prefixes, objects = parse_ls(aws("s3", "ls", f"s3://{bucket}/dir/").stdout)
    assert prefixes == ["sub/"]
    assert objects == {"a.txt": 10, UNICODE_NAME: 7}

    prefixes, objects = parse_ls(
        aws("s3", "ls", f"s3://{bucket}/", "--recursive").stdout
    )
    assert prefixes == []
    assert objects == {
        "top.txt": 5,
        "dir/a.txt": 10,
        "dir/sub/b.txt": 20,
        f"dir/{UNICODE_NAME}": 7,
    }

    missing = aws("s3", "ls", f"s3://{bucket}/nothing-here/", check=False)
    assert missing.returncode == 1 and missing.stdout == ""


def test_rm_recursive(aws, s3, bucket, tmp_path):
    src = tmp_path / "src"
    files = make_tree(src)
    for rel, data in files.items():  # (boto3: this test is about `rm`)
        s3.put_object(Bucket=bucket, Key=f"tree/{rel}", Body=data)
    s3.put_object(Bucket=bucket, Key="keep/me.txt", Body=b"keep")
    s3.put_object(Bucket=bucket, Key="tree-sibling.txt", Body=b"sibling")

    out = aws("s3", "rm", f"s3://{bucket}/tree/", "--recursive")
    deleted = [
        l for l in re.split(r"[\r\n]+", out.stdout) if l.startswith("delete: s3://")
    ]
    assert len(deleted) == len(files), out.stdout

    left = s3.list_objects_v2(Bucket=bucket)
    assert sorted(o["Key"] for o in left.get("Contents", [])) == [
        "keep/me.txt",
        "tree-sibling.txt",
    ]
    assert s3.list_objects_v2(Bucket=bucket, Prefix="tree/")["KeyCount"] == 0


def _presign(aws, bucket, key, expires, env=None):
    url = aws(
        "s3", "presign", f"s3://{bucket}/{key}", "--expires-in", str(expires),
        env=env,
    ).stdout.strip()
    assert url.startswith("http://127.0.0.1:"), url
    return url


def _with_query(url: str, **changes: str) -> str:
    parts = urllib.parse.urlsplit(url)
    q = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    names = [k for k, _ in q]
    for k in changes:
        assert k in names, (k, url)
    q = [(k, changes.get(k, v)) for k, v in q]
    query = urllib.parse.urlencode(q, quote_via=urllib.parse.quote, safe="")
    return urllib.parse.urlunsplit(parts._replace(query=query))


def _flip(s: str) -> str:
    """Changes the first character, staying within hex and base64."""
    return ("b" if s[0] == "a" else "a") + s[1:]


# aws-cli v1 presigns with SigV2 query auth unless the profile asks for
# s3v4 (`s3 = signature_version = s3v4`), so both are what users get.
@pytest.mark.parametrize("sigver", ["v2-default", "v4"])
def test_presign(aws, s3, bucket, tmp_path, client_env, sigver):
    env = None
    if sigver == "v4":
        cfg = write(
            tmp_path / "aws-config-v4",
            b"[default]\nregion = us-east-1\nmax_attempts = 1\n"
            b"s3 =\n    signature_version = s3v4\n",
        )
        env = dict(client_env, AWS_CONFIG_FILE=str(cfg))

    data = random_bytes(5000)
    key = "pre/signed object.bin"
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    s3.put_object(Bucket=bucket, Key="pre/other.bin", Body=b"other")

    url = _presign(aws, bucket, key, 300, env)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    if sigver == "v4":
        assert q.get("X-Amz-Algorithm") == "AWS4-HMAC-SHA256", url
        sig_param, exp_param = "X-Amz-Signature", "X-Amz-Expires"
        longer = "3000"
    else:
        assert "AWSAccessKeyId" in q and "Signature" in q, url
        sig_param, exp_param = "Signature", "Expires"
        longer = str(int(q["Expires"]) + 3600)

    status, body = http_get(url)
    assert status == 200, body[:500]
    assert body == data

    # Re-encoding the query must not matter.
    status, body = http_get(_with_query(url))
    assert status == 200, body[:500]
    assert body == data

    # Tampered signature.
    status, body = http_get(_with_query(url, **{sig_param: _flip(q[sig_param])}))
    assert status == 403, body[:500]

    # Same signature used for another (existing) key.
    other = url.replace("signed%20object.bin", "other.bin")
    assert other != url
    status, body = http_get(other)
    assert status == 403, body[:500]

    # Longer validity than was signed.
    status, body = http_get(_with_query(url, **{exp_param: longer}))
    assert status == 403, body[:500]

    # Expired.
    short = _presign(aws, bucket, key, 1, env)
    time.sleep(2.5)
    status, body = http_get(short)
    assert status == 403, body[:500]


def test_s3api_multipart_complete(aws, s3, bucket, tmp_path):
    key = "mpu/object.bin"
    part1 = random_bytes(5 * MiB)
    part2 = random_bytes(1_500_000)
    p1 = write(tmp_path / "part1", part1)
    p2 = write(tmp_path / "part2", part2)

    created = json.loads(
        aws("s3api", "create-multipart-upload", "--bucket", bucket, "--key", key).stdout
    )
    upload_id = created["UploadId"]
    assert created["Bucket"] == bucket and created["Key"] == key

    etags = []
    for n, path in ((1, p1), (2, p2)):
        r = json.loads(
            aws(
                "s3api", "upload-part", "--bucket", bucket, "--key", key,
                "--upload-id", upload_id, "--part-number", str(n),
                "--body", path,
            ).stdout
        )
        etags.append(r["ETag"])
    assert etags == [md5_etag(part1), md5_etag(part2)]

    listed = json.loads(
        aws(
            "s3api", "list-parts", "--bucket", bucket, "--key", key,
            "--upload-id", upload_id,
        ).stdout
    )
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in listed["Parts"]] == [
        (1, len(part1), etags[0]),
        (2, len(part2), etags[1]),
    ]

    parts_json = write(
        tmp_path / "parts.json",
        json.dumps(
            {"Parts": [{"ETag": e, "PartNumber": i + 1} for i, e in enumerate(etags)]}
        ).encode(),
    )
    done = json.loads(
        aws(
            "s3api", "complete-multipart-upload", "--bucket", bucket, "--key", key,
            "--upload-id", upload_id, "--multipart-upload", f"file://{parts_json}",
        ).stdout
    )
    expected_etag = multipart_etag_of_parts([part1, part2])
    assert done["ETag"] == expected_etag
    assert done["Key"] == key

    head = json.loads(
        aws("s3api", "head-object", "--bucket", bucket, "--key", key).stdout
    )
    assert head["ETag"].endswith('-2"')
    assert head["ETag"] == expected_etag
    assert head["ContentLength"] == len(part1) + len(part2)

    out = tmp_path / "out.bin"
    aws("s3", "cp", f"s3://{bucket}/{key}", out, "--only-show-errors")
    assert out.read_bytes() == part1 + part2

    # The upload is gone once completed.
    gone = aws(
        "s3api", "list-parts", "--bucket", bucket, "--key", key,
        "--upload-id", upload_id, check=False,
    )
    assert gone.returncode != 0 and "NoSuchUpload" in gone.stderr, gone.stderr


def test_s3api_multipart_abort(aws, bucket, tmp_path):
    key = "mpu/aborted.bin"
    part = write(tmp_path / "part", random_bytes(100_000))
    upload_id = json.loads(
        aws("s3api", "create-multipart-upload", "--bucket", bucket, "--key", key).stdout
    )["UploadId"]
    aws(
        "s3api", "upload-part", "--bucket", bucket, "--key", key,
        "--upload-id", upload_id, "--part-number", "1", "--body", part,
    )

    uploads = json.loads(
        aws("s3api", "list-multipart-uploads", "--bucket", bucket).stdout
    )
    assert [(u["Key"], u["UploadId"]) for u in uploads.get("Uploads", [])] == [
        (key, upload_id)
    ]

    aws(
        "s3api", "abort-multipart-upload", "--bucket", bucket, "--key", key,
        "--upload-id", upload_id,
    )

    r = aws(
        "s3api", "list-parts", "--bucket", bucket, "--key", key,
        "--upload-id", upload_id, check=False,
    )
    assert r.returncode != 0
    assert "NoSuchUpload" in r.stderr, r.stderr

    uploads = json.loads(
        aws("s3api", "list-multipart-uploads", "--bucket", bucket).stdout or "{}"
    )
    assert uploads.get("Uploads", []) == []

    r = aws("s3api", "head-object", "--bucket", bucket, "--key", key, check=False)
    assert r.returncode != 0 and "404" in r.stderr, r.stderr


def test_error_messages(aws, bucket, tmp_path):
    """aws-cli prints the error's Code and Message; S3 always sends a
    Message (without one the CLI shows 'Unknown')."""
    r = aws(
        "s3api", "get-object", "--bucket", bucket, "--key", "no/such/key",
        tmp_path / "out", check=False,
    )
    assert r.returncode != 0
    assert "(NoSuchKey)" in r.stderr, r.stderr
    assert not r.stderr.rstrip().endswith(": Unknown"), r.stderr

    r = aws("s3api", "create-bucket", "--bucket", "ab", check=False)
    assert r.returncode != 0
    assert "(InvalidBucketName)" in r.stderr, r.stderr
    assert not r.stderr.rstrip().endswith(": Unknown"), r.stderr
