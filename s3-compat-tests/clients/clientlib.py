"""Helpers shared by the client tests: local file trees and S3 ETags."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from pathlib import Path

MiB = 1024 * 1024

# A file name with spaces and non-ASCII characters (NFC), nested two deep.
UNICODE_NAME = "with space ünïcødé ☃ 日本.txt"


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_tree(root: Path, big: int = 0) -> dict[str, bytes]:
    """Creates a small tree under root; returns {relative posix path: bytes}.
    big > 0 adds a file of that many bytes at big/blob.bin."""
    files = {
        "top.txt": b"top level file\n",
        "empty.txt": b"",
        "a/one.bin": random_bytes(3000),
        "a/b/two.txt": b"second level\n" * 50,
        "a/b/c/three.dat": random_bytes(70_000),
        f"uni/{UNICODE_NAME}": "grüße, 世界\n".encode(),
        "uni/sub dir/file with  two spaces.txt": b"spaces\n",
    }
    if big:
        files["big/blob.bin"] = random_bytes(big)
    for rel, data in files.items():
        write(root / rel, data)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            p = Path(dirpath) / name
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def assert_same_tree(actual_root: Path, expected: dict[str, bytes]) -> None:
    actual = read_tree(actual_root)
    assert sorted(actual) == sorted(expected), "file lists differ"
    for rel, data in expected.items():
        got = actual[rel]
        assert len(got) == len(data), f"{rel}: size {len(got)} != {len(data)}"
        assert got == data, f"{rel}: content differs"


def md5_etag(data: bytes) -> str:
    return '"%s"' % hashlib.md5(data).hexdigest()


def multipart_etag(data: bytes, part_size: int) -> str:
    """S3's ETag of an object uploaded in parts of part_size bytes."""
    parts = [data[i : i + part_size] for i in range(0, len(data), part_size)]
    return multipart_etag_of_parts(parts)


def multipart_etag_of_parts(parts: list[bytes]) -> str:
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return '"%s-%d"' % (hashlib.md5(digests).hexdigest(), len(parts))


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


class ServerLog:
    """Reading a server's log file (`self.log_path`) from an offset, so a
    failing test can show what the server logged while it ran."""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
