"""``Store.cache_mount_dir`` / ``cache_mount_lock`` / ``prune_cache_mounts``."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import subprocess

import pytest

from kiln.build.mounts import parse_mount
from kiln.build.run_mounts import prepared_mounts
from kiln.store import Store
from kiln.store.cache_mounts import cache_mount_name
from kiln.util.process_owner import this_process


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


def test_prune_leaves_a_directory_a_live_build_is_making(store):
    store.cache_mount_dir("seen")  # the cache-mounts directory exists
    base = os.path.join(store.root, "cache-mounts")
    making = os.path.join(base, "made-0123456789ab.new-" + this_process().replace(":", "_"))
    child = subprocess.Popen(["true"])
    child.wait()
    dead_owner = f"{child.pid}_{0}"
    left = os.path.join(base, f"made-0123456789ab.new-{dead_owner}")
    older_kiln = os.path.join(base, f"made-0123456789ab.new-{child.pid}")
    os.mkdir(making)
    os.mkdir(left)
    os.mkdir(older_kiln)
    store.prune_cache_mounts()
    assert os.path.isdir(making)  # its maker is about to rename it into place
    assert not os.path.exists(left)  # its maker died: a crash's leftover
    assert not os.path.exists(older_kiln)


def test_a_prune_between_the_lookup_and_the_lock_leaves_the_run_a_directory(store, tmp_path):
    spec = parse_mount("type=cache,target=/c,id=pkgs")
    real_lock = store.cache_mount_lock

    @contextlib.contextmanager
    def pruned_first(*args, **kwargs):
        store.prune_cache_mounts()  # a `builder prune --all` that comes just now
        with real_lock(*args, **kwargs) as held:
            yield held

    store.cache_mount_dir("pkgs")  # made by an earlier build
    store.cache_mount_lock = pruned_first
    with prepared_mounts(
        (spec,), context_dir=str(tmp_path), store=store, secrets={}, open_root=None
    ) as mounts:
        (mount,) = mounts.mounts
        assert os.path.isdir(mount.source)  # what the RUN binds exists
        assert store.prune_cache_mounts() == 0  # and no prune takes it meanwhile


def test_prune_leaves_no_lock_file_of_what_it_removed(store):
    gone = store.cache_mount_dir("gone")
    kept = store.cache_mount_dir("kept")
    with store.cache_mount_lock("gone\0seeding"):  # a seeding's lock: no directory of its own
        pass
    with store.cache_mount_lock("gone", shared=True), store.cache_mount_lock("kept", shared=True):
        pass
    with store.cache_mount_lock("kept", shared=True):
        store.prune_cache_mounts()
    base = os.path.join(store.root, "cache-mounts")
    assert sorted(os.listdir(base)) == sorted(
        [os.path.basename(kept), os.path.basename(kept) + ".lock"]
    )
    assert not os.path.exists(gone)


def test_a_lock_file_a_prune_unlinked_under_a_waiter_is_taken_again(store):
    store.cache_mount_dir("c")
    lock = os.path.join(store.root, "cache-mounts", cache_mount_name("c") + ".lock")
    real_flock = fcntl.flock
    raced = []

    def prune_first(fd, operation):  # the user opened the file; a prune unlinks it now
        if not raced:
            raced.append(fd)
            assert store.prune_cache_mounts() == 1
        return real_flock(fd, operation)

    fcntl.flock = prune_first
    try:
        with store.cache_mount_lock("c") as held:
            assert held and os.path.exists(lock)  # held on the file at the path
            with store.cache_mount_lock("c", wait=False) as again:
                assert not again  # so a second user is refused, not handed another file
    finally:
        fcntl.flock = real_flock
