"""scan_tree -> write_layer -> apply_layer reproduces trees; digests are exact and stable."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
import tracemalloc
from pathlib import Path

import pytest
import zstandard

from kiln.archive.applier import apply_layer
from kiln.archive.compression import Compression
from kiln.archive.tar_writer import TarEntry, scan_tree, sorted_entries, write_layer

IS_ROOT = os.geteuid() == 0
LONG_DIR = "/".join(["d" * 60] * 3)  # > 100 characters
LONG_NAME = "n" * 200  # with the directory, > 255 characters
MTIME = 1_600_000_000


def make_tree(root) -> None:
    os.makedirs(root / "bin")
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\necho hi\n" * 100)
    os.chmod(root / "bin" / "tool", 0o4755)
    os.makedirs(root / "shared")
    os.chmod(root / "shared", 0o3777)
    (root / "data").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    os.link(root / "data", root / "data-link")
    os.symlink("/usr/share/zoneinfo/UTC", root / "localtime")
    os.symlink("bin/tool", root / "rel-link")
    os.mkfifo(root / "fifo")
    os.makedirs(root / LONG_DIR)
    (root / LONG_DIR / LONG_NAME).write_text("long")
    (root / "empty").write_bytes(b"")
    os.setxattr(root / "data", "user.note", b"\x00binary\xff")
    os.setxattr(root / "shared", "user.kind", b"dir")
    if IS_ROOT:
        os.chown(root / "data", 1234, 5678)
        os.lchown(root / "localtime", 42, 43)
        os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(
                os.path.join(dirpath, name),
                ns=(MTIME * 10**9, MTIME * 10**9),
                follow_symlinks=False,
            )


def describe(root) -> dict[str, tuple]:
    """Everything a layer must preserve, per relative path."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            item = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid]
            item.append(st.st_mtime_ns // 10**9)
            if stat.S_ISREG(st.st_mode):
                item += [hashlib.sha256(Path(path).read_bytes()).hexdigest(), st.st_nlink]
            if stat.S_ISLNK(st.st_mode):
                item.append(os.readlink(path))
            else:
                item.append(sorted((n, os.getxattr(path, n)) for n in os.listxattr(path)))
            if stat.S_ISCHR(st.st_mode):
                item.append(st.st_rdev)
            out[rel] = tuple(item)
    return out


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)
    return src


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.ZSTD, Compression.NONE])
def test_round_trip(tmp_path, tree, compression):
    blob = io.BytesIO()
    result = write_layer(scan_tree(str(tree)), blob, compression=compression)
    data = blob.getvalue()
    assert result.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert result.size == len(data)
    raw = {
        Compression.GZIP: gzip.decompress,
        Compression.ZSTD: lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b),
        Compression.NONE: lambda b: b,
    }[compression](data)
    assert result.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert result.uncompressed_size == len(raw)
    out = tmp_path / "out"
    out.mkdir()
    applied = apply_layer(io.BytesIO(data), str(out))
    assert applied.diff_id == result.diff_id
    assert applied.size == len(raw) and applied.compressed_size == len(data)
    assert describe(out) == describe(tree)
    assert os.stat(out / "data").st_ino == os.stat(out / "data-link").st_ino


def test_standard_tar_reads_our_layers(tree):
    blob = io.BytesIO()
    write_layer(scan_tree(str(tree)), blob, compression=Compression.NONE)
    blob.seek(0)
    with tarfile.open(fileobj=blob) as tf:
        members = {m.name: m for m in tf.getmembers()}
    assert members["bin"].isdir()
    assert b"bin/\x00" in blob.getvalue()[: 512 * 64]  # directories carry a trailing slash
    assert members["data-link"].islnk() and members["data-link"].linkname == "data"
    assert members["localtime"].linkname == "/usr/share/zoneinfo/UTC"
    assert f"{LONG_DIR}/{LONG_NAME}" in members
    assert all(m.uname == "" and m.gname == "" for m in members.values())
    assert (
        members["data"].pax_headers["SCHILY.xattr.user.note"].encode("utf-8", "surrogateescape")
        == b"\x00binary\xff"
    )


def test_reproducible_with_timestamp(tmp_path, tree):
    other = tmp_path / "elsewhere" / "copy"
    other.parent.mkdir()
    subprocess.run(["cp", "-a", str(tree), str(other)], check=True)
    os.utime(other / "bin" / "tool", (1, 1))  # mtimes differ; the timestamp hides that
    results = []
    for root in (tree, tree, other):
        blob = io.BytesIO()
        results.append((write_layer(scan_tree(str(root)), blob, timestamp=0), blob.getvalue()))
    assert results[0] == results[1]
    assert results[0][0].digest == results[2][0].digest
    assert results[0][1] == results[2][1]
    blob = io.BytesIO(results[0][1])
    with tarfile.open(fileobj=blob) as tf:
        assert {m.mtime for m in tf.getmembers()} == {0}


def test_whiteout_and_opaque_entries_written(tmp_path):
    entries = [
        TarEntry("etc", "dir", mode=0o755),
        TarEntry("etc/gone", "whiteout"),
        TarEntry("var/cache", "opaque"),
    ]
    blob = io.BytesIO()
    write_layer(entries, blob, compression=Compression.NONE)
    blob.seek(0)
    with tarfile.open(fileobj=blob) as tf:
        names = [m.name for m in tf.getmembers()]
    assert names == ["etc", "etc/.wh.gone", "var/cache/.wh..wh..opq"]


def test_sorted_entries_parents_first():
    names = ["b", "a/b", "a-b", "a", "a/.wh..wh..opq", "c/d/e", "c", "c/d"]
    entries = [TarEntry(n, "dir" if "." not in n else "file") for n in names]
    ordered = [e.path for e in sorted_entries(entries)]
    assert ordered == ["a", "a-b", "a/.wh..wh..opq", "a/b", "b", "c", "c/d", "c/d/e"]
    for i, path in enumerate(ordered):
        parent = path.rpartition("/")[0]
        assert not parent or ordered.index(parent) < i


def test_memory_stays_flat(tmp_path):
    big = tmp_path / "sparse"
    with open(big, "wb") as fh:
        fh.truncate(200 * 1024 * 1024)
    entry = TarEntry("sparse", "file", source=str(big), size=200 * 1024 * 1024)

    class Sink:
        written = 0

        def write(self, data):
            self.written += len(data)

        def flush(self):
            pass

    tracemalloc.start()
    try:
        result = write_layer([entry], Sink(), compression=Compression.GZIP)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.uncompressed_size > 200 * 1024 * 1024
    assert peak < 8 * 1024 * 1024
