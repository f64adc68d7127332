"""Hostile *root filesystems* beside a victim directory, for the image-side security suites.

An image here is busybox plus one layer of hostile members (symlinks to a host path, FIFOs,
device nodes...) written with ``archive_corpus.tar_of`` and loaded into a private store with
``kiln load``. ``RootfsEnv`` runs the ``kiln`` CLI (this checkout's, every call with a
timeout) over that store and keeps a *victim* directory of canary files next to it: a case
passes when kiln refused clearly or stayed contained, and nothing outside the store changed.

    from hostile_rootfs import RootfsEnv, rootfs_env  # noqa: F401  (the fixture)

``snapshot()`` records, for everything under the test directory except kiln's own store and
runtime directories, the type, mode, owner, size, content hash, link target and mtime;
``assert_untouched(before)`` compares (so a file created through an escaping symlink, a
canary rewritten, touched or removed, all show).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hostile_images as hi
from archive_corpus import tar_of

VICTIM_FILES = {
    "canary.txt": b"canary: never read into an image, never written\n",
    "passwd": b"root:x:0:0:root:/root:/bin/sh\nvictimuser:x:4242:4242::/home/v:/bin/sh\n",
    "group": b"root:x:0:\nvictimgroup:x:4343:\n",
    "hosts": b"10.9.9.9 victim-hosts\n",
}
CANARY_MTIME = 1_600_000_000

ROOT_MARKS = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
]


@functools.cache
def busybox_layer(work: str) -> bytes:
    from fixtures_images import make_busybox_rootfs

    return Path(make_busybox_rootfs(os.path.join(work, "busybox.tar"))).read_bytes()


def tree_state(top: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple]:
    """path -> (kind, mode, uid, gid, size, sha256 or link target, mtime_ns), ``skip`` left out."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) not in skip]
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            if p.is_symlink():
                what = "link:" + os.readlink(p)
            elif p.is_file():
                what = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                what = ""
            out[str(p.relative_to(top))] = (
                oct(st.st_mode), st.st_uid, st.st_gid, st.st_size, what, st.st_mtime_ns,
            )  # fmt: skip
    return out


class RootfsEnv:
    """A store with busybox, a victim directory of canaries, and the kiln CLI over them."""

    def __init__(self, top: Path):
        self.top = top
        self.root = top / "store"
        self.runtime = top / "runtime"
        self.tmp = top / "tmp"
        self.victim = top / "victim"
        for d in (self.tmp, self.runtime):
            d.mkdir(parents=True, exist_ok=True)
        self.env = dict(
            os.environ,
            KILN_ROOT=str(self.root),
            KILN_RUNTIME_DIR=str(self.runtime),
            TMPDIR=str(self.tmp),
        )
        self.env.pop("KILN_DEBUG", None)

    def reset_victim(self) -> None:
        """A fresh victim directory: canary files, an empty dir, a dir with a file."""
        shutil.rmtree(self.victim, ignore_errors=True)
        (self.victim / "x").mkdir(parents=True)
        (self.victim / "sub").mkdir()
        for name, data in VICTIM_FILES.items():
            (self.victim / name).write_bytes(data)
        (self.victim / "sub" / "inner.txt").write_bytes(b"inner\n")
        for p in [*self.victim.rglob("*"), self.victim]:
            os.utime(p, (CANARY_MTIME, CANARY_MTIME), follow_symlinks=False)
        self.before = self.snapshot()

    def up_to_victim(self, name: str = "") -> str:
        """A relative symlink target that climbs to / from anywhere, then into the victim."""
        return "../" * 40 + str(self.victim / name).lstrip("/")

    def kiln(self, *args: str, timeout: float = 90, input: bytes | None = None):
        return subprocess.run(
            [sys.executable, "-m", "kiln.cli.main", "--progress", "quiet", *args],
            env=self.env,
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            timeout=timeout,
        )

    def ok(self, *args: str, timeout: float = 90) -> str:
        res = self.kiln(*args, timeout=timeout)
        assert res.returncode == 0, f"kiln {' '.join(args)}: {res.stderr.decode()}"
        return res.stdout.decode()

    def load(self, name: str, *members: tuple, config_extra: dict | None = None) -> str:
        """Load busybox + a layer of ``members`` as ``localhost/<name>:1``; returns the name."""
        ref = f"localhost/{name}:1"
        img = hi.image([busybox_layer(str(self.top.parent)), tar_of(*members)],
                       config_extra=config_extra)  # fmt: skip
        archive = self.tmp / f"{name}.tar"
        archive.write_bytes(hi.oci_archive(img, index=hi.oci_index(hi.oci_manifest(img), ref)))
        self.ok("load", "-i", str(archive))
        archive.unlink()
        return ref

    def build(self, dockerfile: str, *flags: str, files: dict[str, bytes] | None = None,
              timeout: float = 90):  # fmt: skip
        ctx = self.tmp / "ctx"
        shutil.rmtree(ctx, ignore_errors=True)
        ctx.mkdir()
        (ctx / "Containerfile").write_text(dockerfile)
        for rel, data in (files or {}).items():
            (ctx / rel).write_bytes(data)
        return self.kiln("build", *flags, str(ctx), timeout=timeout)

    def snapshot(self) -> dict[str, tuple]:
        return tree_state(self.top, skip=(self.root, self.runtime, self.tmp))

    def assert_untouched(self) -> None:
        """Nothing outside the store changed since ``reset_victim``."""
        before, after = self.before, self.snapshot()
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        assert not changed, "changed outside the store: " + ", ".join(changed[:20])
        assert not any("pwned" in p for p in after), after


def check_clear_error(res: subprocess.CompletedProcess, *words: str) -> str:
    """One ``Error:`` line naming one of ``words``, no traceback, no 'unexpected' bug."""
    err = res.stderr.decode()
    assert res.returncode != 0, f"accepted; expected an error about {words}"
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, err
    assert not re.search(r"unexpected [A-Z]\w+", lines[0]), lines[0]
    assert any(w.lower() in lines[0].lower() for w in words), f"{lines[0]!r} names none of {words}"
    return lines[0]


@pytest.fixture(scope="module")
def rootfs_env(tmp_path_factory) -> RootfsEnv:
    env = RootfsEnv(tmp_path_factory.mktemp("hostile-rootfs") / "top")
    return env


@pytest.fixture
def victim_env(rootfs_env: RootfsEnv) -> RootfsEnv:
    """The module's env with a fresh victim (tests end with ``assert_untouched()``)."""
    rootfs_env.reset_victim()
    return rootfs_env


__all__ = [
    "ROOT_MARKS",
    "RootfsEnv",
    "busybox_layer",
    "check_clear_error",
    "rootfs_env",
    "tree_state",
    "victim_env",
]
