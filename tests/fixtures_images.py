"""Reusable image fixtures: a busybox root filesystem and a busybox image made by kiln.

Use from any suite (pytest puts ``tests/`` on ``sys.path``)::

    pytest_plugins = ["fixtures_images"]      # fixtures by name, no F811 noise
    from fixtures_images import save_oci_archive  # helpers

Fixtures:

* ``busybox_rootfs_tar`` (session): path of an uncompressed, deterministic tar of
  ``/bin/busybox`` (Debian's busybox-static), every applet as a symlink to it
  (``busybox --list-full``), ``/etc/passwd``, ``/etc/group`` and a few dirs.
* ``kiln_store``: a fresh :class:`kiln.store.Store` in a temporary directory.
* ``busybox_image``: a :class:`kiln.image.StoreImage` imported into ``kiln_store``
  with ``import_tarball`` and named ``busybox:latest`` (CMD ["/bin/sh"]).
* ``two_platforms``: ``busybox_image`` (amd64) and ``busybox:arm64`` (the same layers,
  an arm64/v8 config); ``make_list(store_root, name)`` makes the two-platform manifest
  list of them and returns its id.

Helpers (plain functions): ``save_oci_archive(img, path, names)``,
``save_docker_archive(img, path, names)``, ``save_oci_layout(img, path, names)``,
``busybox_files()`` (what the rootfs holds: path -> kind), ``child_layer()`` (a layer
tar adding /hello.txt, changing /etc/passwd, deleting /bin/ls) and
``make_child(store, base, format)`` (``child:1`` = base + that layer, via write_image).

* ``podman`` (session): a :class:`Podman` callable running podman on a private
  temporary store (vfs, runc, cgroupfs); ``podman.run_args()`` adds the
  ``--rm --network none --ulimit ...`` a ``podman run`` needs here. Skips
  without podman or root.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Sequence

import pytest

BUSYBOX = "/bin/busybox"
MTIME = 1_700_000_000
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnobody:x:65534:\n"
DIRS = ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "tmp", "var", "home")


def _applets() -> list[str]:
    out = subprocess.run([BUSYBOX, "--list-full"], check=True, capture_output=True, text=True)
    return sorted({line.strip() for line in out.stdout.splitlines() if line.strip()})


def busybox_files() -> dict[str, str]:
    """What the busybox rootfs holds: relative path -> "dir" | "file" | "symlink"."""
    files = {d: "dir" for d in DIRS}
    files.update({"bin/busybox": "file", "etc/passwd": "file", "etc/group": "file"})
    for applet in _applets():
        if applet != "bin/busybox":
            files[applet] = "symlink"
    return files


def _info(name: str, kind: str, size: int = 0, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = MTIME
    info.uname = info.gname = ""
    info.mode = mode
    if kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o755 if name != "tmp" else 0o1777
    elif kind == "symlink":
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, "/bin/busybox", 0o777
    else:
        info.size = size
    return info


def make_busybox_rootfs(path: str, busybox: str = BUSYBOX) -> str:
    """Write the busybox rootfs tar to ``path`` (deterministic for one busybox binary).

    ``busybox``: the binary to put in (another architecture's, say); the applet links
    are the host's busybox's list either way."""
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static (/bin/busybox) is not installed")
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for kind_path, kind in sorted(busybox_files().items()):
            if kind == "dir":
                tar.addfile(_info(kind_path, "dir"))
        with open(busybox, "rb") as f:
            tar.addfile(_info("bin/busybox", "file", os.path.getsize(busybox), 0o755), f)
        for name, data in (("etc/passwd", PASSWD), ("etc/group", GROUP)):
            tar.addfile(_info(name, "file", len(data)), io.BytesIO(data))
        for name, kind in sorted(busybox_files().items()):
            if kind == "symlink":
                tar.addfile(_info(name, "symlink"))
    return path


@pytest.fixture(scope="session")
def busybox_rootfs_tar(tmp_path_factory) -> str:
    return make_busybox_rootfs(str(tmp_path_factory.mktemp("busybox") / "rootfs.tar"))


@pytest.fixture
def kiln_store(tmp_path):
    from kiln.store import Store

    store = Store.open(str(tmp_path / "kiln-root"))
    yield store
    store.close()


@pytest.fixture
def busybox_image(kiln_store, busybox_rootfs_tar):
    from kiln.image import import_tarball, open_store_image

    with open(busybox_rootfs_tar, "rb") as f:
        rec = import_tarball(
            kiln_store,
            f,
            ['CMD ["/bin/sh"]'],
            "busybox rootfs",
            names=["busybox:latest"],
            timestamp=MTIME,
        )
    return open_store_image(kiln_store, rec.id)


@pytest.fixture
def two_platforms(busybox_image):
    """``busybox:latest`` (amd64) and ``busybox:arm64``: the same layers, an arm64 config."""
    from kiln.image import open_store_image, write_image

    store = busybox_image.store
    config = busybox_image.config.evolve(architecture="arm64", variant="v8")
    rec = write_image(store, busybox_image, [], config, "oci")
    store.tag("busybox:arm64", rec.id)
    return busybox_image, open_store_image(store, "busybox:arm64")


def make_list(store_root: str, name: str = "localhost/ml:1") -> str:
    """The manifest list of ``two_platforms``' images, as ``name``; its id."""
    from kiln.ops import manifests
    from kiln.ops.context import open_context

    with open_context(store_root) as ctx:
        return manifests.create(ctx, name, ["busybox:latest", "busybox:arm64"]).id


def save_oci_archive(img, path: str, names: Sequence[str] = ("busybox:latest",), **kw):
    from kiln.image.transports import write_oci_archive

    return write_oci_archive(path, [(img, names)], **kw)[0]


def save_oci_layout(img, path: str, names: Sequence[str] = ("latest",), **kw):
    from kiln.image.transports import write_oci_layout

    return write_oci_layout(path, [(img, names)], **kw)[0]


def save_docker_archive(img, path: str, names: Sequence[str] = ("busybox:latest",), **kw):
    from kiln.image.transports import write_docker_archive

    return write_docker_archive(path, [(img, names)], **kw)[0]


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def child_layer() -> bytes:
    """Adds /hello.txt, changes /etc/passwd, deletes /bin/ls (a whiteout)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (
            ("hello.txt", b"hello\n"),
            ("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
            ("bin/.wh.ls", b""),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_100
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_child(store, base, format="oci"):
    """``child:1``: ``base`` + ENV CHILD=1 (empty layer) + :func:`child_layer` (gzip)."""
    from kiln.image import NewLayer, open_store_image, write_image
    from kiln.image.layers import recompress
    from kiln.image.store_image import IngestWriter
    from kiln.oci import History

    with store.ingest("") as ing:
        res = recompress(io.BytesIO(child_layer()), IngestWriter(ing), "gzip")
        ing.commit()
    config = base.config.evolve(
        config=base.config.config.with_env("CHILD", "1"),
        history=(
            *base.config.history,
            History(created="2024-01-01T00:00:00Z", created_by="ENV CHILD=1", empty_layer=True),
        ),
    )
    layer = NewLayer(res, History(created="2024-01-01T00:00:01Z", created_by="RUN change"))
    rec = write_image(store, base, [layer], config, format)
    store.tag("child:1", rec.id)
    return open_store_image(store, "child:1")


class Podman:
    """podman with a private store (vfs), runc, and the ulimits this machine needs."""

    def __init__(self, base: str):
        self.root = os.path.join(base, "root")
        self.runroot = os.path.join(base, "run")
        self.base = [
            "podman",
            "--root",
            self.root,
            "--runroot",
            self.runroot,
            "--storage-driver",
            "vfs",
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
        ]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [*self.base, *args], capture_output=True, text=True, timeout=300, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def run_args(self) -> list[str]:
        return [
            "run",
            "--rm",
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ]


@pytest.fixture(scope="session")
def podman(tmp_path_factory):
    """A :class:`Podman` on a temporary store (never the machine's); skips without podman/root."""
    if not have("podman") or os.geteuid() != 0:
        pytest.skip("needs podman and root")
    base = str(tmp_path_factory.mktemp("podman"))
    yield Podman(base)
    shutil.rmtree(base, ignore_errors=True)
