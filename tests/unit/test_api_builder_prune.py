"""``POST /build/prune`` (docker builder prune) over the RUN cache mounts: ``until`` keeps what
a build used since, and what kiln cannot honour is refused, never taken as "prune it all"."""

from __future__ import annotations

import os

import pytest
from starlette.testclient import TestClient

from kiln.api.app import create_app
from kiln.ops.config import Config
from kiln.store import Store


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / "root")


@pytest.fixture
def client(root, tmp_path):
    with TestClient(create_app(Config(root=root, tmpdir=str(tmp_path)))) as c:
        yield c


@pytest.fixture
def caches(root):
    """Two cache mounts: one a RUN last used two days ago, one it used just now."""
    store = Store.open(root)
    try:
        old = store.cache_mount_dir("old")
        recent = store.cache_mount_dir("recent")
        os.utime(old, (os.stat(old).st_atime, os.stat(old).st_mtime - 2 * 86400))
        yield store, old, recent
    finally:
        store.close()


def test_until_keeps_the_cache_mounts_a_build_used_since(client, caches):
    store, old, recent = caches
    r = client.post('/v1.41/build/prune?all=1&filters={"until":{"24h":true}}')
    assert r.status_code == 200, r.text
    assert not os.path.exists(old) and os.path.isdir(recent)
    r = client.post("/v1.41/build/prune?all=1")
    assert r.status_code == 200 and not os.path.exists(recent)


def test_a_run_using_a_cache_mount_makes_it_recent(client, caches):
    store, old, _ = caches
    assert store.cache_mount_dir("old") == old  # a RUN takes it again
    r = client.post('/v1.41/build/prune?all=1&filters={"until":{"24h":true}}')
    assert r.status_code == 200 and os.path.isdir(old)


@pytest.mark.parametrize(
    "query",
    [
        'filters={"label":{"a=b":true}}',
        'filters={"until":{"yesterday":true}}',
        "keep-storage=1000000",
        "reserved-space=1000000",
    ],
)
def test_what_kiln_cannot_honour_is_refused_and_nothing_goes(client, caches, query):
    _, old, recent = caches
    r = client.post(f"/v1.41/build/prune?all=1&{query}")
    assert r.status_code == 400 and r.json()["message"]
    assert os.path.isdir(old) and os.path.isdir(recent)
