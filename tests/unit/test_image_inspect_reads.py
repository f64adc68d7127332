"""What one ``image inspect`` costs the store: each blob it needs (manifest, config) is read
once, and a few indexed statements answer it, Parent included. ``kiln serve`` answers
every ``docker image inspect`` this way, so the cost is per request under load."""

from __future__ import annotations

import sys

import pytest
from ops_image_factory import make_image

from kiln.image.inspect import inspect_image
from kiln.store import Store

T = 1_750_000_000
_opened: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], str):
        _opened.append(args[0])


sys.addaudithook(_audit)


@pytest.fixture
def store(tmp_path):
    s = Store.open(str(tmp_path / "root"))
    yield s
    s.close()


def _inspect(store, name: str) -> tuple[dict, list[str], list[str]]:
    global _opened
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)
    _opened = []
    try:
        data = inspect_image(store, name)
        opened = _opened
    finally:
        _opened = None
        store.db.conn.set_trace_callback(None)
    return data, [p for p in opened if "/blobs/" in p], statements


@pytest.mark.parametrize("steps", [("ENV I=1",), ()], ids=["metadata-step", "layer-step"])
def test_inspect_reads_each_blob_once_and_runs_few_statements(store, steps):
    base = make_image(store, ["a"], created=T)
    layers = ["a"] if steps else ["a", "b"]
    child = make_image(store, layers, ["localhost/child:1"], created=T, metadata_steps=steps)
    for i in range(20):  # siblings on the same base, sharing its history prefix
        make_image(store, ["a"], created=T, metadata_steps=(f"ENV S={i}",))
    data, blobs, statements = _inspect(store, "localhost/child:1")
    assert data["Parent"] == base.id.removeprefix("sha256:")
    assert data["Id"] == child.id.removeprefix("sha256:")
    config = child.config_digest.split(":")[1]
    manifest = child.manifest_digest.split(":")[1]
    assert sorted(b.rsplit("/", 1)[1] for b in blobs) == sorted([config, manifest]), blobs
    # the image by name with its layers, repo digests and names in one statement, and the
    # parent by history key: two (the parent's own record is not needed, only its ID)
    assert len(statements) <= 2, statements
