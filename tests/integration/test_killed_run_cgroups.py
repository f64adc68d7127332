"""A runc SIGKILLed while it sets up a RUN's container leaves the cgroups it made (on this
kind of machine's cgroup v1 hierarchies, often only ``cpuset/kiln-<id>``) and no state, so
``runc delete`` knows no such container: the next kiln's sweep of that dead RUN removes
them too (found by the stress of many kiln processes on one store, ``tests/store_stress.py``,
seed 3: ``/sys/fs/cgroup/cpuset/kiln-<id>`` left after every kiln had ended)."""

from __future__ import annotations

import os
import subprocess

import pytest

from kiln.runtime.bundle import OWNER_FILE
from kiln.runtime.leftovers import sweep_dead_runs

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def _own_cgroup_dirs() -> list[str]:
    """A writable directory of each cgroup hierarchy this process is in (where runc, run by
    a kiln of it, makes a container's cgroup)."""
    mounts: dict[str, str] = {}  # hierarchy id's controllers -> mount point
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fstype, _src, opts = post.split()[:3]
            if fstype == "cgroup2":
                mounts[""] = pre.split()[4]
            elif fstype == "cgroup":
                names = [o for o in opts.split(",") if o not in ("rw", "ro", "relatime")]
                mounts[",".join(sorted(names))] = pre.split()[4]
    out = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            _hid, controllers, path = line.rstrip("\n").split(":", 2)
            key = ",".join(sorted(controllers.split(","))) if controllers else ""
            if key in mounts:
                out.append(os.path.join(mounts[key], path.lstrip("/")))
    return [d for d in out if os.access(d, os.W_OK)]


def test_the_sweep_of_a_dead_run_removes_the_cgroups_its_runc_left(tmp_path):
    dirs = _own_cgroup_dirs()
    if not dirs:
        pytest.skip("no cgroup hierarchy to write to")
    child = subprocess.Popen(["true"])
    child.wait(timeout=30)
    run_id = "kiln-" + os.urandom(16).hex()
    bundle = tmp_path / "runtime" / "bundles" / f"{run_id}-x"
    bundle.mkdir(parents=True)
    (bundle / OWNER_FILE).write_text(f"{child.pid}:1")  # a dead kiln's
    made = []
    try:
        for d in dirs:
            path = os.path.join(d, run_id)
            try:
                os.mkdir(path)
            except OSError:
                continue
            made.append(path)
        if not made:
            pytest.skip("no cgroup could be made here")
        assert sweep_dead_runs(str(tmp_path / "runtime")) == [run_id]
        assert [p for p in made if os.path.isdir(p)] == []
        assert not bundle.exists()
    finally:
        for path in made:
            if os.path.isdir(path):
                os.rmdir(path)
