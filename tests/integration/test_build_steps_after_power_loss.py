"""A build step's layer is recorded without waiting for the disk, marked with the boot id:
only its blob and the image rows are durable. After a power loss (faked: the boot id
changes and layers lose writes they never synced) the next command drops those layers, and
a build FROM the image or a rebuild from the cache unpacks them again from their blobs,
under the same chain ids, and sees the image's content. A build container the power loss
killed keeps no torn layer alive either."""

from __future__ import annotations

import io
import os
import sqlite3
import tarfile

import pytest

pytest.register_assert_rewrite("fixtures_images")
import kiln.snapshot.meta as meta_module  # noqa: E402
from build_fixtures import ROOT_MARKS  # noqa: E402
from fixtures_images import PASSWD  # noqa: E402
from kiln.archive.compression import open_decompressed  # noqa: E402
from kiln.build.options import BuildOptions  # noqa: E402
from kiln.cli.main import run  # noqa: E402
from kiln.container.builder import Builder  # noqa: E402
from kiln.image import open_store_image  # noqa: E402
from kiln.ops.build import build  # noqa: E402
from kiln.ops.context import open_context  # noqa: E402
from kiln.snapshot import holds  # noqa: E402
from kiln.store import Store  # noqa: E402

pytest_plugins = ["fixtures_images"]
pytestmark = [*ROOT_MARKS, pytest.mark.timeout(300)]

STEPS = "FROM busybox\nRUN echo one > /a\nRUN echo two > /b\nCOPY c.txt /c\n"


@pytest.fixture
def boot(tmp_path, monkeypatch):
    """This boot's id file; write another id into it to fake a reboot."""
    path = tmp_path / "boot_id"
    path.write_text("boot-one\n")
    monkeypatch.setattr(meta_module, "BOOT_ID_FILE", str(path))
    monkeypatch.delenv("KILN_ROOT", raising=False)
    return path


def _kiln(capsys, root: str, *args: str) -> str:
    capsys.readouterr()
    code = run(["--root", root, *args])
    out, err = capsys.readouterr()
    assert code == 0, f"kiln {' '.join(args)} -> {code}: {err}"
    return out


def _rows(root: str) -> dict[str, tuple[int, str]]:
    conn = sqlite3.connect(os.path.join(root, "snapshots", "snapshots.db"))
    try:
        rows = conn.execute("SELECT chain_id, n, boot FROM layers").fetchall()
    finally:
        conn.close()
    return {chain: (n, b) for chain, n, b in rows}


def _fs(root: str, n: int) -> str:
    return os.path.join(root, "snapshots", "layers", str(n), "fs")


def _last_layer_file(root: str, ref: str, name: str) -> bytes:
    with Store.open(root) as store:
        img = open_store_image(store, ref)
        with img.open_layer(img.layers[-1]) as raw, open_decompressed(raw) as plain:
            data = plain.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile(name)
        assert member is not None, f"{name} not in the last layer of {ref}"
        return member.read()


def _chains(root: str, ref: str) -> list[str]:
    with Store.open(root) as store:
        return list(open_store_image(store, ref).record.layers)


def test_build_from_and_rebuild_after_a_power_loss(
    kiln_store, busybox_image, tmp_path, capsys, boot, monkeypatch
):
    root = kiln_store.root
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "c.txt").write_text("three\n")
    (ctx / "Containerfile").write_text(STEPS)
    # the last COPY materialised, as a COPY that a later step reads is: written straight
    # from the context (kiln.build.copy_direct) it has no tree a power loss could tear
    with open_context(root) as c:
        build(c, BuildOptions(context=str(ctx), tags=["built:1"], quiet=True, direct_copy=False))
    chains = _chains(root, "built:1")
    rows = _rows(root)
    assert [rows[c][1] for c in chains] == ["boot-one"] * 4  # none waited for the disk

    # the power loss: the RUN layer's file lost its content, the COPY layer lost its file
    with open(os.path.join(_fs(root, rows[chains[1]][0]), "a"), "wb"):
        pass
    os.unlink(os.path.join(_fs(root, rows[chains[3]][0]), "c"))
    boot.write_text("boot-two\n")

    other = tmp_path / "other"
    other.mkdir()
    (other / "Containerfile").write_text("FROM built:1\nRUN cat /a /b /c > /seen\n")
    _kiln(capsys, root, "build", "--pull=never", "-q", "-t", "from:1", str(other))
    assert _last_layer_file(root, "from:1", "seen") == b"one\ntwo\nthree\n"
    rows_after = _rows(root)
    for chain in chains:  # unpacked again under the same chain ids, in new directories
        assert rows_after[chain] != rows[chain] and rows_after[chain][1] == "boot-two"

    # the steps come from the cache (same layers) and the tree under them is whole
    (ctx / "Containerfile").write_text(STEPS + "RUN cat /a /b /c > /seen2\n")
    _kiln(capsys, root, "build", "--layers=true", "--pull=never", "-q", "-t", "again:1", str(ctx))
    assert _chains(root, "again:1")[:4] == chains
    assert _last_layer_file(root, "again:1", "seen2") == b"one\ntwo\nthree\n"


def test_a_build_killed_by_a_power_loss_keeps_no_torn_layer(
    kiln_store, busybox_image, tmp_path, capsys, boot
):
    """The build's container rests on its base, unpacked for it without a sync, when the
    power goes: after the reboot the container (its process gone, its upper volatile) must
    not keep that torn base alive for the next build."""
    root = kiln_store.root
    with open_context(root) as ctx:
        b = Builder.from_image(
            ctx,
            "busybox:latest",
            volatile_mounts=True,
            owner="999999999:1",  # a dead build
        )
        assert b.run(["sh", "-c", "echo one > /a"]) == 0
        b.commit_step(created_by="RUN echo one > /a", name="half:1")
        chains = _chains(root, "half:1")
    rows = _rows(root)
    assert [rows[c][1] for c in chains] == ["boot-one"] * 2
    with open(os.path.join(_fs(root, rows[chains[0]][0]), "etc", "passwd"), "wb"):
        pass  # the base lost its write
    active = os.path.join(root, "snapshots", "active")
    for n in os.listdir(active):  # the build's process is gone, and its holds with it
        holds.release(os.path.join(active, n))
    boot.write_text("boot-two\n")

    other = tmp_path / "other"
    other.mkdir()
    (other / "Containerfile").write_text("FROM half:1\nRUN cat /etc/passwd /a > /seen\n")
    _kiln(capsys, root, "build", "--pull=never", "-q", "-t", "after:1", str(other))
    assert _last_layer_file(root, "after:1", "seen") == PASSWD + b"one\n"
    assert _rows(root)[chains[0]][0] != rows[chains[0]][0]  # the base was unpacked again
