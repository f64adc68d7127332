"""A pull records its unpacked layers without waiting for the disk, marked with the boot
id. After a power loss (faked: the rows get another boot's id and a layer loses a write
it never synced) the next command drops those layers and a build FROM the pulled image
unpacks them again from their blobs: the build runs and sees the image's content."""

from __future__ import annotations

import io
import os
import sqlite3
import tarfile

import pytest

pytest.register_assert_rewrite("fixtures_images")
from fixtures_images import make_child  # noqa: E402
from kiln.archive.compression import open_decompressed  # noqa: E402
from kiln.cli.main import run  # noqa: E402
from kiln.image import open_store_image  # noqa: E402
from kiln.snapshot.meta import boot_id  # noqa: E402
from kiln.store import Store  # noqa: E402
from registry_env import isolate_registry_env  # noqa: E402

pytest_plugins = ["fixtures_images"]
pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path / "home")
    monkeypatch.delenv("KILN_ROOT", raising=False)


def _kiln(capsys, root: str, *args: str) -> str:
    capsys.readouterr()
    code = run(["--root", root, *args])
    out, err = capsys.readouterr()
    assert code == 0, f"kiln {' '.join(args)} -> {code}: {err}"
    return out


def _layer_rows(root: str) -> list[tuple[int, str, str]]:
    conn = sqlite3.connect(os.path.join(root, "snapshots", "snapshots.db"))
    try:
        return conn.execute("SELECT n, chain_id, boot FROM layers ORDER BY n").fetchall()
    finally:
        conn.close()


def _reboot(root: str, durable: set[int]) -> None:
    """What the snapshot database looks like after a power loss: the not-yet-durable rows
    carry another boot's id (``durable``: rows marked durable, as a committed step's)."""
    conn = sqlite3.connect(os.path.join(root, "snapshots", "snapshots.db"))
    try:
        with conn:
            conn.execute("UPDATE layers SET boot='a-boot-before-the-power-loss' WHERE boot!=''")
            for n in durable:
                conn.execute("UPDATE layers SET boot='' WHERE n=?", (n,))
    finally:
        conn.close()


def test_build_from_a_pulled_image_after_a_power_loss(
    registry_plain, kiln_store, busybox_image, tmp_path, capsys
):
    child = make_child(kiln_store, busybox_image)
    ref = f"{registry_plain.host}/kiln/reboot:v1"
    _kiln(capsys, kiln_store.root, "push", "--tls-verify=false", "child:1", f"docker://{ref}")

    root = str(tmp_path / "puller")
    _kiln(capsys, root, "pull", "--tls-verify=false", f"docker://{ref}")
    rows = _layer_rows(root)
    assert [boot for *_, boot in rows] == [boot_id()] * 2  # recorded without a sync
    (low_n, _, _), (top_n, top_chain, _) = rows

    # the power loss: the base layer's busybox lost its content (never synced); the layer
    # above is durable (as if committed by a build step) and must stay valid
    busybox = os.path.join(root, "snapshots", "layers", str(low_n), "fs", "bin", "busybox")
    with open(busybox, "wb"):
        pass
    _reboot(root, durable={top_n})

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(
        f"FROM {ref}\nRUN test ! -e /bin/ls && cat /hello.txt /etc/passwd > /seen\n"
    )
    out = _kiln(capsys, root, "build", "--pull=never", "-q", "-t", "after:1", str(ctx))
    assert out.strip()

    rows = _layer_rows(root)
    chains = {chain: (n, boot) for n, chain, boot in rows}
    assert chains[top_chain] == (top_n, "")  # the durable child kept its row
    assert low_n not in {n for n, *_ in rows}  # the torn base layer was unpacked again
    assert all(boot in ("", boot_id()) for *_, boot in rows)

    with Store.open(root) as store:
        img = open_store_image(store, "after:1")
        assert [str(d) for d in img.config.diff_ids[:2]] == [str(d) for d in child.config.diff_ids]
        with img.open_layer(img.layers[-1]) as raw, open_decompressed(raw) as plain:
            data = plain.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        seen = tar.extractfile("seen")
        assert seen is not None
        assert seen.read() == b"hello\nroot:x:0:0:root:/root:/bin/sh\n"
