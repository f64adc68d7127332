"""An image whose last COPY was written straight from the context (its layer not unpacked,
kiln.build.copy_direct) works as any other, through the CLI as users meet it: a rebuild hits
the cache, history/inspect/save/push read it, and run, diff and a build FROM it unpack the
layer on demand from its blob. A context file that changes while the layer is written fails
the step with one clear line and leaves no image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest

from fixtures_images import busybox_rootfs_tar  # noqa: F401

pytestmark = [pytest.mark.root, pytest.mark.timeout(600)]


def kiln(root, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "kiln.cli.main", "--root", str(root), *args],
                         capture_output=True, text=True, timeout=240)  # fmt: skip
    if check:
        assert res.returncode == 0, (args, res.stderr)
    return res


def _unpacked(root, image: str) -> bool:
    from kiln.snapshot import Snapshotter
    from kiln.store import Store

    store = Store.open(str(root))
    try:
        chain = store.resolve_image(image).layers[-1]
    finally:
        store.close()
    return Snapshotter(os.path.join(str(root), "snapshots")).has_layer(chain)


@pytest.fixture
def env(tmp_path, busybox_rootfs_tar):  # noqa: F811
    root = tmp_path / "root"
    kiln(root, "import", "-q", busybox_rootfs_tar, "busybox:latest")
    ctx = tmp_path / "ctx"
    (ctx / "files" / "sub").mkdir(parents=True)
    (ctx / "files" / "a").write_text("alpha\n")
    (ctx / "files" / "sub" / "b").write_text("beta\n")
    (ctx / "Containerfile").write_text('FROM busybox\nCOPY files /files\nCMD ["cat", "/files/a"]\n')
    return root, ctx, tmp_path


def test_direct_image_lifecycle(env):
    root, ctx, tmp = env
    image_id = kiln(root, "build", "-q", "-t", "app:1", str(ctx)).stdout.strip()
    assert not _unpacked(root, "app:1")  # written straight from the context

    again = kiln(root, "build", "-t", "app:1", str(ctx)).stdout
    assert "Using cache" in again and again.strip().endswith(image_id.removeprefix("sha256:"))

    history = kiln(root, "history", "--no-trunc", "app:1").stdout
    assert "COPY dir:" in history
    doc = json.loads(kiln(root, "inspect", "app:1").stdout)
    doc = doc[0] if isinstance(doc, list) else doc
    assert len(doc["RootFS"]["Layers"]) == 2

    saved = tmp / "app.tar"
    kiln(root, "save", "-o", str(saved), "app:1")
    names = []
    with tarfile.open(saved) as outer:
        for m in outer:
            if m.isfile() and m.name.endswith(".tar") and m.name != "app.tar":
                with tarfile.open(fileobj=outer.extractfile(m)) as layer:
                    names += layer.getnames()
    assert "files/sub/b" in names

    kiln(root, "push", "app:1", f"oci:{tmp / 'layout'}:app")
    assert (tmp / "layout" / "index.json").exists()
    assert not _unpacked(root, "app:1")  # reading the blob unpacks nothing

    changes = kiln(root, "diff", "app:1").stdout
    assert "/files/sub/b" in changes

    kiln(root, "from", "--name", "c1", "app:1")  # a working container unpacks the layer
    assert _unpacked(root, "app:1")
    assert kiln(root, "run", "c1", "--", "cat", "/files/a").stdout == "alpha\n"
    kiln(root, "rm", "c1")

    child = tmp / "child"
    child.mkdir()
    (child / "Containerfile").write_text("FROM app:1\nRUN cat /files/sub/b > /copied\n")
    kiln(root, "build", "-q", "-t", "child:1", str(child))
    kiln(root, "from", "--name", "c2", "child:1")
    assert kiln(root, "run", "c2", "--", "cat", "/copied").stdout == "beta\n"


def test_next_build_unpacks_on_demand(env):
    """The first use of the layer is a FROM in another build (never run before)."""
    root, ctx, tmp = env
    kiln(root, "build", "-q", "-t", "app:1", str(ctx))
    assert not _unpacked(root, "app:1")
    child = tmp / "child"
    child.mkdir()
    (child / "Containerfile").write_text("FROM app:1\nRUN test -f /files/a && ls /files/sub\n")
    kiln(root, "build", "-q", "-t", "child:1", str(child))
    assert _unpacked(root, "app:1")


def test_context_file_changed_after_listing_fails_cleanly(tmp_path, monkeypatch, env):
    """A context file that changes after the layer was listed and before its bytes are
    read: the step fails with the copier's message, and no image is named. (The change is
    made at that moment by a wrapper of the listing, in-process: no race to win.)"""
    import kiln.build.copy_direct as copy_direct
    from kiln.build.options import BuildOptions
    from kiln.errors import InvalidArgument
    from kiln.ops.build import build
    from kiln.ops.context import open_context

    root, ctx, _ = env
    listed = copy_direct.plan_direct

    def then_change(*args, **kw):
        layer = listed(*args, **kw)
        assert layer is not None  # the direct path is taken
        with open(ctx / "files" / "a", "a") as f:
            f.write("more\n")
        return layer

    monkeypatch.setattr(copy_direct, "plan_direct", then_change)
    with (
        open_context(str(root)) as kctx,
        pytest.raises(InvalidArgument, match="changed while it was being copied"),
    ):
        build(kctx, BuildOptions(context=str(ctx), tags=["app:1"], pull="never"))
    assert kiln(root, "images", "-q", "app:1", check=False).stdout.strip() == ""
