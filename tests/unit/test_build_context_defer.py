"""``BuildContext.digest_unless`` stops before reading a big file, ``learn`` takes that
file's digest from whoever read it (a layer writer), and the digest then made is the one
a plain ``digest`` makes, without reading again what the stopped walk had read."""

from __future__ import annotations

import hashlib
import os

import pytest

from kiln.build import context as context_module
from kiln.build.context import BuildContext
from kiln.store import Store


@pytest.fixture
def tree(tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "app").mkdir(parents=True)
    (ctx / "app" / "a-small").write_bytes(b"small\n")
    (ctx / "app" / "big").write_bytes(os.urandom(300_000))
    (ctx / "app" / "z-small").write_bytes(b"after\n")
    return ctx


@pytest.mark.parametrize("source", ["app", "app/big"])
def test_learned_digest_gives_the_plain_digest(tree, tmp_path, monkeypatch, source):
    monkeypatch.setattr(context_module, "RACY_NS", 0)
    plain = BuildContext(str(tree)).digest([source])
    store = Store.open(str(tmp_path / "store"))
    ctx = BuildContext(str(tree), checksums=store)
    assert ctx.digest_unless([source], big=100_000) is None  # stopped at "big"
    read_before = ctx.hashed_here()
    assert read_before == (1 if source == "app" else 0)  # a-small, read before "big"
    for name in ("a-small", "big", "z-small"):  # what a layer writer would hand over
        path = tree / "app" / name
        ctx.learn(os.stat(path), hashlib.sha256(path.read_bytes()).hexdigest())
    assert ctx.digest([source]) == plain
    assert ctx.hashed_here() == read_before  # nothing read again
    big = os.stat(tree / "app" / "big")
    assert ctx.learned(big) is not None
    ctx.forget_learned()  # the step is done: nothing kept per file
    assert ctx.learned(big) is None
    # kept in the checksum cache as the context's own digests are
    again = BuildContext(str(tree), checksums=store)
    assert again.digest([source]) == plain
    assert again.hashed_here() == 0


def test_small_files_are_digested_without_stopping(tree):
    ctx = BuildContext(str(tree))
    assert ctx.digest_unless(["app"], big=1 << 20) == BuildContext(str(tree)).digest(["app"])


def test_a_stopped_digest_made_whole_reads_nothing_twice(tree):
    """Stopped, then made whole without a writer (the step took its key first after all):
    the small file read before the stop is not read again."""
    ctx = BuildContext(str(tree))
    assert ctx.digest_unless(["app"], big=100_000) is None
    assert ctx.hashed_here() == 1
    assert ctx.digest(["app"]) == BuildContext(str(tree)).digest(["app"])
    assert ctx.hashed_here() == 3  # big and z-small, not a-small again


def test_a_whole_digest_keeps_no_digest_per_file(tree, monkeypatch):
    """A ``digest_unless`` that did not stop leaves each file's digest in the directory
    index only: nothing kept per file for the rest of the build (at 200,000 files the
    per-file entries held ~140 MB), and a later digest still reads nothing again."""
    monkeypatch.setattr(context_module, "RACY_NS", 0)
    ctx = BuildContext(str(tree))
    assert ctx.digest_unless(["app"], big=1 << 20) == BuildContext(str(tree)).digest(["app"])
    assert ctx.hashed_here() == 3
    for name in ("a-small", "big", "z-small"):
        assert ctx.learned(os.stat(tree / "app" / name)) is None
    assert ctx.digest(["app"]) == BuildContext(str(tree)).digest(["app"])
    assert ctx.hashed_here() == 3


def test_a_racy_directory_keeps_its_digests_for_the_next_try(tree, monkeypatch):
    """A directory whose files just changed is not indexed (racy): what the walk read
    stays for the step, and a later digest does not read it again."""
    monkeypatch.setattr(context_module, "RACY_NS", 10**18)  # every file "just changed"
    ctx = BuildContext(str(tree))
    assert ctx.digest_unless(["app"], big=1 << 20) is not None
    assert ctx.learned(os.stat(tree / "app" / "a-small")) is not None
    ctx.digest(["app"])
    assert ctx.hashed_here() == 3


def test_learned_digests_are_kept_compactly(tmp_path):
    """A write-first COPY hands over every file's digest: kept in ~190 B a file where
    tuples and strings took ~360 B (200,000 files: ~70 MB more), and given back only under
    the stat the file was read with."""
    import tracemalloc

    tree = tmp_path / "many"
    tree.mkdir()
    stats = []
    for i in range(2000):
        (tree / f"f{i}").write_text(str(i))
        stats.append(os.stat(tree / f"f{i}"))
    ctx = BuildContext(str(tree))
    digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(2000)]
    ctx.learn(stats[0], digests[0])  # this thread's table made before measuring
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for st, hexdigest in zip(stats, digests, strict=True):
            ctx.learn(st, hexdigest)
        per_file = (tracemalloc.get_traced_memory()[0] - before) / len(stats)
    finally:
        tracemalloc.stop()
    assert per_file < 250, per_file
    assert [ctx.learned(st) for st in stats] == digests
    (tree / "f7").write_text("7 changed")
    assert ctx.learned(os.stat(tree / "f7")) is None
