"""A COPY whose key would have to read a big new file writes its layer first, hashing each
file in the same read, then takes its key (kiln.build.layer_first).

``write_first_at=1`` makes every file "big", so the cases of the direct-path tests
go through it. What users rely on: the same layer bytes, history and cache key as the
key-first order; a cache hit after it leaves no blob behind; the file is read once.
"""

from __future__ import annotations

import os

import pytest
from test_build_copy_direct import MTIME, _headers, _tree

import kiln.container.commit as commit_mod
from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401

pytestmark = [*ROOT_MARKS, pytest.mark.timeout(300)]

CASES = {
    "dir": "COPY files /files",  # hard links, symlinks, a fifo, a 200 kB file, a pax name
    "context-ignore": "COPY . /app",
    "file-new-parents": "COPY a.txt /new/dir/",
    "chown-chmod": "COPY --chown=1000:1001 --chmod=640 files /files",
    "exclude": "COPY --exclude=*.bin files /files",
    "workdir-volume-user": (
        "VOLUME /data\nUSER 1000:1000\nWORKDIR /srv/www\nCOPY --chown=1000 a.txt ./"
    ),
}


@pytest.fixture
def written_first(monkeypatch):
    """Counts the layers written before their key (the writer itself runs as it is)."""
    calls = []
    real = commit_mod.write_layer_blob

    def spy(*args, **kwargs):
        if kwargs.get("on_content") is not None:
            calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(commit_mod, "write_layer_blob", spy)
    return calls


def _build(env, ctx, text, monkeypatch, first: bool, hits: int = 0, **opts):
    result = env.build(ctx, "FROM busybox\n" + text + "\n", timestamp=MTIME,
                       write_first_at=1 if first else 0, **opts)  # fmt: skip
    assert result.cache_hits == hits
    return env.validate(result.image_id)


def _blobs(env) -> set[str]:
    return set(os.listdir(os.path.join(env.store.root, "blobs", "sha256")))


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_written_first_is_the_keyed_one(build_env, monkeypatch, written_first, case):  # noqa: F811
    ctx = build_env.context_dir()
    _tree(ctx)
    text = CASES[case]
    new = _build(build_env, ctx, text, monkeypatch, first=True)
    assert len(written_first) == 1  # the step's layer was written before its key
    # the key is the one the key-first order makes: a build that way hits it
    again = _build(build_env, ctx, text, monkeypatch, first=False, hits=1)
    assert again.record.id == new.record.id
    # and the layer and history are the ones it writes
    old = _build(build_env, ctx, text, monkeypatch, first=False, no_cache=True)
    assert len(written_first) == 1
    assert _headers(new) == _headers(old)
    assert [d.digest for d in new.layers] == [d.digest for d in old.layers]
    assert new.config.diff_ids == old.config.diff_ids
    assert [h.created_by for h in new.config.history] == [h.created_by for h in old.config.history]


def test_a_step_built_before_takes_its_key_first(build_env, monkeypatch, written_first):  # noqa: F811
    """Same bytes with new times (a fresh checkout, a context uploaded again): the store
    built this instruction on this parent before, so a hit is likely and the key goes
    first (a layer written first would be dropped)."""
    ctx = build_env.context_dir()
    big = os.path.join(ctx, "big.bin")
    with open(big, "wb") as f:
        f.write(os.urandom(3 << 20))
    first = _build(build_env, ctx, "COPY big.bin /big.bin", monkeypatch, first=True)
    os.utime(big, (MTIME, MTIME))
    second = _build(build_env, ctx, "COPY big.bin /big.bin", monkeypatch, first=True, hits=1)
    assert len(written_first) == 1
    assert second.record.id == first.record.id


def test_hit_after_writing_first_leaves_no_blob(build_env, monkeypatch, written_first):  # noqa: F811
    ctx = build_env.context_dir()
    big = os.path.join(ctx, "big.bin")
    with open(big, "wb") as f:
        f.write(os.urandom(3 << 20))
    first = _build(build_env, ctx, "COPY big.bin /big.bin", monkeypatch, first=True)
    blobs = _blobs(build_env)
    # same bytes, new times, and the record of what went into earlier keys gone (it is
    # bounded): the layer is written first, then found in the cache
    os.utime(big, (MTIME, MTIME))
    build_env.store.db.execute("DELETE FROM cache_inputs")
    second = _build(build_env, ctx, "COPY big.bin /big.bin", monkeypatch, first=True, hits=1)
    assert len(written_first) == 2
    assert second.record.id == first.record.id
    assert _blobs(build_env) == blobs  # the blob written before the hit was dropped
    ingest = os.path.join(build_env.store.root, "ingest")
    assert not os.path.isdir(ingest) or os.listdir(ingest) == []


def test_changed_content_written_first_is_the_new_content(build_env, monkeypatch, written_first):  # noqa: F811
    ctx = build_env.context_dir()
    big = os.path.join(ctx, "big.bin")
    with open(big, "wb") as f:
        f.write(b"a" * (1 << 20))
    one = _build(build_env, ctx, "COPY big.bin /big.bin", monkeypatch, first=True)
    with open(big, "r+b") as f:
        f.write(b"b")  # same size
    two = _build(build_env, ctx, "COPY big.bin /big.bin", monkeypatch, first=True)
    assert two.record.id != one.record.id
    assert build_env.files(two.record.id)["big.bin"] == b"b" + b"a" * ((1 << 20) - 1)
    # and the key-first order agrees it is cached
    again = _build(build_env, ctx, "COPY big.bin /big.bin", monkeypatch, first=False, hits=1)
    assert again.record.id == two.record.id


def test_context_changed_after_the_layer_was_written(build_env, monkeypatch):  # noqa: F811
    """A file rewritten between the layer's write and the key: the key reads it itself, so
    the written layer is dropped and the step writes the file as it is now."""
    ctx = build_env.context_dir()
    with open(os.path.join(ctx, "big.bin"), "wb") as f:
        f.write(os.urandom(2 << 20))
    small = os.path.join(ctx, "small.txt")
    with open(small, "w") as f:
        f.write("old\n")
    real = commit_mod.write_layer_blob
    rewritten = []

    def write_then_change(*args, **kwargs):
        out = real(*args, **kwargs)
        if kwargs.get("on_content") is not None and not rewritten:
            with open(small, "w") as f:
                f.write("new\n")  # same size: only its ctime tells
            rewritten.append(small)
        return out

    monkeypatch.setattr(commit_mod, "write_layer_blob", write_then_change)
    img = _build(build_env, ctx, "COPY . /app", monkeypatch, first=True)
    assert rewritten
    assert build_env.files(img.record.id)["app/small.txt"] == b"new\n"
    # the key, layer and history agree with the key-first order's
    again = _build(build_env, ctx, "COPY . /app", monkeypatch, first=False, hits=1)
    assert again.record.id == img.record.id
