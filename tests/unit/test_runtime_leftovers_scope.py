"""Which dead kilns' RUN bundles a store's sweep takes (``kiln.runtime.leftovers``): its own
(root filesystem under its root), and those no other existing store would take; never
another existing store's. A bundle with no owner file is nobody's only once it is old."""

from __future__ import annotations

import json
import os
import subprocess
import time

from kiln.runtime.bundle import OWNER_FILE
from kiln.runtime.leftovers import sweep_dead_runs
from kiln.util.process_owner import this_process


def _dead_owner() -> str:
    child = subprocess.Popen(["true"])
    child.wait(timeout=30)
    return f"{child.pid}:1"


def _bundle(state, n: int, rootfs: str | None, owner: str | None) -> str:
    run_id = f"kiln-{n:032x}"
    path = state / "bundles" / f"{run_id}-x"
    path.mkdir(parents=True)
    if rootfs is not None:
        (path / "config.json").write_text(json.dumps({"root": {"path": rootfs}}))
    if owner is not None:
        (path / OWNER_FILE).write_text(owner)
    return run_id


def test_a_store_takes_its_own_and_orphaned_runs_never_another_live_stores(tmp_path):
    state = tmp_path / "runtime"
    a, b, gone = tmp_path / "a", tmp_path / "b", tmp_path / "gone"
    for store in (a, b):
        (store / "snapshots" / "active" / "1" / "merged").mkdir(parents=True)
    dead = _dead_owner()
    own = _bundle(state, 1, f"{a}/snapshots/active/1/merged", dead)
    other = _bundle(state, 2, f"{b}/snapshots/active/1/merged", dead)
    deleted = _bundle(state, 3, f"{gone}/snapshots/active/1/merged", dead)
    no_store = _bundle(state, 4, str(tmp_path / "some-rootfs"), dead)
    unknown = _bundle(state, 5, None, dead)
    alive = _bundle(state, 6, f"{a}/snapshots/active/1/merged", this_process())

    found = sweep_dead_runs(str(state), dry_run=True, store_root=str(a))
    assert sorted(found) == sorted([own, deleted, no_store, unknown])
    assert other not in found and alive not in found
    found_b = sweep_dead_runs(str(state), dry_run=True, store_root=str(b))
    assert other in found_b and own not in found_b
    assert len(sweep_dead_runs(str(state), dry_run=True)) == 5  # unscoped: every dead one


def test_a_bundle_without_owner_is_left_while_young_and_swept_once_old(tmp_path):
    state = tmp_path / "runtime"
    young = _bundle(state, 7, None, None)
    old = _bundle(state, 8, None, None)
    hour_ago = time.time() - 3600
    os.utime(next((state / "bundles").glob(f"{old}-*")), (hour_ago, hour_ago))
    assert sweep_dead_runs(str(state), dry_run=True) == [old]  # not the young one
    assert young not in sweep_dead_runs(str(state), dry_run=True)


def test_a_bundle_names_its_owner_from_the_moment_it_exists(tmp_path, monkeypatch):
    """A kiln killed between making a bundle's directory and writing its owner file left a
    bundle the sweep could not claim for its ten-minute grace: the owner is in the name."""
    from kiln.runtime import bundle as bundle_module

    state = tmp_path / "runtime"
    real_open = open

    def killed_before_the_owner_file(path, *args, **kwargs):
        if os.path.basename(str(path)) == OWNER_FILE:
            raise KeyboardInterrupt  # stands for the SIGKILL: nothing after the mkdtemp ran
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(bundle_module, "open", killed_before_the_owner_file, raising=False)
    made = []
    real_mkdtemp = bundle_module.tempfile.mkdtemp
    monkeypatch.setattr(bundle_module.tempfile, "mkdtemp",
                        lambda **kw: made.append(real_mkdtemp(**kw)) or made[-1])  # fmt: skip
    monkeypatch.setattr(bundle_module.shutil, "rmtree", lambda *a, **k: None)  # killed: no cleanup
    try:
        bundle_module._Bundles().take(str(state))
    except KeyboardInterrupt:
        pass
    (path,) = made
    assert not os.path.exists(os.path.join(path, OWNER_FILE))
    assert sweep_dead_runs(str(state), dry_run=True) == []  # its owner (this process) lives
    dead_pid, dead_start = _dead_owner().split(":")
    os.rename(path, path.replace(f"-o{this_process().replace(':', '_')}-",
                                 f"-o{dead_pid}_{dead_start}-"))  # fmt: skip
    assert len(sweep_dead_runs(str(state), dry_run=True)) == 1  # young, but its owner is dead
