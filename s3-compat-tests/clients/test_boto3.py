"""boto3 (current botocore, default CRC32 checksums) against drive."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from botocore.httpchecksum import Crc32Checksum

from clientlib import (
    MiB,
    crc32_b64,
    md5_b64,
    md5_etag,
    multipart_etag,
    random_bytes,
    write,
)
from conftest import make_client


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def http_status(excinfo) -> int:
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def assert_missing(s3, bucket, key):
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key=key)
    assert http_status(e) == 404


def capture_headers(client, operation):
    """Records the headers of each request `operation` sends."""
    sent = []

    def before_send(request, **_):
        sent.append(dict(request.headers))

    client.meta.events.register(f"before-send.s3.{operation}", before_send)
    return sent


def force_trailing_checksum(client):
    """Makes PutObject/UploadPart send their default CRC32 checksum as an
    aws-chunked trailer with STREAMING-UNSIGNED-PAYLOAD-TRAILER, which is
    what botocore does against https endpoints (over http it sends a header)."""

    def before_call(params, **_):
        algo = params.get("context", {}).get("checksum", {}).get("request_algorithm")
        if isinstance(algo, dict):
            algo["in"] = "trailer"

    for op in ("PutObject", "UploadPart"):
        client.meta.events.register(f"before-call.s3.{op}", before_call)


def header(headers: dict, name: str):
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v.decode() if isinstance(v, bytes) else v
    return None


# --- transfer manager, ranged reads ---------------------------------------


# "header": what botocore sends to an http endpoint (CRC32 in a header);
# "trailer": what it sends over https (aws-chunked body, CRC32 trailer).
@pytest.mark.parametrize("checksum_in", ["header", "trailer"])
def test_transfer_manager_multipart_upload_download(
    drive, bucket, tmp_path, checksum_in
):
    s3 = make_client(drive)
    if checksum_in == "trailer":
        force_trailing_checksum(s3)
    sent = capture_headers(s3, "UploadPart")
    data = random_bytes(23 * MiB)
    src = write(tmp_path / "src.bin", data)
    cfg = TransferConfig(
        multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4
    )
    s3.upload_file(str(src), bucket, "tm/big.bin", Config=cfg)

    head = s3.head_object(Bucket=bucket, Key="tm/big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == multipart_etag(data, 5 * MiB)  # 5 parts
    assert len(sent) == 5
    for h in sent:
        if checksum_in == "trailer":
            assert header(h, "X-Amz-Trailer") == "x-amz-checksum-crc32"
        else:
            assert header(h, "x-amz-checksum-crc32") is not None

    dst = tmp_path / "dst.bin"
    s3.download_file(bucket, "tm/big.bin", str(dst), Config=cfg)
    assert dst.stat().st_size == len(data)
    assert dst.read_bytes() == data


def test_parallel_ranged_get(s3, bucket):
    n = 9 * MiB + 17
    data = random_bytes(n)
    s3.put_object(Bucket=bucket, Key="ranged.bin", Body=data)

    # Uneven, disjoint, covering ranges.
    cuts = [0, 1, 4096, 1 * MiB + 3, 3 * MiB, 5 * MiB - 1, 8 * MiB + 5, n]
    ranges = [(cuts[i], cuts[i + 1] - 1) for i in range(len(cuts) - 1)]

    def fetch(r):
        a, b = r
        resp = s3.get_object(Bucket=bucket, Key="ranged.bin", Range=f"bytes={a}-{b}")
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert resp["ContentRange"] == f"bytes {a}-{b}/{n}"
        assert resp["ContentLength"] == b - a + 1
        return resp["Body"].read()

    with ThreadPoolExecutor(max_workers=len(ranges)) as pool:
        chunks = list(pool.map(fetch, ranges))
    for (a, b), chunk in zip(ranges, chunks):
        assert len(chunk) == b - a + 1
    assert b"".join(chunks) == data

    tail = s3.get_object(Bucket=bucket, Key="ranged.bin", Range="bytes=-100")
    assert tail["ContentRange"] == f"bytes {n - 100}-{n - 1}/{n}"
    assert tail["Body"].read() == data[-100:]

    rest = s3.get_object(Bucket=bucket, Key="ranged.bin", Range=f"bytes={n - 10}-")
    assert rest["ContentRange"] == f"bytes {n - 10}-{n - 1}/{n}"
    assert rest["Body"].read() == data[-10:]

    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="ranged.bin", Range=f"bytes={n}-{n + 10}")
    assert http_status(e) == 416
    assert error_code(e) == "InvalidRange"


# --- listing and pagination -----------------------------------------------

# Keys whose byte order differs from naive path-walking order: '-' (0x2D) and
# '.' (0x2E) sort before '/' (0x2F), upper case before '_' before lower case,
# non-ASCII last.
ODD_KEYS = [
    "dir/a-b",
    "dir/file.txt",
    "dir-x",
    "dir.txt",
    "Zed",
    "_under",
    "a~tilde",
    "émoji-é",
    "ünï/ko.txt",
]


@pytest.fixture
def many_keys(s3, bucket):
    keys = (
        [f"dir/a/{i:04d}" for i in range(550)]
        + [f"dir/b/{i:04d}" for i in range(450)]
        + [f"root-{i:03d}" for i in range(120)]
        + ODD_KEYS
    )
    assert len(keys) > 1100

    def put(key):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, keys))
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def _collect(pages):
    keys, prefixes, n = [], [], 0
    for page in pages:
        n += 1
        keys += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return keys, prefixes, n


@pytest.mark.parametrize("api", ["list_objects_v2", "list_objects"])
def test_paginators(s3, bucket, many_keys, api):
    pager = s3.get_paginator(api)

    # All keys, exactly once, in UTF-8 byte order, over 2 pages of 1000.
    keys, prefixes, pages = _collect(pager.paginate(Bucket=bucket))
    assert prefixes == []
    assert pages == 2
    assert len(keys) == len(set(keys))
    assert keys == many_keys

    # Smaller pages.
    keys, _, pages = _collect(
        pager.paginate(Bucket=bucket, PaginationConfig={"PageSize": 170})
    )
    assert keys == many_keys
    assert pages == -(-len(many_keys) // 170)

    # Delimiter under dir/: two common prefixes, each once, plus the two
    # objects directly under dir/ — also with one entry per page.
    for page_size in (1000, 1):
        keys, prefixes, pages = _collect(
            pager.paginate(
                Bucket=bucket,
                Prefix="dir/",
                Delimiter="/",
                PaginationConfig={"PageSize": page_size},
            )
        )
        assert prefixes == ["dir/a/", "dir/b/"], page_size
        assert keys == ["dir/a-b", "dir/file.txt"], page_size
        if page_size == 1:
            assert pages == 4

    # Delimiter at the root.
    keys, prefixes, _ = _collect(pager.paginate(Bucket=bucket, Delimiter="/"))
    assert prefixes == ["dir/", "ünï/"]
    assert keys == [k for k in many_keys if "/" not in k]

    # Prefix without delimiter.
    keys, prefixes, _ = _collect(pager.paginate(Bucket=bucket, Prefix="dir/b/"))
    assert keys == [f"dir/b/{i:04d}" for i in range(450)]


# --- checksums and digests --------------------------------------------------


def test_default_crc32_checksum(s3, bucket):
    data = random_bytes(100_000)
    sent = capture_headers(s3, "PutObject")
    try:
        put = s3.put_object(Bucket=bucket, Key="crc/default.bin", Body=data)
    finally:
        s3.meta.events.unregister("before-send.s3.PutObject")
    # botocore sent its default CRC32 (as a header: the endpoint is http).
    assert header(sent[-1], "x-amz-checksum-crc32") == crc32_b64(data)

    assert put["ETag"] == md5_etag(data)
    assert put.get("ChecksumCRC32") == crc32_b64(data)

    got = s3.get_object(Bucket=bucket, Key="crc/default.bin", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got.get("ChecksumCRC32") == put["ChecksumCRC32"]


def test_trailing_crc32_checksum_aws_chunked(drive, bucket):
    client = make_client(drive)
    force_trailing_checksum(client)
    sent = capture_headers(client, "PutObject")
    data = random_bytes(2 * MiB + 12345)  # three aws-chunked chunks

    put = client.put_object(Bucket=bucket, Key="crc/trailer.bin", Body=data)
    h = sent[-1]
    assert header(h, "Content-Encoding") == "aws-chunked"
    assert header(h, "X-Amz-Trailer") == "x-amz-checksum-crc32"
    assert header(h, "X-Amz-Content-SHA256") == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert header(h, "X-Amz-Decoded-Content-Length") == str(len(data))

    assert put["ETag"] == md5_etag(data)
    assert put.get("ChecksumCRC32") == crc32_b64(data)

    got = client.get_object(
        Bucket=bucket, Key="crc/trailer.bin", ChecksumMode="ENABLED"
    )
    assert got["ContentLength"] == len(data)
    assert "aws-chunked" not in (got.get("ContentEncoding") or "")
    assert got["Body"].read() == data
    assert got.get("ChecksumCRC32") == crc32_b64(data)

    # A Content-Encoding of the caller's own is kept; only aws-chunked goes.
    client.put_object(
        Bucket=bucket, Key="crc/gzip.bin", Body=data, ContentEncoding="gzip"
    )
    assert header(sent[-1], "Content-Encoding") == "gzip,aws-chunked"
    head = client.head_object(Bucket=bucket, Key="crc/gzip.bin")
    assert head.get("ContentEncoding") == "gzip"
    assert head["ContentLength"] == len(data)


class _WrongCrc32(Crc32Checksum):
    """Sends a fixed, wrong CRC32 in the trailer."""

    def b64digest(self):
        return base64.b64encode(b"\x00\x00\x00\x01").decode()


def test_trailing_crc32_checksum_wrong_is_bad_digest(drive, s3, bucket):
    client = make_client(drive)
    force_trailing_checksum(client)

    def corrupt_trailer(request, **_):
        body = request.body
        assert type(body).__name__ == "AwsChunkedWrapper"
        body._checksum_cls = _WrongCrc32
        body._reset()

    client.meta.events.register("request-created.s3.PutObject", corrupt_trailer)
    data = random_bytes(300_000)
    assert crc32_b64(data) != _WrongCrc32().b64digest()
    with pytest.raises(ClientError) as e:
        client.put_object(Bucket=bucket, Key="crc/bad-trailer.bin", Body=data)
    assert error_code(e) == "BadDigest", e.value.response
    assert http_status(e) == 400
    assert_missing(s3, bucket, "crc/bad-trailer.bin")


def test_wrong_crc32_header_is_bad_digest(s3, bucket):
    data = b"the body whose checksum is claimed wrongly\n" * 100
    with pytest.raises(ClientError) as e:
        s3.put_object(
            Bucket=bucket,
            Key="crc/bad.bin",
            Body=data,
            ChecksumCRC32=crc32_b64(b"something else"),
        )
    assert error_code(e) == "BadDigest", e.value.response
    assert http_status(e) == 400
    assert_missing(s3, bucket, "crc/bad.bin")


def test_wrong_content_md5_is_bad_digest(s3, bucket):
    data = b"the body whose MD5 is claimed wrongly\n" * 100
    with pytest.raises(ClientError) as e:
        s3.put_object(
            Bucket=bucket, Key="md5/bad.bin", Body=data, ContentMD5=md5_b64(b"other")
        )
    assert error_code(e) == "BadDigest", e.value.response
    assert http_status(e) == 400
    assert_missing(s3, bucket, "md5/bad.bin")

    # The right MD5 is accepted.
    put = s3.put_object(
        Bucket=bucket, Key="md5/good.bin", Body=data, ContentMD5=md5_b64(data)
    )
    assert put["ETag"] == md5_etag(data)


# --- Expect: 100-continue ----------------------------------------------------


def test_expect_continue_empty_body_keeps_connection_usable(drive, bucket):
    """botocore sends `Expect: 100-continue` for file-like bodies, empty ones
    included, and the server may answer without `100 Continue`; the next
    request on the same connection must still work. (botocore before the
    fix of boto/botocore#3755, such as the copy vendored in aws-cli v1, then
    stalls until the read timeout: see test_awscli.py.) One pooled
    connection makes the reuse certain."""
    client = make_client(drive, max_pool_connections=1, read_timeout=5)
    sent = capture_headers(client, "PutObject")

    client.put_object(Bucket=bucket, Key="expect/empty", Body=io.BytesIO(b""))
    assert header(sent[-1], "Expect") == "100-continue"
    assert header(sent[-1], "Content-Length") == "0"

    data = b"uploaded right after an empty body\n"
    put = client.put_object(Bucket=bucket, Key="expect/after", Body=io.BytesIO(data))
    assert put["ETag"] == md5_etag(data)
    assert header(sent[-1], "Expect") == "100-continue"

    assert client.get_object(Bucket=bucket, Key="expect/after")["Body"].read() == data
    head = client.head_object(Bucket=bucket, Key="expect/empty")
    assert head["ContentLength"] == 0


def test_expect_continue_early_error_keeps_connection_usable(drive, bucket):
    """An error answered before the body is read (here: no such bucket)
    makes botocore skip sending the body; the next upload on the same
    connection must still work."""
    client = make_client(drive, max_pool_connections=1, read_timeout=5)
    with pytest.raises(ClientError) as e:
        client.put_object(
            Bucket=bucket + "-missing", Key="k", Body=io.BytesIO(b"x" * 100_000)
        )
    assert error_code(e) == "NoSuchBucket"

    data = random_bytes(200_000)
    put = client.put_object(Bucket=bucket, Key="after-error", Body=io.BytesIO(data))
    assert put["ETag"] == md5_etag(data)
    assert client.get_object(Bucket=bucket, Key="after-error")["Body"].read() == data


# --- object operations ------------------------------------------------------


def test_copy_object_metadata_directive(s3, bucket):
    data = b"copy me\n" * 1000
    s3.put_object(
        Bucket=bucket,
        Key="src.txt",
        Body=data,
        ContentType="text/plain",
        Metadata={"color": "red", "shape": "round"},
    )

    # Default directive (COPY) keeps metadata and content type.
    s3.copy_object(
        Bucket=bucket, Key="copy.txt", CopySource={"Bucket": bucket, "Key": "src.txt"}
    )
    head = s3.head_object(Bucket=bucket, Key="copy.txt")
    assert head["Metadata"] == {"color": "red", "shape": "round"}
    assert head["ContentType"] == "text/plain"

    # REPLACE to a new key.
    r = s3.copy_object(
        Bucket=bucket,
        Key="replaced.txt",
        CopySource={"Bucket": bucket, "Key": "src.txt"},
        MetadataDirective="REPLACE",
        Metadata={"color": "blue"},
        ContentType="application/json",
    )
    assert r["CopyObjectResult"]["ETag"] == md5_etag(data)
    head = s3.head_object(Bucket=bucket, Key="replaced.txt")
    assert head["Metadata"] == {"color": "blue"}
    assert head["ContentType"] == "application/json"
    assert head["ContentLength"] == len(data)
    assert s3.get_object(Bucket=bucket, Key="replaced.txt")["Body"].read() == data

    # REPLACE onto itself (the way to change metadata in place).
    s3.copy_object(
        Bucket=bucket,
        Key="src.txt",
        CopySource={"Bucket": bucket, "Key": "src.txt"},
        MetadataDirective="REPLACE",
        Metadata={"size": "large"},
        ContentType="text/csv",
    )
    head = s3.head_object(Bucket=bucket, Key="src.txt")
    assert head["Metadata"] == {"size": "large"}
    assert head["ContentType"] == "text/csv"
    assert s3.get_object(Bucket=bucket, Key="src.txt")["Body"].read() == data

    # The source of the earlier copy did not change it.
    assert s3.head_object(Bucket=bucket, Key="copy.txt")["Metadata"] == {
        "color": "red",
        "shape": "round",
    }


def test_delete_objects_quiet(s3, bucket):
    keys = [f"del/{i}.txt" for i in range(6)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())

    gone = keys[:4] + ["del/never-existed.txt"]
    r = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": k} for k in gone], "Quiet": True},
    )
    assert r.get("Deleted", []) == []
    assert r.get("Errors", []) == []

    left = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in left.get("Contents", [])] == keys[4:]
    for k in keys[:4]:
        assert_missing(s3, bucket, k)

    # Not quiet: every key is reported deleted.
    r = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[4:]]}
    )
    assert sorted(d["Key"] for d in r.get("Deleted", [])) == keys[4:]
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_missing_object_errors(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="no/such/key")
    assert http_status(e) == 404
    assert error_code(e) == "404"

    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="no/such/key")
    assert http_status(e) == 404
    assert error_code(e) == "NoSuchKey"

    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket + "-missing", Key="k")
    assert http_status(e) == 404
