"""Stop and remove what a killed kiln left running: RUN containers and their bundles.

Each bundle holds the owner (the kiln process running it). A bundle whose owner is dead
belongs to a kiln that was killed mid-RUN: its container may still run under runc (``runc
run`` outlives a SIGKILLed parent). ``sweep_dead_runs`` kills and deletes such containers and
removes their bundles; the next kiln command calls it (``kiln.ops.context``).

The runtime directory (runc's ``--root`` and the bundles) is shared by every store on the
machine, so a sweep is scoped to one store: a RUN container belongs to the store its root
filesystem lies in (``root.path`` of its bundle's ``config.json``, a snapshot under the
store's root), and another store's is left to that store's next command. One on no other
existing store's snapshot (a store since deleted, a rootfs of no store, none known) is any
store's to sweep: nobody else would.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time

from kiln.util.lazy_pattern import lazy_pattern
from kiln.util.process_owner import is_alive

# start-up: not .bundle (see rundir)
from .rundir import OWNER_FILE, default_runtime_dir, owner_in_name

__all__ = ["stray_containers", "sweep_dead_runs"]

_BUNDLE = re.compile(r"^(kiln-[0-9a-f]{32})-")
_OWNERLESS_GRACE = 600.0  # seconds: a bundle with no owner file this old has none coming
_SNAPSHOT = lazy_pattern(r"^(/.*)/snapshots/active/\d+/")  # <store root>/snapshots/active/<n>/


def sweep_dead_runs(
    state_dir: str | None = None,
    runtime: str = "runc",
    dry_run: bool = False,
    store_root: str | None = None,
) -> list[str]:
    """Stop the containers of killed kiln processes and remove their bundles; returns their
    run ids (with ``dry_run``, only finds them). With ``store_root``, only that store's
    (see the module); None: every store's. Never touches a bundle whose owner lives
    (another kiln running now)."""
    state = state_dir or default_runtime_dir()  # a rootless user's too
    bundles = os.path.join(state, "bundles")
    try:
        names = os.listdir(bundles)
    except OSError:
        return []
    swept = []
    for name in sorted(names):
        match = _BUNDLE.match(name)
        path = os.path.join(bundles, name)
        if match is None or not _owner_dead(path):
            continue
        run_id = match.group(1)
        if store_root is not None and not _belongs(_bundle_rootfs(path), store_root):
            continue  # another store's: its own next command stops it
        if dry_run:
            swept.append(run_id)
            continue
        import shutil  # start-up: a build that finds no killed RUN runs no runc and removes nothing
        import subprocess

        base = [runtime, "--root", os.path.join(state, "runc")]
        for args in (["kill", run_id, "KILL"], ["delete", "--force", run_id]):
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run([*base, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=30, check=False)  # fmt: skip
        remove_cgroups(run_id)
        shutil.rmtree(path, ignore_errors=True)
        swept.append(run_id)
    return swept


def _bundle_rootfs(bundle: str) -> str:
    """The root filesystem the bundle's RUN used, as its ``config.json`` says, else as
    runc's state of its container says; "" if neither can be read."""
    state = os.path.dirname(os.path.dirname(bundle))
    run_id = os.path.basename(bundle)[: len("kiln-") + 32]
    sources = [
        (os.path.join(bundle, "config.json"), ("root", "path")),
        (os.path.join(state, "runc", run_id, "state.json"), ("config", "rootfs")),
    ]
    for path, keys in sources:
        try:
            with open(path, "rb") as f:
                value = json.load(f)
            for key in keys:
                value = value[key]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(value, str) and value:
            return value
    return ""


def _belongs(rootfs: str, store_root: str) -> bool:
    """Whether a RUN on ``rootfs`` is the store at ``store_root``'s to sweep: its rootfs is
    under that root; or it is under no other store that still exists (a snapshot of
    ``<root>/snapshots/active/<n>``), so that no other store's command would ever sweep it
    (a rootfs outside every store, a store since deleted, no rootfs known)."""
    root = os.path.realpath(store_root).rstrip("/") + "/"
    path = os.path.realpath(rootfs) if rootfs else ""
    if path.startswith(root):
        return True
    match = _SNAPSHOT().match(path)
    return match is None or not os.path.isdir(os.path.join(match.group(1), "snapshots"))


def stray_containers(
    state_dir: str | None = None,
    runtime: str = "runc",
    dry_run: bool = False,
    store_root: str | None = None,
) -> list[str]:
    """kiln's runc containers with no bundle left (a live RUN keeps its bundle from before
    ``runc run`` creates the container until after it is gone): killed and deleted unless
    ``dry_run``; returns their ids. With ``store_root``, only that store's, by their root
    filesystem (see the module). No runc installed: none."""
    import shutil  # start-up: as in sweep_dead_runs
    import subprocess

    state = state_dir or default_runtime_dir()
    root = os.path.join(state, "runc")
    binary = shutil.which(runtime)
    if binary is None or not os.path.isdir(root):
        return []

    def listed() -> set[str]:
        """kiln's container ids (of ``store_root``'s root filesystems) runc lists."""
        try:
            done = subprocess.run([binary, "--root", root, "list", "-f", "json"],
                                  stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                                  check=False)  # fmt: skip
            items = json.loads(done.stdout or b"null") or []
        except (OSError, subprocess.TimeoutExpired, ValueError):
            return set()
        ids = (c.get("id", "") for c in items if isinstance(c, dict)
               if store_root is None or _belongs(str(c.get("rootfs") or ""), store_root))  # fmt: skip
        return {i for i in ids if re.fullmatch(r"kiln-[0-9a-f]{32}", i)}

    # listed before and after the bundles: such a container existed all along, so a live
    # RUN's would have had its bundle when they were read (no race with a RUN ending)
    before = listed()
    try:
        bundles = {m.group(1) for n in os.listdir(os.path.join(state, "bundles"))
                   if (m := _BUNDLE.match(n))}  # fmt: skip
    except OSError:
        bundles = set()
    stray = sorted((before & listed()) - bundles) if before - bundles else []
    if not dry_run:
        for run_id in stray:
            for args in (["kill", run_id, "KILL"], ["delete", "--force", run_id]):
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    subprocess.run([binary, "--root", root, *args], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   timeout=30, check=False)  # fmt: skip
    return stray


def remove_cgroups(run_id: str) -> None:
    """The empty cgroups named ``run_id`` in this process's cgroups: a runc killed while it
    set the container up leaves them (on cgroup v1, often ``cpuset`` only) and no state, so
    ``runc delete`` knows no such container. One with processes in it stays (rmdir fails)."""
    for directory in _own_cgroups():
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(directory, run_id))


def _own_cgroups() -> list[str]:
    """The directory of this process's cgroup in each mounted hierarchy (where runc makes a
    container's, with no cgroupsPath given)."""
    mounts: dict[str, str] = {}  # the hierarchy's controllers (sorted, "" for v2) -> mount
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                pre, _, post = line.partition(" - ")
                fields, rest = pre.split(), post.split()
                if len(fields) < 5 or len(rest) < 3:
                    continue
                if rest[0] == "cgroup2":
                    mounts[""] = fields[4]
                elif rest[0] == "cgroup":
                    opts = [o for o in rest[2].split(",") if "=" not in o or o.startswith("name=")]
                    mounts[",".join(sorted(opts))] = fields[4]
        with open("/proc/self/cgroup", encoding="utf-8", errors="replace") as f:
            own = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return []
    out = []
    for entry in own:
        if len(entry) != 3:
            continue
        names = ",".join(sorted(entry[1].split(","))) if entry[1] else ""
        for key, point in mounts.items():
            # a v1 mount's options hold its controllers among rw, relatime...
            if key == names or (names and set(names.split(",")) <= set(key.split(","))):
                out.append(os.path.join(point, entry[2].lstrip("/")))
                break
    return out


def _owner_dead(bundle: str) -> bool:
    named = owner_in_name(os.path.basename(bundle))
    if named is not None:
        return not is_alive(named)
    try:
        with open(os.path.join(bundle, OWNER_FILE)) as f:
            owner = f.read().strip()
    except FileNotFoundError:
        # an older kiln's (no owner in the name): being made now (its owner is written
        # right after the directory is made), or killed in between: nobody's once old
        return _age(bundle) > _OWNERLESS_GRACE
    except OSError:
        return False
    return not is_alive(owner)


def _age(path: str) -> float:
    try:
        return time.time() - os.lstat(path).st_mtime
    except OSError:
        return 0.0
