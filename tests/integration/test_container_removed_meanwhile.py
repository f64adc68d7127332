"""A working container another kiln removes (``kiln rm``, or ``rmi -f`` of its image) while
a commit or an export reads it: refused as no longer there, naming the container, not with
the snapshotter's insides ("snapshot kiln-container-... does not exist", which the stress of
many kiln processes on one store showed: ``tests/store_stress.py``, seed 1)."""

from __future__ import annotations

import pytest

from kiln.container import Builder
from kiln.errors import NotFound
from kiln.ops import containers as container_ops
from kiln.ops.context import open_context

pytest_plugins = ["fixtures_images"]
pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]


@pytest.fixture
def removed_under(kiln_store, busybox_image, monkeypatch):
    """A container ``work`` that another kiln's ``rmi -f busybox`` removes once ``method`` of
    the Builder starts."""
    root = kiln_store.root
    with open_context(root) as ctx:
        container_ops.create_container(ctx, "busybox:latest", name="work")

    def arrange(method: str) -> None:
        original = getattr(Builder, method)

        def removed_first(self, *args, **kwargs):
            from kiln.ops import images as image_ops

            with open_context(root) as other:
                image_ops.remove_images(other, ["busybox:latest"], force=True)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(Builder, method, removed_first)

    return arrange


def test_a_commit_of_a_container_removed_meanwhile_says_so(kiln_store, removed_under):
    removed_under("commit")
    with open_context(kiln_store.root) as ctx, pytest.raises(NotFound) as err:
        container_ops.commit_container(ctx, "work", "committed")
    assert str(err.value) == "work: no such container (it was removed meanwhile)"
    with open_context(kiln_store.root) as ctx:
        assert container_ops.list_containers(ctx) == []
        assert ctx.store.list_images() == []


def test_an_export_of_a_container_removed_meanwhile_says_so(kiln_store, removed_under, tmp_path):
    removed_under("export")
    out = tmp_path / "fs.tar"
    with open_context(kiln_store.root) as ctx, pytest.raises(NotFound) as err:
        container_ops.export_container(ctx, "work", str(out))
    assert str(err.value) == "work: no such container (it was removed meanwhile)"
    assert not out.exists()  # no partial archive
