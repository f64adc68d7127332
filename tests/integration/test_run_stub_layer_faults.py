"""The RUN stub layer (``Snapshotter.stub_layer``: ``stubs/<hash>``, made in ``tmp/`` and
renamed into place whole) when things go wrong: another process makes the same stub at
the same moment, another kiln sweeps ``tmp/`` while it is made, the maker is SIGKILLed
half way, or the stub is damaged or removed by hand between builds. A RUN never sees a
partial or damaged stub, and the next one works with the layer holding only what it wrote.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tarfile

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from killed_process import kill_when_started
from kiln.snapshot import Snapshotter, stubs

pytestmark = [*ROOT_MARKS, pytest.mark.timeout(120)]

DIRS = ["/proc", "/dev", "/sys"]
FILES = ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"]
WANTED = {"proc": "d", "dev": "d", "sys": "d", "etc": "d", "etc/hosts": "f",
          "etc/resolv.conf": "f", "etc/hostname": "f"}  # fmt: skip


def _tree(path: str) -> dict[str, str]:
    """{relative path: "d" or "f" (empty regular file) or "other"} below ``path``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            kind = "d" if os.path.isdir(full) and not os.path.islink(full) else "other"
            if os.path.isfile(full) and not os.path.islink(full) and st.st_size == 0:
                kind = "f"
            out[os.path.relpath(full, path)] = kind
    return out


def _scratch(root: str, prefix: str = "stubs-") -> list[str]:
    tmp = os.path.join(root, "tmp")
    return [n for n in os.listdir(tmp) if n.startswith(prefix)] if os.path.isdir(tmp) else []


def _sweep(root: str) -> list[str]:
    """What another kiln's start-of-command sweep removes from ``tmp/`` right now."""
    other = Snapshotter(root, driver="overlay")
    try:
        return other.remove_leftovers(other.leftovers([], [], deep=False)).scratch
    finally:
        other.close()


def test_two_makers_of_one_stub_both_get_it_whole(tmp_path, monkeypatch):
    """Another process makes the same stub between this one's look and its making."""
    root = str(tmp_path / "snaps")
    snaps = Snapshotter(root, driver="overlay")
    real = stubs.is_whole
    raced = []

    def other_maker_first(path, tree):
        whole = real(path, tree)
        if not raced:
            raced.append(path)
            other = Snapshotter(root, driver="overlay")
            try:
                assert other.stub_layer(DIRS, FILES) == path
            finally:
                other.close()
        return whole

    monkeypatch.setattr(stubs, "is_whole", other_maker_first)
    path = snaps.stub_layer(DIRS, FILES)
    monkeypatch.undo()
    assert raced == [path]
    assert _tree(path) == WANTED
    assert _scratch(root) == []  # made once: no second copy left in tmp/
    snaps.close()


def test_a_sweep_while_a_stub_is_made_leaves_it_alone(tmp_path, monkeypatch):
    """Another kiln starting a command clears ``tmp/`` when no snapshot work holds the
    root lock: a stub being made there must hold it too, or lose its files mid-way."""
    root = str(tmp_path / "snaps")
    snaps = Snapshotter(root, driver="overlay")
    real = snaps._tmpdir
    swept: list[list[str]] = []

    def made_then_swept(prefix: str) -> str:
        path = real(prefix)
        if prefix == "stubs-":
            swept.append(_sweep(root))
        return path

    monkeypatch.setattr(snaps, "_tmpdir", made_then_swept)
    path = snaps.stub_layer(DIRS, FILES)
    assert swept == [[]]
    assert _tree(path) == WANTED
    snaps.close()


CHILD = f"""
DIRS, FILES = {DIRS!r}, {FILES!r}
import os, sys, time
from kiln.snapshot import Snapshotter
snaps = Snapshotter(sys.argv[1], driver="overlay")
real = os.mkdir
def mkdir_then_stop(path, *args, **kwargs):
    real(path, *args, **kwargs)
    if os.path.basename(os.path.dirname(path)).startswith("stubs-"):
        print("making", flush=True)
        time.sleep(600)
os.mkdir = mkdir_then_stop
snaps.stub_layer(DIRS, FILES)
"""


def test_a_stub_killed_half_made_is_never_used(tmp_path):
    root = str(tmp_path / "snaps")
    Snapshotter(root, driver="overlay").close()
    assert kill_when_started([sys.executable, "-c", CHILD, root], "making") == -signal.SIGKILL
    stubs = os.path.join(root, "stubs")
    assert not os.path.isdir(stubs) or os.listdir(stubs) == []  # nothing half made in place
    assert len(_scratch(root)) == 1
    snaps = Snapshotter(root, driver="overlay")
    assert _tree(snaps.stub_layer(DIRS, FILES)) == WANTED
    assert len(_sweep(root)) == 1  # the dead maker's work: the next command's sweep
    assert _scratch(root) == []
    snaps.close()


def _remove(stub: str) -> None:
    shutil.rmtree(stub)


def _emptied(stub: str) -> None:
    for name in os.listdir(stub):
        path = os.path.join(stub, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)


def _a_file(stub: str) -> None:
    shutil.rmtree(stub)
    with open(stub, "w") as f:
        f.write("not a directory\n")


def _proc_a_file(stub: str) -> None:
    os.rmdir(os.path.join(stub, "proc"))
    with open(os.path.join(stub, "proc"), "w"):
        pass


def _dev_a_symlink(stub: str) -> None:
    os.rmdir(os.path.join(stub, "dev"))
    os.symlink("/", os.path.join(stub, "dev"))


def _extra_file(stub: str) -> None:
    with open(os.path.join(stub, "etc", "intruder"), "w") as f:
        f.write("not kiln's\n")


def _hosts_not_empty(stub: str) -> None:
    with open(os.path.join(stub, "etc", "hosts"), "w") as f:
        f.write("1.2.3.4 intruder\n")


DAMAGE = [_remove, _emptied, _a_file, _proc_a_file, _dev_a_symlink, _extra_file,
          _hosts_not_empty]  # fmt: skip


def _layer_names(env, ref: str) -> list[list[str]]:
    img = env.image(ref)
    names = []
    for desc in img.layers[1:]:
        with img.open_layer(desc) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            names.append(sorted(m.name.lstrip("./").rstrip("/") for m in tar))
    return names


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__.strip("_") for d in DAMAGE])
def test_a_stub_damaged_by_hand_is_made_again(build_env, damage):  # noqa: F811
    ctx = build_env.context_dir()
    build_env.build(ctx, "FROM busybox\nRUN echo one > /one\n")
    stubs = os.path.join(build_env.ctx.snapshots.root, "stubs")
    (name,) = os.listdir(stubs)
    damage(os.path.join(stubs, name))
    script = (
        "ls -A /etc /proc/self/fd >/dev/null && ls -A /etc > /listed && cat /etc/hosts >> /listed"
    )
    build_env.build(ctx, f"FROM busybox\nRUN {script}\n", tags=["after"], no_cache=True)
    assert _layer_names(build_env, "after") == [["listed"]]
    listed = build_env.files("after")["listed"].decode()
    assert "intruder" not in listed
    assert listed.split()[:5] == ["group", "hostname", "hosts", "passwd", "resolv.conf"]
    assert _tree(os.path.join(stubs, name)) == WANTED  # made again, whole


def test_prune_keeps_the_stub_and_the_next_run_uses_it(build_env):  # noqa: F811
    """A stub is a few empty entries per set of mountpoints, reused by every RUN with that
    set (and under any RUN running now): prune and GC leave it, whole."""
    from kiln.ops.images import prune

    ctx = build_env.context_dir()
    build_env.build(ctx, "FROM busybox\nRUN echo one > /one\n", tags=["one"])
    stubs_dir = os.path.join(build_env.ctx.snapshots.root, "stubs")
    (name,) = os.listdir(stubs_dir)
    build_env.store.untag(
        "localhost/one:latest"
    )  # its image dangling: prune removes it, then GC runs
    assert prune(build_env.ctx).removed
    assert os.listdir(stubs_dir) == [name]
    assert _tree(os.path.join(stubs_dir, name)) == WANTED
    build_env.build(ctx, "FROM busybox\nRUN echo two > /two\n", tags=["two"])
    assert _layer_names(build_env, "two") == [["two"]]
    assert os.listdir(stubs_dir) == [name]
