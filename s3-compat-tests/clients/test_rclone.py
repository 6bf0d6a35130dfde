"""rclone (Debian's package) against drive, configured only through env vars."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from clientlib import MiB, assert_same_tree, make_tree, multipart_etag, random_bytes, write

BIG = 11 * MiB  # above the 5 MiB upload cutoff set below: a 3-part upload


@pytest.fixture
def rclone(client_env, drive, tmp_path):
    if shutil.which("rclone", path=client_env.get("PATH")) is None:
        pytest.fail("rclone is not installed (run setup.sh)")
    conf = tmp_path / "rclone.conf"
    conf.write_text("")
    env = dict(client_env)
    env.update(
        {
            "RCLONE_CONFIG": str(conf),
            "RCLONE_CONFIG_DRIVE_TYPE": "s3",
            "RCLONE_CONFIG_DRIVE_PROVIDER": "Other",
            "RCLONE_CONFIG_DRIVE_ACCESS_KEY_ID": drive.access_key,
            "RCLONE_CONFIG_DRIVE_SECRET_ACCESS_KEY": drive.secret_key,
            "RCLONE_CONFIG_DRIVE_ENDPOINT": drive.endpoint,
            "RCLONE_CONFIG_DRIVE_REGION": drive.region,
            "RCLONE_CONFIG_DRIVE_FORCE_PATH_STYLE": "true",
            # Exercise rclone's multipart uploads with small files.
            "RCLONE_CONFIG_DRIVE_UPLOAD_CUTOFF": "5Mi",
            "RCLONE_CONFIG_DRIVE_CHUNK_SIZE": "5Mi",
        }
    )
    # No retries: a compatible server must not need them.
    base = ["rclone", "--retries", "1", "--low-level-retries", "1", "--stats", "0"]

    def run(*args, check=True, input=None, timeout=120):
        cmd = [*base, *map(str, args)]
        p = subprocess.run(
            cmd,
            env=env,
            capture_output=True,
            input=input,
            timeout=timeout,
            cwd=tmp_path,
        )
        p.out = p.stdout.decode("utf-8", "replace")
        p.err = p.stderr.decode("utf-8", "replace")
        if check and p.returncode != 0:
            pytest.fail(
                f"command failed ({p.returncode}): {' '.join(cmd)}\n"
                f"stdout:\n{p.out}\nstderr:\n{p.err}"
            )
        return p

    return run


def _lsf(rclone, remote, *extra):
    out = rclone("lsf", "-R", *extra, remote).out
    return sorted(line for line in out.splitlines() if line)


def _dirs_of(files):
    dirs = set()
    for rel in files:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]) + "/")
    return dirs


def test_rclone_copy_check_sync_roundtrip(rclone, s3, bucket, tmp_path):
    src = tmp_path / "src"
    files = make_tree(src, big=BIG)
    remote = f"drive:{bucket}/tree"

    rclone("copy", src, remote)

    check = rclone("check", src, remote)
    assert "0 differences found" in check.err, check.err
    assert f"{len(files)} matching files" in check.err, check.err

    assert _lsf(rclone, remote, "--files-only") == sorted(files)
    assert _lsf(rclone, remote) == sorted(set(files) | _dirs_of(files))

    # The big file went up in 5 MiB parts.
    head = s3.head_object(Bucket=bucket, Key="tree/big/blob.bin")
    assert head["ContentLength"] == BIG
    assert head["ETag"] == multipart_etag(files["big/blob.bin"], 5 * MiB)

    # Change the local tree: same-size new content (newer mtime), a
    # different size, two deletions, an addition.
    files["a/one.bin"] = random_bytes(3000)
    write(src / "a/one.bin", files["a/one.bin"])
    later = time.time() + 120
    os.utime(src / "a/one.bin", (later, later))
    files["a/b/two.txt"] = b"now shorter\n"
    write(src / "a/b/two.txt", files["a/b/two.txt"])
    for rel in ("top.txt", "uni/sub dir/file with  two spaces.txt"):
        (src / rel).unlink()
        del files[rel]
    (src / "uni/sub dir").rmdir()
    files["new/added.txt"] = b"added after the first copy\n"
    write(src / "new/added.txt", files["new/added.txt"])

    stale = rclone("check", src, remote, check=False)
    assert stale.returncode != 0, stale.err
    assert "0 differences found" not in stale.err, stale.err

    rclone("sync", src, remote)

    check = rclone("check", src, remote)
    assert "0 differences found" in check.err, check.err
    assert f"{len(files)} matching files" in check.err, check.err
    assert _lsf(rclone, remote, "--files-only") == sorted(files)

    dst = tmp_path / "dst"
    rclone("copy", remote, dst)
    assert_same_tree(dst, files)


def test_rclone_rcat_cat_delete(rclone, s3, bucket):
    # rcat streams stdin of unknown length: above the streaming cutoff
    # rclone uses a multipart upload of 5 MiB chunks.
    data = random_bytes(7 * MiB + 123)
    remote = f"drive:{bucket}/stream/piped.bin"
    rclone("rcat", remote, input=data)

    head = s3.head_object(Bucket=bucket, Key="stream/piped.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == multipart_etag(data, 5 * MiB)

    got = rclone("cat", remote).stdout
    assert got == data

    part = rclone("cat", "--offset", "1000", "--count", "5000", remote).stdout
    assert part == data[1000:6000]

    size = rclone("size", f"drive:{bucket}")
    assert "Total objects: 1" in size.out, size.out
    assert f"({len(data)} Byte" in size.out, size.out

    rclone("deletefile", remote)
    assert _lsf(rclone, f"drive:{bucket}") == []
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
