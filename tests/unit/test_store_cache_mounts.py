"""``Store.cache_mount_dir`` / ``cache_mount_lock`` / ``prune_cache_mounts``."""

from __future__ import annotations

import os
import stat

import pytest

from kiln.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store.open(str(tmp_path / "root"))
    yield s
    s.close()


def test_one_directory_per_id_under_the_store(store):
    a = store.cache_mount_dir("/root/.cache/go", mode=0o700)
    assert os.path.dirname(a) == os.path.join(store.root, "cache-mounts")
    assert store.cache_mount_dir("/root/.cache/go", mode=0o755) == a  # made once
    assert stat.S_IMODE(os.stat(a).st_mode) == 0o700
    assert store.cache_mount_dir("other") != a
    assert len(store.list_cache_mounts()) == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_owner_on_creation(store):
    path = store.cache_mount_dir("owned", uid=1000, gid=1001)
    assert (os.stat(path).st_uid, os.stat(path).st_gid) == (1000, 1001)


def test_lock_and_prune(store):
    kept = store.cache_mount_dir("busy")
    gone = store.cache_mount_dir("idle")
    with open(os.path.join(gone, "f"), "w") as f:
        f.write("x")
    with store.cache_mount_lock("busy") as held:
        assert held
        with store.cache_mount_lock("busy", wait=False) as again:
            assert not again  # flock is per open file: a second holder is refused
        assert store.prune_cache_mounts() == 1  # "busy" is held: kept
    assert os.path.isdir(kept) and not os.path.exists(gone)
    assert store.list_cache_mounts() == [os.path.basename(kept)]
    assert store.prune_cache_mounts() == 1
    assert store.list_cache_mounts() == []


def test_shared_users_hold_off_prune_but_not_each_other(store):
    path = store.cache_mount_dir("shared")
    with store.cache_mount_lock("shared", shared=True) as one:
        with store.cache_mount_lock("shared", shared=True, wait=False) as two:
            assert one and two  # sharing=shared: many RUNs at once
        with store.cache_mount_lock("shared", wait=False) as exclusive:
            assert not exclusive  # a locked/private user waits for them
        assert store.prune_cache_mounts() == 0
    assert os.path.isdir(path)
    assert store.prune_cache_mounts() == 1
