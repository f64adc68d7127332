"""One garbage collector for blobs and unpacked snapshots, driven by rmi and prune.

Images are built with the real CLI (shared busybox base, several layers), unpacked by
``kiln from`` and builds, then removed; afterwards the store's blob and snapshot
directories are walked: nothing is left that nothing references, what is referenced
(a remaining image, a working container's snapshot) still works, and the space prune
reports is the space that left the disk.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root, overlayfs and a runtime"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
]

SNAPSHOT_DIRS = ("layers", "active", "tmp")


@pytest.fixture
def kiln(kiln_store, busybox_image, tmp_path):  # noqa: F811
    env = dict(os.environ, KILN_ROOT=kiln_store.root, KILN_RUNTIME_DIR=str(tmp_path / "rt"))
    env.pop("BUILDAH_ISOLATION", None)

    def run(*args, check=True):
        res = subprocess.run(
            [sys.executable, "-m", "kiln.cli.main", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=300,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"kiln {' '.join(args)} -> {res.returncode}\n{res.stderr}")
        return res

    yield run
    run("rm", "--all", check=False)


def build_apps(kiln, tmp_path) -> None:
    """app1 and app2: busybox + two and one COPY layers (random, so incompressible)."""
    for name, files in (
        ("app1", {"a.bin": 700_000, "b.bin": 300_000}),
        ("app2", {"c.bin": 500_000}),
    ):
        ctx = tmp_path / f"ctx-{name}"
        ctx.mkdir()
        lines = ["FROM busybox"]
        for f, size in files.items():
            (ctx / f).write_bytes(os.urandom(size))
            lines.append(f"COPY {f} /{f}")
        (ctx / "Containerfile").write_text("\n".join(lines) + "\n")
        kiln("build", "-q", "-t", name, str(ctx))


def store_usage(root: str) -> int:
    """``du -sb`` of what GC may remove: blobs and snapshot trees (not the databases)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    tops = [os.path.join(root, "blobs"), os.path.join(root, "ingest")]
    tops += [os.path.join(root, "snapshots", d) for d in SNAPSHOT_DIRS]
    for top in tops:
        for base, dirs, files in os.walk(top):
            for name in dirs + files:
                st = os.lstat(os.path.join(base, name))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total


def blobs_on_disk(root: str) -> set[str]:
    base = os.path.join(root, "blobs", "sha256")
    return {"sha256:" + n for n in os.listdir(base)}


def referenced_blobs(store) -> set[str]:
    out: set[str] = set()
    for rec in store.list_images():
        out.update((rec.manifest_digest, rec.config_digest, *rec.layer_blobs))
    return out


def snapshot_rows(root: str) -> tuple[dict[str, tuple[int, str | None]], dict[str, tuple]]:
    """The snapshotter's records: chain -> (dir number, parent); key -> (n, parent)."""
    conn = sqlite3.connect(os.path.join(root, "snapshots", "snapshots.db"))
    try:
        layers = {c: (n, p) for n, c, p in conn.execute("SELECT n, chain_id, parent FROM layers")}
        active = {k: (n, p) for n, k, p in conn.execute("SELECT n, key, parent FROM active")}
    finally:
        conn.close()
    return layers, active


def assert_nothing_unreferenced(store) -> None:
    """Every blob and unpacked layer on disk is one a remaining image or container needs,
    every snapshot directory is a recorded one, and no crash garbage is left."""
    root = store.root
    assert blobs_on_disk(root) <= referenced_blobs(store)
    layers, active = snapshot_rows(root)
    needed = {c for rec in store.list_images() for c in rec.layers}
    keys = {c.snapshot_key for c in store.list_containers()}
    assert set(active) <= keys, f"snapshots no container holds: {set(active) - keys}"
    for _n, parent in active.values():  # a container's chain, down to its base
        while parent:
            needed.add(parent)
            parent = layers[parent][1] if parent in layers else None
    assert set(layers) <= needed, f"unpacked layers nothing uses: {set(layers) - needed}"
    snaps = os.path.join(root, "snapshots")
    assert sorted(os.listdir(os.path.join(snaps, "layers"))) == sorted(
        str(n) for n, _ in layers.values()
    )
    assert sorted(os.listdir(os.path.join(snaps, "active"))) == sorted(
        str(n) for n, _ in active.values()
    )
    assert os.listdir(os.path.join(snaps, "tmp")) == []


def test_rmi_all_and_prune_all_leave_nothing(kiln, kiln_store, tmp_path) -> None:  # noqa: F811
    build_apps(kiln, tmp_path)
    # a working container unpacks each app's layers: a build leaves its last COPY as a
    # blob only (nothing in the build read it), and the build unpacked busybox
    for app in ("app1", "app2"):
        kiln("rm", kiln("from", app).stdout.strip())
    layers, _ = snapshot_rows(kiln_store.root)
    assert len(layers) >= 4  # busybox, a.bin, b.bin, c.bin
    kiln("rmi", "-a")
    kiln("image", "prune", "-a", "-f")
    assert kiln("images", "-q", "-a").stdout.strip() == ""
    assert blobs_on_disk(kiln_store.root) == set()
    assert snapshot_rows(kiln_store.root) == ({}, {})
    assert_nothing_unreferenced(kiln_store)


def test_prune_reports_the_space_that_left_the_disk(kiln, kiln_store, tmp_path) -> None:  # noqa: F811
    from kiln.cli.render import human_size

    build_apps(kiln, tmp_path)
    kiln("rm", kiln("from", "app2").stdout.strip())
    before = store_usage(kiln_store.root)
    res = kiln("image", "prune", "-a", "-f")
    dropped = before - store_usage(kiln_store.root)
    assert dropped > 1_500_000  # the three COPY layers, as blobs and unpacked
    assert f"Total reclaimed space: {human_size(dropped)}" in res.stderr
    assert_nothing_unreferenced(kiln_store)
    assert blobs_on_disk(kiln_store.root) == set()


def test_what_is_referenced_survives_and_freed_bytes_are_exact(
    kiln,
    kiln_store,  # noqa: F811
    tmp_path,
) -> None:
    from kiln.image import open_store_image, validate_image
    from kiln.ops import images as ops
    from kiln.ops.context import Context

    build_apps(kiln, tmp_path)
    kiln("from", "--name", "w", "app1")
    kiln("run", "w", "--", "sh", "-c", "echo kept > /marker")
    kiln("rm", kiln("from", "app2").stdout.strip())  # app2 unpacked, then unused
    app2_top = kiln_store.resolve_image("app2").layers[-1]
    kiln("rmi", "app2")
    assert app2_top not in snapshot_rows(kiln_store.root)[0]  # rmi's GC swept it at once

    kiln("build", "-q", "-t", "app3", str(tmp_path / "ctx-app2"))
    kiln("rm", kiln("from", "app3").stdout.strip())
    kiln("untag", "app3")  # dangling now
    before = store_usage(kiln_store.root)
    ctx = Context(store=kiln_store)
    result = ops.prune(ctx, all=True)  # app1 has a container, busybox a child: both stay
    assert result.bytes_freed == before - store_usage(kiln_store.root) > 500_000
    assert result.snapshots_removed >= 1 and result.blobs_removed >= 3
    assert {r.names[0] for r in kiln_store.list_images() if r.names} == {
        "localhost/app1:latest",
        "docker.io/library/busybox:latest",
    }
    assert_nothing_unreferenced(kiln_store)

    assert kiln("run", "w", "--", "cat", "/marker").stdout == "kept\n"
    validate_image(open_store_image(kiln_store, "app1"))
    kiln("save", "-o", str(tmp_path / "app1.tar"), "app1")
    other = kiln("from", "app1").stdout.strip()
    assert kiln("run", other, "--", "wc", "-c", "/a.bin").stdout.split()[0] == "700000"
    kiln("rm", other)
    # a second collection finds nothing more to free
    assert ctx.collect_garbage().bytes_freed == 0
