"""A push or save of an image that another kiln removes (``rmi``, then a prune's collection)
while the transfer reads it: the transfer finishes with what it started from, as the
stress of many kiln processes on one store found (``tests/store_stress.py``, seed 1: a
push failed "blob sha256:... not found in the store" when an ``rmi -f`` and a prune ran
under it), and the space comes back once it ends."""

from __future__ import annotations

import pytest

from kiln.errors import NotFound
from kiln.image.registry_sink import RegistrySink
from kiln.ops import images as image_ops
from kiln.ops import registry as registry_ops
from kiln.ops.context import open_context
from kiln.registry import RegistryOptions
from registry_env import isolate_registry_env

pytest_plugins = ["fixtures_images"]
pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path / "home")


def remove_and_collect(root: str, name: str) -> None:
    """What another kiln does meanwhile: ``rmi -f NAME``, then ``image prune``."""
    with open_context(root) as other:
        image_ops.remove_images(other, [name], force=True)
        other.collect_garbage()


def test_a_push_finishes_when_its_image_is_removed_meanwhile(
    kiln_store, busybox_image, registry_plain, monkeypatch
):
    root = kiln_store.root
    blobs = [d.digest for d in busybox_image.layers]
    original = RegistrySink.push_layers

    def removed_first(self, *args, **kwargs):
        remove_and_collect(root, "busybox:latest")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RegistrySink, "push_layers", removed_first)
    dest = f"docker://{registry_plain.host}/transfer-removed/push:1"
    with open_context(root) as ctx:
        pushed = registry_ops.push(ctx, "busybox:latest", dest,
                          options=RegistryOptions(tls_verify=False))  # fmt: skip
    assert pushed.image_id == busybox_image.id
    with open_context(root) as ctx:
        assert not image_ops.image_exists(ctx, "busybox:latest")
        ctx.store.blob_grace_seconds = 0
        ctx.collect_garbage()  # the push's lease is gone: its blobs go
        assert [d for d in blobs if ctx.store.has_blob(d)] == []


def test_a_save_finishes_when_its_image_is_removed_meanwhile(
    kiln_store, busybox_image, tmp_path, monkeypatch
):
    from kiln.ops import archives

    root = kiln_store.root
    original = archives.write_images

    def removed_first(*args, **kwargs):
        remove_and_collect(root, "busybox:latest")
        return original(*args, **kwargs)

    monkeypatch.setattr(archives, "write_images", removed_first)
    out = str(tmp_path / "saved.tar")
    with open_context(root) as ctx:
        saved = archives.save(ctx, ["busybox:latest"], out, format="oci-archive")
    assert saved.image_ids == [busybox_image.id]
    monkeypatch.setattr(archives, "write_images", original)
    with open_context(root) as ctx:
        assert not image_ops.image_exists(ctx, "busybox:latest")
        loaded = archives.load(ctx, out)  # the archive is whole: it loads and validates
        assert [i.id for i in loaded.images] == [busybox_image.id]


def test_an_image_removed_before_it_is_held_is_not_known(
    kiln_store, busybox_image, tmp_path, monkeypatch
):
    """Removed between its name's lookup and its lease: refused as unknown, not half read."""
    from kiln.ops import archives
    from kiln.store.leases import Lease

    root = kiln_store.root
    original = Lease.add_image

    def removed_first(self, image_id):
        remove_and_collect(root, "busybox:latest")
        return original(self, image_id)

    monkeypatch.setattr(Lease, "add_image", removed_first)
    with (
        open_context(root) as ctx,
        pytest.raises(NotFound, match="busybox:latest: image not known"),
    ):
        archives.save(ctx, ["busybox:latest"], str(tmp_path / "never.tar"))
