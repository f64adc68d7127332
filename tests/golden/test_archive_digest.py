"""Golden digests: a fixed tree written with timestamp=0 must keep its exact digests."""

from __future__ import annotations

import gzip
import hashlib
import io
import random

import pytest

from kiln.archive.compression import Compression
from kiln.archive.tar_writer import TarEntry, write_layer

# (compression, diff_id, digest) — recorded once (isal 1.9, zstandard 0.25); a change
# here breaks every reproducible build, so never update these casually.
GOLDEN = [
    (
        Compression.GZIP,
        "sha256:a435be1505273009c5028dd0dac8a9a66e899ed7d98f1ff79ad9610794510f11",
        "sha256:ba20e5e1129ae1aad601f83466f9c61550bc6c1b2dd8abddb4da4755d2a8baa2",
    ),
    (
        Compression.ZSTD,
        "sha256:a435be1505273009c5028dd0dac8a9a66e899ed7d98f1ff79ad9610794510f11",
        "sha256:c9c354ffcc05b429f6d1b90a4414693116c072cfd086047463c0bfa1e3c5d1da",
    ),
    (
        Compression.NONE,
        "sha256:a435be1505273009c5028dd0dac8a9a66e899ed7d98f1ff79ad9610794510f11",
        "sha256:a435be1505273009c5028dd0dac8a9a66e899ed7d98f1ff79ad9610794510f11",
    ),
]

# a layer holding text and random bytes (gzip): see test_golden_digest_of_a_layer_with_...
MIXED_DIFF_ID = "sha256:616624dbdb0515ce05b5f2da64dd05d330b3f5a628330b736c1852b50e3a4dd7"
MIXED_DIGEST = "sha256:a4fc80f718c4d7d44afe9b8c83f2bc43a8e073aeca1c1fd93286ba4d92193dd3"


def fixed_entries(tmp_path) -> list[TarEntry]:
    hello = tmp_path / "hello"
    hello.write_bytes(b"hello, kiln\n")
    big = tmp_path / "big"
    big.write_bytes(bytes(range(256)) * 5000)
    return [
        TarEntry("bin", "dir", mode=0o755),
        TarEntry("bin/hello", "file", source=str(hello), size=12, mode=0o4755, uid=0, gid=0),
        TarEntry("bin/hi", "hardlink", linkname="bin/hello", mode=0o4755),
        TarEntry("data", "file", source=str(big), size=1_280_000, uid=1000, gid=1000),
        TarEntry("dev", "dir", mode=0o755),
        TarEntry("dev/null", "char", mode=0o666, devmajor=1, devminor=3),
        TarEntry("etc", "dir", mode=0o755, xattrs={"user.k": b"\x00\xff"}),
        TarEntry("etc/.old", "whiteout"),
        TarEntry("etc/localtime", "symlink", linkname="/usr/share/zoneinfo/UTC", mode=0o777),
        TarEntry("var/cache", "opaque"),
        TarEntry("x" * 120 + "/" + "y" * 150, "file", mode=0o600),
    ]


@pytest.mark.parametrize(("compression", "diff_id", "digest"), GOLDEN)
def test_golden_digest(tmp_path, compression, diff_id, digest):
    result = write_layer(
        fixed_entries(tmp_path), io.BytesIO(), compression=compression, timestamp=0
    )
    assert (result.diff_id, result.digest) == (diff_id, digest)


def mixed_entries(tmp_path) -> list[TarEntry]:
    """Text, then 3 MiB that does not compress (seeded random bytes), then text: the
    gzip writer stores the slices that would not shrink (``archive.gzip_slices``)."""
    text = b"".join(b"line %d of a text file that compresses well\n" % i for i in range(40_000))
    noise = random.Random(15).randbytes(3 << 20)
    (tmp_path / "a.txt").write_bytes(text)
    (tmp_path / "noise.bin").write_bytes(noise)
    (tmp_path / "z.txt").write_bytes(text)
    return [
        TarEntry("a.txt", "file", source=str(tmp_path / "a.txt"), size=len(text), mode=0o644),
        TarEntry("noise.bin", "file", source=str(tmp_path / "noise.bin"), size=len(noise)),
        TarEntry("z.txt", "file", source=str(tmp_path / "z.txt"), size=len(text), mode=0o644),
    ]


def test_golden_digest_of_a_layer_with_incompressible_data(tmp_path):
    """Pinned since gzip stores incompressible slices: the blob differs from what kiln
    wrote before that (the diff_id does not); it must not change again."""
    out = io.BytesIO()
    result = write_layer(mixed_entries(tmp_path), out, compression=Compression.GZIP, timestamp=0)
    assert (result.diff_id, result.digest) == (MIXED_DIFF_ID, MIXED_DIGEST)
    # any gzip reader reads it: the standard library's, not only isal's
    assert hashlib.sha256(gzip.decompress(out.getvalue())).hexdigest() == MIXED_DIFF_ID[7:]
    assert result.size < result.uncompressed_size
